// Package mqttlink connects a device to the central broker: it keeps the
// retained state and last will, publishes telemetry and hash-chained events
// through the durable queue (agent/queue), takes signed commands (verified
// against the operator keyring and, when given, the command roster) and
// hands them to the registered handlers, and applies the fleet's retained
// policy and roster (linkguard/v1/policy, linkguard/v1/roster) to their
// stores, writing each to its file once applied.
//
// Topics, message types and telemetry sections are not defined here but in
// agent/mqttlink/contract, whose types this package publishes and whose
// JSON Schemas its tests hold it to. New checks the options and opens the
// queue; Run connects and runs the delivery, telemetry, command and policy
// loops and the connection keeper under one errgroup until its context
// ends or a loop fails, then publishes the offline state and closes the
// queue.
//
// Components never import this package: they report through agent/report's
// Events and Telemetry (AddSection) and take commands through
// agent/command's Registrar, which Link implements; the composition root
// (agent.Run) wires them together. The operator side (console, lgctl)
// imports contract, never this package, which agent's layering test
// enforces.
package mqttlink
