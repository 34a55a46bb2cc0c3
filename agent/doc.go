// Package agent is LinkGuard's composition root: Run builds every part a
// device's configuration asks for — the policy store and its file watcher,
// the packet filter on routers, the feed controller on relay controllers,
// reporting and commands over MQTT — and runs them under one errgroup, so
// every goroutine has an owner and stops with the context.
//
// Only agent and its sub-packages know MQTT; hal and policy know nothing of
// it. Nothing imports agent except its commands and the testbench.
package agent
