package linkfilter

import (
	"context"
	"path/filepath"
	"testing"

	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/policytest"
)

// corpusDir holds tcpdump's test captures (odd link types, VLANs, tunnels,
// fragments, malformed packets); CI checks shared/ out beside the clone.
const corpusDir = "../../../shared/pcaps/tcpdump"

// TestReplayCorpus runs decode and the whole classifier over every capture:
// none may panic, and every readable frame is counted exactly once.
func TestReplayCorpus(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpusDir, "*.pcap*"))
	if len(files) < 100 {
		envtest.Missing(t, "the shared capture corpus in "+corpusDir)
	}
	m := testMatcher(t, testPolicy)
	big := policytest.Synthetic(1000, 1)
	var frames, ip, files2 uint64
	for i, path := range files {
		src, err := capture.OpenFile(path)
		if err != nil {
			continue // not a capture gopacket reads (e.g. other formats): nothing to judge
		}
		files2++
		f := New(Options{Site: "s1", MaxFlows: 1024, Mode: Mode(1 + i%2), Reset: i%2 == 1})
		if i%3 == 0 {
			f.SetMatcher(compileSynthetic(big))
		} else {
			f.SetMatcher(m)
		}
		res := Replay(context.Background(), f, src)
		src.Close()
		if res.Passed+res.Dropped != res.Frames || res.Counters.Passed+res.Counters.Denied != res.Frames {
			t.Errorf("%s: %d frames, %d passed + %d dropped, counters %d + %d", filepath.Base(path),
				res.Frames, res.Passed, res.Dropped, res.Counters.Passed, res.Counters.Denied)
		}
		frames += res.Frames
		ip += res.Kinds["ip"]
	}
	t.Logf("%d captures read, %d frames, %d classified as IP", files2, frames, ip)
	if files2 < 300 || ip == 0 {
		t.Fatalf("only %d captures readable (%d IP frames)", files2, ip)
	}
}
