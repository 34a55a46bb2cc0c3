// Package sim runs simulated LinkGuard sites for the testbench: border
// routers and relay controllers that are agent.Run — the device's own
// composition root, on a configuration as it would sit in /etc/linkguard —
// handed simulated hardware through agent.Hardware: in-memory wires with
// synthetic traffic instead of AF_PACKET ports, and modbussim's meter and
// relay board on a pty instead of RS-485.
//
// Each agent connects to the broker through its own loopback proxy, so a
// scenario can cut an agent off the way a crash or a cable pull does (the
// broker sees the TCP connection die and publishes the agent's will).
//
// It is testbench code: production packages never import it. It imports
// agent, its config, hal and policy; never the console.
package sim
