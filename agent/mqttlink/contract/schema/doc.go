// Package schema judges MQTT messages by the contract's JSON Schemas
// (contract.Schemas): the link's and the testbench's tests hold every
// message the agent publishes to them, and operator-side tools may check
// what they receive. Devices never import it: the JSON Schema library is
// about 0.8 MB of a device binary.
//
// It imports the contract and github.com/santhosh-tekuri/jsonschema only.
package schema
