package feeds

import (
	"context"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/report"
)

// RegisterCommands registers throttle.set, throttle.clear and relay.set.
func (c *Controller) RegisterCommands(r command.Registrar) error {
	handlers := map[string]command.HandlerFunc{
		command.ThrottleSet: func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeThrottleSet(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.SetThrottle(ctx, o)
		},
		command.ThrottleClear: func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeThrottleClear(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.ClearThrottle(ctx, o.Feed)
		},
		command.RelaySet: func(ctx context.Context, cmd *command.Command) (any, error) {
			o, err := DecodeRelaySet(cmd.Args)
			if err != nil {
				return nil, err
			}
			return nil, c.SetRelay(ctx, o)
		},
	}
	for _, typ := range []string{command.ThrottleSet, command.ThrottleClear, command.RelaySet} {
		if err := r.Register(typ, handlers[typ]); err != nil {
			return err
		}
	}
	return nil
}

// RegisterTelemetry adds the "feeds" section to the periodic telemetry.
func (c *Controller) RegisterTelemetry(t report.Telemetry) {
	t.AddSection("feeds", func() any { return c.Telemetry() })
}
