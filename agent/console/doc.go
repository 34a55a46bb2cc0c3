// Package console is the central operator's web console: it follows the
// fleet over MQTT (retained state, telemetry, events, command results and
// the retained fleet policy), keeps a live model of it, serves a
// server-rendered page with a little vanilla JavaScript that polls a JSON
// API, and carries out the operator's actions — revoke or approve a link
// (a new policy signed with the committee keys it was given), set or clear
// a throttle, rebirth — signed here with the operator's key, which never
// reaches the browser.
//
// It speaks the topic contract (agent/mqttlink/contract: topics, messages,
// telemetry sections) and signs with agent/command and policy/dsse. It must
// not import the device side (mqttlink, queue, linkfilter, feeds,
// policy/store) or testbench, which agent's layering test enforces; hal and
// policy never import it.
package console
