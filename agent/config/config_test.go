package config

import (
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/firmware/provision/layout"
)

func TestLoadExamples(t *testing.T) {
	r, err := Load("testdata/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if r.Links.Mode != "inline" || r.MQTT.TelemetryEvery != 10*time.Second || r.Links.MaxFlows != DefaultMaxFlows {
		t.Fatalf("router config: %+v", r)
	}
	f, err := Load("testdata/relay.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(f.Feeds[0].Circuits) != 3 || f.Feeds[0].MinOff != 120*time.Second || f.StateDir != DefaultStateDir {
		t.Fatalf("relay config: %+v", f)
	}
	if b := f.Bus("/dev/ttyUSB9"); b.Baud != 9600 || *b.Retries != 2 {
		t.Fatalf("unlisted bus defaults: %+v", b)
	}
	// The effective configuration parses back to the same thing.
	again, err := Parse("effective", f.YAML())
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, f.YAML())
	}
	if string(again.YAML()) != string(f.YAML()) {
		t.Fatal("effective config is not stable")
	}
}

func TestErrors(t *testing.T) {
	base, _ := os.ReadFile("testdata/router.yaml")
	relay, _ := os.ReadFile("testdata/relay.yaml")
	tests := []struct {
		name string
		doc  string
		want []string
	}{
		{"empty", "", []string{"x.yaml: the file is empty"}},
		{"unknown key", string(base) + "extra: 1\n", []string{"x.yaml: line 21: extra: unknown key (known here: buses, device, feeds, links, log, mqtt, policy, state_dir, update, watchdog)"}},
		{"unknown nested key", strings.Replace(string(base), "mode: inline", "mode: inline\n  modes: x", 1), []string{"line 10: links.modes: unknown key; did you mean mode?"}},
		{"near-miss key", strings.Replace(string(base), "telemetry_every", "telemetry_evry", 1), []string{"line 18: mqtt.telemetry_evry: unknown key; did you mean telemetry_every?"}},
		{"key twice", strings.Replace(string(base), "mode: inline", "mode: inline\n  mode: monitor", 1), []string{"line 10: links.mode: given twice (first at line 9)"}},
		{"wrong type", strings.Replace(string(base), "threshold: 1", "threshold: two", 1), []string{`line 6: policy.threshold: "two" is not a whole number`}},
		{"size in words", strings.Replace(string(base), "queue: {max_mb: 32}", "queue: {max_mb: two}", 1), []string{`line 19: mqtt.queue.max_mb: "two" is not a whole number`}},
		{"bad duration", strings.Replace(string(base), "telemetry_every: 10s", "telemetry_every: often", 1), []string{`line 18: mqtt.telemetry_every: "often" is not a duration`}},
		{"bad bool", strings.Replace(string(base), "mode: inline", "mode: inline\n  offloads: maybe", 1), []string{`line 10: links.offloads: "maybe" is not true or false`}},
		{"map for a list", strings.Replace(string(base), "operators: [/etc/linkguard/operators/ops-1.pub, /etc/linkguard/operators/ops-2.pub]", "operators: {a: b}", 1), []string{"line 20: mqtt.operators: must be a list"}},
		{"list for a value", strings.Replace(string(base), "url: mqtts://broker.example:8883", "url: [a, b]", 1), []string{"line 14: mqtt.url: must be a single value, not a list"}},
		{"every problem at once", strings.Replace(strings.Replace(string(base), "mode: inline", "mode: inlin", 1), "level: info", "level: loud", 1), []string{
			`line 7: log.level: "loud" is not one of debug, info, warn, error`, `line 9: links.mode: "inlin" is not one of inline, monitor`}},
		{"alias bomb", "device: {id: r, site: s, kind: router}\nbuses: &b [" + strings.Repeat("{port: x},", 10) + "]\nfeeds: [" + strings.Repeat("{circuits: *b},", 2000) + "]\n", []string{"more than 1000 aliases"}},
		{"bad mode", strings.Replace(string(base), "mode: inline", "mode: bridge", 1), []string{`line 9: links.mode: "bridge" is not one of inline, monitor`}},
		{"bad ingress", strings.Replace(string(base), "mode: inline", "mode: inline\n  ingress: lax", 1), []string{`links.ingress: "lax" is not one of strict, loose`}},
		{"bad enforce", strings.Replace(string(base), "mode: inline", "mode: inline\n  enforce: ebpf", 1), []string{`links.enforce: "ebpf" is not one of userspace, nftables`}},
		{"nftables fails open", strings.Replace(string(base), "mode: inline", "mode: inline\n  enforce: nftables\n  fail: open", 1), []string{`links.enforce: nftables keeps the link filtered by its last ruleset`}},
		{"bad format", strings.Replace(string(base), "format: json", "format: xml", 1), []string{`line 7: log.format: "xml" is not one of json, text`}},
		{"bad parity", strings.Replace(string(relay), "parity: none", "parity: mark", 1), []string{`line 6: buses[0].parity: "mark" is not one of none, even, odd`}},
		{"bad safe state", strings.Replace(string(relay), "safe_state: restore", "safe_state: off", 1), []string{`line 18: feeds[0].safe_state: "off" is not one of restore, hold`}},
		{"bad model", strings.Replace(string(relay), "model: sdm630", "model: sdm72", 1), []string{`line 9: feeds[0].meter.model: "sdm72" is not one of sdm120, sdm630, generic`}},
		{"bad word order", strings.Replace(string(relay), "model: sdm630,", "model: sdm630, word_order: middle,", 1), []string{`feeds[0].meter.word_order: "middle" is not one of big, little`}},
		{"power without unit", string(relay) + "    hysteresis: 2\n", []string{`line 19: feeds[0].hysteresis: "2" is not a power like 500W or 2kW`}},
		{"power and older spelling", string(relay) + "    hysteresis: 2kW\n    hysteresis_kw: 2\n", []string{"line 20: feeds[0].hysteresis_kw: give hysteresis or hysteresis_kw"}},
		{"negative power", string(relay) + "    hysteresis: -1kW\n", []string{"feeds[0].hysteresis: must not be negative"}},
		{"missing kind", strings.Replace(string(base), ", kind: router", "", 1), []string{"line 1: device.kind: is required (router, relay)"}},
		{"missing id", strings.Replace(string(base), "id: vte-border-01, ", "", 1), []string{"line 1: device.id: is required"}},
		{"bad kind", strings.Replace(string(base), "kind: router", "kind: toaster", 1), []string{"device.kind: \"toaster\" is not one of router, relay"}},
		{"threshold above keys", strings.Replace(string(base), "threshold: 1", "threshold: 3", 1), []string{"line 6: policy.threshold"}},
		{"credentials in url", strings.Replace(string(base), "mqtts://broker", "mqtts://u:p@broker", 1), []string{"must not carry credentials"}},
		{"urls", strings.Replace(string(base), "url: mqtts://broker.example:8883", "urls: [mqtts://n1.example, mqtts://n2.example:8883, tcp://n3.example]", 1), []string{}},
		{"url and urls", strings.Replace(string(base), "url: mqtts://broker.example:8883", "url: mqtts://n1.example\n  urls: [mqtts://n2.example]", 1), []string{"line 15: mqtt.urls: and mqtt.url are both given"}},
		{"neither url nor urls", strings.Replace(string(base), "url: mqtts://broker.example:8883", "urls: []", 1), []string{"mqtt.url: is required (or urls, a list)"}},
		{"every one of urls checked", strings.Replace(string(base), "url: mqtts://broker.example:8883", "urls: [mqtts://n1.example, http://n2.example, mqtts://u:p@n3.example, '']", 1), []string{
			`line 14: mqtt.urls[1]: scheme "http" is not one of`, "line 14: mqtt.urls[2]: must not carry credentials", "line 14: mqtt.urls[3]: is empty"}},
		{"urls a single value", strings.Replace(string(base), "url: mqtts://broker.example:8883", "urls: mqtts://n1.example", 1), []string{"line 14: mqtt.urls: must be a list"}},
		{"same key for ops and policy", strings.Replace(string(base), "ops-1.pub", "../trust/policy/committee-a.pub", 1), []string{}},
		{"ops reusing committee key", strings.Replace(string(base), "/etc/linkguard/operators/ops-1.pub", "/etc/linkguard/trust/policy/committee-a.pub", 1), []string{"line 20: mqtt.operators[0]", "operator and committee keys must differ"}},
		{"protected with priority", strings.Replace(string(relay), "protected: true", "protected: true, priority: 1", 1), []string{"line 13: feeds[0].circuits[2].priority"}},
		{"switched without priority", strings.Replace(string(relay), ", priority: 3", "", 1), []string{"feeds[0].circuits[0].priority"}},
		{"relay both kinds", strings.Replace(string(relay), "{gpio: GPIO17, active_low: true}", "{gpio: GPIO17, bus: /dev/ttyUSB0, slave: 3}", 1), []string{"either gpio or bus"}},
		{"same relay twice", strings.Replace(string(relay), "coil: 1}", "coil: 0}", 1), []string{"the same relay already switches tachileik-1/c2"}},
		{"bad slave", strings.Replace(string(relay), "model: sdm630, slave: 1", "model: sdm630, slave: 300", 1), []string{"line 9: feeds[0].meter.slave"}},
		{"bad baud", strings.Replace(string(relay), "baud: 9600", "baud: 9601", 1), []string{"line 6: buses[0].baud"}},
		{"offloads in monitor mode", strings.Replace(string(base), "mode: inline", "mode: monitor\n  offloads: true", 1), []string{"links.offloads: only applies in inline mode"}},
		{"bad fail", strings.Replace(string(base), "mode: inline", "mode: inline\n  fail: ajar", 1), []string{"links.fail: \"ajar\" is not one of closed, open"}},
		{"fail open in monitor mode", strings.Replace(string(base), "mode: inline", "mode: monitor\n  fail: open", 1), []string{"links.fail: only applies in inline mode"}},
		{"offloads inline", strings.Replace(string(base), "mode: inline", "mode: inline\n  offloads: true", 1), []string{}},
		{"feeds on a router", strings.Replace(string(relay), "kind: relay", "kind: router", 1), []string{"line 7: feeds: only a relay device"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("x.yaml", []byte(tt.doc))
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Parse accepted a bad config")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

// TestBrokers: url and urls both come out as the list of brokers in the
// order given, and urls survive the effective configuration.
func TestBrokers(t *testing.T) {
	base, err := os.ReadFile("testdata/router.yaml")
	if err != nil {
		t.Fatal(err)
	}
	one, err := Parse("one", base)
	if err != nil {
		t.Fatal(err)
	}
	if b := one.MQTT.Brokers(); len(b) != 1 || b[0] != "mqtts://broker.example:8883" {
		t.Errorf("url: brokers %q", b)
	}
	doc := strings.Replace(string(base), "url: mqtts://broker.example:8883", "urls: [mqtts://n2.example, mqtts://n1.example]", 1)
	many, err := Parse("many", []byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	again, err := Parse("effective", many.YAML())
	if err != nil {
		t.Fatalf("effective config does not parse: %v\n%s", err, many.YAML())
	}
	if b := again.MQTT.Brokers(); len(b) != 2 || b[0] != "mqtts://n2.example" || b[1] != "mqtts://n1.example" {
		t.Errorf("urls: brokers %q", b)
	}
}

func TestPower(t *testing.T) {
	relay, _ := os.ReadFile("testdata/relay.yaml")
	for _, tt := range []struct {
		line string
		want physic.Power
	}{
		{"    hysteresis: 2kW\n", 2 * physic.KiloWatt},
		{"    hysteresis: 500W\n", 500 * physic.Watt},
		{"    hysteresis_kw: 1.5\n", 1500 * physic.Watt}, // the older spelling
	} {
		c, err := Parse("x.yaml", append(slices.Clone(relay), tt.line...))
		if err != nil {
			t.Fatalf("%q: %v", tt.line, err)
		}
		f := c.Feeds[0]
		if f.Hysteresis.Power() != tt.want || f.HysteresisKW != nil {
			t.Errorf("%q: hysteresis %v (kw %v), want %v", tt.line, f.Hysteresis, f.HysteresisKW, tt.want)
		}
		if !strings.Contains(string(c.YAML()), "hysteresis: "+tt.want.String()) {
			t.Errorf("%q: effective config says\n%s", tt.line, c.YAML())
		}
	}
}

// TestEnums: every closed set refuses a word outside it, naming the set.
func TestEnums(t *testing.T) {
	for _, tt := range []struct {
		u    interface{ UnmarshalText([]byte) error }
		good string
		want string
	}{
		{new(Kind), "relay", "router, relay"},
		{new(LinkMode), "monitor", "inline, monitor"},
		{new(FailMode), "open", "closed, open"},
		{new(Ingress), "loose", "strict, loose"},
		{new(Level), "warn", "debug, info, warn, error"},
		{new(Format), "text", "json, text"},
		{new(Parity), "odd", "none, even, odd"},
		{new(SafeState), "hold", "restore, hold"},
		{new(MeterModel), "generic", "sdm120, sdm630, generic"},
		{new(WordOrder), "little", "big, little"},
	} {
		if err := tt.u.UnmarshalText([]byte(tt.good)); err != nil || fmt.Sprint(tt.u) == "" {
			t.Errorf("%T %q: %v", tt.u, tt.good, err)
		}
		if err := tt.u.UnmarshalText([]byte("Nope")); err == nil || err.Error() != `"Nope" is not one of `+tt.want {
			t.Errorf("%T: %v", tt.u, err)
		}
	}
}

func TestEditDistance(t *testing.T) {
	for _, tt := range []struct {
		a, b string
		d    int
	}{{"", "", 0}, {"a", "", 1}, {"telemetry_evry", "telemetry_every", 1}, {"kitten", "sitting", 3}, {"mode", "modes", 1}} {
		if d := editDistance(tt.a, tt.b); d != tt.d {
			t.Errorf("%q %q: %d, want %d", tt.a, tt.b, d, tt.d)
		}
	}
}

func TestRetriesZero(t *testing.T) {
	c, err := Parse("x.yaml", []byte("device: {id: r, site: s, kind: relay}\npolicy: {file: p, trust: [k]}\nbuses:\n  - {port: /dev/ttyS1, retries: 0}\n"))
	if err != nil || *c.Buses[0].Retries != 0 {
		t.Fatalf("retries: 0 became %v, %v", *c.Buses[0].Retries, err)
	}
}

// shipped is the configuration bundles ship, scripts/linkguard.yaml: the
// template rendered for a router not yet provisioned.
var shipped = Answers{DeviceID: "unprovisioned", Site: "unprovisioned", Kind: KindRouter, Broker: "mqtts://broker.invalid:8883",
	Inside: "eth1", Outside: "eth0", PolicyKeys: []string{"committee-a.pub"}, OperatorKeys: []string{"ops-1.pub"}, ReleaseKeys: []string{"release-1.pub"}}

var rewrite = flag.Bool("update", false, "rewrite scripts/linkguard.yaml from the template")

// TestShippedDefault keeps the configuration that bundles ship valid and
// equal to what provisioning generates, in the device layout.
func TestShippedDefault(t *testing.T) {
	const path = "../../scripts/linkguard.yaml"
	want, err := Generate(shipped)
	if err != nil {
		t.Fatal(err)
	}
	if *rewrite {
		os.WriteFile(path, want, 0o644)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Fatalf("%s is not the template rendered for an unprovisioned router (go test ./agent/config -run TestShippedDefault -update):\n%s", path, want)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{c.Policy.File, c.Policy.Trust[0], c.MQTT.CA, c.MQTT.Cert, c.MQTT.Key, c.MQTT.Operators[0], c.Update.Trust[0]} {
		if !strings.HasPrefix(p, layout.Dir+"/") {
			t.Errorf("%s is outside %s", p, layout.Dir)
		}
	}
	if c.StateDir != layout.StateDir || c.Update.Root != layout.SlotRoot {
		t.Errorf("state_dir %s, update.root %s", c.StateDir, c.Update.Root)
	}
}

func TestGenerate(t *testing.T) {
	a := shipped
	a.DeviceID, a.Site, a.Mode, a.Inside, a.Outside, a.ReleaseKeys = "rtr-7", "north \"3\"", ModeMonitor, "", "tap0", nil
	out, err := Generate(a)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Parse("x", out)
	if err != nil {
		t.Fatal(err)
	}
	if c.Device.ID != "rtr-7" || c.Device.Site != `north "3"` || c.Links.Mode != ModeMonitor || c.Links.Outside != "tap0" || c.Update != nil ||
		c.Policy.Trust[0] != "/etc/linkguard/trust/policy/committee-a.pub" || c.MQTT.Operators[0] != "/etc/linkguard/operators/ops-1.pub" ||
		c.MQTT.Key != "/etc/linkguard/tls/device.key" || c.Policy.File != "/etc/linkguard/policy/policy.signed.json" {
		t.Fatalf("generated:\n%s", out)
	}
	a.OperatorKeys = nil
	if _, err := Generate(a); err == nil || !strings.Contains(err.Error(), "mqtt.operators: needs at least one operator key") {
		t.Fatalf("no operator key: %v", err)
	}
	a.Kind = KindRelay
	if _, err := Generate(a); err == nil || !strings.Contains(err.Error(), "relay") {
		t.Fatalf("relay: %v", err)
	}
}
