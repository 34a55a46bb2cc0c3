package mqttlink_test

import (
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// TestConnectPastHungNode: the first node of a device's list accepts
// connections and never answers (a frozen host). paho tries the nodes in
// turn, each for the whole connect timeout, so a wait of one step timeout
// for the whole attempt gave up just as paho reached the healthy node,
// every time: the device never came up while the node hung.
func TestConnectPastHungNode(t *testing.T) {
	e := newEnv(t, brokertest.KindMochi)
	const step = time.Second
	u, err := url.Parse(e.broker.URL())
	if err != nil {
		t.Fatal(err)
	}
	dead := *u
	dead.Host = blackhole(t)

	// A device whose turn starts at the hung node.
	dev := "dev-late"
	for i := 0; mqttlink.BrokerOrder(dev, []string{dead.String(), u.String()})[0] != dead.String(); i++ {
		dev = fmt.Sprintf("dev-late-%d", i)
	}
	obs := e.observe(t, "console-late", "linkguard/v1/"+dev+"/state")
	opt := e.options(t, dev, t.TempDir())
	opt.URL, opt.URLs, opt.StepTimeout = dead.String(), []string{u.String()}, step
	opt.MinBackoff, opt.MaxBackoff = 100*time.Millisecond, 200*time.Millisecond
	runLink(t, opt, nil)
	obs.waitFor(t, "online state", 10*step, func(ms []msg) bool {
		return len(ms) > 0 && decode[contract.State](t, ms[len(ms)-1].Payload).Online
	})
}

// blackhole accepts connections and never answers, as a hung node.
func blackhole(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() { defer wg.Done(); io.Copy(io.Discard, c) }()
		}
	}()
	return ln.Addr().String()
}
