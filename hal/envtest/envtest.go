// Package envtest lets tests that need real parts of the machine (root,
// network namespaces, a broker binary, qemu-user, socat) skip only outside CI.
//
// Under CI (CI=true, as .ci/run is started) a missing requirement is a test
// failure, never a silent skip: the README's test command installs everything
// the suite needs, so a gap there is a defect to see. It imports nothing of
// LinkGuard and is imported only by tests.
package envtest

import (
	"os"
	"os/exec"
	"testing"
)

// InCI reports whether the tests run under continuous integration.
func InCI() bool {
	v := os.Getenv("CI")
	return v != "" && v != "0" && v != "false"
}

// Missing stops the test because what names is not available: a skip with the
// reason outside CI, a failure under CI.
func Missing(tb testing.TB, what string) {
	tb.Helper()
	if InCI() {
		tb.Fatalf("required for this test under CI but missing: %s (make test installs it)", what)
	}
	tb.Skipf("skipping outside CI: %s is missing (run `make test` as root to install it)", what)
}

// Root requires the effective user to be root.
func Root(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		Missing(tb, "root privileges")
	}
}

// Command requires an executable on PATH and returns its path.
func Command(tb testing.TB, name string) string {
	tb.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		Missing(tb, "the command "+name)
	}
	return p
}
