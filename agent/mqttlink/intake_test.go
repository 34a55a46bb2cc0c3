package mqttlink

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
)

// message is a paho.Message as the broker delivers it.
type message struct {
	topic    string
	payload  []byte
	retained bool
}

var _ paho.Message = message{}

func (m message) Duplicate() bool   { return false }
func (m message) Qos() byte         { return 1 }
func (m message) Retained() bool    { return m.retained }
func (m message) Topic() string     { return m.topic }
func (m message) MessageID() uint16 { return 1 }
func (m message) Payload() []byte   { return m.payload }
func (m message) Ack()              {}

// testLink is a Link with just what onMessage and the intake need: the
// operator key ring of key.
func testLink(key ed25519.PrivateKey) *Link {
	return &Link{log: slog.New(slog.DiscardHandler), policyIn: make(chan []byte, 1),
		verify: &command.Verifier{Keys: dsse.NewKeyring(key.Public().(ed25519.PublicKey))}}
}

// envelopeOf is an envelope of n bytes naming key that passes the
// pre-check (its signature is junk).
func envelopeOf(t testing.TB, key ed25519.PrivateKey, n int) []byte {
	head := `{"payloadType":"` + command.PayloadType + `","signatures":[{"keyid":"` + dsse.KeyID(key.Public().(ed25519.PublicKey)) + `","sig":"AAAA"}],"payload":"`
	pad := n - len(head) - 2
	pad -= pad % 4
	msg := []byte(head + strings.Repeat("A", pad) + `"}`)
	msg = append(msg, bytes.Repeat([]byte(" "), n-len(msg))...)
	if len(msg) != n || command.Precheck(msg, func(string) bool { return true }) != nil {
		t.Fatalf("envelope of %d bytes: %d, %v", n, len(msg), command.Precheck(msg, func(string) bool { return true }))
	}
	return msg
}

// TestIntakeSizeChecks: sizes are checked on arrival. A policy over dsse's
// cap is not queued; a command over command.MaxMessage is refused at once,
// carrying the refusal Verify would give it, so its result and event stay
// what they were, and its payload is not kept.
func TestIntakeSizeChecks(t *testing.T) {
	op := policytest.Key(t)
	l := testLink(op)
	cmdTopic := contract.CmdTopicFor("dev-1")

	l.onMessage(nil, message{topic: contract.PolicyTopic, payload: make([]byte, dsse.MaxEnvelopeSize+1), retained: true})
	if len(l.policyIn) != 0 {
		t.Fatal("a fleet policy over the cap was queued")
	}
	l.onMessage(nil, message{topic: contract.PolicyTopic, payload: make([]byte, dsse.MaxEnvelopeSize), retained: true})
	if len(l.policyIn) != 1 {
		t.Fatal("a fleet policy at the cap was not queued")
	}

	tests := []struct {
		name     string
		msg      []byte
		retained bool
		want     error // the refusal; nil: queued for verification
	}{
		{"at the cap", envelopeOf(t, op, command.MaxMessage), false, nil},
		{"over the cap", bytes.Repeat([]byte("a"), command.MaxMessage+1), false, command.ErrTooLarge},
		{"retained over the cap", bytes.Repeat([]byte("a"), 33<<20), true, command.ErrRetained},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l.onMessage(nil, message{topic: cmdTopic, payload: tt.msg, retained: tt.retained})
			in, ok := l.intake.pop()
			if !ok {
				t.Fatal("nothing queued")
			}
			if tt.want == nil {
				if in.topic != cmdTopic || len(in.payload) != len(tt.msg) || in.refusal != nil {
					t.Fatalf("queued %q, %d bytes, %v", in.topic, len(in.payload), in.refusal)
				}
				return
			}
			if in.topic != cmdTopic || in.retained != tt.retained || !errors.Is(in.refusal, tt.want) {
				t.Fatalf("inbound %q retained %v refusal %v; want %q %v %v", in.topic, in.retained, in.refusal, cmdTopic, tt.retained, tt.want)
			}
			if in.payload != nil {
				t.Fatal("a refused command's payload was kept")
			}
		})
	}
}

// TestIntakeRefusalBudget: per topic, RefusalBurst refusals are answered
// at once and RefusalsPerSecond after; the rest are counted into one
// summary per topic, which names every reason.
func TestIntakeRefusalBudget(t *testing.T) {
	op := policytest.Key(t)
	l := testLink(op)
	all, mine := contract.AllCmdTopic, contract.CmdTopicFor("dev-1")
	for i := range 1000 {
		l.onMessage(nil, message{topic: all, payload: []byte("junk " + strconv.Itoa(i))})
	}
	l.onMessage(nil, message{topic: mine, payload: sign(t, policytest.Key(t))})
	if got := l.intake.answers; got != RefusalBurst+1 {
		t.Fatalf("%d refusals to answer, want the burst %d and the other topic's one", got, RefusalBurst+1)
	}
	// One second later the bucket holds RefusalsPerSecond again.
	later := time.Now().Add(time.Second)
	n := 0
	for range 100 {
		if l.intake.allow(all, command.ReasonMalformed, later) {
			n++
		}
	}
	if n != RefusalsPerSecond {
		t.Fatalf("%d answered after a second, want %d", n, RefusalsPerSecond)
	}
	sums := l.intake.summaries(FloodEvery)
	if len(sums) != 1 {
		t.Fatalf("summaries %v, want one for %s", sums, all)
	}
	s := sums[0]
	refused := s["refused"].(map[string]uint64)
	if s["topic"] != all || refused["malformed"] != 1100 || s["unanswered"] != uint64(1100-RefusalBurst-RefusalsPerSecond) {
		t.Fatalf("summary %v", s)
	}
	if sums := l.intake.summaries(FloodEvery); len(sums) != 0 {
		t.Fatalf("a summary of nothing: %v", sums)
	}
}

// sign is a ping signed by key.
func sign(t testing.TB, key ed25519.PrivateKey) []byte {
	now := time.Now()
	b, err := command.Sign(command.Payload{ID: "p-" + strconv.FormatInt(now.UnixNano(), 36), Target: "all", Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, key)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestIntakeLanes: pre-checked messages and refusals come out in arrival
// order; a lane (topic and claimed signer) holds LaneDepth at most, the
// intake IntakeBytes, and a lane's first message is always taken; what has
// no room is counted as dropped.
func TestIntakeLanes(t *testing.T) {
	var q intake
	big := make([]byte, 63<<10)
	for i := range 3 * LaneDepth {
		q.push(inbound{topic: "a", payload: []byte{byte(i)}}, "k1")
		if i < 2 {
			q.answer(inbound{topic: "a", refusal: command.ErrMalformed, id: strconv.Itoa(i)})
			q.push(inbound{topic: "b", payload: []byte{byte(i)}}, "k1")
		}
	}
	if q.depth != LaneDepth+2 || q.answers != 2 {
		t.Fatalf("%d waiting and %d refusals, want a full lane, two more and two refusals", q.depth, q.answers)
	}
	var got []string
	for range 7 {
		in, _ := q.pop()
		got = append(got, in.topic+in.id+strconv.Itoa(len(in.payload)))
	}
	// a/k1 0, refusal 0, b/k1 0, a/k1 1, refusal 1, b/k1 1, a/k1 2
	if want := []string{"a1", "a00", "b1", "a1", "a10", "b1", "a1"}; !slices.Equal(got, want) {
		t.Fatalf("served %v, want %v", got, want)
	}
	for {
		if _, ok := q.pop(); !ok {
			break
		}
	}
	// The byte cap holds back a lane's second message, never a lane's first.
	for range 40 {
		q.push(inbound{topic: "a", payload: big}, "k3")
		q.push(inbound{topic: "b", payload: big}, "k3")
	}
	if q.bytes > IntakeBytes {
		t.Fatalf("%d bytes waiting, cap %d", q.bytes, IntakeBytes)
	}
	if !q.push(inbound{topic: "c", payload: big}, "k1") {
		t.Fatal("a new lane's first message was refused")
	}
	if q.push(inbound{topic: "c", payload: big}, "k1") {
		t.Fatal("a lane took a second message past the intake's cap")
	}
	sums := q.summaries(FloodEvery)
	dropped := map[string]uint64{}
	for _, s := range sums {
		dropped[s["topic"].(string)] = s["dropped"].(uint64)
	}
	if dropped["a"] != 2*LaneDepth+(40-LaneDepth) || dropped["b"] == 0 || dropped["c"] != 1 {
		t.Fatalf("dropped %v", dropped)
	}
	for {
		if _, ok := q.pop(); !ok {
			break
		}
	}
	if q.depth != 0 || q.bytes != 0 || q.answers != 0 || len(q.lanes) != 0 {
		t.Fatalf("drained intake holds %d messages, %d bytes, %d refusals, %d lanes", q.depth, q.bytes, q.answers, len(q.lanes))
	}
}
