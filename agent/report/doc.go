// Package report declares how the agent's components report: the event sink
// they emit enforcement and health events into, and the telemetry sections
// they contribute to the periodic report.
//
// It is deliberately tiny and imports only the standard library, so the
// packet filter, the feed controller and the firmware helper can report
// without importing MQTT (paho), the queue or each other. The MQTT link
// (agent/mqttlink) implements these interfaces; tests use report.Recorder.
package report
