// Package agent is LinkGuard's composition root: Run builds every part a
// device's configuration asks for — the policy store and its file watcher,
// the packet filter on routers, the feed controller on relay controllers,
// reporting and commands over MQTT, the firmware updater, the watchdog —
// each given what it needs when it is made, and runs them under one
// errgroup, so every goroutine has an owner and stops with the context.
//
// What the device drives outside the process comes through one seam,
// Hardware: LiveHardware on a device, the testbench's in-memory wires and
// simulated Modbus devices in the demo and the scenarios, which run this
// same Run.
//
// Only agent and its sub-packages know MQTT; hal and policy know nothing of
// it. Nothing imports agent except its commands and the testbench.
package agent
