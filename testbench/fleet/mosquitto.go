package fleet

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"time"
)

// StartMosquitto runs a fresh mosquitto (Debian package mosquitto) on a
// free loopback port, its configuration in dir, until stop.
func StartMosquitto(ctx context.Context, dir string) (url string, stop func(), err error) {
	bin, err := exec.LookPath("mosquitto")
	if err != nil {
		return "", nil, fmt.Errorf("fleet: %w (apt-get install mosquitto)", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	_, port, _ := net.SplitHostPort(addr)
	conf := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(conf, []byte("listener "+port+" 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\nmax_inflight_messages 64\n"), 0o644); err != nil {
		return "", nil, err
	}
	c := exec.CommandContext(ctx, bin, "-c", conf)
	c.Stderr = nil
	if err := c.Start(); err != nil {
		return "", nil, err
	}
	stop = func() { c.Process.Signal(os.Interrupt); c.Wait() }
	for range 100 {
		if cn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			cn.Close()
			return "tcp://" + addr, stop, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	stop()
	return "", nil, errors.New("fleet: mosquitto did not start")
}
