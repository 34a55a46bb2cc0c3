// Package mqttlink connects a device to the central broker: it keeps the
// retained state and last will, publishes telemetry and hash-chained events
// through the durable queue (agent/queue), takes signed commands and hands
// them to the registered handlers, and applies the fleet's retained policy.
//
// It speaks the topic contract of package contract, whose types it
// publishes and whose schemas its tests hold it to. Components never import
// this package: they report through agent/report's Events and Telemetry and
// take commands through agent/command's Registrar, which Link implements;
// the composition root (agent.Run) wires them together. The operator side
// (console, lgctl) imports contract, never this package.
package mqttlink
