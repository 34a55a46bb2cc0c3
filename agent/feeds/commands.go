package feeds

import (
	"context"
	"fmt"
	"slices"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/roster"
)

// RegisterCommands registers throttle.set, throttle.clear and relay.set.
// relay.set is Gated by the protected-circuit rule (authorizeRelay).
// throttle orders need no such gate: the controller never sheds a
// protected circuit.
func (c *Controller) RegisterCommands(r command.Registrar) error {
	handlers := map[string]command.Handler{
		command.ThrottleSet: command.HandlerFunc(func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeThrottleSet(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.SetThrottle(ctx, o)
		}),
		command.ThrottleClear: command.HandlerFunc(func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeThrottleClear(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.ClearThrottle(ctx, o.Feed)
		}),
		command.RelaySet: command.Gated{Check: c.authorizeRelay, Handler: command.HandlerFunc(func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeRelaySet(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.SetRelay(ctx, o)
		})},
	}
	for _, typ := range []string{command.ThrottleSet, command.ThrottleClear, command.RelaySet} {
		if err := r.Register(typ, handlers[typ]); err != nil {
			return err
		}
	}
	return nil
}

// authorizeRelay is the protected-circuit rule: a relay.set naming a
// protected circuit needs the protected threshold of distinct grid
// operators (at least roster.MinProtected), or one grid signature while the
// feed's local override file lists the circuit in allow_remote. Never one
// remote key alone. Any other relay.set passes; SetRelay judges the rest.
//
// It runs before the command id is remembered, so a refused command can be
// cosigned and sent again.
func (c *Controller) authorizeRelay(cmd *command.Command) error {
	o, err := DecodeRelaySet(cmd.Args)
	if err != nil {
		return err
	}
	r, err := c.runner(o.Feed)
	if err != nil {
		return err
	}
	// The override file as the control loop last read it (every period):
	// polling it from here would race the loop's own watch of the file.
	r.mu.Lock()
	defer r.mu.Unlock()
	f := r.f
	ci := f.circuit(o.Circuit)
	if ci == nil {
		return fmt.Errorf("%w: %s/%s", ErrUnknownCircuit, o.Feed, o.Circuit)
	}
	if !ci.spec.Protected {
		return nil
	}
	local := f.override != nil && slices.Contains(f.override.AllowRemote, o.Circuit)
	why := "protected"
	switch {
	case !o.Override:
		err = fmt.Errorf("feeds: %s/%s: %w", o.Feed, o.Circuit, ErrProtected)
	case local:
		err = cmd.Require(roster.ClassGrid)
	default:
		err = cmd.Require(roster.ClassProtected)
	}
	if err == nil {
		return nil
	}
	if o.Override {
		why = string(command.ReasonOf(err))
	}
	f.emit(c.now(), EventInterlock, report.Warning, report.Fields{"circuit": o.Circuit, "command": command.RelaySet,
		"state": o.State, "why": why, "signers": cmd.Signers, "local_override": local})
	return err
}

// RegisterTelemetry adds the "feeds" section to the periodic telemetry.
func (c *Controller) RegisterTelemetry(t report.Telemetry) {
	t.AddSection("feeds", func() any { return c.Telemetry() })
}
