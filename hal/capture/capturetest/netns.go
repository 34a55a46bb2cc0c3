package capturetest

import (
	crand "crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"linkguard.dev/linkguard/hal/envtest"
)

// Namespace creates a network namespace with a unique name starting with
// prefix and deletes it when the test ends, pass or fail. It requires root
// and ip(8) (skipped outside CI, failed in CI when missing).
func Namespace(tb testing.TB, prefix string) string {
	tb.Helper()
	envtest.Root(tb)
	envtest.Command(tb, "ip")
	b := make([]byte, 3)
	_, _ = crand.Read(b)
	ns := prefix + hex.EncodeToString(b)
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		tb.Fatalf("ip netns add %s: %v %s", ns, err, out)
	}
	tb.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	return ns
}

// VethNamespace creates a namespace (see Namespace) holding a veth pair
// a<->b, both up.
func VethNamespace(tb testing.TB, prefix, a, b string) string {
	tb.Helper()
	ns := Namespace(tb, prefix)
	for _, args := range [][]string{
		{"link", "add", a, "type", "veth", "peer", "name", b},
		{"link", "set", a, "up"}, {"link", "set", b, "up"},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			tb.Fatalf("ip -n %s %v: %v %s", ns, args, err, out)
		}
	}
	return ns
}

// InNetns runs fn on an OS thread switched into namespace ns. Sockets
// opened in fn stay in ns whichever thread uses them later.
func InNetns(tb testing.TB, ns string, fn func()) {
	tb.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		runtime.LockOSThread()
		// The thread is unlocked only once back in its own namespace;
		// otherwise it dies with the goroutine rather than serve others
		// in the wrong one.
		self, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			tb.Error(err)
			return
		}
		defer self.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			tb.Error(err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			tb.Error(err)
			return
		}
		fn()
		if unix.Setns(int(self.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
	}()
	<-done
}
