package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"time"

	"go.yaml.in/yaml/v3"

	"linkguard.dev/linkguard/policy/yamlpos"
)

// Config is the whole agent configuration.
type Config struct {
	Device   Device    `yaml:"device"`
	StateDir string    `yaml:"state_dir"`
	Policy   Policy    `yaml:"policy"`
	Log      Log       `yaml:"log"`
	Links    *Links    `yaml:"links,omitempty"`
	MQTT     *MQTT     `yaml:"mqtt,omitempty"`
	Buses    []Bus     `yaml:"buses,omitempty"`
	Feeds    []Feed    `yaml:"feeds,omitempty"`
	Update   *Update   `yaml:"update,omitempty"`
	Watchdog *Watchdog `yaml:"watchdog,omitempty"`

	src source // where it was read from, for Check's messages
}

// source is the file a Config was parsed from.
type source struct {
	name string       // as given to Parse: the path, or a label
	path string       // the file Load read; "" when parsed from memory
	doc  *yamlpos.Doc // locates keys for messages
}

// Device is the device's identity.
type Device struct {
	ID   string `yaml:"id"`
	Site string `yaml:"site"`
	Kind Kind   `yaml:"kind"`
}

// Policy says where the signed policy comes from and who may sign it.
type Policy struct {
	File      string   `yaml:"file"`
	Trust     []string `yaml:"trust"`
	Threshold int      `yaml:"threshold"`
	// Roster is the committee-signed roster of operators (who may sign
	// which commands), watched like the policy file and kept there when it
	// arrives over MQTT; default roster.signed.json beside the policy. It
	// need not exist: until one is in force, mqtt.operators sign commands.
	Roster string `yaml:"roster"`
}

// Log configures log/slog.
type Log struct {
	Level  Level  `yaml:"level"`
	Format Format `yaml:"format"`
}

// Links configures the packet filter on a router.
type Links struct {
	Mode     LinkMode `yaml:"mode"`
	Inside   string   `yaml:"inside"`
	Outside  string   `yaml:"outside"`
	Reset    bool     `yaml:"reset"` // monitor mode: RST denied TCP flows both ways
	Evidence Evidence `yaml:"evidence"`
	MaxFlows int      `yaml:"max_flows"` // flow table hard cap
	// Offloads (inline mode) keeps the ports' GRO/TSO/GSO on and carries
	// super-frames through whole (PACKET_VNET_HDR) instead of turning the
	// offloads off: 2–3x the throughput for the same ring memory. Off by
	// default, as in IPS deployments: with it, a NIC that merges
	// tunnelled (GRE) TCP hands over frames that cannot be forwarded
	// whole; they are dropped and counted.
	Offloads bool `yaml:"offloads"`
	// Fail (inline mode) is what the link does without a working agent:
	// "closed" (default) cuts it; "open" keeps a kernel bridge between the
	// ports that the agent holds shut while it runs and the kernel opens
	// when it exits, and passes traffic (reported) until a first policy.
	Fail FailMode `yaml:"fail"`
	// Enforce (inline mode) is where frames are judged: "userspace" (the
	// default: the agent copies each allowed frame) or "nftables" (the
	// kernel bridges the ports, filtered by nftables compiled from each
	// policy; the agent watches the same ports as a monitor for events,
	// evidence and what only it sees inside tunnels; SECURITY.md).
	Enforce Enforce `yaml:"enforce"`
	// Ingress binds source addresses to the side they arrive on:
	// "strict" (default) drops a domestic source from the outside and a
	// foreign one from the inside as spoofed; "loose" does not check.
	Ingress Ingress `yaml:"ingress"`
	// LinkLocal lists the link-scoped protocols that pass as link control
	// (ospf, vrrp, igmp, mld, pim, rip, ripng, hsrp, mdns, dhcp, dhcpv6,
	// ldp); absent: ospf, vrrp, igmp, mld, pim; [] passes none.
	LinkLocal *[]string `yaml:"link_local"`
	// PickupGrace is how long after start inline mode picks up TCP
	// sessions whose SYN it did not see (judged both ways); absent: 10s,
	// 0s: never.
	PickupGrace *time.Duration `yaml:"pickup_grace"`
	// MaxEncap is how many encapsulations deep frames are judged
	// (default 4, at most 7); deeper ones are judged by the policy
	// default.
	MaxEncap int `yaml:"max_encap"`
}

// Evidence is the pcap ring of denied traffic.
type Evidence struct {
	Dir   string `yaml:"dir"`
	MaxMB MB     `yaml:"max_mb"`
}

// MQTT configures reporting and commands. The broker is url, or urls for
// the nodes of a clustered broker (NATS Server's MQTT listeners, say):
// the agent tries them in the order given at every connect and stays on
// the first that answers, so give devices the list in different orders
// to spread them over the nodes. One of url and urls, not both.
type MQTT struct {
	URL            string        `yaml:"url,omitempty"`
	URLs           []string      `yaml:"urls,omitempty"`
	CA             string        `yaml:"ca"`
	Cert           string        `yaml:"cert"`
	Key            string        `yaml:"key"`
	TelemetryEvery time.Duration `yaml:"telemetry_every"`
	Queue          Queue         `yaml:"queue"`
	Operators      []string      `yaml:"operators"`
	Keepalive      time.Duration `yaml:"keepalive"`
	// FanoutQoS0: the site and fleet command topics at QoS 0, one
	// JetStream consumer per device on NATS instead of three; a site or
	// fleet command sent while the device is offline is then missed.
	FanoutQoS0 bool `yaml:"fanout_qos0"`
}

// Brokers are the broker URLs in the order they are tried: url, or urls.
func (m *MQTT) Brokers() []string {
	if m.URL != "" {
		return []string{m.URL}
	}
	return m.URLs
}

// Queue bounds the store-and-forward queue.
type Queue struct {
	MaxMB MB `yaml:"max_mb"`
}

// Bus is one RS-485 serial line.
type Bus struct {
	Port     string        `yaml:"port"`
	Baud     int           `yaml:"baud"`
	Parity   Parity        `yaml:"parity"`
	StopBits int           `yaml:"stop_bits"`
	Timeout  time.Duration `yaml:"timeout"`
	Retries  *int          `yaml:"retries"` // absent: 2; 0 is allowed
}

// Feed is a designated cross-border electricity feed.
type Feed struct {
	ID            string        `yaml:"id"`
	Meter         Meter         `yaml:"meter"`
	Circuits      []Circuit     `yaml:"circuits"`
	MinOn         time.Duration `yaml:"min_on"`
	MinOff        time.Duration `yaml:"min_off"`
	MaxOpsPerHour int           `yaml:"max_ops_per_hour"`
	StaleAfter    time.Duration `yaml:"stale_after"`
	SafeState     SafeState     `yaml:"safe_state"`
	// Hysteresis is how far under the cap power must fall before a shed
	// circuit is restored ("500W", "1kW").
	Hysteresis Power `yaml:"hysteresis,omitempty"`
	// HysteresisKW is the older spelling, a number of kilowatts; defaults
	// fold it into Hysteresis.
	HysteresisKW *float64      `yaml:"hysteresis_kw,omitempty"`
	Confirm      time.Duration `yaml:"confirm"`       // power must stay over the cap this long before shedding
	Period       time.Duration `yaml:"period"`        // control period
	Override     string        `yaml:"override_file"` // local technician override
	StartJitter  time.Duration `yaml:"start_jitter"`  // caps start at a random offset in [0, start_jitter)
	Readback     time.Duration `yaml:"readback"`      // how often relays are read back for drift
}

// Meter is a Modbus meter on a bus.
type Meter struct {
	Bus       string         `yaml:"bus"`
	Model     MeterModel     `yaml:"model"`
	Slave     int            `yaml:"slave"`
	WordOrder WordOrder      `yaml:"word_order,omitempty"`
	Registers map[string]int `yaml:"registers,omitempty"` // generic model: quantity -> input register
}

// Circuit is one switched (or protected) circuit of a feed.
type Circuit struct {
	ID        string `yaml:"id"`
	Relay     Relay  `yaml:"relay"`
	Priority  int    `yaml:"priority"` // higher is more important: shed last, restored first
	Protected bool   `yaml:"protected"`
}

// Relay is either a GPIO line or a coil of a Modbus relay board.
type Relay struct {
	GPIO      string `yaml:"gpio,omitempty"`
	ActiveLow bool   `yaml:"active_low,omitempty"`
	Bus       string `yaml:"bus,omitempty"`
	Slave     int    `yaml:"slave,omitempty"`
	Coil      int    `yaml:"coil,omitempty"`
}

// Update configures A/B firmware slots.
type Update struct {
	Root  string   `yaml:"root"`  // holds the slots and their state file
	Trust []string `yaml:"trust"` // release keys
	// Threshold is how many distinct release keys must sign a bundle or a
	// downgrade ticket (default 1, at most len(trust)).
	Threshold  int `yaml:"threshold"`
	MaxFetchMB MB  `yaml:"max_fetch_mb"`
	Hardware   int `yaml:"hardware"` // this device's hardware revision, checked against a bundle's min_hardware
}

// Watchdog feeds a hardware watchdog.
type Watchdog struct {
	Device string        `yaml:"device"` // /dev/watchdog
	Every  time.Duration `yaml:"every"`
}

// Error is a configuration problem located in its file.
type Error struct {
	File string
	Errs []error
}

func (e *Error) Error() string {
	var b bytes.Buffer
	for i, err := range e.Errs {
		if i > 0 {
			b.WriteByte('\n')
		}
		if e.File == "" { // a Config built in code
			fmt.Fprintf(&b, "config: %v", err)
			continue
		}
		fmt.Fprintf(&b, "config: %s: %v", e.File, err)
	}
	return b.String()
}

func (e *Error) Unwrap() []error { return e.Errs }

// Load reads, decodes, defaults and validates a configuration file. It
// does not look at the files and interfaces the configuration names:
// LoadChecked does.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	c.src.path = path
	return c, nil
}

// Parse decodes, defaults and validates configuration data; name is used in
// messages.
func Parse(name string, data []byte) (*Config, error) {
	doc, err := yamlpos.Parse(data)
	if err != nil {
		return nil, &Error{File: name, Errs: []error{err}}
	}
	if doc.Root() == nil {
		return nil, &Error{File: name, Errs: []error{errors.New("the file is empty")}}
	}
	if errs := shapeErrors(doc.Root()); len(errs) > 0 {
		return nil, &Error{File: name, Errs: errs}
	}
	var c Config
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil {
		// shapeErrors saw nothing wrong: a case it does not know.
		return nil, &Error{File: name, Errs: []error{yamlpos.Clean(err)}}
	}
	c.src = source{name: name, doc: doc}
	errs := c.upgrade(doc)
	c.defaults()
	if errs = append(errs, c.validate(doc)...); len(errs) > 0 {
		return nil, &Error{File: name, Errs: errs}
	}
	return &c, nil
}

// YAML renders the effective configuration.
func (c *Config) YAML() []byte {
	out, err := yaml.Marshal(c)
	if err != nil {
		panic(fmt.Sprintf("config: marshal: %v", err)) // plain structs always marshal
	}
	return out
}
