package mqttlink

import (
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/report"
)

// CommandFlood is the event that sums up, per command topic and every
// FloodEvery, the refusals that went unanswered and the pre-checked
// messages the intake had no room for. (It belongs beside report's other
// event types; it is named here until report names it.)
const CommandFlood = "command.flood"

// How the intake bounds what junk can cost.
//
// Junk costs the pre-check (command.Verifier.Precheck, well under a
// microsecond for a command-sized message, no allocation) and, for the
// first of it, a result and an event: per command topic, a token bucket of
// RefusalsPerSecond with a burst of RefusalBurst answers refusals, the
// packet filter's figures for denied-flow events. The rest are counted and
// reported in one command.flood event per topic every FloodEvery, so a
// flood of junk makes at most RefusalBurst + RefusalsPerSecond×t results
// and as many events per topic, never a flood of outgoing messages.
//
// Only what passes the pre-check waits for verification, so junk never
// takes room a command needs. What passes carries a signature naming a key
// of the roster in force, which anyone can copy from a real command, so
// room is kept per lane, a topic and the signer key a message claims: a
// lane holds at most LaneDepth waiting messages, all lanes together at most
// IntakeMessages and IntakeBytes, but a lane's first message is always
// taken. So copies of one operator's key id on one topic cannot shut out
// another operator or another topic, and what waits is bounded by
// IntakeBytes plus one command.MaxMessage per lane (lanes are the command
// topics times the keys of the roster). Messages are verified in the order
// they arrived, refusals answered among them, so a device answers in the
// order commands were sent; a command waits behind at most the messages
// admitted before it.
//
// A full lane refuses the newcomer (tail drop): while copies of one key id
// arrive on one topic faster than the device verifies them (about 10,000 a
// second on one amd64 core, far fewer on a router), a real command of that
// lane gets in with the odds of a free slot, about verification rate over
// arrival rate, where dropping the oldest would lose every one of them.
// The dropped are counted in command.flood as "dropped": no result answers
// them.
const (
	RefusalsPerSecond = 10
	RefusalBurst      = 20
	FloodEvery        = 10 * time.Second

	LaneDepth      = 16
	IntakeMessages = 256
	IntakeBytes    = 2 << 20

	// maxAnswers bounds the refusals waiting for their answer; the budgets
	// keep them far fewer.
	maxAnswers = 64
)

// intake holds, in arrival order, the pre-checked command messages until
// the command loop verifies them and the refusals until it answers them,
// and the refusal budgets of the command topics. Its zero value is ready;
// paho's goroutine adds, the command loop pops.
type intake struct {
	mu    sync.Mutex
	ready chan struct{} // something waits (capacity 1); made on first use
	queue []inbound     // oldest first
	lanes map[lane]int  // pre-checked messages waiting, by lane
	// depth and bytes are the pre-checked messages waiting, answers the
	// refusals; peakDepth and peakBytes the most since the last summary.
	depth, bytes, answers int
	peakDepth, peakBytes  int
	topics                map[string]*topicFlood
}

// lane is a command topic and the signer key id a message claims.
type lane struct{ topic, signer string }

// topicFlood is one command topic's refusal budget and its counts since
// the last summary.
type topicFlood struct {
	tokens     float64
	last       time.Time
	refused    map[command.Reason]uint64 // every refusal, answered or not
	unanswered uint64                    // refusals without a result or event of their own
	dropped    uint64                    // pre-checked messages with no room
}

// signal is the channel that has a value while messages wait.
func (q *intake) signal() chan struct{} {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.readyLocked()
}

func (q *intake) readyLocked() chan struct{} {
	if q.ready == nil {
		q.ready = make(chan struct{}, 1)
	}
	return q.ready
}

func (q *intake) notifyLocked() {
	select {
	case q.readyLocked() <- struct{}{}:
	default:
	}
}

func (q *intake) flood(topic string) *topicFlood {
	if q.topics == nil {
		q.topics = map[string]*topicFlood{}
	}
	f := q.topics[topic]
	if f == nil {
		// Topics are the device's command subscriptions: a handful.
		f = &topicFlood{tokens: RefusalBurst, refused: map[command.Reason]uint64{}}
		q.topics[topic] = f
	}
	return f
}

// allow counts a refusal on topic and reports whether the topic's budget
// lets it have a result and an event.
func (q *intake) allow(topic string, r command.Reason, now time.Time) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	f := q.flood(topic)
	f.refused[r]++
	if !f.last.IsZero() && now.After(f.last) {
		f.tokens = min(RefusalBurst, f.tokens+now.Sub(f.last).Seconds()*RefusalsPerSecond)
	}
	if now.After(f.last) {
		f.last = now
	}
	if f.tokens < 1 {
		f.unanswered++
		return false
	}
	f.tokens--
	return true
}

// answer queues a refusal for its result and event.
func (q *intake) answer(in inbound) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.answers >= maxAnswers {
		q.flood(in.topic).unanswered++
		return
	}
	q.answers++
	q.queue = append(q.queue, in)
	q.notifyLocked()
}

// push queues a pre-checked message, or drops and counts it when there is
// no room; it reports whether it was queued.
func (q *intake) push(in inbound, signer string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	k := lane{in.topic, signer}
	n := len(in.payload)
	if waiting := q.lanes[k]; waiting > 0 && (waiting >= LaneDepth || q.depth >= IntakeMessages || q.bytes+n > IntakeBytes) {
		q.flood(in.topic).dropped++
		return false
	}
	if q.lanes == nil {
		q.lanes = map[lane]int{}
	}
	q.lanes[k]++
	in.signer = signer
	q.queue = append(q.queue, in)
	q.depth++
	q.bytes += n
	q.peakDepth, q.peakBytes = max(q.peakDepth, q.depth), max(q.peakBytes, q.bytes)
	q.notifyLocked()
	return true
}

// pop takes the oldest message or refusal.
func (q *intake) pop() (inbound, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.queue) == 0 {
		return inbound{}, false
	}
	in := q.queue[0]
	q.queue[0] = inbound{}
	q.queue = q.queue[1:]
	if len(q.queue) == 0 {
		q.queue = q.queue[:0:0] // let the drained array go
	}
	if in.refusal != nil {
		q.answers--
	} else {
		k := lane{in.topic, in.signer}
		if q.lanes[k]--; q.lanes[k] == 0 {
			delete(q.lanes, k)
		}
		q.depth--
		q.bytes -= len(in.payload)
	}
	if len(q.queue) > 0 {
		q.notifyLocked()
	}
	return in, true
}

// summaries returns the fields of a command.flood event for each topic
// with refusals left unanswered or messages dropped since the last call,
// and starts counting afresh.
func (q *intake) summaries(interval time.Duration) []report.Fields {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []report.Fields
	for topic, f := range q.topics {
		if f.unanswered > 0 || f.dropped > 0 {
			refused := map[string]uint64{}
			for r, n := range f.refused {
				refused[string(r)] = n
			}
			out = append(out, report.Fields{
				"topic": topic, "interval_s": interval.Seconds(), "refused": refused,
				"unanswered": f.unanswered, "dropped": f.dropped,
				"queued_peak": q.peakDepth, "queued_peak_bytes": q.peakBytes,
			})
		}
		clear(f.refused)
		f.unanswered, f.dropped = 0, 0
	}
	q.peakDepth, q.peakBytes = q.depth, q.bytes
	return out
}
