package config

import (
	"path/filepath"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/agent/linkfilter"
	"linkguard.dev/linkguard/agent/linkfilter/packet"
	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/queue"
	"linkguard.dev/linkguard/firmware/provision/layout"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/policy/yamlpos"
)

// Defaults a device gets for what its file leaves out, each in one place.
// Where the component that uses a value has its own exported default, the
// configuration's is that constant, so the two cannot drift.
const (
	DefaultStateDir  = layout.StateDir
	DefaultThreshold = 1
	DefaultLogLevel  = LevelInfo
	DefaultLogFormat = FormatJSON

	DefaultEvidenceMB     MB = 64
	DefaultMaxFlows          = linkfilter.DefaultMaxFlows
	DefaultFail              = FailClosed
	DefaultEnforce           = EnforceUserspace
	DefaultIngress           = IngressStrict
	DefaultPickupGrace       = linkfilter.DefaultPickupGrace
	DefaultMaxEncap          = packet.DefaultMaxEncap
	DefaultTelemetryEvery    = mqttlink.DefaultTelemetryEvery
	DefaultKeepalive         = mqttlink.DefaultKeepalive
	DefaultQueueMB        MB = queue.DefaultMaxBytes >> 20

	DefaultBaud       = 9600
	DefaultParity     = ParityNone
	DefaultStopBits   = 1
	DefaultBusTimeout = 500 * time.Millisecond
	DefaultBusRetries = 2

	DefaultMinOn         = 60 * time.Second
	DefaultMinOff        = 120 * time.Second
	DefaultMaxOpsPerHour = 12
	DefaultStaleAfter    = 10 * time.Second
	DefaultSafeState     = SafeRestore
	DefaultConfirm       = 5 * time.Second
	DefaultPeriod        = time.Second
	DefaultStartJitter   = 30 * time.Second
	DefaultReadback      = 30 * time.Second
	DefaultWordOrder     = WordBig

	DefaultMaxFetchMB     MB = update.DefaultMaxFetch >> 20
	DefaultRosterFile        = "roster.signed.json" // beside the policy file
	DefaultWatchdogDevice    = "/dev/watchdog"
	DefaultWatchdogEvery     = 5 * time.Second
)

// upgrade turns older spellings into the current ones, refusing a file that
// gives both.
func (c *Config) upgrade(doc *yamlpos.Doc) []error {
	var errs []error
	for i := range c.Feeds {
		f := &c.Feeds[i]
		if f.HysteresisKW == nil {
			continue
		}
		if f.Hysteresis != 0 {
			errs = append(errs, doc.Errorf([]any{"feeds", i, "hysteresis_kw"}, "give hysteresis or hysteresis_kw (its older spelling), not both"))
		}
		f.Hysteresis = Power(*f.HysteresisKW * float64(physic.KiloWatt))
		f.HysteresisKW = nil
	}
	return errs
}

func set[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

func (c *Config) defaults() {
	set(&c.StateDir, DefaultStateDir)
	set(&c.Policy.Threshold, DefaultThreshold)
	if c.Policy.Roster == "" && c.Policy.File != "" {
		c.Policy.Roster = filepath.Join(filepath.Dir(c.Policy.File), DefaultRosterFile)
	}
	set(&c.Log.Level, DefaultLogLevel)
	set(&c.Log.Format, DefaultLogFormat)
	if l := c.Links; l != nil {
		set(&l.Evidence.MaxMB, DefaultEvidenceMB)
		set(&l.Evidence.Dir, c.StateDir+"/evidence")
		set(&l.MaxFlows, DefaultMaxFlows)
		set(&l.Fail, DefaultFail)
		set(&l.Enforce, DefaultEnforce)
		set(&l.Ingress, DefaultIngress)
		if l.LinkLocal == nil {
			ll := packet.DefaultLinkLocal.Names()
			l.LinkLocal = &ll
		}
		if l.PickupGrace == nil {
			l.PickupGrace = new(time.Duration(DefaultPickupGrace))
		}
		set(&l.MaxEncap, DefaultMaxEncap)
	}
	if m := c.MQTT; m != nil {
		set(&m.TelemetryEvery, DefaultTelemetryEvery)
		set(&m.Queue.MaxMB, DefaultQueueMB)
		set(&m.Keepalive, DefaultKeepalive)
	}
	for i := range c.Buses {
		c.Buses[i].defaults()
	}
	for i := range c.Feeds {
		f := &c.Feeds[i]
		set(&f.MinOn, DefaultMinOn)
		set(&f.MinOff, DefaultMinOff)
		set(&f.MaxOpsPerHour, DefaultMaxOpsPerHour)
		set(&f.StaleAfter, DefaultStaleAfter)
		set(&f.SafeState, DefaultSafeState)
		set(&f.Confirm, DefaultConfirm)
		set(&f.Period, DefaultPeriod)
		set(&f.StartJitter, DefaultStartJitter)
		set(&f.Readback, DefaultReadback)
		set(&f.Meter.WordOrder, DefaultWordOrder)
	}
	if u := c.Update; u != nil {
		set(&u.MaxFetchMB, DefaultMaxFetchMB)
		set(&u.Threshold, 1)
	}
	if w := c.Watchdog; w != nil {
		set(&w.Device, DefaultWatchdogDevice)
		set(&w.Every, DefaultWatchdogEvery)
	}
}

func (b *Bus) defaults() {
	set(&b.Baud, DefaultBaud)
	set(&b.Parity, DefaultParity)
	set(&b.StopBits, DefaultStopBits)
	set(&b.Timeout, DefaultBusTimeout)
	if b.Retries == nil {
		b.Retries = new(int(DefaultBusRetries))
	}
}

// Bus returns the settings of the named serial port: its entry in buses, or
// the defaults (9600 8N1, 500ms, 2 retries) when it is not listed.
func (c *Config) Bus(port string) Bus {
	for _, b := range c.Buses {
		if b.Port == port {
			return b
		}
	}
	b := Bus{Port: port}
	b.defaults()
	return b
}
