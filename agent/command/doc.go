// Package command verifies operator commands and dispatches them to the
// handler registered for their type.
//
// A command is a DSSE envelope (PayloadType) signed by an operator key,
// carrying a Payload: who it is for, when it was issued and expires, its type
// and arguments. Verifier refuses, each with its own Reason, a bad
// signature, an untrusted key (or a signature naming none), a wrong target,
// an expired command, one issued in the future beyond a small skew, a replay
// (ids are remembered, on disk, until they expire), and anything malformed,
// oversized (MaxMessage, also dsse's cap for commands) or too deeply nested.
// Dispatcher maps a type to a Handler; components register their handlers
// through the one-method Registrar from the composition root.
//
// It imports policy/dsse, hal/atomicfile and the standard library: no MQTT,
// so the feed controller, the packet filter and the firmware helper can
// register handlers without importing paho.
package command
