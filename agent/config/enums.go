package config

import (
	"fmt"
	"strings"
)

// The closed sets of words the configuration takes. Each is a type whose
// UnmarshalText refuses anything else with the allowed list, so a typo is
// an error at the line that holds it, in the file's own words.

// enum is a closed set of words: its Values, in the order messages list them.
type enum[T any] interface {
	~string
	Values() []T
}

// setEnum stores text in p if it is one of p's values.
func setEnum[T enum[T]](p *T, text []byte) error {
	var zero T
	for _, v := range zero.Values() {
		if string(v) == string(text) {
			*p = v
			return nil
		}
	}
	return fmt.Errorf("%q is not one of %s", text, list(zero.Values()))
}

// known reports whether v is one of its type's values.
func known[T enum[T]](v T) bool {
	for _, w := range v.Values() {
		if w == v {
			return true
		}
	}
	return false
}

func list[T ~string](vs []T) string {
	s := make([]string, len(vs))
	for i, v := range vs {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}

// Kind is device.kind: what the device enforces.
type Kind string

// Device kinds. They are untyped because they are also the kind a device
// reports on the wire (a plain string in the MQTT contract).
const (
	KindRouter = "router" // filters links (links)
	KindRelay  = "relay"  // caps power feeds (buses, feeds)
)

func (Kind) Values() []Kind                  { return []Kind{KindRouter, KindRelay} }
func (k *Kind) UnmarshalText(b []byte) error { return setEnum(k, b) }
func (k Kind) String() string                { return string(k) }

// LinkMode is links.mode.
type LinkMode string

// Link modes.
const (
	ModeInline  LinkMode = "inline"  // the device forwards between inside and outside
	ModeMonitor LinkMode = "monitor" // the device watches a tap (and may reset denied TCP)
)

func (LinkMode) Values() []LinkMode              { return []LinkMode{ModeInline, ModeMonitor} }
func (m *LinkMode) UnmarshalText(b []byte) error { return setEnum(m, b) }
func (m LinkMode) String() string                { return string(m) }

// FailMode is links.fail: what an inline link does without a working agent.
type FailMode string

// Fail modes.
const (
	FailClosed FailMode = "closed" // the link is cut
	FailOpen   FailMode = "open"   // a kernel bridge carries it, unfiltered
)

func (FailMode) Values() []FailMode              { return []FailMode{FailClosed, FailOpen} }
func (f *FailMode) UnmarshalText(b []byte) error { return setEnum(f, b) }
func (f FailMode) String() string                { return string(f) }

// Enforce is links.enforce: where an inline link's frames are judged.
type Enforce string

// Enforcement paths.
const (
	EnforceUserspace Enforce = "userspace" // the agent bridges the ports itself (the default)
	EnforceNftables  Enforce = "nftables"  // a kernel bridge filtered by nftables compiled from the policy
)

func (Enforce) Values() []Enforce               { return []Enforce{EnforceUserspace, EnforceNftables} }
func (e *Enforce) UnmarshalText(b []byte) error { return setEnum(e, b) }
func (e Enforce) String() string                { return string(e) }

// Ingress is links.ingress: how strictly sources are bound to their side.
type Ingress string

// Ingress modes.
const (
	IngressStrict Ingress = "strict"
	IngressLoose  Ingress = "loose"
)

func (Ingress) Values() []Ingress               { return []Ingress{IngressStrict, IngressLoose} }
func (i *Ingress) UnmarshalText(b []byte) error { return setEnum(i, b) }
func (i Ingress) String() string                { return string(i) }

// Level is log.level, in log/slog's words.
type Level string

// Log levels.
const (
	LevelDebug Level = "debug"
	LevelInfo  Level = "info"
	LevelWarn  Level = "warn"
	LevelError Level = "error"
)

func (Level) Values() []Level                 { return []Level{LevelDebug, LevelInfo, LevelWarn, LevelError} }
func (l *Level) UnmarshalText(b []byte) error { return setEnum(l, b) }
func (l Level) String() string                { return string(l) }

// Format is log.format.
type Format string

// Log formats.
const (
	FormatJSON Format = "json"
	FormatText Format = "text"
)

func (Format) Values() []Format                { return []Format{FormatJSON, FormatText} }
func (f *Format) UnmarshalText(b []byte) error { return setEnum(f, b) }
func (f Format) String() string                { return string(f) }

// Parity is buses[].parity.
type Parity string

// Parities.
const (
	ParityNone Parity = "none"
	ParityEven Parity = "even"
	ParityOdd  Parity = "odd"
)

func (Parity) Values() []Parity                { return []Parity{ParityNone, ParityEven, ParityOdd} }
func (p *Parity) UnmarshalText(b []byte) error { return setEnum(p, b) }
func (p Parity) String() string                { return string(p) }

// SafeState is feeds[].safe_state: what a feed's circuits do when its meter
// goes stale.
type SafeState string

// Safe states.
const (
	SafeRestore SafeState = "restore" // switch shed circuits back on
	SafeHold    SafeState = "hold"    // leave them as they are
)

func (SafeState) Values() []SafeState             { return []SafeState{SafeRestore, SafeHold} }
func (s *SafeState) UnmarshalText(b []byte) error { return setEnum(s, b) }
func (s SafeState) String() string                { return string(s) }

// MeterModel is feeds[].meter.model.
type MeterModel string

// Meter models.
const (
	MeterSDM120  MeterModel = "sdm120"
	MeterSDM630  MeterModel = "sdm630"
	MeterGeneric MeterModel = "generic" // registers given in meter.registers
)

func (MeterModel) Values() []MeterModel            { return []MeterModel{MeterSDM120, MeterSDM630, MeterGeneric} }
func (m *MeterModel) UnmarshalText(b []byte) error { return setEnum(m, b) }
func (m MeterModel) String() string                { return string(m) }

// WordOrder is feeds[].meter.word_order: which 16-bit register of a 32-bit
// value comes first.
type WordOrder string

// Word orders.
const (
	WordBig    WordOrder = "big"    // high word first (the Modbus convention)
	WordLittle WordOrder = "little" // low word first: some meters swap them
)

func (WordOrder) Values() []WordOrder             { return []WordOrder{WordBig, WordLittle} }
func (w *WordOrder) UnmarshalText(b []byte) error { return setEnum(w, b) }
func (w WordOrder) String() string                { return string(w) }
