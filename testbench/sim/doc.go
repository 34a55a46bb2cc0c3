// Package sim runs simulated LinkGuard sites for the testbench: border
// routers and relay controllers whose agents are built from the agent's real
// parts (policy store and file watcher, mqttlink with its durable queue and
// signed command intake, the linkfilter classifier, the feed controller over
// simulated Modbus devices on ptys) around simulated hardware: synthetic
// traffic on in-memory wires instead of AF_PACKET ports, and modbussim's
// meter and relay board instead of RS-485.
//
// Each agent connects to the broker through its own loopback proxy, so a
// scenario can cut an agent off the way a crash or a cable pull does (the
// broker sees the TCP connection die and publishes the agent's will).
//
// It is testbench code: production packages never import it. It imports
// agent components, hal and policy; never the console.
package sim
