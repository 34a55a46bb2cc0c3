// Package contract is the MQTT topic contract v1 (README.md), the one
// package the device side and the operator side share: the topics, the
// message types and the telemetry sections with their names, the broker
// URL and TLS rules both ends connect by, the event-chain audit, and a JSON
// Schema per message (Schemas), which the schema subpackage judges messages
// by. Producers fill these types and consumers decode them, so a renamed
// field or section fails to compile or fails a schema test instead of a
// console.
//
// It imports paho's client options; never the JSON Schema library (the
// schema subpackage does, so that devices, which only produce messages, do
// not carry it), nor the agent's parts (mqttlink, queue, linkfilter, feeds,
// policy/store), which convert their own state into these types.
package contract

import (
	"bytes"
	"embed"
	"encoding/json"
	"strings"
)

// Schemas holds the JSON Schema of each message kind, as NAME.schema.json
// (the Schema constants name them). The schema package judges messages by
// them; they live here, beside the types they describe.
//
//go:embed *.schema.json
var Schemas embed.FS

// Schema names, one per message kind.
const (
	SchemaState     = "state"
	SchemaTelemetry = "telemetry"
	SchemaEvent     = "event"
	SchemaResult    = "result"
	SchemaCommand   = "command"
	SchemaEnvelope  = "envelope"
	SchemaEvidence  = "evidence"
)

// SchemaFor names the schema of a message published on topic, or "" for a
// topic outside the contract.
func SchemaFor(topic string) string {
	switch {
	case topic == PolicyTopic, topic == RosterTopic:
		return SchemaEnvelope
	case strings.HasSuffix(topic, "/cmd/result"):
		return SchemaResult
	case strings.HasSuffix(topic, "/cmd"):
		return SchemaEnvelope
	case strings.HasSuffix(topic, "/state"):
		return SchemaState
	case strings.HasSuffix(topic, "/telemetry"):
		return SchemaTelemetry
	case strings.HasSuffix(topic, "/events"):
		return SchemaEvent
	case strings.HasSuffix(topic, "/evidence"):
		return SchemaEvidence
	}
	return ""
}

// Pretty indents a message for error output.
func Pretty(msg []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, msg, "", "  ") != nil {
		return string(msg)
	}
	return b.String()
}
