package schema

import (
	"bytes"
	"fmt"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// names are the contract's schemas, compiled together because they refer
// to each other (a command inside an envelope).
var names = []string{contract.SchemaState, contract.SchemaTelemetry, contract.SchemaEvent,
	contract.SchemaResult, contract.SchemaCommand, contract.SchemaEnvelope, contract.SchemaEvidence}

var compiled = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	c.AssertContent()
	for _, n := range names {
		b, err := contract.Schemas.ReadFile(n + ".schema.json")
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
		if err := c.AddResource(n+".schema.json", doc); err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
	}
	out := map[string]*jsonschema.Schema{}
	for _, n := range names {
		s, err := c.Compile(n + ".schema.json")
		if err != nil {
			return nil, fmt.Errorf("schema: %s: %w", n, err)
		}
		out[n] = s
	}
	return out, nil
})

// Validate checks a message against the named schema (a contract.Schema*
// constant).
func Validate(name string, msg []byte) error {
	schemas, err := compiled()
	if err != nil {
		return err
	}
	s := schemas[name]
	if s == nil {
		return fmt.Errorf("schema: no schema %q", name)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(msg))
	if err != nil {
		return fmt.Errorf("schema: %s: not JSON: %w", name, err)
	}
	if err := s.Validate(doc); err != nil {
		return fmt.Errorf("schema: %s: %w", name, err)
	}
	return nil
}

// ValidateTopic validates a message by the topic it was published on.
func ValidateTopic(topic string, msg []byte) error {
	s := contract.SchemaFor(topic)
	if s == "" {
		return fmt.Errorf("schema: topic %q is not in the contract", topic)
	}
	return Validate(s, msg)
}
