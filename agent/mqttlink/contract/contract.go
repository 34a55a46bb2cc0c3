// Package contract holds the MQTT topic contract v1 as JSON Schemas (one per
// message, see README.md) and validates messages against them. The schemas
// are the console's reference; the link's tests validate every message the
// agent really publishes against them.
//
// It imports only the JSON Schema library; no MQTT.
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
	State     = "state"
	Telemetry = "telemetry"
	Event     = "event"
	Result    = "result"
	Command   = "command"
	Envelope  = "envelope"
	Evidence  = "evidence"
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
	names := []string{State, Telemetry, Event, Result, Command, Envelope, Evidence}
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
	case topic == "linkguard/v1/policy":
		return Envelope
	case strings.HasSuffix(topic, "/cmd/result"):
		return Result
	case strings.HasSuffix(topic, "/cmd"):
		return Envelope
	case strings.HasSuffix(topic, "/state"):
		return State
	case strings.HasSuffix(topic, "/telemetry"):
		return Telemetry
	case strings.HasSuffix(topic, "/events"):
		return Event
	case strings.HasSuffix(topic, "/evidence"):
		return Evidence
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
