// Package crosstest proves the ARM build, not just builds it: its test
// cross-compiles linkguard and lglaunch for linux/arm (GOARM=7) with the
// release flags and runs them under qemu-arm, verifying a signed policy.
// It has no non-test code; its test imports policy only for the policy
// payload type.
package crosstest
