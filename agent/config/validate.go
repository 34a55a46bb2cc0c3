package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/linkfilter/packet"

	"linkguard.dev/linkguard/policy/yamlpos"
)

// validate reports every problem, each located at its key's line.
func (c *Config) validate(doc *yamlpos.Doc) []error {
	var errs []error
	bad := func(path []any, format string, args ...any) {
		errs = append(errs, doc.Errorf(path, format, args...))
	}
	required := func(v string, path ...any) {
		if strings.TrimSpace(v) == "" {
			bad(path, "is required")
		}
	}
	add := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}

	required(c.Device.ID, "device", "id")
	required(c.Device.Site, "device", "site")
	if c.Device.Kind == "" {
		bad([]any{"device", "kind"}, "is required (%s)", list(c.Device.Kind.Values()))
	} else {
		add(oneOf(doc, c.Device.Kind, "device", "kind"))
	}
	if strings.ContainsAny(c.Device.ID, "/+#") {
		bad([]any{"device", "id"}, "must not contain / + or # (it is an MQTT topic level)")
	}
	if strings.ContainsAny(c.Device.Site, "/+#") {
		bad([]any{"device", "site"}, "must not contain / + or # (it is an MQTT topic level)")
	}
	required(c.Policy.File, "policy", "file")
	if len(c.Policy.Trust) == 0 {
		bad([]any{"policy", "trust"}, "needs at least one committee key")
	}
	if c.Policy.Threshold < 1 || c.Policy.Threshold > len(c.Policy.Trust) {
		bad([]any{"policy", "threshold"}, "%d must be between 1 and the number of trusted keys (%d)", c.Policy.Threshold, len(c.Policy.Trust))
	}
	add(oneOf(doc, c.Log.Level, "log", "level"))
	add(oneOf(doc, c.Log.Format, "log", "format"))

	if l := c.Links; l != nil {
		if l.Mode == "" {
			bad([]any{"links", "mode"}, "is required (%s)", list(l.Mode.Values()))
		} else {
			add(oneOf(doc, l.Mode, "links", "mode"))
		}
		required(l.Outside, "links", "outside")
		if l.Mode == ModeInline {
			required(l.Inside, "links", "inside")
			if l.Inside != "" && l.Inside == l.Outside {
				bad([]any{"links", "inside"}, "inside and outside are the same interface %q", l.Inside)
			}
		}
		if l.Reset && l.Mode != ModeMonitor {
			bad([]any{"links", "reset"}, "only applies in monitor mode (inline mode drops frames instead)")
		}
		add(oneOf(doc, l.Fail, "links", "fail"))
		if l.Enforce == EnforceNftables && l.Mode != ModeInline {
			bad([]any{"links", "enforce"}, "nftables only applies in inline mode")
		}
		if l.Enforce == EnforceNftables && l.Fail == FailOpen {
			bad([]any{"links", "enforce"}, "nftables keeps the link filtered by its last ruleset when the agent stops: fail open does not apply")
		}
		if l.Enforce == EnforceNftables && l.Offloads {
			bad([]any{"links", "offloads"}, "does not apply with enforce: nftables (the kernel bridge keeps the ports' offloads)")
		}
		if l.Fail == FailOpen && l.Mode != ModeInline {
			bad([]any{"links", "fail"}, "only applies in inline mode (a monitor never cuts a link)")
		}
		if l.Offloads && l.Mode != ModeInline {
			bad([]any{"links", "offloads"}, "only applies in inline mode (a monitor forwards nothing)")
		}
		if l.Evidence.MaxMB < 0 {
			bad([]any{"links", "evidence", "max_mb"}, "must not be negative")
		}
		if l.MaxFlows < 1024 {
			bad([]any{"links", "max_flows"}, "%d is too small (at least 1024)", l.MaxFlows)
		}
		add(oneOf(doc, l.Ingress, "links", "ingress"))
		if l.LinkLocal != nil {
			for i, n := range *l.LinkLocal {
				if _, err := packet.ParseLinkLocal([]string{n}); err != nil {
					bad([]any{"links", "link_local", i}, "%q is not a link-local protocol (known: %s)", n, strings.Join(packet.LinkLocalNames(), ", "))
				}
			}
		}
		if l.PickupGrace != nil && (*l.PickupGrace < 0 || *l.PickupGrace > 5*time.Minute) {
			bad([]any{"links", "pickup_grace"}, "%v must be between 0s (never) and 5m", *l.PickupGrace)
		}
		if l.MaxEncap < 1 || l.MaxEncap > packet.MaxLayers-1 {
			bad([]any{"links", "max_encap"}, "%d must be between 1 and %d", l.MaxEncap, packet.MaxLayers-1)
		}
	}
	if m := c.MQTT; m != nil {
		switch {
		case m.URL == "" && len(m.URLs) == 0:
			bad([]any{"mqtt", "url"}, "is required (or urls, a list)")
		case m.URL != "" && len(m.URLs) > 0:
			bad([]any{"mqtt", "urls"}, "and mqtt.url are both given: give the brokers in urls alone")
		case m.URL != "":
			checkBrokerURL(m.URL, func(format string, args ...any) { bad([]any{"mqtt", "url"}, format, args...) })
		}
		for i, u := range m.URLs {
			checkBrokerURL(u, func(format string, args ...any) { bad([]any{"mqtt", "urls", i}, format, args...) })
		}
		if (m.Cert == "") != (m.Key == "") {
			bad([]any{"mqtt", "cert"}, "cert and key go together")
		}
		if m.TelemetryEvery < 1e9 {
			bad([]any{"mqtt", "telemetry_every"}, "%v is below 1s", m.TelemetryEvery)
		}
		if m.Queue.MaxMB < 1 {
			bad([]any{"mqtt", "queue", "max_mb"}, "must be at least 1")
		}
		if len(m.Operators) == 0 {
			bad([]any{"mqtt", "operators"}, "needs at least one operator key (commands are refused without)")
		}
		for i, op := range m.Operators {
			if slices.Contains(c.Policy.Trust, op) {
				bad([]any{"mqtt", "operators", i}, "%s is also a policy key: operator and committee keys must differ", op)
			}
		}
	}
	ports := map[string]bool{}
	for i, b := range c.Buses {
		required(b.Port, "buses", i, "port")
		if ports[b.Port] {
			bad([]any{"buses", i, "port"}, "%s is listed twice", b.Port)
		}
		ports[b.Port] = true
		if !slices.Contains([]int{1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200}, b.Baud) {
			bad([]any{"buses", i, "baud"}, "%d is not a standard RS-485 rate", b.Baud)
		}
		add(oneOf(doc, b.Parity, "buses", i, "parity"))
		if b.StopBits != 1 && b.StopBits != 2 {
			bad([]any{"buses", i, "stop_bits"}, "must be 1 or 2")
		}
		if *b.Retries < 0 || *b.Retries > 10 {
			bad([]any{"buses", i, "retries"}, "must be between 0 and 10")
		}
	}
	if len(c.Feeds) > 0 && c.Device.Kind != KindRelay {
		bad([]any{"feeds"}, "only a relay device (device.kind: relay) controls feeds")
	}
	if c.Links != nil && c.Device.Kind != KindRouter {
		bad([]any{"links"}, "only a router (device.kind: router) filters links")
	}
	feedIDs := map[string]bool{}
	relays := map[string]string{}
	for i, f := range c.Feeds {
		at := func(k ...any) []any { return append([]any{"feeds", i}, k...) }
		required(f.ID, at("id")...)
		if feedIDs[f.ID] {
			bad(at("id"), "feed %q is listed twice", f.ID)
		}
		feedIDs[f.ID] = true
		required(f.Meter.Bus, at("meter", "bus")...)
		if f.Meter.Model == "" {
			bad(at("meter", "model"), "is required (%s)", list(f.Meter.Model.Values()))
		} else {
			add(oneOf(doc, f.Meter.Model, at("meter", "model")...))
		}
		if f.Meter.Slave < 1 || f.Meter.Slave > 247 {
			bad(at("meter", "slave"), "%d is not a Modbus slave address (1-247)", f.Meter.Slave)
		}
		add(oneOf(doc, f.Meter.WordOrder, at("meter", "word_order")...))
		if f.Meter.Model == MeterGeneric && f.Meter.Registers["power"] == 0 && f.Meter.Registers["total_power"] == 0 {
			bad(at("meter", "registers"), "a generic meter needs at least the total_power register")
		}
		if f.Meter.Model != MeterGeneric && len(f.Meter.Registers) > 0 {
			bad(at("meter", "registers"), "only a generic meter takes a register map")
		}
		if len(f.Circuits) == 0 {
			bad(at("circuits"), "a feed needs at least one circuit")
		}
		ids := map[string]bool{}
		for j, ci := range f.Circuits {
			cat := func(k ...any) []any { return append(at("circuits", j), k...) }
			required(ci.ID, cat("id")...)
			if ids[ci.ID] {
				bad(cat("id"), "circuit %q is listed twice", ci.ID)
			}
			ids[ci.ID] = true
			r := ci.Relay
			switch {
			case r.GPIO != "" && r.Bus != "":
				bad(cat("relay"), "a relay is either gpio or bus/slave/coil, not both")
			case r.GPIO == "" && r.Bus == "":
				bad(cat("relay"), "needs gpio, or bus with slave and coil")
			case r.Bus != "" && (r.Slave < 1 || r.Slave > 247):
				bad(cat("relay", "slave"), "%d is not a Modbus slave address (1-247)", r.Slave)
			case r.Bus != "" && r.Coil < 0:
				bad(cat("relay", "coil"), "must not be negative")
			}
			key := r.GPIO
			if r.Bus != "" {
				key = fmt.Sprintf("%s/%d/%d", r.Bus, r.Slave, r.Coil)
			}
			if other, dup := relays[key]; dup && key != "" {
				bad(cat("relay"), "the same relay already switches %s", other)
			}
			relays[key] = f.ID + "/" + ci.ID
			if ci.Protected && ci.Priority != 0 {
				bad(cat("priority"), "a protected circuit has no priority: it is never switched")
			}
			if !ci.Protected && ci.Priority < 1 {
				bad(cat("priority"), "a switched circuit needs a priority of 1 or more (higher is shed last)")
			}
		}
		if f.MinOn < 0 || f.MinOff < 0 || f.StaleAfter <= 0 || f.Confirm < 0 || f.Period <= 0 || f.StartJitter < 0 || f.Readback <= 0 {
			bad(at(), "durations must be positive")
		}
		if f.MaxOpsPerHour < 1 {
			bad(at("max_ops_per_hour"), "must be at least 1")
		}
		add(oneOf(doc, f.SafeState, at("safe_state")...))
		if f.Hysteresis < 0 {
			bad(at("hysteresis"), "must not be negative")
		}
	}
	if u := c.Update; u != nil {
		required(u.Root, "update", "root")
		if u.Hardware < 0 {
			bad([]any{"update", "hardware"}, "must not be negative")
		}
		if len(u.Trust) == 0 {
			bad([]any{"update", "trust"}, "needs at least one release key")
		} else if u.Threshold < 1 || u.Threshold > len(u.Trust) {
			bad([]any{"update", "threshold"}, "%d must be between 1 and the number of release keys (%d)", u.Threshold, len(u.Trust))
		}
		for i, k := range u.Trust {
			if slices.Contains(c.Policy.Trust, k) || (c.MQTT != nil && slices.Contains(c.MQTT.Operators, k)) {
				bad([]any{"update", "trust", i}, "%s is also a policy or operator key: release keys must differ", k)
			}
		}
	}
	return errs
}

// oneOf refuses a value outside its set: decoding already did for a file,
// but a Config built in code is checked here too.
func oneOf[T enum[T]](doc *yamlpos.Doc, v T, path ...any) error {
	if known(v) {
		return nil
	}
	return doc.Errorf(path, "%q is not one of %s", v, list(v.Values()))
}

// checkBrokerURL reports what is wrong with one broker URL.
func checkBrokerURL(raw string, bad func(format string, args ...any)) {
	u, err := url.Parse(raw)
	switch {
	case raw == "":
		bad("is empty")
	case err != nil:
		bad("%v", err)
	default:
		if schemes := []string{"tcp", "mqtt", "ssl", "mqtts", "tls", "ws", "wss"}; !slices.Contains(schemes, u.Scheme) {
			bad("scheme %q is not one of %s", u.Scheme, strings.Join(schemes, ", "))
		}
		if u.User != nil {
			bad("must not carry credentials: devices authenticate with their client certificate")
		}
	}
}
