// Package store holds the policy a device enforces: it verifies a signed
// policy (trusted keys, threshold, serial newer than the current one, not
// expired, well formed), compiles it, swaps the compiled matcher in
// atomically, and persists it as the last-known-good policy so that a
// restart enforces it even if the watched file is then bad or missing.
//
// Signatures are checked by dsse within its default Limits, which are sized
// for a national policy: an envelope over dsse.MaxEnvelopeSize is refused
// before it is parsed, wherever it came from (file, MQTT, last-known-good).
//
// A rejected policy never disturbs the running one. Readers on the packet
// path load the current matcher through an atomic.Pointer; subscribers hear
// of every swap so flow caches can be re-judged.
//
// It imports policy, policy/dsse, policy/match and hal/atomicfile; nothing of
// MQTT or the agent.
package store
