package linkfilter

import (
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/linkfilter/redteam"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
	"linkguard.dev/linkguard/policy/match"
)

// TestRedTeamCorpus runs every crafted evasion and every legitimate
// look-alike through the real filter, as inline mode judges them: a
// must-drop frame must not pass, a must-pass frame must not be dropped.
// Then the same cases in monitor mode: nothing is dropped, and each case
// that inline mode cut is reported.
func TestRedTeamCorpus(t *testing.T) {
	m := testMatcher(t, redteam.PolicyYAML)
	cases := redteam.Cases()
	if len(cases) < 80 {
		t.Fatalf("only %d cases", len(cases))
	}
	side := func(s redteam.Side) Side {
		if s == redteam.Inside {
			return SideInside
		}
		return SideOutside
	}
	byTech := map[string]int{}
	for _, c := range cases {
		byTech[c.Technique]++
		t.Run(c.Name, func(t *testing.T) {
			for _, mode := range []Mode{ModeInline, ModeMonitor} {
				rec := &report.Recorder{}
				f := New(Options{Site: redteam.Site, Mode: mode, PickupGrace: -1, Events: rec})
				f.SetMatcher(m)
				d := f.NewDecoder(pcapfile.LinkTypeEthernet)
				var p packet.Packet
				dropped := 0
				for i, fr := range c.Frames {
					d.Decode(fr.Data, false, &p)
					r := f.Judge(&p, side(fr.Side), fr.Data, len(fr.Data), t0+int64(i)*1e6)
					if mode == ModeMonitor {
						if r.Action == Drop {
							t.Errorf("monitor dropped frame %d (%s)", i, fr.Note)
						}
						continue
					}
					got := redteam.Pass
					if r.Action == Drop {
						got = redteam.Drop
						dropped++
					}
					if got != fr.Want {
						t.Errorf("frame %d (%s, %s): %v, want %v: %s", i, fr.Side, fr.Note, got, fr.Want, describe(&p, r))
					}
				}
				if mode == ModeMonitor && c.Technique != "legit" && len(rec.Events()) == 0 {
					t.Errorf("monitor reported nothing for %s", c.Technique)
				}
				if mode == ModeInline && c.Technique == "legit" && dropped > 0 {
					t.Errorf("legit case: %d frames dropped", dropped)
				}
			}
		})
	}
	for _, tech := range redteam.Techniques {
		if byTech[tech] == 0 {
			t.Errorf("no case of technique %q", tech)
		}
	}
	t.Logf("%d cases: %v", len(cases), byTech)
}

func describe(p *packet.Packet, r Result) string {
	s := fmt.Sprintf("kind %v problem %q layers %d verdict %v reason %q technique %v layer %d", p.Kind, p.Problem, p.N, r.Verdict, r.Reason, r.Technique, r.Layer)
	for i := range p.N {
		l := &p.L[i]
		s += fmt.Sprintf(" [%d: %v %v -> %v proto %d %d->%d]", i, l.Via, l.Src, l.Dst, l.Proto, l.SPort, l.DPort)
	}
	if r.Verdict == match.Approved {
		s += " (approved)"
	}
	return s
}

// TestRedTeamNotShipped: the corpus is test support; no package imports it
// outside its tests (go list reports non-test imports).
func TestRedTeamNotShipped(t *testing.T) {
	out, err := exec.Command("go", "list", "-f", `{{.ImportPath}} {{join .Imports " "}}`, "linkguard.dev/linkguard/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const rt = "linkguard.dev/linkguard/agent/linkfilter/redteam"
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list listed %d packages", len(lines))
	}
	for _, line := range lines {
		if f := strings.Fields(line); len(f) > 1 && slices.Contains(f[1:], rt) {
			t.Errorf("%s imports the red-team corpus", f[0])
		}
	}
}
