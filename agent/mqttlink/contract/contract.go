// Package contract is the MQTT topic contract v1 (README.md), the one
// package the device side and the operator side share: the topics, the
// message types and the telemetry sections with their names, the broker
// URL and TLS rules both ends connect by, the event-chain audit, and a JSON
// Schema per message that Validate judges messages by. Producers fill these
// types and consumers decode them, so a renamed field or section fails to
// compile or fails a schema test instead of a console.
//
// It imports paho's client options and the JSON Schema library; never the
// agent's parts (mqttlink, queue, linkfilter, feeds, policy/store), which
// convert their own state into these types.
package contract

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

//go:embed *.schema.json
var files embed.FS

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

var (
	once     sync.Once
	schemas  map[string]*jsonschema.Schema
	buildErr error
)

func load() {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	names := []string{SchemaState, SchemaTelemetry, SchemaEvent, SchemaResult, SchemaCommand, SchemaEnvelope, SchemaEvidence}
	for _, n := range names {
		b, err := files.ReadFile(n + ".schema.json")
		if err != nil {
			buildErr = err
			return
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			buildErr = fmt.Errorf("contract: %s: %w", n, err)
			return
		}
		if err := c.AddResource(n+".schema.json", doc); err != nil {
			buildErr = fmt.Errorf("contract: %s: %w", n, err)
			return
		}
	}
	schemas = map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile(n + ".schema.json")
		if err != nil {
			buildErr = fmt.Errorf("contract: %s: %w", n, err)
			return
		}
		schemas[n] = s
	}
}

// Validate checks a message against the named schema.
func Validate(schema string, msg []byte) error {
	once.Do(load)
	if buildErr != nil {
		return buildErr
	}
	s := schemas[schema]
	if s == nil {
		return fmt.Errorf("contract: no schema %q", schema)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("contract: %s: not JSON: %w", schema, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("contract: %s: %w", schema, err)
	}
	return nil
}

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

// ValidateTopic validates a message by the topic it was published on.
func ValidateTopic(topic string, msg []byte) error {
	s := SchemaFor(topic)
	if s == "" {
		return fmt.Errorf("contract: topic %q is not in the contract", topic)
	}
	return Validate(s, msg)
}

// Pretty indents a message for error output.
func Pretty(msg []byte) string {
	var b bytes.Buffer
	if json.Indent(&b, msg, "", "  ") != nil {
		return string(msg)
	}
	return b.String()
}
