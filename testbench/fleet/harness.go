package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// harnessClient publishes what the committee and the operator sign (on
// their own machines; here, the harness) and counts the devices' answers
// to the command it sent.
type harnessClient struct {
	c       paho.Client
	mu      sync.Mutex
	watch   string
	answers map[string]bool
}

func newHarnessClient(brokers []string, tls console.TLSFiles) (*harnessClient, error) {
	o, err := contract.BrokerListOptions(brokers, tls.CA, tls.Cert, tls.Key)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	h := &harnessClient{answers: map[string]bool{}}
	onResult := func(_ paho.Client, m paho.Message) {
		var r contract.Result
		if json.Unmarshal(m.Payload(), &r) != nil {
			return
		}
		h.mu.Lock()
		if r.CmdID == h.watch {
			h.answers[r.Device] = true
		}
		h.mu.Unlock()
	}
	// A clean session: every connection subscribes anew, and asks again
	// for what a busy broker refuses (NATS's SUBACK 0x80). A harness that
	// lost its connection or its subscription heard no answer at all.
	granted := make(chan struct{})
	var once sync.Once
	o.SetClientID(fmt.Sprintf("fleet-harness-%d", time.Now().UnixNano())).SetAutoReconnect(true)
	o.SetOnConnectHandler(func(c paho.Client) {
		go func() {
			if contract.Subscribe(context.Background(), c, map[string]byte{contract.Prefix + "+/cmd/result": 1}, onResult, contract.SubscribeOptions{}) == nil {
				once.Do(func() { close(granted) })
			}
		}()
	})
	h.c = paho.NewClient(o)
	if tok := h.c.Connect(); !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return nil, fmt.Errorf("fleet: harness connect: %w", publishErr(tok.Error()))
	}
	select {
	case <-granted:
	case <-time.After(time.Minute):
		h.close()
		return nil, fmt.Errorf("fleet: harness subscribe: not granted within a minute")
	}
	return h, nil
}

func publishErr(err error) error {
	if err == nil {
		return fmt.Errorf("no answer from the broker in time")
	}
	return err
}

// publish publishes a retained message (empty clears it).
func (h *harnessClient) publish(topic string, payload []byte) (bool, error) {
	tok := h.c.Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return false, fmt.Errorf("fleet: publish %s: %w", topic, publishErr(tok.Error()))
	}
	return true, nil
}

// send publishes a command and counts answers to id from then on.
func (h *harnessClient) send(topic string, env []byte, id string) error {
	h.mu.Lock()
	h.watch, h.answers = id, map[string]bool{}
	h.mu.Unlock()
	tok := h.c.Publish(topic, 1, false, env)
	if !tok.WaitTimeout(30*time.Second) || tok.Error() != nil {
		return fmt.Errorf("fleet: send %s: %w", topic, publishErr(tok.Error()))
	}
	return nil
}

// answered counts the distinct devices that answered the command sent.
func (h *harnessClient) answered(id string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.watch != id {
		return 0
	}
	return len(h.answers)
}

func (h *harnessClient) close() { h.c.Disconnect(250) }
