package natsfleet

import (
	"fmt"
	"os"
	"sync"
	"testing"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/brokertest"
	"linkguard.dev/linkguard/testbench/fleet"
)

// Cluster is a 3-node NATS Server cluster for a fleet run: the test suite's
// (agent/mqttlink/brokertest: JetStream, MQTT over TLS on every node,
// users mapped from client certificates with per-device permissions), one
// process per node, so a node can be killed with SIGKILL mid-run.
type Cluster struct {
	Nodes *brokertest.NATSCluster
	PKI   *brokertest.PKI
	tb    *runTB
}

// Start starts the cluster with a permission entry and a certificate
// for each of the agents fleet.Run will start, and an operator identity
// for the console and the harness.
func Start(dir string, agents int) (n *Cluster, err error) {
	tb := &runTB{dir: dir}
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			tb.cleanup()
			n, err = nil, fmt.Errorf("fleet: nats: %s", f)
		}
	}()
	pki := brokertest.NewPKI(tb)
	devs := make([]brokertest.NATSDevice, agents)
	for i := range devs {
		devs[i] = brokertest.NATSDevice{ID: fleet.DeviceID(i), Site: fleet.SiteOf(i)}
	}
	c := brokertest.NATS(tb, pki, brokertest.NATSOptions{Devices: devs, Operators: []string{"fleet-console"}})
	return &Cluster{Nodes: c, PKI: pki, tb: tb}, nil
}

// Options fill a fleet run's broker fields: the nodes, the console's TLS
// identity, each device's certificate and the CA its reports verify to.
func (n *Cluster) Options(o *fleet.Options) {
	urls := n.Nodes.URLs()
	o.Broker, o.Brokers = urls[0], urls[1:]
	cert, key := n.PKI.Client(n.tb, "fleet-console")
	o.TLS = console.TLSFiles{CA: n.PKI.CA, Cert: cert, Key: key}
	o.FleetCA = n.PKI.Pool()
	o.Identity = func(id string) (string, string, error) {
		return n.call(func() (string, string) { return n.PKI.Client(n.tb, id) })
	}
	o.Kill = n.killFirst
	o.BrokerPIDs = n.pids
}

func (n *Cluster) call(f func() (string, string)) (a, b string, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("fleet: nats: %s", f)
		}
	}()
	a, b = f()
	return a, b, nil
}

// killFirst kills the first node with SIGKILL and returns the MQTT
// clients it held.
func (n *Cluster) killFirst() (ids []string, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(fatal)
			if !ok {
				panic(r)
			}
			err = fmt.Errorf("fleet: nats: %s", f)
		}
	}()
	node := n.Nodes.Nodes[0]
	ids = node.MQTTClients(n.tb)
	node.Kill(n.tb)
	return ids, nil
}

// pids are the cluster's nats-server processes.
func (n *Cluster) pids() []int { return fleet.PIDsUnder(n.tb.dir) }

// Close stops the cluster.
func (n *Cluster) Close() { n.tb.cleanup() }

// fatal is a runTB failure, recovered where brokertest is called.
type fatal string

// runTB lets this command use the test suite's brokers outside a test:
// brokertest takes a testing.TB for its failures, temporary directories
// and clean-up, and uses no other part of it. A failure panics with fatal,
// recovered at the calls above; any other method of the (nil) embedded
// TB would panic too, loudly, were brokertest to start using it.
type runTB struct {
	testing.TB
	dir      string
	mu       sync.Mutex
	cleanups []func()
}

func (r *runTB) Helper()                         {}
func (r *runTB) Name() string                    { return "fleet" }
func (r *runTB) Log(args ...any)                 {}
func (r *runTB) Logf(format string, args ...any) {}
func (r *runTB) Fatal(args ...any)               { panic(fatal(fmt.Sprint(args...))) }
func (r *runTB) Fatalf(format string, args ...any) {
	panic(fatal(fmt.Sprintf(format, args...)))
}
func (r *runTB) Skipf(format string, args ...any) { panic(fatal(fmt.Sprintf(format, args...))) }
func (r *runTB) Errorf(format string, args ...any) {
	panic(fatal(fmt.Sprintf(format, args...)))
}

func (r *runTB) TempDir() string {
	d, err := os.MkdirTemp(r.dir, "nats-")
	if err != nil {
		r.Fatal(err)
	}
	return d
}

func (r *runTB) Cleanup(f func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.cleanups = append(r.cleanups, f)
}

func (r *runTB) cleanup() {
	r.mu.Lock()
	fs := r.cleanups
	r.cleanups = nil
	r.mu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		func() {
			defer func() { recover() }()
			fs[i]()
		}()
	}
}
