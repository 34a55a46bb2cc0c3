// Package roster defines the signed roster of people a device takes orders
// from: operators with their ed25519 keys and roles (committee, grid,
// technician, release, viewer), and the number of signatures each class of
// action needs. It parses a roster strictly (YAML, naming the line and field
// of every problem), verifies one against the committee keys the device was
// provisioned with, and holds the roster in force in a Store with the
// policy's rules: serial strictly increasing, refused when expired or issued
// in the future, last-known-good persisted and restored.
//
// Thresholds are the roster's, raised to the device configuration's floor,
// and never below MinProtected grid signatures for a protected circuit.
//
// It imports policy/dsse, policy/yamlpos and hal/atomicfile; nothing of MQTT
// or the agent.
package roster
