// Package bundle reads and writes LinkGuard's signed firmware bundle (.lgb):
// a DSSE-signed manifest followed by its payloads, verified as a stream
// (signature, architecture, hardware, version and every payload's sha256)
// before anything on the device is touched.
//
// The manifest envelope is read within MaxEnvelope and dsse's signature cap
// before any signature is checked, so a hostile bundle costs a bounded read.
//
// It imports the standard library and policy/dsse (the envelope and its
// bounds); the keys that verify are handed in (a *dsse.Keyring in
// production). It must not import agent, hal or MQTT packages.
package bundle
