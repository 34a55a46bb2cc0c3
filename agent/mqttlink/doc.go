// Package mqttlink connects a device to the central broker: it keeps the
// retained state and last will, publishes telemetry and hash-chained events
// through the durable queue (agent/queue), takes signed commands and hands
// them to the registered handlers, and applies the fleet's retained policy.
//
// The topic contract it speaks is documented, with a JSON Schema per
// message, in contract/. Components never import this package: they report
// through agent/report's Events and Telemetry and take commands through
// agent/command's Registrar, which Link implements; the composition root
// (agent.Run) wires them together.
//
// It must not be imported by hal, policy, firmware or testbench-free
// production code other than the agent's composition root and commands.
package mqttlink
