package envtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// SocatPair starts socat linking two raw ptys — a serial cable with both
// ends on this machine — and returns their paths. socat stops when the test
// ends. Tests use it for RS-485 buses and technician consoles.
func SocatPair(tb testing.TB) (a, b string) {
	tb.Helper()
	socat := Command(tb, "socat")
	dir := tb.TempDir()
	a, b = filepath.Join(dir, "a"), filepath.Join(dir, "b")
	cmd := exec.Command(socat, "pty,raw,echo=0,link="+a, "pty,raw,echo=0,link="+b)
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	for range 300 {
		_, ea := os.Stat(a)
		_, eb := os.Stat(b)
		if ea == nil && eb == nil {
			return a, b
		}
		time.Sleep(10 * time.Millisecond)
	}
	tb.Fatal("socat did not create the pty links within 3s")
	return "", ""
}
