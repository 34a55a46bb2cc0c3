// Package modbussim simulates the devices of a power feed on a Modbus RTU
// line: an SDM630-style three-phase meter and a coil relay board, served by
// modbus.Server over a real pty pair, so the code under test talks to them
// through the same serial code it uses on hardware. Its load model responds
// to the relays: each circuit draws a configurable, noisy load while on.
// Junk bytes, corrupted CRCs, unanswered requests and a vanished meter can be
// injected.
//
// It is a library for tests and the testbench; production code never
// imports it. It imports hal/modbus, periph.io/x/conn/v3/physic and the standard library; never
// agent, MQTT or testbench.
package modbussim
