// Package fetch downloads an update over HTTP(S) for the signed update.fetch
// command: resumable (Range), capped in size, and checked against the sha256
// the signed command names before the file is handed on.
//
// It imports only the standard library and hal/atomicfile; it must not import
// agent or MQTT.
package fetch
