package linkfilter

import (
	"testing"

	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// FuzzJudge feeds arbitrary frames of every supported link type through
// decode and the classifier (and the RST builder): no panic, and a frame
// is either passed or judged.
func FuzzJudge(f *testing.F) {
	f.Add(uint8(0), tcp4(f, "10.1.0.5", "198.51.100.7", 40000, 443, true, false, nil))
	f.Add(uint8(0), udp6(f, "fd00:1::5", "2001:db8:aa::1", 5000, 53))
	f.Add(uint8(1), tcp4(f, "10.1.0.5", "8.8.8.8", 1, 2, false, true, []byte("x"))[14:])
	f.Add(uint8(2), []byte{0, 0, 0, 2, 0x45, 0, 0, 20})
	f.Add(uint8(0), []byte{1, 0x80, 0xc2, 0, 0, 0, 2, 0, 0, 0, 0, 1, 0, 38, 0x42, 0x42, 3})
	m := testMatcher(f, testPolicy)
	links := []pcapfile.LinkType{pcapfile.LinkTypeEthernet, pcapfile.LinkTypeRaw, pcapfile.LinkTypeNull, pcapfile.LinkTypeLinuxSLL}
	f.Fuzz(func(t *testing.T, link uint8, frame []byte) {
		flt := New(Options{Site: "s1", MaxFlows: 64, Mode: ModeMonitor, Reset: true})
		flt.SetMatcher(m)
		d := flt.NewDecoder(links[int(link)%len(links)])
		var p packet.Packet
		d.Decode(frame, false, &p)
		r := flt.Judge(&p, Side(link%3), frame, len(frame), t0)
		if r.Action == 0 {
			t.Fatalf("no action for %+v", p)
		}
		var buf [rstMax]byte
		BuildRST(buf[:], frame, &p, true)
		BuildRST(buf[:], frame, &p, false)
	})
}
