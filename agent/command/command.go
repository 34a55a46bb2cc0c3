package command

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// PayloadType is the DSSE payload type of an operator command.
const PayloadType = "application/vnd.linkguard.command+json"

// Payload is the signed body of a command.
type Payload struct {
	ID      string          `json:"id"`
	Target  string          `json:"target"` // a device id, "site:NAME" or "all"
	Issued  time.Time       `json:"issued"`
	Expires time.Time       `json:"expires"`
	Type    string          `json:"type"`
	Args    json.RawMessage `json:"args,omitempty"`
}

// Command is a verified command.
type Command struct {
	Payload
	// Signers are the distinct operators whose signatures verified: roster
	// operator ids, or the names of the configured operator keys on a
	// device without a roster.
	Signers []string
	// Roster is the serial of the roster that vouched for the signers; 0
	// when the configured operator keys did.
	Roster uint64

	auth *authority // nil for a command that did not come through Verify
}

// DecodeArgs decodes the command's arguments strictly into v.
func (c *Command) DecodeArgs(v any) error {
	if len(c.Args) == 0 || string(c.Args) == "null" {
		return nil
	}
	dec := json.NewDecoder(strings.NewReader(string(c.Args)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("command: %s: args: %w", c.Type, err)
	}
	return nil
}

// Handler carries out one type of command. The result, if not nil, is sent
// back in the command's result; an error refuses the command with its text.
// Handle runs on the command goroutine: long work belongs in the
// component's own goroutine, reporting through events.
type Handler interface {
	Handle(ctx context.Context, c *Command) (result any, err error)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, c *Command) (any, error)

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, c *Command) (any, error) { return f(ctx, c) }

// Registrar takes handlers; components declare a RegisterCommands(Registrar)
// method and the composition root calls it.
type Registrar interface {
	Register(typ string, h Handler) error
}

// Command types the contract names.
const (
	Ping           = "ping"
	Rebirth        = "rebirth"
	PolicyFetch    = "policy.fetch"
	ThrottleSet    = "throttle.set"
	ThrottleClear  = "throttle.clear"
	RelaySet       = "relay.set"
	EvidenceUpload = "evidence.upload"
	LogLevel       = "log.level"
	UpdateFetch    = "update.fetch"
)

// ErrUnknownType refuses a command no handler is registered for.
var ErrUnknownType = errors.New("command: no handler for this type")

// Dispatcher routes verified commands to handlers by type.
type Dispatcher struct {
	mu       sync.RWMutex
	handlers map[string]Handler
}

var _ Registrar = (*Dispatcher)(nil)

// Register adds the handler for typ; a type has one handler.
func (d *Dispatcher) Register(typ string, h Handler) error {
	if typ == "" || h == nil {
		return errors.New("command: register: empty type or nil handler")
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.handlers == nil {
		d.handlers = map[string]Handler{}
	}
	if _, dup := d.handlers[typ]; dup {
		return fmt.Errorf("command: register: %q already has a handler", typ)
	}
	d.handlers[typ] = h
	return nil
}

// Types lists the registered types, sorted: the device's command
// capabilities.
func (d *Dispatcher) Types() []string {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]string, 0, len(d.handlers))
	for t := range d.handlers {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Dispatch runs the handler for c.Type.
func (d *Dispatcher) Dispatch(ctx context.Context, c *Command) (any, error) {
	d.mu.RLock()
	h := d.handlers[c.Type]
	d.mu.RUnlock()
	if h == nil {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, c.Type)
	}
	return h.Handle(ctx, c)
}

// Sign marshals p and signs it as a command envelope.
func Sign(p Payload, keys ...ed25519.PrivateKey) ([]byte, error) {
	b, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("command: sign: %w", err)
	}
	env, err := dsse.Sign(PayloadType, b, keys...)
	if err != nil {
		return nil, fmt.Errorf("command: sign: %w", err)
	}
	return env, nil
}
