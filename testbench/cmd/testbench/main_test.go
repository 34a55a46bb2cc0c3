package main

import (
	"bufio"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDemoStopsCleanlyOnSignal: the demo stopped by SIGINT or SIGTERM exits
// 0 after shutting down, so `make demo` ended with Ctrl-C is no error.
func TestDemoStopsCleanlyOnSignal(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the demo")
	}
	bin := filepath.Join(t.TempDir(), "testbench")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			cmd := exec.Command(bin, "demo", "--dir", t.TempDir(), "--listen", "127.0.0.1:0", "--broker-listen", "127.0.0.1:0")
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			var stderr strings.Builder
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			ready := make(chan struct{})
			var out strings.Builder
			done := make(chan struct{})
			go func() {
				defer close(done)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					out.WriteString(sc.Text() + "\n")
					if strings.Contains(sc.Text(), "Ctrl-C stops.") {
						close(ready)
					}
				}
			}()
			select {
			case <-ready:
			case <-time.After(60 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("the demo did not start:\n%s", stderr.String())
			}
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			<-done
			err = cmd.Wait()
			if err != nil {
				t.Fatalf("exit after %v: %v\nstdout:\n%s\nstderr (last lines):\n%s", sig, err, out.String(), tail(stderr.String()))
			}
			if !strings.Contains(out.String(), "stopped.") {
				t.Errorf("no clean stop:\n%s", out.String())
			}
		})
	}
}

func tail(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.Join(lines[max(0, len(lines)-10):], "\n")
}
