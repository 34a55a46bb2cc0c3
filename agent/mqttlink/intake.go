package mqttlink

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/queue"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
	"linkguard.dev/linkguard/policy/store"
)

// HandlerTimeout bounds one command handler.
const HandlerTimeout = 30 * time.Second

// inbound is a command message on its way to verification, or a refusal
// on its way to its result and event.
type inbound struct {
	topic    string
	retained bool
	payload  []byte // nil for a refusal
	// refusal is why the intake refused it before verification (see
	// onMessage); id is then the command id read from its payload, if any.
	refusal error
	id      string
	signer  string // the key id it claims, for the intake's lanes
}

// onMessage runs on paho's goroutine: hand off and return at once. A
// command message is pre-checked here (command.Verifier.Precheck: size,
// shape, a signature by a key of the roster in force), so only what may be
// a command waits in the intake for the full verification; a refusal goes
// to the command loop for its result and event, as far as the topic's
// refusal budget goes (intake.allow), and is only counted beyond it.
func (l *Link) onMessage(_ paho.Client, m paho.Message) {
	if m.Topic() == contract.PolicyTopic {
		if err := (dsse.Limits{}).CheckSize(len(m.Payload())); err != nil {
			l.log.Warn("fleet policy message over the size limit ignored", "bytes", len(m.Payload()), "err", err)
			return
		}
		// Keep only the newest: a later retained copy supersedes.
		select {
		case <-l.policyIn:
		default:
		}
		l.policyIn <- m.Payload()
		return
	}
	if m.Topic() == contract.RosterTopic {
		if err := roster.Limits.CheckSize(len(m.Payload())); err != nil {
			l.log.Warn("fleet roster message over the size limit ignored", "bytes", len(m.Payload()), "err", err)
			return
		}
		select {
		case <-l.rosterIn:
		default:
		}
		l.rosterIn <- m.Payload()
		return
	}
	in := inbound{topic: m.Topic(), retained: m.Retained(), payload: m.Payload()}
	if in.retained {
		// Never act on what the broker replays at subscribe time.
		l.refuseEarly(in, command.ReasonRetained, nil)
		return
	}
	signer, err := l.verify.Precheck(in.payload)
	if err != nil {
		l.refuseEarly(in, command.ReasonOf(err), err)
		return
	}
	l.intake.push(in, signer)
}

// refuseEarly answers a message refused before verification, if the
// topic's refusal budget allows; err nil means retained.
func (l *Link) refuseEarly(in inbound, reason command.Reason, err error) {
	if !l.intake.allow(in.topic, reason, time.Now()) {
		return
	}
	if err == nil {
		err = fmt.Errorf("%w: a retained message on %s is never acted on", command.ErrRetained, in.topic)
	}
	in.id, in.payload, in.refusal = command.PeekID(in.payload), nil, err
	l.intake.answer(in)
}

func (l *Link) commandLoop(ctx context.Context) error {
	flood := time.NewTicker(FloodEvery)
	defer flood.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-l.intake.signal():
			if in, ok := l.intake.pop(); ok {
				l.handleCommand(ctx, in)
			}
		case <-flood.C:
			l.reportFlood()
		}
	}
}

// reportFlood emits a command.flood event for each topic whose refusals
// went beyond its budget, or whose pre-checked messages found no room,
// since the last one.
func (l *Link) reportFlood() {
	for _, f := range l.intake.summaries(FloodEvery) {
		l.log.Warn("command flood", "topic", f["topic"], "refused", f["refused"], "unanswered", f["unanswered"], "dropped", f["dropped"])
		l.Emit(CommandFlood, report.Warning, f)
	}
}

// handleCommand verifies and runs one command and answers it: always when
// it is carried out, and a refusal as far as the topic's refusal budget
// goes.
func (l *Link) handleCommand(ctx context.Context, in inbound) {
	var (
		id    string
		c     *command.Command
		err   error
		topic = in.topic
	)
	if in.refusal != nil {
		id, err = in.id, in.refusal // refused on arrival; its answer is budgeted already
	} else if id, c, err = l.verify.Verify(in.payload); err != nil && !l.intake.allow(topic, command.ReasonOf(err), time.Now()) {
		return // counted into the topic's next command.flood
	}
	var result any
	if err == nil {
		hctx, cancel := context.WithTimeout(ctx, HandlerTimeout)
		result, err = l.cmds.Dispatch(hctx, c)
		cancel()
	}
	res := contract.Result{CmdID: id, OK: err == nil, Device: l.opt.Device, Result: result, TS: l.opt.Now().UTC()}
	fields := report.Fields{"cmd_id": id, "topic": topic}
	if c != nil {
		res.Type = c.Type
		fields["type"], fields["signers"] = c.Type, c.Signers
	}
	if err != nil {
		reason := command.ReasonOf(err)
		res.Reason, res.Error = string(reason), err.Error()
		fields["reason"], fields["error"] = string(reason), err.Error()
		l.log.Warn("command refused", "cmd_id", id, "reason", reason, "err", err)
		l.Emit(report.CommandRefused, report.Warning, fields)
	} else {
		l.log.Info("command accepted", "cmd_id", id, "type", c.Type, "signers", c.Signers)
		l.Emit(report.CommandAccepted, report.Notice, fields)
	}
	b, merr := json.Marshal(res)
	if merr != nil {
		res.Result = nil
		res.Error = "result not encodable: " + merr.Error()
		b, _ = json.Marshal(res)
	}
	if err := l.enqueue(queue.Event, l.topics.Result, l.seal(contract.KindResult, b)); err != nil {
		l.log.Error("command result not queued", "cmd_id", id, "err", err)
	}
}

func (l *Link) policyLoop(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case env := <-l.policyIn:
			l.applyPolicy(env)
		case env := <-l.rosterIn:
			l.applyRoster(env)
		case <-l.policySwap:
			// The state carries the policy serial. Not connected: connect
			// publishes the state anyway.
			if l.client != nil && l.client.IsConnectionOpen() {
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				if _, err := l.publishState(ctx); err != nil {
					l.log.Warn("state not republished after policy change", "err", err)
				}
				cancel()
			}
		}
	}
}

// applyPolicy applies the fleet policy like a policy file and writes it to
// the policy file path. Outcome events come from the store's OnOutcome hook
// (see PolicyOutcome), so file and MQTT policies report alike.
func (l *Link) applyPolicy(env []byte) {
	if l.opt.Policy == nil {
		return
	}
	l.applyRetained("policy", report.PolicyRejected, env, &l.lastRefused, l.opt.PolicyFile, func() error {
		_, err := l.opt.Policy.Apply(env, "mqtt")
		if errors.Is(err, store.ErrUnchanged) {
			return errUnchanged
		}
		return err
	})
	// The state is republished on the store's swap signal (policyLoop).
}

// errUnchanged: the retained document is the one in force already.
var errUnchanged = errors.New("unchanged")

// applyRetained applies a retained fleet document (policy, roster) with
// apply, remembers one it refused so its redelivery is not refused again
// (the store reports the refusal), and keeps an applied one in file.
func (l *Link) applyRetained(what, rejected string, env []byte, lastRefused *[32]byte, file string, apply func() error) {
	sum := sha256.Sum256(env)
	if sum == *lastRefused {
		l.log.Debug("retained fleet " + what + " already refused; ignoring the redelivery")
		return
	}
	if len(env) == 0 {
		// An empty retained message clears the topic on the broker (an
		// operator's mistake, or a test tearing down): devices that connect
		// later get no fleet document at all. Say so plainly, rather than
		// as a malformed envelope, and keep the one in force.
		*lastRefused = sum
		reason := "the broker's retained fleet " + what + " was cleared (an empty message); the " + what + " in force stays"
		l.log.Warn("retained fleet "+what+" cleared on the broker", "kept", "in force")
		l.Emit(rejected, report.Warning, report.Fields{"source": "mqtt", "reason": reason})
		return
	}
	switch err := apply(); {
	case errors.Is(err, errUnchanged):
		return
	case err != nil:
		*lastRefused = sum
		return
	}
	if file != "" {
		if err := atomicfile.Write(file, env, 0o644); err != nil {
			l.log.Error("applied fleet "+what+" not written to its file", "path", file, "err", err)
			l.Emit(report.AgentError, report.Error, report.Fields{"error": err.Error(), "what": what + " file write"})
		}
	}
}

// outcome turns a store's outcome into an applied or rejected event.
func (l *Link) outcome(applied, rejected string, source string, serial, prev uint64, ok bool, err error) {
	f := report.Fields{"source": source, "serial": serial, "prev": prev}
	if ok {
		l.Emit(applied, report.Notice, f)
		return
	}
	f["reason"] = errString(err)
	l.Emit(rejected, report.Warning, f)
}

// PolicyOutcome turns the policy store's outcomes into events; pass it as
// store.Options.OnOutcome.
func (l *Link) PolicyOutcome(o store.Outcome) {
	l.outcome(report.PolicyApplied, report.PolicyRejected, o.Source, o.Serial, o.Prev, o.Applied, o.Err)
}

// applyRoster applies the fleet roster and keeps it in the roster file, as
// applyPolicy does the fleet policy; outcomes come through RosterOutcome.
func (l *Link) applyRoster(env []byte) {
	if l.opt.Roster == nil {
		return
	}
	l.applyRetained("roster", report.RosterRejected, env, &l.lastRosterRefused, l.opt.RosterFile, func() error {
		_, err := l.opt.Roster.Apply(env, "mqtt")
		if errors.Is(err, roster.ErrUnchanged) {
			return errUnchanged
		}
		return err
	})
}

// RosterOutcome reports what became of a roster, from any source (use it
// as the roster store's OnOutcome hook).
func (l *Link) RosterOutcome(o roster.Outcome) {
	l.outcome(report.RosterApplied, report.RosterRejected, o.Source, o.Serial, o.Prev, o.Applied, o.Err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ---- telemetry

func (l *Link) telemetryLoop(ctx context.Context) error {
	t := time.NewTicker(l.opt.TelemetryEvery)
	defer t.Stop()
	sync := time.NewTicker(time.Second)
	defer sync.Stop()
	cp := time.NewTicker(SignGap)
	defer cp.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-cp.C:
			l.checkpoint(false)
		case <-sync.C:
			l.saveChain()
			// Bound what a power cut can take while nothing is delivered.
			if err := l.q.Sync(); err != nil && !errors.Is(err, queue.ErrClosed) {
				l.log.Error("queue sync", "err", err)
			}
		case <-t.C:
			l.publishTelemetry()
		}
	}
}

func (l *Link) publishTelemetry() {
	l.telSeq++
	qs := l.q.Stats()
	tel := contract.Telemetry{
		Device: l.opt.Device, BootID: l.bootID, Seq: l.telSeq, TS: l.opt.Now().UTC(),
		Agent: contract.AgentHealth{
			RSSBytes: report.RSS(), Goroutines: runtime.NumGoroutine(),
			Uptime: l.opt.Now().Sub(l.start).Seconds(),
			Queue: contract.QueueStats{Depth: qs.Depth, Bytes: qs.Bytes,
				Dropped: contract.DroppedStats{Telemetry: qs.Dropped[queue.Telemetry], Events: qs.Dropped[queue.Event]}},
		},
	}
	l.secMu.Lock()
	if len(l.sections) > 0 {
		tel.Sections = map[string]json.RawMessage{}
	}
	for name, fn := range l.sections {
		b, err := json.Marshal(fn())
		if err != nil {
			b, _ = json.Marshal(map[string]string{"error": err.Error()})
		}
		tel.Sections[name] = b
	}
	l.secMu.Unlock()
	b, err := json.Marshal(tel)
	if err != nil {
		l.log.Error("telemetry not encodable", "err", err)
		return
	}
	if err := l.enqueue(queue.Telemetry, l.topics.Telemetry, l.seal(contract.KindTelemetry, b)); err != nil {
		l.log.Error("telemetry not queued", "err", err)
	}
	if d := qs.Dropped; d != l.dropsShown {
		l.Emit(report.QueueDropped, report.Warning, report.Fields{
			"telemetry": d[queue.Telemetry] - l.dropsShown[queue.Telemetry],
			"events":    d[queue.Event] - l.dropsShown[queue.Event],
		})
		l.dropsShown = d
	}
}

// ---- built-in command handlers

func (l *Link) registerBuiltins() {
	must := func(typ string, f command.HandlerFunc) {
		if err := l.cmds.Register(typ, f); err != nil {
			panic(err) // programming error: built-ins register once
		}
	}
	must(command.Ping, func(context.Context, *command.Command) (any, error) {
		return map[string]any{"pong": l.opt.Now().UTC(), "boot_id": l.bootID}, nil
	})
	must(command.Rebirth, func(ctx context.Context, _ *command.Command) (any, error) {
		_, err := l.publishState(ctx)
		return nil, err
	})
	must(command.PolicyFetch, func(ctx context.Context, _ *command.Command) (any, error) {
		// Subscribing again makes the broker send the retained policy.
		if err := waitToken(ctx, l.client.Unsubscribe(contract.PolicyTopic), 10*time.Second); err != nil {
			return nil, fmt.Errorf("unsubscribe: %w", err)
		}
		tok := l.client.Subscribe(contract.PolicyTopic, 0, l.onMessage)
		if err := waitToken(ctx, tok, 10*time.Second); err != nil {
			return nil, fmt.Errorf("subscribe: %w", err)
		}
		if len(contract.Refused(tok, map[string]byte{contract.PolicyTopic: 0})) > 0 {
			return nil, fmt.Errorf("subscribe: the broker refused %s", contract.PolicyTopic)
		}
		var serial uint64
		if l.opt.Policy != nil {
			serial = l.opt.Policy.Current().Serial()
		}
		return map[string]any{"enforced_serial": serial}, nil
	})
	must(command.LogLevel, func(_ context.Context, c *command.Command) (any, error) {
		var a struct {
			Level string `json:"level"`
		}
		if err := c.DecodeArgs(&a); err != nil {
			return nil, err
		}
		var lv slog.Level
		if err := lv.UnmarshalText([]byte(a.Level)); err != nil {
			return nil, fmt.Errorf("log.level: %w", err)
		}
		if l.opt.LevelVar == nil {
			return nil, errors.New("log.level: this agent's level is fixed")
		}
		prev := l.opt.LevelVar.Level()
		l.opt.LevelVar.Set(lv)
		l.Emit(report.LogLevelChanged, report.Info, report.Fields{"level": lv.String(), "prev": prev.String()})
		return map[string]string{"level": lv.String(), "prev": prev.String()}, nil
	})
}

// EvidenceChunk is one piece of an uploaded evidence file, on .../evidence.
type EvidenceChunk struct {
	CmdID  string `json:"cmd_id"`
	File   string `json:"file"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
	Chunk  int    `json:"chunk"`
	Chunks int    `json:"chunks"`
	Data   string `json:"data"` // base64
}

// EvidenceChunkSize keeps each evidence message well under the queue's
// record limit.
const EvidenceChunkSize = 128 << 10

// RegisterEvidence adds evidence.upload, which queues a file from dir (the
// packet filter's pcap ring) for upload on .../evidence in chunks. Args:
// {"file": "NAME"}; no file lists what there is.
func (l *Link) RegisterEvidence(dir string) error {
	return l.Register(command.EvidenceUpload, command.HandlerFunc(func(_ context.Context, c *command.Command) (any, error) {
		var a struct {
			File string `json:"file"`
		}
		if err := c.DecodeArgs(&a); err != nil {
			return nil, err
		}
		if a.File == "" {
			ents, err := os.ReadDir(dir)
			if err != nil {
				return nil, fmt.Errorf("evidence.upload: %w", err)
			}
			var names []string
			for _, e := range ents {
				if e.Type().IsRegular() {
					names = append(names, e.Name())
				}
			}
			return map[string]any{"files": names}, nil
		}
		if strings.ContainsAny(a.File, `/\`) || a.File == ".." || a.File == "." {
			return nil, fmt.Errorf("evidence.upload: %q is not a file name", a.File)
		}
		data, err := os.ReadFile(dir + "/" + a.File)
		if err != nil {
			return nil, fmt.Errorf("evidence.upload: %w", err)
		}
		sum := sha256.Sum256(data)
		chunks := max(1, (len(data)+EvidenceChunkSize-1)/EvidenceChunkSize)
		for i := range chunks {
			part := data[i*EvidenceChunkSize : min(len(data), (i+1)*EvidenceChunkSize)]
			b, _ := json.Marshal(EvidenceChunk{CmdID: c.ID, File: a.File, Size: int64(len(data)),
				SHA256: hex.EncodeToString(sum[:]), Chunk: i, Chunks: chunks, Data: base64.StdEncoding.EncodeToString(part)})
			if err := l.enqueue(queue.Event, l.topics.Evidence, b); err != nil {
				return nil, fmt.Errorf("evidence.upload: chunk %d: %w", i, err)
			}
		}
		l.Emit(report.EvidenceUploaded, report.Info, report.Fields{"file": a.File, "size": len(data), "sha256": hex.EncodeToString(sum[:])})
		return map[string]any{"file": a.File, "size": len(data), "chunks": chunks}, nil
	}))
}
