package mqttlink

import (
	"bytes"
	"errors"
	"log/slog"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
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

// TestIntakeSizeChecks: sizes are checked on arrival. A policy over dsse's
// cap is not queued; a command over command.MaxMessage is queued without its
// payload, carrying the refusal Verify would give it, so its result and
// event stay what they were.
func TestIntakeSizeChecks(t *testing.T) {
	l := &Link{log: slog.New(slog.DiscardHandler), inbox: make(chan inbound, 1), policyIn: make(chan []byte, 1)}
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
		size     int
		retained bool
		want     error // in.tooLarge
	}{
		{"at the cap", command.MaxMessage, false, nil},
		{"over the cap", command.MaxMessage + 1, false, command.ErrTooLarge},
		{"retained over the cap", 33 << 20, true, command.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := bytes.Repeat([]byte("a"), tt.size)
			l.onMessage(nil, message{topic: cmdTopic, payload: body, retained: tt.retained})
			in := <-l.inbox
			if in.topic != cmdTopic || in.retained != tt.retained || !errors.Is(in.tooLarge, tt.want) || (tt.want == nil) != (in.tooLarge == nil) {
				t.Fatalf("inbound %q retained %v refusal %v; want %q %v %v", in.topic, in.retained, in.tooLarge, cmdTopic, tt.retained, tt.want)
			}
			if tt.want != nil && in.payload != nil {
				t.Fatal("an oversized command's payload was kept")
			}
			if tt.want == nil && len(in.payload) != tt.size {
				t.Fatalf("payload of %d bytes kept as %d", tt.size, len(in.payload))
			}
		})
	}
}
