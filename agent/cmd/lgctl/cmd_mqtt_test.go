package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
)

func TestCmdWatchAudit(t *testing.T) {
	pki := brokertest.NewPKI(t)
	b := brokertest.Mochi(t, pki)
	dir := t.TempDir()
	opKey, opPub, err := dsse.GenerateKeyFiles(dir, "ops-1")
	if err != nil {
		t.Fatal(err)
	}
	stranger, _, _ := dsse.GenerateKeyFiles(dir, "stranger")
	ring, _ := dsse.LoadKeyring(opPub)
	startDevice(t, pki, b, ring, "dev-1", "s1")

	cert, key := pki.Client(t, "operator")
	conn := []string{"--broker", b.URL(), "--ca", pki.CA, "--tls-cert", cert, "--tls-key", key}
	watchOut := make(chan string)
	go func() {
		out, _, err := run(append([]string{"watch", "--json", "--for", "3s"}, conn...)...)
		if err != nil {
			t.Error(err)
		}
		watchOut <- out
	}()
	time.Sleep(300 * time.Millisecond)

	out, _, err := run(append([]string{"cmd", "--key", opKey, "--target", "dev-1", "ping"}, conn...)...)
	if err != nil || !strings.Contains(out, "dev-1") || !strings.Contains(out, " ok ") {
		t.Fatalf("cmd ping: %v\n%s", err, out)
	}
	out, _, err = run(append([]string{"cmd", "--key", opKey, "--target", "site:s1", "--timeout", "1s", "log.level", "level=debug"}, conn...)...)
	if err == nil || !strings.Contains(out, "REFUSED failed") {
		// no LevelVar in this link: the handler refuses, and lgctl says so
		t.Fatalf("cmd log.level on a fixed-level agent: %v\n%s", err, out)
	}
	out, _, err = run(append([]string{"cmd", "--key", stranger, "--target", "dev-1", "ping"}, conn...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "REFUSED untrusted-key") {
		t.Fatalf("cmd by an untrusted key: %v\n%s", err, out)
	}
	_, stderr, err := run(append([]string{"cmd", "--key", opKey, "--target", "nobody", "--timeout", "500ms", "ping"}, conn...)...)
	if !errors.Is(err, errSilent) || !strings.Contains(stderr, "no device answered") {
		t.Fatalf("cmd to nobody: %v %s", err, stderr)
	}

	stream := <-watchOut
	if !strings.Contains(stream, `"topic":"linkguard/v1/dev-1/events"`) {
		t.Fatalf("watch --json saw no events:\n%s", stream)
	}
	saved := filepath.Join(t.TempDir(), "stream.jsonl")
	os.WriteFile(saved, []byte(stream), 0o600)
	out, _, err = run("audit", saved)
	if err != nil || !strings.Contains(out, "dev-1: chain intact") {
		t.Fatalf("audit: %v\n%s", err, out)
	}
	out, _, err = run("audit", "--fleet-ca", pki.CA, saved)
	if err != nil || !strings.Contains(out, "dev-1: chain intact") || !strings.Contains(out, "vouched for by") {
		t.Fatalf("audit --fleet-ca: %v\n%s", err, out)
	}
	// The impersonation: dev-2, with its own valid certificate,
	// publishes on its own topic a 3-event chain claiming to be dev-1, and
	// the same chain bare (mosquitto_sub without topics).
	dev2Cert, dev2Key := pki.Client(t, "dev-2")
	dev2, err := contract.LoadSigner(dev2Cert, dev2Key)
	if err != nil {
		t.Fatal(err)
	}
	var impostor strings.Builder
	prev := contract.Genesis
	for i := uint64(1); i <= 3; i++ {
		b, _ := json.Marshal(contract.Event{ID: strings.Repeat("e", 31) + string(rune('0'+i)), TS: time.Now().UTC(), Seq: 100 + i, Device: "dev-1",
			BootID: strings.Repeat("b", 32), Severity: "info", Type: "link.denied", Prev: prev, Fields: map[string]any{"site": "s1"}})
		if b, err = dev2.Seal(contract.KindEvents, b); err != nil {
			t.Fatal(err)
		}
		prev = hashHex(b)
		rec, _ := json.Marshal(contract.WatchRecord{Topic: "linkguard/v1/dev-2/events", Payload: b})
		impostor.Write(append(rec, '\n'))
	}
	os.WriteFile(saved, []byte(stream+impostor.String()), 0o600)
	out, _, err = run("audit", saved)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "came on the topic of dev-2") {
		t.Fatalf("audit of events naming dev-1 on dev-2's topic: %v\n%s", err, out)
	}
	var bare strings.Builder
	for _, line := range strings.Split(strings.TrimSpace(impostor.String()), "\n") {
		var rec contract.WatchRecord
		json.Unmarshal([]byte(line), &rec)
		bare.Write(append(append([]byte(nil), rec.Payload...), '\n'))
	}
	os.WriteFile(saved, []byte(stream+bare.String()), 0o600)
	if out, _, err = run("audit", "--fleet-ca", pki.CA, saved); !errors.Is(err, errSilent) || !strings.Contains(out, "do not name the same device") {
		t.Fatalf("audit --fleet-ca of bare events dev-2 signed as dev-1: %v\n%s", err, out)
	}
	// Alter one event in the saved stream: audit must notice.
	forged := strings.Replace(stream, `"type":"command.accepted"`, `"type":"command.refused"`, 1)
	os.WriteFile(saved, []byte(forged), 0o600)
	out, _, err = run("audit", saved)
	if !errors.Is(err, errSilent) || !strings.Contains(out, "CHAIN BROKEN") {
		t.Fatalf("audit of an altered stream: %v\n%s", err, out)
	}
}

func hashHex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func TestParseArgs(t *testing.T) {
	got, err := parseArgs([]string{"feed=tachileik-1", "cap_kw=50", "until=2026-12-01T06:00:00Z", "on=true", "list=[1,2]"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"cap_kw":50,"feed":"tachileik-1","list":[1,2],"on":true,"until":"2026-12-01T06:00:00Z"}`
	if string(got) != want {
		t.Fatalf("got %s want %s", got, want)
	}
	if _, err := parseArgs([]string{"novalue"}); err == nil {
		t.Fatal("accepted an argument without =")
	}
}

// TestWatchTelemetry: watch names the telemetry sections and prints their
// key figures, with passed and denied rates from one message to the next.
func TestWatchTelemetry(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	msg := func(seq uint64, boot string, dt time.Duration, passed, denied uint64) []byte {
		links, _ := json.Marshal(contract.Links{Mode: "inline", PolicySerial: 7, Passed: passed, Denied: denied, Flows: 12, FlowCap: 65536})
		power, cap := 42.5, 50.0
		fs, _ := json.Marshal(contract.Feeds{{Feed: "f1", PowerKW: &power, CapKW: &cap, Circuits: []contract.Circuit{{ID: "a", On: true}, {ID: "b"}}},
			{Feed: "f2", MeterLost: true}})
		b, _ := json.Marshal(contract.Telemetry{Device: "r1", BootID: boot, Seq: seq, TS: at.Add(dt),
			Sections: map[string]json.RawMessage{contract.SectionLinks: links, contract.SectionFeeds: fs, "x-new": json.RawMessage(`{"a":1}`)}})
		return b
	}
	v := newWatchView()
	topic := contract.Prefix + "r1/telemetry"
	for _, tt := range []struct {
		name string
		msg  []byte
		want []string
		not  string
	}{
		{"first", msg(1, "b1", 0, 1000, 100), []string{"links[inline policy=7 passed=1000 denied=100 flows=12/65536]",
			"feeds[f1 42.5/50.0kW 1/2 on f2 -/-kW 0/0 on METER LOST]", "x-new[7 bytes]"}, "/s"},
		{"rates", msg(2, "b1", 10*time.Second, 1500, 130), []string{"passed=1500 (50.0/s) denied=130 (3.0/s)"}, "sections="},
		{"reboot: no rate across boots", msg(1, "b2", 20*time.Second, 10, 1), []string{"passed=10 denied=1 "}, "/s"},
	} {
		got := v.line(topic, tt.msg)
		for _, w := range tt.want {
			if !strings.Contains(got, w) {
				t.Errorf("%s: %q lacks %q", tt.name, got, w)
			}
		}
		if strings.Contains(got, tt.not) {
			t.Errorf("%s: %q has %q", tt.name, got, tt.not)
		}
	}
}

// TestWatchMarksSeals: with --fleet-ca, watch says of each report whether
// its device sealed it, and of an unsigned event when a checkpoint vouched
// for it.
func TestWatchMarksSeals(t *testing.T) {
	pki := brokertest.NewPKI(t)
	cert, key := pki.Client(t, "r1")
	r1, err := contract.LoadSigner(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	v := newWatchView()
	v.verify = &contract.ReportVerifier{Roots: pki.Pool()}
	st, _ := json.Marshal(contract.State{Online: true, Device: "r1", BootID: "b"})
	sealedState, _ := r1.Seal(contract.KindState, st)
	if got := v.seal("linkguard/v1/r1/state", sealedState); got != " [signed]" {
		t.Errorf("sealed state: %q", got)
	}
	if got := v.seal("linkguard/v1/r2/state", sealedState); !strings.Contains(got, "UNVERIFIED") {
		t.Errorf("r1's state on r2's topic: %q", got)
	}
	if got := v.seal("linkguard/v1/r1/state", st); !strings.Contains(got, "UNVERIFIED: unsigned") {
		t.Errorf("unsigned state: %q", got)
	}
	prev := contract.Genesis
	var marks []string
	for i := uint64(1); i <= 3; i++ {
		b, _ := json.Marshal(contract.Event{ID: strings.Repeat("a", 31) + string(rune('0'+i)), Seq: i, Device: "r1", BootID: "b",
			Severity: "info", Type: "x", Prev: prev})
		if i != 2 {
			b, _ = r1.Seal(contract.KindEvents, b)
		}
		prev = hashHex(b)
		marks = append(marks, v.seal("linkguard/v1/r1/events", b))
	}
	want := []string{" [signed]", " [awaits checkpoint]", " [signed; vouches #2..#2]"}
	for i := range want {
		if marks[i] != want[i] {
			t.Errorf("event %d: %q, want %q", i+1, marks[i], want[i])
		}
	}
	if got := newWatchView().seal("linkguard/v1/r1/state", st); got != "" {
		t.Errorf("without a fleet CA: %q", got)
	}
}
