// Package bundle reads and writes LinkGuard's signed firmware bundle (.lgb):
// a DSSE-signed manifest followed by its payloads, verified as a stream
// (signature, architecture, hardware, version and every payload's sha256)
// before anything on the device is touched. A bundle carries the signatures
// of several release keys, gathered apart (Cosign), and the device requires a
// threshold of them. An older version installs only with a downgrade ticket:
// a statement of its own payload type, signed by the same threshold of
// release keys, naming the exact version and the devices (or site), and
// expiring (Ticket).
//
// The manifest envelope is read within MaxEnvelope and dsse's signature cap
// before any signature is checked, so a hostile bundle costs a bounded read.
// A payload may be stored zstd-compressed (format 2); it is decompressed
// only from chunks whose signed hashes matched, and only up to its signed
// size (compress.go).
//
// It imports the standard library, policy/dsse (the envelope and its
// bounds) and klauspost/compress/zstd; the keys that verify are handed in (a *dsse.Keyring in
// production). It must not import agent, hal or MQTT packages.
package bundle
