package command

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"linkguard.dev/linkguard/policy/roster"
)

// classes maps each command type to its class of action: the role whose
// signatures count for it, and the threshold it needs. A type missing here
// is signed by no role, so a device with a roster refuses it ("role"): add
// a new command type here when its handler is written.
//
// policy.fetch only makes the device read the retained fleet policy again,
// which the committee has signed on its own; asking for it is a diagnostic.
var classes = map[string]roster.Class{
	Ping:           roster.ClassTechnician,
	Rebirth:        roster.ClassTechnician,
	PolicyFetch:    roster.ClassTechnician,
	LogLevel:       roster.ClassTechnician,
	EvidenceUpload: roster.ClassTechnician,
	ThrottleSet:    roster.ClassGrid,
	ThrottleClear:  roster.ClassGrid,
	RelaySet:       roster.ClassGrid,
	UpdateFetch:    roster.ClassRelease,
}

// ClassOf returns the class of action of a command type, and whether the
// type has one.
func ClassOf(typ string) (roster.Class, bool) {
	c, ok := classes[typ]
	return c, ok
}

// what names a class in refusals.
var what = map[roster.Class]string{
	roster.ClassCommittee:  "a policy or roster change",
	roster.ClassGrid:       "a feed command",
	roster.ClassProtected:  "a command that touches a protected circuit",
	roster.ClassTechnician: "a diagnostic command",
	roster.ClassRelease:    "a firmware command",
}

// legacyRoles are what a key of the configured operator keyring may sign on
// a device that has no roster yet: every command, as before rosters, but
// still under the thresholds, so a protected circuit needs two of them.
var legacyRoles = []roster.Role{roster.Grid, roster.Technician, roster.Release}

// signer is one distinct operator whose signature on a command verified.
type signer struct {
	id    string
	roles []roster.Role
}

// authority is who vouched for a command and what the device demands.
type authority struct {
	signers    []signer
	thresholds roster.Thresholds
}

// SignedBy lists the distinct operators holding role whose signatures on c
// verified.
func (c *Command) SignedBy(role roster.Role) []string {
	var out []string
	if c.auth == nil {
		return nil
	}
	for _, s := range c.auth.signers {
		if slices.Contains(s.roles, role) {
			out = append(out, s.id)
		}
	}
	return out
}

// Require refuses c unless at least the threshold of class's distinct
// operators signed it: with ReasonRole when none of them did, with
// ReasonBelowThreshold when too few did. Handlers whose command may be of a
// stricter class than its type (a relay.set of a protected circuit) call it;
// Verify calls it for the type's own class. A command that did not come
// through Verify has no signers and is refused.
func (c *Command) Require(class roster.Class) error {
	role := class.Role()
	if role == "" {
		return refuse(ReasonRole, "no role signs class %q", class)
	}
	need := 1
	if c.auth != nil {
		need = c.auth.thresholds.Of(class)
	}
	got := c.SignedBy(role)
	switch {
	case len(got) == 0:
		return refuse(ReasonRole, "%s is %s: it needs %s signatures, and it is signed by %s",
			c.Type, what[class], role, c.describeSigners())
	case len(got) < need:
		return refuse(ReasonBelowThreshold, "%s is %s: it needs %d %s signatures, it has %d (%s)",
			c.Type, what[class], need, role, len(got), strings.Join(got, ", "))
	}
	return nil
}

func (c *Command) describeSigners() string {
	if c.auth == nil || len(c.auth.signers) == 0 {
		return "no operator"
	}
	parts := make([]string, len(c.auth.signers))
	for i, s := range c.auth.signers {
		roles := make([]string, len(s.roles))
		for j, r := range s.roles {
			roles[j] = string(r)
		}
		parts[i] = fmt.Sprintf("%s (%s)", s.id, strings.Join(roles, ", "))
	}
	return strings.Join(parts, ", ")
}

// Authorizer is an optional ability of a Handler: it looks at a verified
// command before Verify remembers its id and may refuse it, typically with
// Require for a stricter class. Refusing there, rather than in Handle,
// leaves the id free, so the same command with more signatures can be sent
// again. The Dispatcher is an Authorizer for all its handlers; give it to
// Verifier.Authorizer.
type Authorizer interface {
	Authorize(c *Command) error
}

// Gated is a Handler that checks a command before it is remembered
// (Authorize) and again before it runs, for the case where no Authorizer
// was wired into the Verifier.
type Gated struct {
	Check   func(c *Command) error
	Handler Handler
}

var (
	_ Handler    = Gated{}
	_ Authorizer = Gated{}
	_ Authorizer = (*Dispatcher)(nil)
)

// Authorize calls Check.
func (g Gated) Authorize(c *Command) error { return g.Check(c) }

// Handle calls Check, then the handler.
func (g Gated) Handle(ctx context.Context, c *Command) (any, error) {
	if err := g.Check(c); err != nil {
		return nil, err
	}
	return g.Handler.Handle(ctx, c)
}

// Authorize asks the handler of c's type, when it is an Authorizer. A type
// without a handler passes: Dispatch refuses it.
func (d *Dispatcher) Authorize(c *Command) error {
	d.mu.RLock()
	h := d.handlers[c.Type]
	d.mu.RUnlock()
	if a, ok := h.(Authorizer); ok {
		return a.Authorize(c)
	}
	return nil
}
