// Package slot keeps LinkGuard's two installation slots (A/B) under one root
// directory and the small state file that names the active slot, a candidate
// on trial and its boot attempts. It installs a verified bundle into the
// inactive slot, commits a healthy candidate and rolls back a failed one,
// leaving a marker the agent reports once it is connected.
//
// Every state change is written atomically (write, fsync, rename, fsync dir)
// under an flock, so power loss at any instant leaves either the old or the
// new state, never a mix (hal/atomicfile). It imports only the standard
// library, firmware/bundle and hal/atomicfile; it must not import agent or MQTT.
package slot
