// Package redteam is the red-team corpus of the link filter: frames crafted
// with gopacket (and by hand where gopacket has no layer) that try every
// evasion of issue 11 — tunnels, covert link control, spoofed sources,
// forged TCP handshakes, fragment and extension-header tricks — each beside
// the legitimate look-alikes that must still pass.
//
// It is test support only: production code must never import it (its own
// test checks that nothing outside tests does). It imports gopacket and
// nothing of LinkGuard.
package redteam
