package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/spf13/cobra"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
)

// brokerFlags are how lgctl reaches the broker: URL and mutual TLS.
type brokerFlags struct {
	url, ca, cert, key string
}

func (b *brokerFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&b.url, "broker", "", "broker URL (mqtts://host:8883, ssl://, tcp://, ws://, wss://)")
	cmd.Flags().StringVar(&b.ca, "ca", "", "CA certificate (PEM) that signed the broker's certificate")
	cmd.Flags().StringVar(&b.cert, "tls-cert", "", "client certificate (PEM) for mutual TLS")
	cmd.Flags().StringVar(&b.key, "tls-key", "", "client certificate key (PEM)")
	cmd.MarkFlagRequired("broker")
}

func (b *brokerFlags) connect(ctx context.Context, name string) (paho.Client, error) {
	o, err := contract.BrokerOptions(b.url, b.ca, b.cert, b.key)
	if err != nil {
		return nil, err
	}
	var rnd [4]byte
	rand.Read(rnd[:])
	o.SetClientID(name + "-" + hex.EncodeToString(rnd[:])).SetCleanSession(true).
		SetOrderMatters(true).SetConnectTimeout(10 * time.Second).SetAutoReconnect(true)
	c := paho.NewClient(o)
	tok := c.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("connect %s: %w", redact(b.url), err)
	}
	return c, nil
}

// redact drops anything but scheme and host from a URL for messages.
func redact(u string) string {
	if i := strings.Index(u, "@"); i >= 0 {
		if j := strings.Index(u, "://"); j >= 0 && j < i {
			return u[:j+3] + u[i+1:]
		}
	}
	return u
}

func subscribe(ctx context.Context, c paho.Client, filter string, h paho.MessageHandler) error {
	tok := c.Subscribe(filter, 1, h)
	select {
	case <-tok.Done():
		if err := tok.Error(); err != nil {
			return err
		}
		// paho takes a SUBACK 0x80 (an ACL, or NATS out of consumers) for
		// done: watching on would show a quiet fleet instead of a refusal.
		if len(contract.Refused(tok, map[string]byte{filter: 1})) > 0 {
			return fmt.Errorf("the broker refused the subscription to %s (SUBACK 0x80): check this certificate's rights on the broker", filter)
		}
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// ---- lgctl cmd

// parseArgs turns key=value pairs into command args: values are JSON where
// they parse as JSON, else strings.
func parseArgs(kvs []string) (json.RawMessage, error) {
	if len(kvs) == 0 {
		return nil, nil
	}
	args := map[string]any{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("argument %q is not key=value", kv)
		}
		var j any
		if err := json.Unmarshal([]byte(v), &j); err == nil {
			args[k] = j
		} else {
			args[k] = v
		}
	}
	return json.Marshal(args)
}

func newCmdCmd() *cobra.Command {
	var (
		bf              brokerFlags
		keyPath, target string
		timeout, valid  time.Duration
	)
	cmd := &cobra.Command{
		Use:   "cmd --key operator.key --broker URL --target DEVICE|site:NAME|all TYPE [key=value ...]",
		Short: "Sign and send a command to devices, wait for their results (exit 1 if any refused or none answered)",
		Long: "Sign and send a command to devices and wait for their results (exit 1 if any refused or none\n" +
			"answered). With --target all or site:NAME, waiting ends as soon as every device online in the\n" +
			"retained state topics (of that site) has answered, or at --timeout.\n\n" + cmdTypesHelp(),
		Example: `  lgctl cmd --key ops-1.key --broker mqtts://broker:8883 --ca ca.pem --tls-cert ops.pem --tls-key ops.key \
    --target relay-07 throttle.set feed=tachileik-1 cap_kw=50 until=2026-12-01T06:00:00Z`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			key, err := dsse.LoadPrivateKey(keyPath)
			if err != nil {
				return err
			}
			p, err := newPayload(target, argv[0], argv[1:], valid)
			if err != nil {
				return err
			}
			env, err := command.Sign(p, key)
			if err != nil {
				return err
			}
			return sendAndWait(cmd, &bf, p, env, timeout)
		},
	}
	bf.add(cmd)
	cmd.Flags().StringVar(&keyPath, "key", "", "operator signing key (ed25519 PEM, one of the devices' mqtt.operators)")
	cmd.Flags().StringVar(&target, "target", "", "device id, site:NAME or all")
	cmd.Flags().DurationVar(&timeout, "timeout", 10*time.Second, "how long to wait for results")
	cmd.Flags().DurationVar(&valid, "valid", 5*time.Minute, "how long the command stays valid (at most 24h)")
	cmd.MarkFlagRequired("key")
	cmd.MarkFlagRequired("target")
	return cmd
}

// ---- lgctl watch

func newWatchCmd() *cobra.Command {
	var (
		bf      brokerFlags
		ff      fleetCAFlags
		asJSON  bool
		forTime time.Duration
	)
	cmd := &cobra.Command{
		Use:   "watch --broker URL [--fleet-ca FILE] [--json]",
		Short: "Print the fleet's states, events, results and telemetry live (a table, or JSON lines that `lgctl audit` reads)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			if forTime > 0 {
				var cancel context.CancelFunc
				ctx, cancel = context.WithTimeout(ctx, forTime)
				defer cancel()
			}
			c, err := bf.connect(ctx, "lgctl-watch")
			if err != nil {
				return err
			}
			defer c.Disconnect(100)
			out := cmd.OutOrStdout()
			var mu sync.Mutex
			enc := json.NewEncoder(out)
			enc.SetEscapeHTML(false) // keep event bytes exactly as published, for audit
			view := newWatchView()
			if view.verify, err = ff.verifier(); err != nil {
				return err
			}
			handler := func(_ paho.Client, m paho.Message) {
				mu.Lock()
				defer mu.Unlock()
				if asJSON {
					if json.Valid(m.Payload()) {
						enc.Encode(contract.WatchRecord{Topic: m.Topic(), Retain: m.Retained(), Payload: m.Payload()})
					}
					return
				}
				fmt.Fprintln(out, view.line(m.Topic(), m.Payload())+view.seal(m.Topic(), m.Payload()))
			}
			if err := subscribe(ctx, c, contract.Prefix+"#", handler); err != nil {
				return fmt.Errorf("subscribe: %w", err)
			}
			if !asJSON {
				if view.verify == nil {
					fmt.Fprintln(out, "# reports are not verified: give --fleet-ca to check each against its device's certificate")
				}
				fmt.Fprintf(out, "%-8s %-20s %s\n", "KIND", "DEVICE", "DETAIL")
			}
			<-ctx.Done()
			return nil
		},
	}
	bf.add(cmd)
	ff.add(cmd)
	cmd.Flags().BoolVar(&asJSON, "json", false, "print one JSON record per message ({topic, retain, payload})")
	cmd.Flags().DurationVar(&forTime, "for", 0, "stop after this long (default: until interrupted)")
	return cmd
}

// watchView renders messages as lines, remembering each device's last
// packet counters so telemetry shows rates, not totals since boot.
type watchView struct {
	last   map[string]linkSample
	verify *contract.ReportVerifier // nil: reports not checked
	chains contract.ChainTracker
}

// linkSample is one device's packet counters at a telemetry message; a
// rate needs two of the same boot whose counters did not go backwards.
type linkSample struct {
	boot           string
	at             time.Time
	passed, denied uint64
}

func newWatchView() *watchView { return &watchView{last: map[string]linkSample{}} }

// humanLine renders one message on its own, without rates.
func humanLine(topic string, payload []byte) string { return newWatchView().line(topic, payload) }

// telemetry renders the sections' names and the figures that matter:
// passed and denied frames (and their rates), flows, and per feed the power
// against the cap and the circuits on.
func (v *watchView) telemetry(dev string, t *contract.Telemetry) string {
	names := make([]string, 0, len(t.Sections))
	for k := range t.Sections {
		names = append(names, k)
	}
	sort.Strings(names)
	var b strings.Builder
	for _, name := range names {
		raw := t.Sections[name]
		switch name {
		case contract.SectionLinks:
			var l contract.Links
			if json.Unmarshal(raw, &l) != nil {
				break
			}
			now := linkSample{boot: t.BootID, at: t.TS, passed: l.Passed, denied: l.Denied}
			passed, denied := fmt.Sprint(l.Passed), fmt.Sprint(l.Denied)
			if prev, ok := v.last[dev]; ok && prev.boot == now.boot && now.at.After(prev.at) &&
				now.passed >= prev.passed && now.denied >= prev.denied {
				dt := now.at.Sub(prev.at).Seconds()
				passed += fmt.Sprintf(" (%.1f/s)", float64(now.passed-prev.passed)/dt)
				denied += fmt.Sprintf(" (%.1f/s)", float64(now.denied-prev.denied)/dt)
			}
			fmt.Fprintf(&b, " links[%s policy=%d passed=%s denied=%s flows=%d/%d]", l.Mode, l.PolicySerial, passed, denied, l.Flows, l.FlowCap)
			v.last[dev] = now
			continue
		case contract.SectionFeeds:
			var fs contract.Feeds
			if json.Unmarshal(raw, &fs) != nil {
				break
			}
			b.WriteString(" feeds[")
			for i, f := range fs {
				if i > 0 {
					b.WriteString(" ")
				}
				on := 0
				for _, c := range f.Circuits {
					if c.On {
						on++
					}
				}
				fmt.Fprintf(&b, "%s %s/%skW %d/%d on", f.Feed, kw(f.PowerKW), kw(f.CapKW), on, len(f.Circuits))
				if f.MeterLost {
					b.WriteString(" METER LOST")
				}
				if f.Unmet != "" {
					b.WriteString(" UNMET")
				}
			}
			b.WriteString("]")
			continue
		}
		fmt.Fprintf(&b, " %s[%d bytes]", name, len(raw))
	}
	return b.String()
}

// kw spells an optional power in kW, "-" when absent (no reading, no cap).
func kw(p *float64) string {
	if p == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *p)
}

func (v *watchView) line(topic string, payload []byte) string {
	parts := strings.Split(strings.TrimPrefix(topic, contract.Prefix), "/")
	dev := parts[0]
	kind := strings.Join(parts[1:], "/")
	switch kind {
	case "state":
		var s contract.State
		if json.Unmarshal(payload, &s) == nil {
			online := "OFFLINE"
			if s.Online {
				online = "online"
			}
			serial, rost := "-", "-"
			if s.Policy != nil {
				serial = fmt.Sprint(s.Policy.Serial)
			}
			if r := s.Roster; r != nil {
				rost = fmt.Sprint(r.Serial)
				if r.Expires != nil && !time.Now().Before(*r.Expires) {
					rost += "(EXPIRED)"
				}
			}
			return fmt.Sprintf("%-8s %-20s %s site=%s kind=%s version=%s policy=%s roster=%s boot=%.8s", "STATE", dev, online, s.Site, s.Kind, s.Version, serial, rost, s.BootID)
		}
	case "events":
		var e contract.Event
		if json.Unmarshal(payload, &e) == nil {
			f, _ := json.Marshal(e.Fields)
			return fmt.Sprintf("%-8s %-20s #%d %-8s %-18s %s", "EVENT", dev, e.Seq, e.Severity, e.Type, f)
		}
	case "telemetry":
		var t contract.Telemetry
		if json.Unmarshal(payload, &t) == nil {
			return fmt.Sprintf("%-8s %-20s #%d queue=%d dropped=%d/%d rss=%dk%s", "TELEM", dev, t.Seq,
				t.Agent.Queue.Depth, t.Agent.Queue.Dropped.Telemetry, t.Agent.Queue.Dropped.Events, t.Agent.RSSBytes>>10, v.telemetry(dev, &t))
		}
	case "cmd/result":
		var r contract.Result
		if json.Unmarshal(payload, &r) == nil {
			if r.OK {
				return fmt.Sprintf("%-8s %-20s %s %s ok", "RESULT", dev, r.CmdID, r.Type)
			}
			return fmt.Sprintf("%-8s %-20s %s %s REFUSED %s", "RESULT", dev, r.CmdID, r.Type, r.Reason)
		}
	case "cmd":
		return fmt.Sprintf("%-8s %-20s %d bytes", "CMD", dev, len(payload))
	}
	return fmt.Sprintf("%-8s %-20s %s %d bytes", "OTHER", dev, kind, len(payload))
}

// seal says whether a report is its device's: " [signed]", " [awaits
// checkpoint]", " [vouched #2..#5]" or " [UNVERIFIED: reason]"; nothing
// without a fleet CA.
func (v *watchView) seal(topic string, payload []byte) string {
	dev, suffix, _ := strings.Cut(strings.TrimPrefix(topic, contract.Prefix), "/")
	kind := contract.KindOf(suffix)
	if v.verify == nil || kind == "" || len(payload) == 0 {
		return ""
	}
	_, err := v.verify.Verify(kind, dev, payload)
	if kind != contract.KindEvents {
		if err != nil {
			return " [UNVERIFIED: " + err.Error() + "]"
		}
		return " [signed]"
	}
	var ev contract.Event
	if err != nil && !errors.Is(err, contract.ErrUnsigned) || json.Unmarshal(payload, &ev) != nil {
		return " [UNVERIFIED: " + fmt.Sprint(err) + "]"
	}
	if ev.Device != dev {
		return " [UNVERIFIED: " + contract.ErrWrongDevice.Error() + "]"
	}
	o := v.chains.Add(dev, append([]byte(nil), payload...), ev, err == nil)
	var b strings.Builder
	switch {
	case o.Duplicate:
		b.WriteString(" [redelivered]")
	case err == nil && len(o.Verified) > 1:
		fmt.Fprintf(&b, " [signed; vouches #%d..#%d]", o.Verified[0].Event.Seq, o.Verified[len(o.Verified)-2].Event.Seq)
	case err == nil:
		b.WriteString(" [signed]")
	case len(o.Verified) == 0:
		b.WriteString(" [awaits checkpoint]")
	default:
		fmt.Fprintf(&b, " [vouched #%d..#%d]", o.Verified[0].Event.Seq, o.Verified[len(o.Verified)-1].Event.Seq)
	}
	for _, r := range o.Rejected {
		fmt.Fprintf(&b, " [UNVERIFIED: #%d contradicted by the device's signed chain]", r.Event.Seq)
	}
	return b.String()
}

// fleetCAFlags name the fleet CA (and its CRL) that device certificates
// chain to, for checking reports.
type fleetCAFlags struct{ ca, crl string }

func (f *fleetCAFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.ca, "fleet-ca", "", "fleet CA certificate(s) (PEM): check every report against its device's certificate")
	cmd.Flags().StringVar(&f.crl, "fleet-crl", "", "the fleet CA's CRL: refuse reports of revoked devices (with --fleet-ca)")
}

// verifier is nil without --fleet-ca.
func (f *fleetCAFlags) verifier() (*contract.ReportVerifier, error) {
	if f.ca == "" {
		if f.crl != "" {
			return nil, errors.New("--fleet-crl needs --fleet-ca")
		}
		return nil, nil
	}
	pool, err := contract.LoadFleetCA(f.ca)
	if err != nil {
		return nil, err
	}
	v := &contract.ReportVerifier{Roots: pool}
	if f.crl != "" {
		if v.Revoked, err = contract.LoadRevoked(f.crl, f.ca); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// ---- lgctl audit

func newAuditCmd() *cobra.Command {
	var ff fleetCAFlags
	cmd := &cobra.Command{
		Use:   "audit FILE [--fleet-ca FILE]",
		Short: "Check devices' event hash chains in a saved stream (lgctl watch --json, or mosquitto_sub output); - reads stdin",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, argv []string) error {
			var r io.Reader = cmd.InOrStdin()
			if argv[0] != "-" {
				f, err := os.Open(argv[0])
				if err != nil {
					return err
				}
				defer f.Close()
				r = bufio.NewReader(f)
			}
			v, err := ff.verifier()
			if err != nil {
				return err
			}
			reps, err := contract.AuditWith(r, contract.AuditOptions{Verifier: v})
			if err != nil {
				return err
			}
			if len(reps) == 0 {
				return errors.New("no events in the stream")
			}
			sort.Slice(reps, func(i, j int) bool { return reps[i].Device < reps[j].Device })
			out := cmd.OutOrStdout()
			bad := 0
			for _, rep := range reps {
				status := "chain intact"
				if !rep.OK() {
					status, bad = "CHAIN BROKEN", bad+1
				}
				fmt.Fprintf(out, "%s: %s: events %d..%d (%d distinct, %d redelivered)", rep.Device, status, rep.First, rep.Last, rep.Events, rep.Duplicates)
				if v != nil {
					fmt.Fprintf(out, "; %d vouched for by %d device signatures", rep.Vouched, rep.Signed)
				}
				fmt.Fprintln(out)
				if rep.First > 1 {
					fmt.Fprintf(out, "  note: the stream starts at seq %d; the link to seq %d is not checked\n", rep.First, rep.First-1)
				}
				for _, p := range rep.Problems {
					fmt.Fprintf(out, "  %s\n", p)
				}
			}
			if v == nil {
				fmt.Fprintln(out, "note: signatures not checked (no --fleet-ca): a device could have published another's chain")
			}
			if bad > 0 {
				return errSilent
			}
			return nil
		},
	}
	ff.add(cmd)
	return cmd
}
