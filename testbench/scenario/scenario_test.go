package scenario

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestScenarios runs every shipped scenario end to end: embedded broker,
// simulated sites on ptys and in-memory wires, the console's view.
func TestScenarios(t *testing.T) {
	files, err := filepath.Glob("../scenarios/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no scenarios: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			t.Parallel()
			s, err := Load(f)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			rep := Run(ctx, s, t.TempDir(), nil)
			var buf bytes.Buffer
			Summary(&buf, []*Report{rep})
			t.Log("\n" + buf.String())
			if !rep.OK {
				t.Fatal("scenario failed")
			}
			if len(rep.Steps) != len(s.Steps) {
				t.Fatalf("%d of %d steps ran", len(rep.Steps), len(s.Steps))
			}
			out := filepath.Join(t.TempDir(), "report.json")
			if err := WriteJSON(out, []*Report{rep}); err != nil {
				t.Fatal(err)
			}
			if b, _ := os.ReadFile(out); !bytes.Contains(b, []byte(`"ok": true`)) {
				t.Fatal("report does not say ok")
			}
		})
	}
}

// TestFailingExpectationFails makes sure a scenario can fail: the denied
// count never rises without traffic.
func TestFailingExpectationFails(t *testing.T) {
	s, err := Parse([]byte(`name: must-fail
routers: [{id: r1, site: s1}]
steps:
  - {do: expect, device: r1, within: 1s, expect: {denied_rises: true}}
`))
	if err != nil {
		t.Fatal(err)
	}
	rep := Run(context.Background(), s, t.TempDir(), nil)
	if rep.OK || len(rep.Steps) != 1 || rep.Steps[0].Error == "" {
		t.Fatalf("want a failed step, got %+v", rep)
	}
}

func TestParseRejects(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown key":    "name: x\nrouters: [{id: r, site: s}]\nbogus: 1\n",
		"unknown action": "name: x\nrouters: [{id: r, site: s}]\nsteps: [{do: explode}]\n",
		"unknown device": "name: x\nrouters: [{id: r, site: s}]\nsteps: [{do: kill, device: q}]\n",
		"no devices":     "name: x\n",
		"bad duration":   "name: x\nrouters: [{id: r, site: s}]\nsteps: [{do: wait, for: soon}]\n",
	} {
		if _, err := Parse([]byte(doc)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
