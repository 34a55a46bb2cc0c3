package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// writeCapture writes TCP SYNs from 103.1.0.5 to each destination port 443.
func writeCapture(t *testing.T, path string, dsts ...string) {
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, layers.LinkTypeEthernet); err != nil {
		t.Fatal(err)
	}
	for i, dst := range dsts {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: net.ParseIP("103.1.0.5").To4(), DstIP: net.ParseIP(dst).To4()}
		tcp := &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 443, SYN: true}
		_ = tcp.SetNetworkLayerForChecksum(ip)
		buf := gopacket.NewSerializeBuffer()
		eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
		if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, eth, ip, tcp); err != nil {
			t.Fatal(err)
		}
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(buf.Bytes()), Length: len(buf.Bytes())}
		if err := w.WritePacket(ci, buf.Bytes()); err != nil {
			t.Fatal(err)
		}
	}
}

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	key, pub, err := dsse.GenerateKeyFiles(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := dsse.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Truncate(time.Second)
	doc := "serial: 3\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " + now.Add(time.Hour).Format(time.RFC3339) +
		"\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n  - {id: LA-1, holder: Example, remote: [203.0.113.0/24], services: [tcp/443]}\n"
	env, err := dsse.Sign(policy.PayloadType, []byte(doc), priv)
	if err != nil {
		t.Fatal(err)
	}
	pol := filepath.Join(dir, "policy.dsse")
	if err := os.WriteFile(pol, env, 0o644); err != nil {
		t.Fatal(err)
	}
	pcap := filepath.Join(dir, "c.pcap")
	writeCapture(t, pcap, "203.0.113.9", "8.8.8.8", "103.1.2.3")

	out, stderr, err := run("replay", "--policy", pol, "--trust", pub, "--site", "s1", pcap)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{"approved  tcp", "LA-1", "denied    tcp", "no approval covers the remote address", "domestic  tcp", "3 frames, 3 flows: 2 passed, 1 dropped inline"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, err = run("replay", "--policy", pol, "--trust", pub, "--site", "s1", "--json", pcap)
	if err != nil {
		t.Fatal(err)
	}
	var res linkfilter.ReplayResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if res.Frames != 3 || res.Dropped != 1 || len(res.Flows) != 3 || res.Flows[1].Verdict != "denied" || res.Flows[0].Approval != "LA-1" {
		t.Fatalf("%+v", res)
	}
	// A file that is not a capture is an error, not a panic.
	if _, _, err := run("replay", "--policy", pol, "--trust", pub, pol); err == nil {
		t.Fatal("replaying a non-capture succeeded")
	}
}
