// Package policy defines LinkGuard's link-approval policy (format v1): its
// types, and a strict parser that validates a YAML payload and names the line
// and field of every problem.
//
// Signing lives in policy/dsse, compiling into a matcher in policy/match,
// holding the current policy in policy/store and watching files in
// policy/watch. This package and those below it know nothing of MQTT, the
// agent or the testbench.
package policy
