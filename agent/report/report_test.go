package report

import "testing"

func TestSeverityRoundTrip(t *testing.T) {
	for s := Info; s <= Critical; s++ {
		got, err := ParseSeverity(s.String())
		if err != nil || got != s {
			t.Fatalf("ParseSeverity(%q) = %v, %v", s.String(), got, err)
		}
	}
	if _, err := ParseSeverity("loud"); err == nil {
		t.Fatal("ParseSeverity accepted an unknown name")
	}
}

func TestRecorder(t *testing.T) {
	var r Recorder
	r.Emit(PolicyApplied, Notice, Fields{"serial": 3})
	ev := r.Events()
	if len(ev) != 1 || ev[0].Type != PolicyApplied || ev[0].Fields["serial"] != 3 {
		t.Fatalf("recorded %+v", ev)
	}
}
