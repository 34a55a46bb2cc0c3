// Package update is the one path a bundle takes onto the device, whether a
// technician's file (linkguard update install) or the signed update.fetch
// MQTT command: download if needed, verify the whole bundle without writing,
// then install it into the inactive slot as the candidate.
//
// It imports the standard library and the firmware packages only; it must not
// import agent or MQTT (the MQTT side calls Fetch with typed arguments).
package update
