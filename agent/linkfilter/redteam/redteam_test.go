package redteam

import (
	"bytes"
	"encoding/json"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

var kebab = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// TestCases: every case is well named, has frames with a side, a verdict
// and a note, and the corpus is the same on every call.
func TestCases(t *testing.T) {
	cs := Cases()
	names := map[string]bool{}
	perTechnique := map[string]int{}
	for _, c := range cs {
		if !kebab.MatchString(c.Name) || names[c.Name] {
			t.Errorf("case name %q: not kebab-case or not unique", c.Name)
		}
		names[c.Name] = true
		if !slices.Contains(Techniques, c.Technique) {
			t.Errorf("%s: unknown technique %q", c.Name, c.Technique)
		}
		perTechnique[c.Technique]++
		if len(c.Frames) == 0 {
			t.Errorf("%s: no frames", c.Name)
		}
		drops := 0
		for i, f := range c.Frames {
			if f.Side != Inside && f.Side != Outside || f.Want != Pass && f.Want != Drop || f.Note == "" {
				t.Errorf("%s[%d]: side %v want %v note %q", c.Name, i, f.Side, f.Want, f.Note)
			}
			if f.Want == Drop {
				drops++
			}
			// No frame larger than a 1,500-byte MTU carries (plus tags),
			// none shorter than Ethernet's minimum.
			limit := 1514
			switch binary16(f.Data[12:]) {
			case 0x8100:
				limit += 4
			case 0x88a8:
				limit += 8
			}
			if len(f.Data) < 60 || len(f.Data) > limit {
				t.Errorf("%s[%d]: %d bytes (want 60..%d)", c.Name, i, len(f.Data), limit)
			}
		}
		// A legitimate case passes whole; an evasion drops at least one
		// frame, and every frame from the first dropped one on.
		if c.Technique == "legit" && drops > 0 || c.Technique != "legit" && drops == 0 {
			t.Errorf("%s (%s): %d of %d frames drop", c.Name, c.Technique, drops, len(c.Frames))
		}
		if first := slices.IndexFunc(c.Frames, func(f Frame) bool { return f.Want == Drop }); first >= 0 {
			for i, f := range c.Frames[first:] {
				if f.Want != Drop {
					t.Errorf("%s[%d] passes after a dropped frame", c.Name, first+i)
				}
			}
		}
	}
	for _, tech := range Techniques {
		if perTechnique[tech] == 0 {
			t.Errorf("no case of technique %s", tech)
		}
	}
	again := Cases()
	for i := range cs {
		for j := range cs[i].Frames {
			if !bytes.Equal(cs[i].Frames[j].Data, again[i].Frames[j].Data) {
				t.Fatalf("%s[%d] differs between two calls", cs[i].Name, j)
			}
		}
	}
	t.Logf("%d cases, per technique %v", len(cs), perTechnique)
}

func binary16(b []byte) uint16 { return uint16(b[0])<<8 | uint16(b[1]) }

// TestFramesDecode: gopacket decodes every frame of a case that is not
// corrupt by design without error, and every checksum it can check holds.
func TestFramesDecode(t *testing.T) {
	for _, s := range build() {
		for i, f := range s.Frames {
			pkt := gopacket.NewPacket(f.Data, layers.LayerTypeEthernet, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				if !s.opaque {
					t.Errorf("%s[%d] %s: %v", s.Name, i, f.Note, el.Error())
				}
				continue
			}
			checkSums(t, s.Name, i, pkt)
		}
	}
}

// checkSums verifies the IPv4, TCP, UDP, ICMP and GRE checksums of pkt,
// each transport checksum over the network layer before it (but not past
// a routing header, whose pseudo-header takes the final destination), and
// the Internet checksum of IGMP, OSPFv2 and VRRP bodies.
func checkSums(t *testing.T, name string, i int, pkt gopacket.Packet) {
	t.Helper()
	type verifier interface {
		VerifyChecksum() (error, gopacket.ChecksumVerificationResult)
	}
	var nl gopacket.NetworkLayer
	routed := false
	for _, l := range pkt.Layers() {
		switch v := l.(type) {
		case *layers.IPv4:
			nl = v
			if v.Protocol == layers.IPProtocolIGMP || v.Protocol == protoOSPF || v.Protocol == protoVRRP {
				if inetSum(0, v.Payload) != 0 {
					t.Errorf("%s[%d]: %v body checksum wrong", name, i, v.Protocol)
				}
			}
		case *layers.IPv6:
			nl = v
		case *layers.IPv6Routing:
			routed = true
		case *gopacket.Fragment:
			return
		}
		if c, ok := l.(checksummed); ok {
			if routed || nl == nil {
				continue
			}
			if err := c.SetNetworkLayerForChecksum(nl); err != nil {
				t.Fatal(err)
			}
		}
		if g, ok := l.(*layers.GRE); ok && !g.ChecksumPresent {
			continue
		}
		if v, ok := l.(verifier); ok && !routed {
			err, res := v.VerifyChecksum()
			if err != nil || !res.Valid {
				t.Errorf("%s[%d]: %v checksum %#x, want %#x (%v)", name, i, l.LayerType(), res.Actual, res.Correct, err)
			}
		}
	}
}

// TestPolicy: PolicyYAML parses, and judges the flows the corpus is built
// on as its comment says.
func TestPolicy(t *testing.T) {
	p, err := policy.Parse([]byte(PolicyYAML))
	if err != nil {
		t.Fatal(err)
	}
	if p.Serial != 1 || p.Default != policy.DefaultDeny || len(p.Approvals) != 3 {
		t.Fatalf("policy: %+v", p)
	}
	m := match.Compile(p)
	at := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	for _, q := range []struct {
		src, dst string
		proto    uint8
		dport    uint16
		want     match.Verdict
	}{
		{cust, approved, 6, 443, match.Approved},
		{cust, approved, 17, 443, match.Approved},
		{cust, approved, 6, 22, match.Denied},
		{cust, approved, 17, 53, match.Denied},
		{approved, cust, 6, 443, match.Approved},
		{cust6, approved6, 6, 443, match.Approved},
		{cust, vxPeer, 17, 4789, match.Approved},
		{cust, vxPeer, 17, 6081, match.Denied},
		{cust, tunPeer, 4, 0, match.Approved},
		{cust, tunPeer, 41, 0, match.Approved},
		{cust, tunPeer, 47, 0, match.Approved},
		{cust, foreign, 6, 443, match.Denied},
		{cust6, foreign6, 6, 443, match.Denied},
		{cust, cust2, 4, 0, match.Domestic},
		{overlay, overlay2, 6, 22, match.Domestic},
	} {
		d := m.Decide(&match.Query{Site: Site, Src: netip.MustParseAddr(q.src), Dst: netip.MustParseAddr(q.dst), Proto: q.proto, DPort: q.dport, Now: at})
		if d.Verdict != q.want {
			t.Errorf("%s -> %s proto %d port %d: %v, want %v", q.src, q.dst, q.proto, q.dport, d.Verdict, q.want)
		}
	}
}

// TestWritePcaps: each case round-trips through a capture file.
func TestWritePcaps(t *testing.T) {
	dir := t.TempDir()
	if err := WritePcaps(dir); err != nil {
		t.Fatal(err)
	}
	cs := Cases()
	files, _ := filepath.Glob(filepath.Join(dir, "*.pcap"))
	if len(files) != len(cs) {
		t.Fatalf("%d files for %d cases", len(files), len(cs))
	}
	for _, c := range cs {
		f, err := os.Open(filepath.Join(dir, c.Name+".pcap"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := pcapgo.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		if r.LinkType() != layers.LinkTypeEthernet {
			t.Errorf("%s: link type %v", c.Name, r.LinkType())
		}
		var last time.Time
		for i := 0; ; i++ {
			data, ci, err := r.ReadPacketData()
			if err == io.EOF {
				if i != len(c.Frames) {
					t.Errorf("%s: %d frames read back, want %d", c.Name, i, len(c.Frames))
				}
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", c.Name, err)
			}
			if i >= len(c.Frames) || !bytes.Equal(data, c.Frames[i].Data) || ci.Length != len(data) || !ci.Timestamp.After(last) {
				t.Errorf("%s[%d]: read back differs (%d bytes at %v)", c.Name, i, len(data), ci.Timestamp)
			}
			last = ci.Timestamp
		}
		f.Close()
	}
}

// TestNotImportedByProduction: no package outside tests depends on
// redteam (its doc promises it).
func TestNotImportedByProduction(t *testing.T) {
	envtest.Command(t, "go")
	out, err := exec.Command("go", "list", "-json=ImportPath,Deps", "linkguard.dev/linkguard/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	const self = "linkguard.dev/linkguard/agent/linkfilter/redteam"
	dec := json.NewDecoder(bytes.NewReader(out))
	n := 0
	for {
		var p struct {
			ImportPath string
			Deps       []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		n++
		if slices.Contains(p.Deps, self) && !strings.HasPrefix(p.ImportPath, self) {
			t.Errorf("%s imports the red-team corpus", p.ImportPath)
		}
	}
	if n < 10 {
		t.Fatalf("go list found only %d packages", n)
	}
}
