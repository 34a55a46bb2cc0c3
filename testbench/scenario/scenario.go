package scenario

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"linkguard.dev/linkguard/testbench/bench"
)

// Scenario is one scripted timeline.
type Scenario struct {
	Name        string       `yaml:"name"`
	Description string       `yaml:"description"`
	Routers     []bench.Site `yaml:"routers"`
	Feeds       []bench.Site `yaml:"feeds"`
	Steps       []Step       `yaml:"steps"`
}

// Step is one action and what must follow from it.
type Step struct {
	Name string `yaml:"name"`
	// Do is the action: wait, traffic, revoke, approve, push-policy,
	// throttle, clear-throttle, relay, push-update, rebirth, kill, stop,
	// start, kill-broker, start-broker, corrupt-policy, or expect (check
	// only).
	Do       string   `yaml:"do"`
	Device   string   `yaml:"device"`
	Approval string   `yaml:"approval"`
	Feed     string   `yaml:"feed"`
	CapKW    float64  `yaml:"cap_kw"`
	Ramp     Duration `yaml:"ramp"`     // throttle: reach the cap over this long
	Until    Duration `yaml:"until"`    // throttle: the cap ends this long after the step
	Circuit  string   `yaml:"circuit"`  // relay: which circuit
	State    string   `yaml:"state"`    // relay: on, off or auto
	Version  string   `yaml:"version"`  // push-update: the bundle's version
	Tampered bool     `yaml:"tampered"` // push-update: flip a byte after signing
	Rounds   int      `yaml:"rounds"`   // traffic: rounds of the demo flows
	For      Duration `yaml:"for"`      // wait
	Within   Duration `yaml:"within"`   // how long the expectations may take; default 10s
	Expect   *Expect  `yaml:"expect"`
}

// Expect are conditions polled until they all hold or Within passes.
type Expect struct {
	Online       *bool    `yaml:"online"`        // Device's retained state
	PolicySerial *uint64  `yaml:"policy_serial"` // Device enforces exactly this serial
	AllEnforce   *uint64  `yaml:"all_enforce"`   // every online device enforces at least this serial
	DeniedRises  bool     `yaml:"denied_rises"`  // Device's denied count is above its value before the step
	DeniedAbove  *uint64  `yaml:"denied_above"`
	ApprovalPkts string   `yaml:"approval_carries"` // Device reports traffic under this approval
	Event        string   `yaml:"event"`            // an event of this type from Device arrives after the step began
	Result       string   `yaml:"result"`           // the step's command is answered: "ok" or a refusal reason
	UnderCap     bool     `yaml:"under_cap"`        // Device's feed power is at or under its cap (a cap is set)
	CapKW        *float64 `yaml:"cap_kw"`           // Device's feed reports this cap (0: none)
	Connected    *bool    `yaml:"console_connected"`
	// Circuits: the feed's circuits, as the device reports them and as the
	// simulated relay board has them (on: true).
	Circuits map[string]bool `yaml:"circuits"`
	// Firmware: the version the device's slot state says is installed
	// ("" : none), read from its slot directory.
	Firmware *string `yaml:"firmware"`
}

// Duration is a time.Duration written as "5s".
type Duration time.Duration

// UnmarshalYAML parses a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

var actions = map[string]bool{"wait": true, "traffic": true, "revoke": true, "approve": true, "push-policy": true,
	"throttle": true, "clear-throttle": true, "relay": true, "push-update": true, "rebirth": true, "kill": true, "stop": true, "start": true,
	"kill-broker": true, "start-broker": true, "corrupt-policy": true, "expect": true}

// Parse decodes a scenario strictly and checks it.
func Parse(data []byte) (*Scenario, error) {
	var s Scenario
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	if s.Name == "" {
		return nil, fmt.Errorf("scenario: name is required")
	}
	if len(s.Routers)+len(s.Feeds) == 0 {
		return nil, fmt.Errorf("scenario %s: no routers or feeds", s.Name)
	}
	ids := map[string]bool{}
	for _, x := range append(append([]bench.Site(nil), s.Routers...), s.Feeds...) {
		if x.ID == "" || x.Site == "" || ids[x.ID] {
			return nil, fmt.Errorf("scenario %s: device %q needs a unique id and a site", s.Name, x.ID)
		}
		ids[x.ID] = true
	}
	for i, st := range s.Steps {
		if !actions[st.Do] {
			return nil, fmt.Errorf("scenario %s: step %d: unknown action %q", s.Name, i+1, st.Do)
		}
		if st.Device != "" && !ids[st.Device] {
			return nil, fmt.Errorf("scenario %s: step %d: no device %q", s.Name, i+1, st.Device)
		}
	}
	return &s, nil
}

// Load reads and parses a scenario file.
func Load(path string) (*Scenario, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	return Parse(b)
}
