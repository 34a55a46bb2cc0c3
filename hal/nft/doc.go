// Package nft enforces link approvals in the kernel: it compiles a
// ruleset (domestic space, approvals with their remote prefixes, services
// and windows) into nf_tables through github.com/google/nftables, installs
// it in one transaction, swaps it atomically, reads it back and installs it
// again when anything else changed it, and bridges the two ports once a
// ruleset is in force.
//
// It takes plain inputs and imports no LinkGuard package: the agent adapts
// its verified policy (agent/linkfilter's kernel.go). What the kernel path
// sees, and what it cannot, is in SECURITY.md ("Kernel fast path").
package nft
