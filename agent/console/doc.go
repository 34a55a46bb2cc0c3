// Package console is the central operator's web console, served by lgctl
// console: it follows the fleet over MQTT (retained state, telemetry,
// events, command results and the retained fleet policy), keeps a live
// model of it, serves a server-rendered page whose vanilla JavaScript
// polls a JSON API (/api/state, /api/events), and carries out the
// operator's actions (POST /api/action): revoke or approve a link (a new
// policy, edited from the retained one and signed with the committee keys
// it was given), set or clear a throttle, rebirth — commands signed here
// with the operator's key, which never reaches the browser.
//
// Everything it knows of devices it reads through the wire contract alone
// (agent/mqttlink/contract: topics, messages, telemetry sections); it signs
// with agent/command and policy/dsse and reads policies with policy. It
// must not import the device side (agent, mqttlink, queue, linkfilter,
// feeds, policy/store) or testbench, which agent's layering test enforces;
// hal and policy never import it.
package console
