// Package command verifies operator commands and dispatches them to the
// handler registered for their type.
//
// A command is a DSSE envelope (PayloadType) signed by one or more operator
// keys, carrying a Payload: who it is for, when it was issued and expires,
// its type and arguments. Verifier refuses, each with its own Reason, a bad
// signature, an untrusted key (or a signature naming none), a wrong target,
// an expired command, one issued in the future beyond a small skew, a replay
// (ids are remembered, on disk, until they expire), and anything malformed,
// oversized (MaxMessage, also dsse's cap for commands) or too deeply nested.
//
// Who may sign what comes from the signed roster (policy/roster): each type
// has a class of action (ClassOf) whose role must sign it, from at least the
// class's threshold of distinct operators ("role", "below-threshold").
// Handlers of commands that can be of a stricter class than their type (a
// relay.set of a protected circuit) are Gated: they Require that class
// before the command id is remembered.
//
// Dispatcher maps a type to a Handler; components register their handlers
// through the one-method Registrar from the composition root.
//
// It imports policy/dsse, policy/roster, hal/atomicfile and the standard
// library: no MQTT, so the feed controller, the packet filter and the
// firmware helper can register handlers without importing paho.
package command
