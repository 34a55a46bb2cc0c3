package redteam

import (
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"
)

// Site is the site every case is judged at.
const Site = "border-1"

// PolicyYAML is the unsigned policy every case assumes. LA-VX and LA-IPIP
// are tunnel endpoints abroad: what they approve is the outer header only.
// Not approved: 203.0.113.0/24, 2001:db8:bb::/48 and everything else
// foreign.
const PolicyYAML = `serial: 1
issued: 2026-01-01T00:00:00Z
expires: 2099-01-01T00:00:00Z
default: deny
domestic: [10.0.0.0/8, "fd00::/8"]
approvals:
  - id: LA-WEB
    holder: Approved carrier
    remote: [198.51.100.0/24, "2001:db8:aa::/48"]
    services: [tcp/443, udp/443, icmp]
  - id: LA-VX
    holder: Approved VXLAN endpoint
    remote: [192.0.2.10/32]
    services: [udp/4789]
  - id: LA-IPIP
    holder: Approved tunnel endpoint
    remote: [192.0.2.20/32]
    services: ["ip/4", "ip/41", gre]
`

// Side is the bridge port a frame arrives on.
type Side uint8

const (
	Inside  Side = iota + 1 // the domestic side
	Outside                 // the foreign side
)

func (s Side) String() string {
	switch s {
	case Inside:
		return "inside"
	case Outside:
		return "outside"
	}
	return "invalid"
}

// other is the port across the bridge.
func (s Side) other() Side {
	if s == Inside {
		return Outside
	}
	return Inside
}

// Want is what an inline filter must do with a frame.
type Want uint8

const (
	Pass Want = iota + 1
	Drop
)

func (w Want) String() string {
	switch w {
	case Pass:
		return "pass"
	case Drop:
		return "drop"
	}
	return "invalid"
}

// Frame is one crafted frame and the verdict it must get.
type Frame struct {
	Side Side
	Want Want
	Data []byte // a whole Ethernet frame, without FCS
	Note string // what the frame is, for failure messages
}

// Case is one evasion (or one legitimate look-alike) in one variant.
type Case struct {
	Name string // unique, kebab-case
	// Technique is one of Techniques: the evasion the case tries. What a
	// filter reports for one of its frames may differ (a tunnel's reply
	// whose outer source is also spoofed is a spoof first).
	Technique string
	// Frames are judged in order, by one filter, through one decoder, at
	// increasing timestamps (with TCP pickup grace disabled).
	Frames []Frame
}

// Techniques are the values of Case.Technique: the evasion a case tries,
// or "legit" for what must pass.
var Techniques = []string{
	"tunnel", "opaque-tunnel", "too-deep", "covert-link-control", "link-scoped",
	"unspecified-source", "spoofed", "tcp-no-syn", "fragment-overlap",
	"fragment-tiny", "ext-header", "transit", "legit",
}

// Cases builds the corpus (the same bytes on every call).
func Cases() []Case {
	specs := build()
	out := make([]Case, len(specs))
	for i, s := range specs {
		out[i] = s.Case
	}
	return out
}

// spec is a case as built, with what its own test needs to know.
type spec struct {
	Case
	// opaque: some frame is corrupt, truncated or of a protocol gopacket
	// cannot decode, by design; the others decode cleanly.
	opaque bool
}

// build assembles every group of cases in a fixed order.
func build() []spec {
	c := &corpus{nextPort: 40000}
	c.tunnels()
	c.linkControl()
	c.flows()
	c.fragments()
	return c.specs
}

// corpus collects cases and hands out source ports, so no two cases share
// a 5-tuple and the whole corpus can go through one filter.
type corpus struct {
	specs    []spec
	nextPort uint16
}

func (c *corpus) port() uint16 { c.nextPort++; return c.nextPort }

func (c *corpus) add(name, technique string, frames ...Frame) {
	c.specs = append(c.specs, spec{Case: Case{Name: name, Technique: technique, Frames: frames}})
}

// addOpaque adds a case some of whose frames gopacket cannot decode whole.
func (c *corpus) addOpaque(name, technique string, frames ...Frame) {
	c.add(name, technique, frames...)
	c.specs[len(c.specs)-1].opaque = true
}

func pass(side Side, note string, data []byte) Frame {
	return Frame{Side: side, Want: Pass, Data: data, Note: note}
}

func drop(side Side, note string, data []byte) Frame {
	return Frame{Side: side, Want: Drop, Data: data, Note: note}
}

// epoch is the timestamp of the first frame of each capture WritePcaps
// writes; each later frame is one millisecond on.
var epoch = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// WritePcaps writes each case as DIR/<name>.pcap (Ethernet link type),
// for `linkguard replay`. A capture file has no arrival port: a frame's
// side is in its case, and in its source MAC (inside frames are sent by
// 02:00:00:00:01:02, outside frames by 02:00:00:00:02:07).
func WritePcaps(dir string) error {
	for _, c := range Cases() {
		if err := WritePcap(filepath.Join(dir, c.Name+".pcap"), c.Frames); err != nil {
			return fmt.Errorf("redteam: %s: %w", c.Name, err)
		}
	}
	return nil
}

// WritePcap writes frames as one capture file (Ethernet link type), one
// millisecond apart.
func WritePcap(path string, frames []Frame) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65536, layers.LinkTypeEthernet); err != nil {
		f.Close()
		return err
	}
	for i, fr := range frames {
		ci := gopacket.CaptureInfo{Timestamp: epoch.Add(time.Duration(i) * time.Millisecond), CaptureLength: len(fr.Data), Length: len(fr.Data)}
		if err := w.WritePacket(ci, fr.Data); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}
