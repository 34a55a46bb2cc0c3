// Package update is the one path a bundle takes onto the device, whether a
// technician's file (linkguard update install) or the signed update.fetch
// MQTT command: download if needed, verify the whole bundle without writing,
// then install it into the inactive slot as the candidate. A compressed
// payload is decompressed as it streams into the slot, from chunks already
// checked against the signed manifest and never past its signed size
// (firmware/bundle); a failure leaves the slot unmarked.
//
// It imports the standard library and the firmware packages only; it must not
// import agent or MQTT (the MQTT side calls Fetch with typed arguments).
package update
