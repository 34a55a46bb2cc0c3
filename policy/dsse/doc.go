// Package dsse signs and verifies LinkGuard's signed documents — policies,
// operator commands and firmware manifests — as DSSE envelopes (the Dead
// Simple Signing Envelope of in-toto and sigstore) with ed25519 keys, and
// loads the key files the tools write.
//
// The envelope type and its pre-authentication encoding (PAE) are those of
// go-securesystemslib's dsse package, written here because that package
// links golang.org/x/crypto/ssh into every device binary (a fuzz test holds
// the two equal); verification is done here too, one signature at a time,
// so that every problem (unknown key, bad signature, duplicate key,
// threshold not met) can be named on its own line. Signers
// who sign apart add their signatures to one envelope (Cosign), over its
// exact payload, and Inspect says whose signatures verified.
//
// Envelopes arrive from anyone who can write to a broker topic or a file, so
// what one may cost is bounded before its signatures mean anything:
//
//   - size: an envelope over Limits.MaxSize (default MaxEnvelopeSize, sized
//     for a national policy; commands and bundle manifests set less) is
//     refused with ErrTooLarge before it is parsed;
//   - signatures: more than Limits.MaxSignatures (default MaxSignatures) are
//     refused with ErrTooManySignatures as the parser meets the first one
//     too many, so no more than that are ever allocated;
//   - verifications: every signature must carry a keyid naming a trusted
//     key (stricter than DSSE, which lets keyid be empty: trying such a
//     signature against every key is what made one envelope cost seconds),
//     and each trusted key is tried once, on its first signature. One
//     envelope costs at most Keyring.Len() ed25519 verifications.
//
// It imports only the standard library (its tests, go-securesystemslib): no
// MQTT, no agent, nothing of the device.
package dsse
