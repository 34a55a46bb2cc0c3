package agent

import (
	"fmt"
	"io"
	"log/slog"
	"time"

	"linkguard.dev/linkguard/agent/config"
	"linkguard.dev/linkguard/agent/feeds"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// newFeeds opens the feeds' hardware through hw and builds the feed
// controller, reporting through up and taking its commands there. It
// returns the controller, how long its loops may stay silent before they
// count as hung, and what to close when the agent stops.
func newFeeds(cfg *config.Config, hw *Hardware, up reporting, log *slog.Logger) (*feeds.Controller, time.Duration, io.Closer, error) {
	log = log.With("part", "feeds")
	if hw.OpenFeeds == nil {
		return nil, 0, nil, missing("buses or relays for feeds")
	}
	specs, closer, err := hw.OpenFeeds(cfg, log)
	if err != nil {
		return nil, 0, nil, fmt.Errorf("agent: %w", err)
	}
	ctl, err := feeds.New(feeds.Options{Feeds: specs, StateDir: cfg.StateDir, Events: up.events, Logger: log})
	if err == nil {
		err = ctl.RegisterCommands(up.commands)
	}
	if err != nil {
		closer.Close()
		return nil, 0, nil, fmt.Errorf("agent: %w", err)
	}
	up.telemetry.AddSection(contract.SectionFeeds, func() any { return feedsSection(ctl.Telemetry()) })
	return ctl, feeds.WatchdogAge(specs), closer, nil
}

// feedsSection puts the controller's telemetry in the contract's words;
// every field has its place there (TestFeedsSectionCarriesTelemetry).
func feedsSection(ts []feeds.FeedTelemetry) contract.Feeds {
	out := make(contract.Feeds, len(ts))
	for i, t := range ts {
		f := contract.Feed{Feed: t.Feed, Time: t.Time, PowerKW: t.PowerKW, ReadingAt: t.ReadingAt, MeterLost: t.MeterLost,
			CapKW: t.CapKW, CapStart: t.CapStart, Unmet: t.Unmet, Circuits: make([]contract.Circuit, len(t.Circuits))}
		if o := t.Order; o != nil {
			f.Order = &contract.ThrottleOrder{Feed: o.Feed, CapKW: o.CapKW, From: o.From, Until: o.Until}
			if o.Ramp != 0 {
				f.Order.Ramp = time.Duration(o.Ramp).String()
			}
		}
		if o := t.Technician; o != nil {
			f.Technician = &contract.Override{Reason: o.Reason, Hold: o.Hold, Circuits: o.Circuits, AllowRemote: o.AllowRemote}
		}
		for j, c := range t.Circuits {
			f.Circuits[j] = contract.Circuit{ID: c.ID, On: c.On, Protected: c.Protected, Priority: c.Priority, Mode: c.Mode,
				Drift: c.Drift, LoadKW: c.LoadKW, OpsLastHour: c.OpsLastHour, NextAllowed: c.NextAllowed}
		}
		out[i] = f
	}
	return out
}
