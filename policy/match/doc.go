// Package match compiles a validated policy into an immutable matcher that
// answers, for one flow, whether it is domestic, approved (and by which
// approval), denied or monitored — and why.
//
// Compilation does the expensive work once, off the packet path: remote
// prefixes of every approval go into one longest-prefix-match table
// (github.com/gaissmai/bart; chosen over a hand-written trie: 0 allocs per
// lookup and well-kept); each entry lists the approvals that name that
// prefix and links to its nearest listed supernet, so one lookup and a short
// walk up the chain find every candidate, most specific first.
// Decide allocates nothing on 64-bit targets (BenchmarkMatch); on 32-bit ARM
// and MIPS bart's lookups let a 4- or 16-byte address slice escape, so Decide
// makes up to three small allocations there — paid once per new flow, since
// the packet path caches verdicts per flow. A Matcher is never modified after Compile, so the
// packet path can load it through an atomic.Pointer and swap it whole.
//
// Explain answers the operator's question about one flow — the decision and
// every approval naming its remote end, with the conditions it fails — for
// linkguard policy explain and the console alike, off the packet path.
//
// It imports policy and bart only: nothing of MQTT, the agent or capture.
package match
