package bypass_test

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/bypass"
	"linkguard.dev/linkguard/hal/capture"
	"linkguard.dev/linkguard/hal/capture/capturetest"
	"linkguard.dev/linkguard/hal/envtest"
)

// TestMain doubles as the helper that arms a bypass and waits to be
// killed: `ip netns exec NS <this binary>` with LG_BYPASS_HELPER set.
func TestMain(m *testing.M) {
	if os.Getenv("LG_BYPASS_HELPER") != "" {
		if _, err := bypass.Arm("lgin", "lgout"); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		fmt.Println("armed")
		select {}
	}
	os.Exit(m.Run())
}

type topo struct{ cust, lg, bord string }

func newTopo(t *testing.T) topo {
	t.Helper()
	envtest.Command(t, "ping")
	tp := topo{capturetest.Namespace(t, "lgb-c-"), capturetest.Namespace(t, "lgb-l-"), capturetest.Namespace(t, "lgb-b-")}
	for _, args := range [][]string{
		{"-n", tp.cust, "link", "add", "c0", "type", "veth", "peer", "name", "lgin", "netns", tp.lg},
		{"-n", tp.bord, "link", "add", "b0", "type", "veth", "peer", "name", "lgout", "netns", tp.lg},
		{"-n", tp.cust, "addr", "add", "10.9.0.1/24", "dev", "c0"},
		{"-n", tp.bord, "addr", "add", "10.9.0.2/24", "dev", "b0"},
		{"-n", tp.cust, "link", "set", "c0", "up"}, {"-n", tp.bord, "link", "set", "b0", "up"},
		{"-n", tp.lg, "link", "set", "lgin", "up"}, {"-n", tp.lg, "link", "set", "lgout", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	return tp
}

func (tp topo) ping() bool {
	return exec.Command("ip", "netns", "exec", tp.cust, "ping", "-c", "1", "-W", "1", "10.9.0.2").Run() == nil
}

// TestFailOpen: an armed bypass holds the link shut while its process
// lives, yet the ports' packet sockets still see every frame; when the
// process is killed (-9) the kernel drops the hold and the bridge carries
// the link; Close does the same in process; Release cuts it again and
// removes the bridge; a port in another bridge is refused both ways.
func TestFailOpen(t *testing.T) {
	tp := newTopo(t)
	if tp.ping() {
		t.Fatal("link open with nothing bridging it")
	}

	cmd := exec.Command("ip", "netns", "exec", tp.lg, os.Args[0])
	cmd.Env = append(os.Environ(), "LG_BYPASS_HELPER=1")
	cmd.Stderr = os.Stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	if sc := bufio.NewScanner(stdout); !sc.Scan() || sc.Text() != "armed" {
		t.Fatalf("helper did not arm: %q", sc.Text())
	}
	if tp.ping() {
		t.Error("link open while the hold's process lives")
	}
	// The agent's ports still see what the hold drops.
	var port *capture.Live
	capturetest.InNetns(t, tp.lg, func() {
		var err error
		if port, err = capture.OpenLive("lgin", capture.LiveOptions{PollInterval: 50 * time.Millisecond}); err != nil {
			t.Error(err)
		}
	})
	if t.Failed() {
		t.FailNow()
	}
	stop := make(chan struct{})
	pinged := make(chan struct{})
	go func() {
		defer close(pinged)
		for {
			select {
			case <-stop:
				return
			default:
				tp.ping()
			}
		}
	}()
	seen := false
	buf := make([]byte, 2048)
	for deadline := time.Now().Add(10 * time.Second); !seen && time.Now().Before(deadline); {
		if info, err := port.ReadFrame(buf); err == nil && info.CaptureLength >= 14 {
			seen = buf[12] == 0x08 && buf[13] == 0x06 || buf[12] == 0x08 && buf[13] == 0x00 // ARP or IPv4
		}
	}
	close(stop)
	<-pinged
	port.Close()
	if !seen {
		t.Error("the port's packet socket saw nothing while held")
	}

	// kill -9: the kernel lets go.
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if !waitPing(tp, true) {
		t.Fatal("link still cut after the holding process was killed: not fail-open")
	}

	capturetest.InNetns(t, tp.lg, func() {
		h, err := bypass.Arm("lgin", "lgout") // the bridge exists: re-armed
		if err != nil {
			t.Error(err)
			return
		}
		if tp.ping() {
			t.Error("link open after re-arming")
		}
		h.Close()
		if !waitPing(tp, true) {
			t.Error("link cut after Close")
		}
		if err := bypass.Release("lgin", "lgout"); err != nil {
			t.Error(err)
		}
		if _, err := os.Stat("/sys/class/net/" + bypass.BridgeName); err == nil {
			t.Error("bridge left after Release")
		}
	})
	if tp.ping() {
		t.Error("link open after Release")
	}

	// A port some other bridge holds.
	for _, args := range [][]string{{"link", "add", "other", "type", "bridge"}, {"link", "set", "lgin", "master", "other"}} {
		if out, err := exec.Command("ip", append([]string{"-n", tp.lg}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("%v %s", err, out)
		}
	}
	capturetest.InNetns(t, tp.lg, func() {
		if h, err := bypass.Arm("lgin", "lgout"); !errors.Is(err, bypass.ErrEnslaved) {
			h.Close()
			t.Errorf("Arm with a port in another bridge: %v", err)
		}
		if err := bypass.Release("lgin", "lgout"); !errors.Is(err, bypass.ErrEnslaved) {
			t.Errorf("Release with a port in another bridge: %v", err)
		}
	})
}

func waitPing(tp topo, want bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if tp.ping() == want {
			return true
		}
	}
	return false
}
