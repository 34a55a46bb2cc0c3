// Package provision is the line protocol between a technician's laptop (lgctl
// provision, lgctl flash --port) and a device's provisioning console
// (linkguard provision-console) over a serial cable: one request or reply per
// line, each ending in a CRC-32 checksum, with binary content in base64.
//
// The device sets its identity, creates its key itself and answers with a
// certificate signing request (the key never leaves the device), installs the
// signed certificate, trust keys and configuration, and accepts a bundle in
// resumable chunks. Every step is idempotent, so an interrupted session is
// simply run again.
//
// The console keeps what it installs in the device layout under its
// directory (package layout: tls/, trust/policy/, trust/release/,
// operators/, policy/, linkguard.yaml); the names on the wire stay those
// of protocol 1 (ca.crt, config.yaml, trust/NAME.pub, ...).
//
// It imports the standard library, firmware/update, firmware/slot,
// firmware/provision/layout, hal/atomicfile and policy/dsse (to check a
// policy envelope's shape); it must not import agent or MQTT (the agent's
// config validation is handed in as a function).
package provision
