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
// DONE locks the console (console-lock.json; it survives restarts): a
// locked console answers HELLO (without the device id), STATUS (its steps
// and "locked"), DONE, LOCK and UNLOCK, and refuses everything else, RESET
// included, with the code "locked" and the ways to unlock. A session —
// the rest of one Serve call — is opened by a physical act (Presence: a
// GPIO jumper or button, PinPresence; or a file only root can create,
// FilePresence, consumed when used), or by UNLOCK with a DSSE token over
// {device, action, nonce, issued, expires} (UnlockPayloadType, at most
// 24 h) signed by the threshold of the committee keys under trust/policy;
// an "unlock" token opens the session, a "reset" one permits RESET only,
// and no nonce is accepted twice. The session closes at DONE, LOCK, when
// idle (SessionIdle), when its token expires, and when Serve returns. The
// fleet CA (CA.Sign) names a certificate after the device id it was asked
// for, never after the request's fields.
//
// It imports the standard library, firmware/update, firmware/slot,
// firmware/provision/layout, hal/atomicfile, policy/dsse (policy envelope
// shape, unlock tokens) and periph.io/x/conn/v3/gpio (the unlock pin's
// contract); it must not import agent or MQTT (the agent's config
// validation and policy threshold are handed in as functions).
package provision
