// Package relay switches circuits: the small Setter/Getter contract and its
// implementations on a GPIO line (periph.io/x/conn/v3 gpio.PinOut, with
// active-low support and readback) and on a coil of a Modbus relay board.
//
// "On" always means the circuit is energised; wiring polarity is the
// implementation's business. It must not import agent, MQTT or testbench.
package relay
