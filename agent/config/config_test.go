package config

import (
	"os"
	"strings"
	"testing"
	"time"
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
		{"unknown key", string(base) + "extra: 1\n", []string{"x.yaml: line 21: field extra not found"}},
		{"unknown nested key", strings.Replace(string(base), "mode: inline", "mode: inline\n  modes: x", 1), []string{"line 10: field modes not found"}},
		{"wrong type", strings.Replace(string(base), "threshold: 1", "threshold: two", 1), []string{"line 6:", "cannot unmarshal"}},
		{"bad duration", strings.Replace(string(base), "telemetry_every: 10s", "telemetry_every: often", 1), []string{"line 18"}},
		{"missing id", strings.Replace(string(base), "id: vte-border-01, ", "", 1), []string{"line 1: device.id: is required"}},
		{"bad kind", strings.Replace(string(base), "kind: router", "kind: toaster", 1), []string{"device.kind: \"toaster\" is not one of router, relay"}},
		{"threshold above keys", strings.Replace(string(base), "threshold: 1", "threshold: 3", 1), []string{"line 6: policy.threshold"}},
		{"credentials in url", strings.Replace(string(base), "mqtts://broker", "mqtts://u:p@broker", 1), []string{"must not carry credentials"}},
		{"same key for ops and policy", strings.Replace(string(base), "ops-1.pub", "../keys/committee-a.pub", 1), []string{}},
		{"ops reusing committee key", strings.Replace(string(base), "/etc/linkguard/keys/ops-1.pub", "/etc/linkguard/keys/committee-a.pub", 1), []string{"line 20: mqtt.operators[0]", "operator and committee keys must differ"}},
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

func TestRetriesZero(t *testing.T) {
	c, err := Parse("x.yaml", []byte("device: {id: r, site: s, kind: relay}\npolicy: {file: p, trust: [k]}\nbuses:\n  - {port: /dev/ttyS1, retries: 0}\n"))
	if err != nil || *c.Buses[0].Retries != 0 {
		t.Fatalf("retries: 0 became %v, %v", *c.Buses[0].Retries, err)
	}
}

// TestShippedDefault keeps the configuration that bundles ship valid.
func TestShippedDefault(t *testing.T) {
	if _, err := Load("../../scripts/linkguard.yaml"); err != nil {
		t.Fatal(err)
	}
}
