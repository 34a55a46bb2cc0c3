// Package store holds the policy a device enforces: it verifies a signed
// policy (trusted keys, threshold, serial newer than the current one, not
// expired, well formed), compiles it, swaps the compiled matcher in
// atomically, and persists it as the last-known-good policy so that a
// restart enforces it even if the watched file is then bad or missing.
//
// Who may sign is a Trust: the committee keys the device was provisioned
// with (Options.Trust, its anchors, under Options.Threshold), or what
// Options.TrustFrom says at each verification — on the device, the anchors
// together with the committee members of the roster in force, under the
// higher of the two thresholds. A roster adds signers and may raise the
// threshold; it never removes an anchor nor lowers the threshold (the
// anchors sign the rosters: SECURITY.md says why they stay). A member a
// later roster drops stops counting once that roster is in force. Apply,
// Restore and TrustChanged verify against the same Trust, so the
// last-known-good policy is restored once the roster is (the agent restores
// the roster first). The last policy refused for too few trusted signers is
// kept and tried again by TrustChanged: it may arrive before the roster
// that names its signers.
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
// MQTT, the agent or the roster (the agent turns a roster into a Trust).
package store
