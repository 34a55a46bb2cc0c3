// Package launcher is the small, rarely-changing program the init system
// starts instead of the agent: it reads the slot state, counts the boot
// attempts of a candidate, starts the right slot's binary, and rolls a
// candidate back when it crash-loops or misses its health deadline. A bad
// binary therefore never decides whether it is rolled back.
//
// It imports only the standard library and firmware/slot; it must not import
// agent, MQTT, policy or hal: the less it links, the less it ever changes.
package launcher
