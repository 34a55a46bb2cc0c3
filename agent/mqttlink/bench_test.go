package mqttlink

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/queue"
	"linkguard.dev/linkguard/agent/report"
	"linkguard.dev/linkguard/policy/dsse"
)

// Figures for the closing note:
//
//	go test -run '^$' -bench . -benchmem ./agent/mqttlink/
//
// BenchmarkPublish compares raw paho QoS 1 publishing (pipelined, at most
// InFlight awaiting PUBACK, like mosquitto_pub would with a window) with
// the same messages appended to the durable queue and delivered by the link,
// both to mosquitto over TLS on loopback, in the same run.

const benchPayload = 200

func benchBroker(b *testing.B) (*brokertest.PKI, brokertest.Broker) {
	pki := brokertest.NewPKI(b)
	return pki, brokertest.Mosquitto(b, pki)
}

func benchLink(b *testing.B, pki *brokertest.PKI, url, dev string, ops *dsse.Keyring) (*Link, func()) {
	cert, key := pki.Client(b, dev)
	l, err := New(Options{Device: dev, Site: "bench", Kind: "router", Version: "bench", URL: url, CA: pki.CA, Cert: cert, Key: key,
		StateDir: b.TempDir(), QueueMaxBytes: 256 << 20, TelemetryEvery: time.Hour, Operators: ops})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-l.upChan():
			return l, func() { cancel(); <-done }
		case <-time.After(10 * time.Millisecond):
			if time.Now().After(deadline) {
				b.Fatal("link did not connect")
			}
		}
	}
}

func BenchmarkPublish(b *testing.B) {
	pki, broker := benchBroker(b)
	payload := bytes.Repeat([]byte("x"), benchPayload)
	b.Run("raw-paho", func(b *testing.B) {
		o, err := contract.BrokerOptions(broker.URL(), pki.CA, "", "")
		if err != nil {
			b.Fatal(err)
		}
		cert, key := pki.Client(b, "bench-raw")
		o, _ = contract.BrokerOptions(broker.URL(), pki.CA, cert, key)
		o.SetClientID("bench-raw").SetCleanSession(true).SetOrderMatters(true)
		c := paho.NewClient(o)
		if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			b.Fatal(tok.Error())
		}
		defer c.Disconnect(100)
		window := make(chan paho.Token, 64)
		b.SetBytes(benchPayload)
		b.ResetTimer()
		go func() {
			for range b.N {
				window <- c.Publish("bench/raw", 1, false, payload)
			}
			close(window)
		}()
		for tok := range window {
			if tok.Wait(); tok.Error() != nil {
				b.Fatal(tok.Error())
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("queue", func(b *testing.B) {
		l, stop := benchLink(b, pki, broker.URL(), "bench-queue", nil)
		defer stop()
		// Wait out the agent.started event so only bench records count.
		waitDrained(b, l, 1)
		base := l.q.Stats().Appended
		b.SetBytes(benchPayload)
		b.ResetTimer()
		for range b.N {
			if err := l.enqueue(queue.Telemetry, "bench/queue", payload); err != nil {
				b.Fatal(err)
			}
		}
		waitDrained(b, l, base+uint64(b.N))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("events", func(b *testing.B) {
		// The whole event path: JSON, hash chain, chain head file, queue,
		// delivery.
		l, stop := benchLink(b, pki, broker.URL(), "bench-events", nil)
		defer stop()
		waitDrained(b, l, 1)
		base := l.q.Stats().Appended
		b.ResetTimer()
		for i := range b.N {
			l.Emit("bench.tick", report.Info, report.Fields{"n": i})
		}
		waitDrained(b, l, base+uint64(b.N))
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// waitDrained waits until n records were appended and none is pending.
func waitDrained(b *testing.B, l *Link, n uint64) {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		s := l.q.Stats()
		if s.Appended >= n && s.Depth == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("queue not drained: %+v", s)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// BenchmarkCommandRoundTrip measures sign -> publish -> broker -> verify ->
// handle -> result (through the queue) -> broker -> operator, one command
// at a time, against mosquitto over TLS on loopback.
func BenchmarkCommandRoundTrip(b *testing.B) {
	pki, broker := benchBroker(b)
	pub, priv, _ := ed25519.GenerateKey(nil)
	l, stop := benchLink(b, pki, broker.URL(), "bench-cmd", dsse.NewKeyring(pub))
	defer stop()
	cert, key := pki.Client(b, "bench-operator")
	o, _ := contract.BrokerOptions(broker.URL(), pki.CA, cert, key)
	o.SetClientID("bench-operator").SetCleanSession(true)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	defer c.Disconnect(100)
	results := make(chan string, 16)
	if tok := c.Subscribe(l.topics.Result, 1, func(_ paho.Client, m paho.Message) {
		var r contract.Result
		if json.Unmarshal(m.Payload(), &r) == nil && r.OK {
			results <- r.CmdID
		}
	}); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		b.Fatal(tok.Error())
	}
	lat := make([]time.Duration, 0, b.N)
	var n atomic.Int64
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		now := start.UTC()
		id := fmt.Sprintf("bench-%d", n.Add(1))
		env, err := command.Sign(command.Payload{ID: id, Target: "bench-cmd", Issued: now, Expires: now.Add(time.Minute), Type: command.Ping}, priv)
		if err != nil {
			b.Fatal(err)
		}
		c.Publish(l.topics.Cmd, 1, false, env)
		for got := ""; got != id; {
			select {
			case got = <-results:
			case <-time.After(10 * time.Second):
				b.Fatalf("no result for %s", id)
			}
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "median-ms")
	b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, "p99-ms")
}

// BenchmarkFullQueueMemory fills a 32 MiB queue (the default max_mb) while
// the broker is unreachable, past its bound, and reports the Go heap in use
// and the process RSS with the queue full: the queue lives on disk, not in
// memory.
func BenchmarkFullQueueMemory(b *testing.B) {
	for range b.N {
		cert := ""
		l, err := New(Options{Device: "bench-full", URL: "tcp://127.0.0.1:1", Cert: cert, StateDir: b.TempDir(),
			QueueMaxBytes: 32 << 20, TelemetryEvery: time.Hour, MinBackoff: time.Second})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- l.Run(ctx) }()
		payload := []byte(`{"telemetry":"` + strings.Repeat("x", 1000) + `"}`)
		for l.q.Stats().Dropped[queue.Telemetry] == 0 {
			if err := l.enqueue(queue.Telemetry, l.topics.Telemetry, payload); err != nil {
				b.Fatal(err)
			}
		}
		for range 200 {
			l.Emit("bench.event", report.Warning, report.Fields{"full": true})
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		s := l.q.Stats()
		b.ReportMetric(float64(s.Bytes)/(1<<20), "queue-MB")
		b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MB")
		b.ReportMetric(float64(report.RSS())/(1<<20), "rss-MB")
		cancel()
		<-done
	}
}
