// Package meter reads electricity meters: the Snapshot contract (typed
// units, a timestamp and a quality) and Modbus meters described as data, one
// register map per model (Eastron SDM120 and SDM630, or a generic map from
// the configuration with a configurable word order).
//
// It imports hal/modbus only through a small register-reading interface and
// must not import agent, MQTT or testbench.
package meter
