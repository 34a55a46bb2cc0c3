// Package testbench simulates the whole border on a desktop — routers,
// relays, meters, broker, console — for demos, training and end-to-end tests.
//
// It may import anything in the module; nothing imports it.
package testbench
