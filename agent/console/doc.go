// Package console is the operators' web console, served by lgctl console:
// it follows the fleet over MQTT (retained state, telemetry, events,
// command results, the retained fleet policy and roster), keeps a live
// model of it, and serves a page whose vanilla JavaScript polls a JSON API.
//
// It holds no signing key. Operators log in with their own Ed25519 key —
// made in the browser with WebCrypto, non-extractable, kept in IndexedDB,
// or a key file through Client (lgctl console sign) — by signing a
// single-use challenge bound to the console's host name; the key must be
// in the committee-signed roster, whose roles decide what the session may
// do. Sessions are short-lived HttpOnly SameSite=Strict cookies; every
// request's Host (and a POST's Origin) must name this console, and every
// POST carries the session's CSRF token.
//
// Every action is signed by the operator who takes it: a command is built
// and signed in the browser and only verified (role, threshold, validity)
// and relayed here; a policy change is a proposal (Pending) that the
// console builds from the verified fleet policy — next serial, fresh issue
// time, configured validity — and that committee members co-sign, in their
// browsers or with lgctl policy cosign, until the threshold is met and it is
// published. The fleet policy and roster are verified against the
// committee anchors before anything is shown as good or built on;
// device-reported serials are display only. Logins, proposals, signatures,
// publications, commands and devices' results go to the store (Audit:
// SQLite, or PostgreSQL shared by several consoles), which survives a
// restart and exports as CSV. The store also keeps the devices, the
// fleet's events and its telemetry as series (raw, 1-minute and 1-hour
// rollups, each with its retention), ingested idempotently, and the
// routers' remote traffic (the remotes section) for the border inventory.
//
// Operators search the stored events (by address, prefix, service,
// approval, holder, device, site, type and time, through indexed keys beside
// each event) and ask why a link is cut: the answer joins the devices'
// link.denied events with the verified fleet policy's verdict, explained by
// policy/match's Explain (the words of linkguard policy explain), and says
// which approval to extend or request.
//
// The page's first level is the sites (Sites: each site's devices' health,
// policy serials, traffic rates from the rollups, feeds against cap), then
// a site's devices (DevicesPage), both searched and paged here so that a
// fleet of thousands never goes to a browser whole. Approvals carry their
// validity window and expiry warnings (Options.ExpiryWarning); one a newer
// policy drops is kept as it was, revoked, with who signed its removal. A
// proposal needs a reason, signed as a comment line of the policy.
//
// Everything it knows of devices it reads through the wire contract alone
// (agent/mqttlink/contract); it verifies with agent/command, policy,
// policy/roster and policy/dsse, and judges flows with policy/match. It must not import the device side
// (agent, mqttlink, queue, linkfilter, feeds, policy/store) or testbench,
// which agent's layering test enforces; hal and policy never import it.
package console
