package contract

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
)

func chain(n int) [][]byte {
	prev := Genesis
	var out [][]byte
	for i := 1; i <= n; i++ {
		b, _ := json.Marshal(Event{ID: "id" + string(rune('a'+i)), Seq: uint64(i), Device: "d1", Severity: "info", Type: "t", Prev: prev})
		sum := sha256.Sum256(b)
		prev = hex.EncodeToString(sum[:])
		out = append(out, b)
	}
	return out
}

func TestAudit(t *testing.T) {
	good := chain(5)
	join := func(lines ...[]byte) string { return string(bytes.Join(lines, []byte("\n"))) }
	watch := func(b []byte) []byte {
		out, _ := json.Marshal(WatchRecord{Topic: "linkguard/v1/d1/events", Payload: b})
		return out
	}
	altered := bytes.Replace(good[2], []byte(`"type":"t"`), []byte(`"type":"x"`), 1)
	tests := []struct {
		name, stream string
		ok           bool
		want         string
	}{
		{"intact", join(good...), true, ""},
		{"watch format with duplicates", join(watch(good[0]), watch(good[1]), watch(good[1]), watch(good[2])), true, ""},
		{"gap", join(good[0], good[1], good[3], good[4]), false, "events 3..3 are missing"},
		{"altered", join(good[0], good[1], altered, good[3]), false, "seq 4"},
		{"conflict", join(good[0], good[1], good[2], altered), false, "two different events"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reps, err := Audit(strings.NewReader(tt.stream))
			if err != nil || len(reps) != 1 {
				t.Fatalf("Audit: %v, %d reports", err, len(reps))
			}
			r := reps[0]
			if r.OK() != tt.ok || (tt.want != "" && !strings.Contains(strings.Join(r.Problems, "\n"), tt.want)) {
				t.Fatalf("report %+v", r)
			}
		})
	}
}
