package console

import (
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/policytest"
)

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func newTestConsole(t *testing.T) *Console {
	t.Helper()
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", MaxEvents: 5, Trust: []ed25519.PublicKey{policytest.Key(t).Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestFleetFromStateAndWill: devices appear from retained state, go offline
// on their will without losing what is known of them, come back with a new
// boot, and disappear when the retained state is cleared.
func TestFleetFromStateAndWill(t *testing.T) {
	c := newTestConsole(t)
	exp := time.Date(2026, 12, 31, 0, 0, 0, 0, time.UTC)
	online := contract.State{Online: true, Device: "r1", Site: "vte", Kind: "router", Version: "1.0", BootID: "b1",
		Policy: &contract.PolicyState{Serial: 4, Expires: &exp}, Capabilities: []string{"rebirth"}, TS: time.Now()}
	c.Ingest("linkguard/v1/r1/state", mustJSON(t, online))
	d, ok := c.Device("r1")
	if !ok || !d.Online || d.PolicySerial != 4 || d.Site != "vte" || d.Kind != "router" || d.PolicyExpires == nil || !d.PolicyExpires.Equal(exp) {
		t.Fatalf("after online state: %+v", d)
	}
	// The will carries only online=false, device and boot id.
	c.Ingest("linkguard/v1/r1/state", mustJSON(t, contract.State{Online: false, Device: "r1", BootID: "b1"}))
	d, _ = c.Device("r1")
	if d.Online || d.PolicySerial != 4 || d.Site != "vte" {
		t.Fatalf("after will: %+v (want offline, keeping serial and site)", d)
	}
	online.BootID, online.Policy.Serial = "b2", 5
	c.Ingest("linkguard/v1/r1/state", mustJSON(t, online))
	if d, _ = c.Device("r1"); !d.Online || d.BootID != "b2" || d.PolicySerial != 5 {
		t.Fatalf("after rebirth: %+v", d)
	}
	// Topics outside the contract, and the fan-out topics, make no device.
	c.Ingest("linkguard/v1/all/cmd", []byte(`{}`))
	c.Ingest("linkguard/v1/site/vte/cmd", []byte(`{}`))
	c.Ingest("other/r9/state", mustJSON(t, online))
	c.Ingest("linkguard/v1/r2/state", []byte(`{not json`))
	if n := len(c.Devices()); n != 1 {
		t.Fatalf("%d devices, want 1: %+v", n, c.Devices())
	}
	c.Ingest("linkguard/v1/r1/state", nil) // retained state cleared
	if _, ok := c.Device("r1"); ok {
		t.Fatal("device kept after its retained state was cleared")
	}
}

// TestFeedTelemetry: the feeds section of agent/feeds (kW, null when
// unknown) becomes the console's feed with its chart.
func TestFeedTelemetry(t *testing.T) {
	c := newTestConsole(t)
	tel := func(sec string) []byte {
		return mustJSON(t, contract.Telemetry{Device: "f1", TS: time.Now(), Sections: map[string]json.RawMessage{contract.SectionFeeds: json.RawMessage(sec)}})
	}
	c.Ingest("linkguard/v1/f1/telemetry", tel(`[{"feed":"feed-1","power_kw":33.1,"cap_kw":null,"circuits":[{"id":"hospital","on":true,"protected":true,"mode":"auto"}]}]`))
	c.Ingest("linkguard/v1/f1/telemetry", tel(`[{"feed":"feed-1","power_kw":21,"cap_kw":20,"order":{"feed":"feed-1","cap_kw":20},"circuits":[{"id":"hospital","on":true,"protected":true,"mode":"auto"},{"id":"industrial","on":false,"priority":1,"mode":"auto"}]}]`))
	d, _ := c.Device("f1")
	if len(d.Feeds) != 1 {
		t.Fatalf("feeds %+v", d.Feeds)
	}
	f := d.Feeds[0]
	if f.ID != "feed-1" || f.PowerW != 21000 || f.CapW != 20000 || f.Status != "over cap: shedding" || len(f.Circuits) != 2 || f.Circuits[1].On {
		t.Fatalf("feed %+v", f)
	}
	if len(f.History) != 2 || f.History[0].P != 33100 || f.History[0].Cap != 0 || f.History[1].Cap != 20000 {
		t.Fatalf("history %+v", f.History)
	}
	c.Ingest("linkguard/v1/f1/telemetry", tel(`[{"feed":"feed-1","power_kw":null,"cap_kw":20,"meter_lost":true,"circuits":[]}]`))
	if d, _ = c.Device("f1"); d.Feeds[0].PowerW != 0 || d.Feeds[0].Status != "meter reading unknown: holding" {
		t.Fatalf("meter lost: %+v", d.Feeds[0])
	}
}

// TestLinksTelemetry: a router's links section (the name the agent
// publishes, contract.SectionLinks) fills the filter columns; a section
// under another name does not.
func TestLinksTelemetry(t *testing.T) {
	c := newTestConsole(t)
	tel := func(name, sec string) []byte {
		return mustJSON(t, contract.Telemetry{Device: "r1", TS: time.Now(), Sections: map[string]json.RawMessage{name: json.RawMessage(sec)}})
	}
	c.Ingest("linkguard/v1/r1/telemetry", tel("linkfilter", `{"passed":9,"denied":9}`))
	if d, _ := c.Device("r1"); d.Filter != nil {
		t.Fatalf("a section outside the contract was read: %+v", d.Filter)
	}
	c.Ingest("linkguard/v1/r1/telemetry", tel(contract.SectionLinks, `{"mode":"inline","policy_serial":4,"passed":10,"denied":3,"denied_flows":2,"domestic":5,"approvals":[{"id":"LA-1","packets":7,"bytes":700}],"ports":[]}`))
	d, _ := c.Device("r1")
	if f := d.Filter; f == nil || f.PolicySerial != 4 || f.Passed != 10 || f.Denied != 3 || f.DeniedFlows != 2 || f.Domestic != 5 ||
		len(f.Approvals) != 1 || f.Approvals[0].ID != "LA-1" || f.Approvals[0].Packets != 7 {
		t.Fatalf("filter %+v", d.Filter)
	}
}

// TestEventFilter: device, type prefix, minimum severity, after and limit,
// oldest first, and the history bound.
func TestEventFilter(t *testing.T) {
	c := newTestConsole(t)
	ev := []struct{ dev, typ, sev string }{
		{"r1", "link.denied", "notice"}, {"r2", "policy.applied", "notice"}, {"r1", "policy.rejected", "warning"},
		{"r1", "agent.started", "info"}, {"f1", "relay.operated", "notice"}, {"r1", "agent.error", "error"},
	}
	for i, e := range ev {
		c.Ingest("linkguard/v1/"+e.dev+"/events", mustJSON(t, contract.Event{ID: fmt.Sprint("e", i), Device: e.dev, Type: e.typ, Severity: e.sev}))
	}
	c.Ingest("linkguard/v1/r1/events", []byte(`{"type":"no id"}`)) // not an event of the contract
	ids := func(f EventFilter) string {
		s := ""
		for _, e := range c.Events(f) {
			s += e.ID + " "
		}
		return s
	}
	for _, tc := range []struct {
		f    EventFilter
		want string
	}{
		{EventFilter{}, "e1 e2 e3 e4 e5 "}, // MaxEvents 5: e0 was dropped
		{EventFilter{Device: "r1"}, "e2 e3 e5 "},
		{EventFilter{Type: "policy"}, "e1 e2 "},
		{EventFilter{Severity: "warning"}, "e2 e5 "},
		{EventFilter{Device: "r1", Severity: "notice"}, "e2 e5 "},
		{EventFilter{After: 4}, "e4 e5 "},
		{EventFilter{Limit: 2}, "e4 e5 "}, // the newest two,
		{EventFilter{Device: "nobody"}, ""},
	} {
		if got := ids(tc.f); got != tc.want {
			t.Errorf("%+v: got %q, want %q", tc.f, got, tc.want)
		}
	}
}

// TestStaleStateReordered: a broker may hand a device's states over out of
// order; an older online state of the same boot must not roll it back.
func TestStaleStateReordered(t *testing.T) {
	c := newTestConsole(t)
	t0 := time.Now()
	st := func(serial uint64, boot string, ts time.Time) []byte {
		return mustJSON(t, contract.State{Online: true, Device: "r1", BootID: boot, Policy: &contract.PolicyState{Serial: serial}, TS: ts})
	}
	c.Ingest("linkguard/v1/r1/state", st(1, "b1", t0.Add(time.Millisecond)))
	c.Ingest("linkguard/v1/r1/state", st(0, "b1", t0)) // built first, delivered last
	if d, _ := c.Device("r1"); d.PolicySerial != 1 {
		t.Fatalf("serial %d after a stale state, want 1", d.PolicySerial)
	}
	c.Ingest("linkguard/v1/r1/state", st(0, "b2", t0)) // a new boot always applies
	if d, _ := c.Device("r1"); d.PolicySerial != 0 || d.BootID != "b2" {
		t.Fatalf("new boot not applied: %+v", d)
	}
}

// TestSilentDeviceGoesOffline: a device whose last state says online but
// from which nothing came for longer than Options.Silence (its node of a
// cluster died and took its will along) is shown offline, and online again
// as soon as it speaks.
func TestSilentDeviceGoesOffline(t *testing.T) {
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", Silence: 30 * time.Second, Now: func() time.Time { return now },
		Trust: []ed25519.PublicKey{policytest.Key(t).Public().(ed25519.PublicKey)}})
	if err != nil {
		t.Fatal(err)
	}
	c.Ingest(contract.Prefix+"r1/state", mustJSON(t, contract.State{Device: "r1", Online: true, BootID: "b1", TS: now}))
	if d, _ := c.Device("r1"); !d.Online || d.Silent {
		t.Fatalf("fresh state: %+v", d)
	}
	now = now.Add(29 * time.Second)
	c.Ingest(contract.Prefix+"r1/telemetry", mustJSON(t, contract.Telemetry{Device: "r1", TS: now}))
	now = now.Add(29 * time.Second)
	if d, _ := c.Device("r1"); !d.Online {
		t.Fatal("offline although telemetry came 29 s ago")
	}
	now = now.Add(2 * time.Second)
	if d, _ := c.Device("r1"); d.Online || !d.Silent {
		t.Fatalf("31 s of silence: %+v", d)
	}
	if devs := c.Devices(); devs[0].Online {
		t.Fatal("Devices shows the silent device online")
	}
	c.Ingest(contract.Prefix+"r1/telemetry", mustJSON(t, contract.Telemetry{Device: "r1", TS: now}))
	if d, _ := c.Device("r1"); !d.Online || d.Silent {
		t.Fatalf("after it spoke again: %+v", d)
	}
}

// TestLateWillThenTelemetry: on a cluster the will of a device's old
// connection can come after its new connection's online state, and the
// retained state stays "offline" while the device reports. Its telemetry
// of the same boot, stamped after that will, shows it online again; a
// report of another boot or stamped before the will does not.
func TestLateWillThenTelemetry(t *testing.T) {
	c := newTestConsole(t)
	t0 := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	state := func(online bool, ts time.Time) []byte {
		return mustJSON(t, contract.State{Device: "r1", Online: online, BootID: "b1", TS: ts})
	}
	tel := func(boot string, ts time.Time) []byte {
		return mustJSON(t, contract.Telemetry{Device: "r1", BootID: boot, TS: ts})
	}
	c.Ingest(contract.Prefix+"r1/state", state(true, t0.Add(20*time.Second))) // second connection
	c.Ingest(contract.Prefix+"r1/state", state(false, t0))                    // first connection's will, late
	if d, _ := c.Device("r1"); d.Online {
		t.Fatal("a will applies when it comes")
	}
	c.Ingest(contract.Prefix+"r1/telemetry", tel("b0", t0.Add(30*time.Second)))
	c.Ingest(contract.Prefix+"r1/telemetry", tel("b1", t0.Add(-time.Second)))
	if d, _ := c.Device("r1"); d.Online {
		t.Fatal("telemetry of another boot, or older than the will, brought the device back")
	}
	c.Ingest(contract.Prefix+"r1/telemetry", tel("b1", t0.Add(30*time.Second)))
	if d, _ := c.Device("r1"); !d.Online {
		t.Fatal("the device reports after the late will and is still shown offline")
	}
}
