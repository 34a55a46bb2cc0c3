package main

import (
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// writeFrames writes a capture of the given link type holding frames.
func writeFrames(t *testing.T, path string, link layers.LinkType, frames ...[]byte) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := pcapgo.NewWriter(f)
	if err := w.WriteFileHeader(65535, link); err != nil {
		t.Fatal(err)
	}
	for _, b := range frames {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(1700000000, 0), CaptureLength: len(b), Length: len(b)}
		if err := w.WritePacket(ci, b); err != nil {
			t.Fatal(err)
		}
	}
}

// frame serialises an Ethernet frame from 103.1.0.5 to dst carrying l4.
func frame(t *testing.T, dst string, proto layers.IPProtocol, l4 ...gopacket.SerializableLayer) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: proto, SrcIP: net.ParseIP("103.1.0.5").To4(), DstIP: net.ParseIP(dst).To4()}
	if tcp, ok := l4[0].(*layers.TCP); ok {
		_ = tcp.SetNetworkLayerForChecksum(ip)
	}
	eth := &layers.Ethernet{SrcMAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, DstMAC: net.HardwareAddr{2, 0, 0, 0, 0, 2}, EthernetType: layers.EthernetTypeIPv4}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, append([]gopacket.SerializableLayer{eth, ip}, l4...)...); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// writeCapture writes TCP SYNs from 103.1.0.5 to each destination port 443.
func writeCapture(t *testing.T, path string, dsts ...string) {
	t.Helper()
	var frames [][]byte
	for i, dst := range dsts {
		frames = append(frames, frame(t, dst, layers.IPProtocolTCP, &layers.TCP{SrcPort: layers.TCPPort(40000 + i), DstPort: 443, SYN: true}))
	}
	writeFrames(t, path, layers.LinkTypeEthernet, frames...)
}

// replayPolicy writes a signed policy approving tcp/443 to 203.0.113.0/24,
// and returns it with its trust key.
func replayPolicy(t *testing.T, dir string) (pol, pub string) {
	t.Helper()
	return signedPolicy(t, dir, policyDoc(3, "{id: LA-1, holder: Example, remote: [203.0.113.0/24], services: [tcp/443]}"))
}

// signedPolicy writes doc signed by a new key into dir, and returns the
// file and the key's public half.
func signedPolicy(t *testing.T, dir, doc string) (pol, pub string) {
	t.Helper()
	key, pub, err := dsse.GenerateKeyFiles(dir, "c")
	if err != nil {
		t.Fatal(err)
	}
	priv, err := dsse.LoadPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	env, err := dsse.Sign(policy.PayloadType, []byte(doc), priv)
	if err != nil {
		t.Fatal(err)
	}
	pol = filepath.Join(dir, "policy.dsse")
	if err := os.WriteFile(pol, env, 0o644); err != nil {
		t.Fatal(err)
	}
	return pol, pub
}

// policyDoc is a policy document valid for an hour around now.
func policyDoc(serial int, approvals ...string) string {
	now := time.Now().UTC().Truncate(time.Second)
	doc := "serial: " + strconv.Itoa(serial) + "\nissued: " + now.Add(-time.Hour).Format(time.RFC3339) + "\nexpires: " + now.Add(time.Hour).Format(time.RFC3339) +
		"\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n"
	for _, a := range approvals {
		doc += "  - " + a + "\n"
	}
	return doc
}

func TestReplay(t *testing.T) {
	dir := t.TempDir()
	pol, pub := replayPolicy(t, dir)
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
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	if len(rep.Captures) != 1 || rep.Captures[0].Result == nil {
		t.Fatalf("%s", out)
	}
	res := rep.Captures[0].Result
	if res.Frames != 3 || res.Dropped != 1 || len(res.Flows) != 3 || res.Flows[1].Verdict != "denied" || res.Flows[0].Approval != "LA-1" {
		t.Fatalf("%+v", res)
	}
	// A file that is not a capture is an error, not a panic.
	if _, _, err := run("replay", "--policy", pol, "--trust", pub, pol); err == nil {
		t.Fatal("replaying a non-capture succeeded")
	}
}

// TestReplayCaptures: several captures and directories in one run, totals
// over all of them, undecodable link types skipped (never denied), ICMP
// shown by type and code.
func TestReplayCaptures(t *testing.T) {
	dir := t.TempDir()
	pol, pub := replayPolicy(t, dir)
	caps := filepath.Join(dir, "caps")
	if err := os.Mkdir(caps, 0o755); err != nil {
		t.Fatal(err)
	}
	writeCapture(t, filepath.Join(caps, "a.pcap"), "203.0.113.9", "8.8.8.8")
	writeCapture(t, filepath.Join(caps, "b.pcap"), "203.0.113.10", "8.8.4.4", "8.8.8.8")
	if err := os.WriteFile(filepath.Join(caps, "notes.txt"), []byte("not a capture"), 0o644); err != nil {
		t.Fatal(err)
	}
	wifi := filepath.Join(dir, "wifi.pcap")
	writeFrames(t, wifi, layers.LinkTypeIEEE80211Radio, []byte{0, 0, 8, 0, 0, 0, 0, 0, 1, 2}, []byte{0, 0, 8, 0, 0, 0, 0, 0, 3, 4})
	arcnet := filepath.Join(dir, "arcnet.pcap")
	writeFrames(t, arcnet, layers.LinkType(129), []byte{1, 2, 3})
	ping := filepath.Join(dir, "ping.pcap")
	writeFrames(t, ping, layers.LinkTypeEthernet,
		frame(t, "8.8.8.8", layers.IPProtocolICMPv4, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 4242, Seq: 1}))

	out, stderr, err := run("replay", "--policy", pol, "--trust", pub, caps, wifi, arcnet, ping)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{
		filepath.Join(caps, "a.pcap") + ": 2 frames, 2 flows",
		filepath.Join(caps, "b.pcap") + ": 3 frames, 3 flows",
		wifi + ": link type 127 (802.11 radiotap) not decoded: 2 frames skipped",
		arcnet + ": link type 129 (ARCNET (Linux)) not decoded: 1 frames skipped",
		"8.8.8.8 type 8/0",
		"icmp 8/0 echo-request",
		"per approval",
		"per remote prefix:",
		"8.8.8.0/24",
		"203.0.113.0/24",
		"tcp/443",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, ":4242") {
		t.Errorf("the ICMP echo id is shown as a port:\n%s", out)
	}
	out, _, err = run("replay", "--policy", pol, "--trust", pub, "--json", caps, wifi, ping)
	if err != nil {
		t.Fatal(err)
	}
	var rep replayReport
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	byKey := map[string]total{}
	for _, a := range rep.Approvals {
		byKey[a.Key] = a
	}
	// The two captures' flows, and the ping: wifi frames are in no total.
	if byKey["LA-1"].Flows != 2 || byKey["(denied)"].Flows != 4 || byKey["(denied)"].Packets != 4 {
		t.Errorf("per approval: %+v", rep.Approvals)
	}
	if c := rep.Captures[2]; c.Result != nil || c.Skipped != 2 {
		t.Errorf("wifi: %+v", c)
	}
	if rep.Remotes[0].Key != "8.8.8.0/24" || rep.Remotes[0].Flows != 3 {
		t.Errorf("per remote: %+v", rep.Remotes)
	}

	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"empty directory", []string{t.TempDir()}, "no *.pcap, *.pcapng or *.cap files"},
		{"missing", []string{filepath.Join(dir, "nope.pcap")}, "no such file"},
	} {
		_, _, err := run(append([]string{"replay", "--policy", pol, "--trust", pub}, tc.args...)...)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestReplayCompare: the same traffic under a second policy, listing the
// flows newly denied and newly allowed, and the approvals' counts.
func TestReplayCompare(t *testing.T) {
	dir := t.TempDir()
	pol, pub := replayPolicy(t, dir)
	pcap := filepath.Join(dir, "c.pcap")
	writeCapture(t, pcap, "203.0.113.9", "198.51.100.7", "103.1.2.3")
	// The draft moves LA-1 to another prefix and adds LA-2 for 198.51.100.0/24.
	draft := filepath.Join(dir, "next.yaml")
	if err := os.WriteFile(draft, []byte(policyDoc(4,
		"{id: LA-1, holder: Example, remote: [192.0.2.0/24], services: [tcp/443]}",
		"{id: LA-2, holder: Other, remote: [198.51.100.0/24], services: [tcp/443]}")), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := run("replay", "--policy", pol, "--trust", pub, "--compare", draft, pcap)
	if err != nil {
		t.Fatalf("%v: %s", err, stderr)
	}
	for _, want := range []string{
		"UNSIGNED DRAFT",
		"compare: UNSIGNED DRAFT, serial 4",
		"changes under UNSIGNED DRAFT, serial 4: 2 flows",
		"newly denied  tcp 103.1.0.5:40000 -> 203.0.113.9:443",
		"approved LA-1 -> denied (no approval covers the remote address)",
		"newly allowed tcp 103.1.0.5:40001 -> 198.51.100.7:443",
		"1 newly denied, 1 newly allowed, 0 otherwise changed",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	var rep replayReport
	out, _, err = run("replay", "--policy", pol, "--trust", pub, "--compare", draft, "--json", pcap)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Changes) != 2 || rep.Changes[0].Change != "newly denied" || rep.Changes[1].Change != "newly allowed" {
		t.Errorf("changes: %+v", rep.Changes)
	}
	// Comparing a policy with itself changes nothing.
	out, _, err = run("replay", "--policy", pol, "--trust", pub, "--compare", pol, pcap)
	if err != nil || !strings.Contains(out, "changes under serial 3: 0 flows") {
		t.Errorf("self compare: %v\n%s", err, out)
	}
}
