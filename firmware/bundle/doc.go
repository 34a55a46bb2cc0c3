// Package bundle reads and writes LinkGuard's signed firmware bundle (.lgb):
// a DSSE-signed manifest followed by its payloads, verified as a stream
// (signature, architecture, hardware, version and every payload's sha256)
// before anything on the device is touched.
//
// It imports only the standard library; signing and verification are handed in
// (policy/dsse in production). It must not import agent, hal or MQTT packages.
package bundle
