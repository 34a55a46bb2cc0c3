// Package natsfleet starts a 3-node NATS Server cluster for a testbench
// fleet run (testbench fleet --nats) and fills the run's broker options:
// node URLs, TLS identities, each device's certificate, a node to kill.
//
// It is apart from testbench/fleet, which is operator side and knows
// devices only through the topic contract, because it reuses the test
// suite's broker helpers (agent/mqttlink/brokertest).
package natsfleet
