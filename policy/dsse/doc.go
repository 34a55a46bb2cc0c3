// Package dsse signs and verifies LinkGuard's signed documents — policies,
// operator commands and firmware manifests — as DSSE envelopes (the Dead
// Simple Signing Envelope of in-toto and sigstore) with ed25519 keys, and
// loads the key files the tools write.
//
// The envelope type and its pre-authentication encoding come from
// go-securesystemslib's dsse package; verification is done here, one
// signature at a time, so that every problem (unknown key, bad signature,
// duplicate key, threshold not met) can be named on its own line.
//
// It imports only the standard library and go-securesystemslib: no MQTT, no
// agent, nothing of the device.
package dsse
