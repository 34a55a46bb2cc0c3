package flash

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/hal/envtest"
)

// fakeClock is a clock the test moves.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }

func TestProgress(t *testing.T) {
	clk := &fakeClock{t: time.Date(2026, 12, 1, 10, 0, 0, 0, time.UTC)}
	var b bytes.Buffer
	p := &Progress{W: &b, Label: "upload", Now: clk.now}
	const total = 4_465_100 // a stripped mipsle bundle
	last := func() string {
		s := b.String()
		return strings.TrimRight(s[strings.LastIndex(s, "\r")+1:], " ")
	}
	p.Update(0, total)
	if got := last(); got != "upload [                              ]   0% 0 B/4.3 MiB --/s, time left --" {
		t.Errorf("start: %q", got)
	}
	// A 115200-baud console moves about 8640 bundle bytes a second (base64).
	for i := 1; i <= 10; i++ {
		clk.add(time.Second)
		p.Update(int64(i)*8640, total)
	}
	if got := last(); got != "upload [                              ]   1% 84.4 KiB/4.3 MiB 8.4 KiB/s, 8m27s left" {
		t.Errorf("steady: %q", got)
	}
	// One slow second moves the rate a little, not to a quarter.
	clk.add(time.Second)
	p.Update(10*8640+2000, total)
	if got := last(); !strings.Contains(got, " 6.8 KiB/s, 10m27s left") {
		t.Errorf("after a slow second: %q", got)
	}
	n := strings.Count(b.String(), "\r")
	clk.add(50 * time.Millisecond)
	p.Update(10*8640+2100, total) // within 100 ms of the last draw: skipped
	if strings.Count(b.String(), "\r") != n {
		t.Error("redrew within 100 ms")
	}
	clk.add(8*time.Minute + 49*time.Second)
	p.Update(total, total)
	if got := b.String(); !strings.HasSuffix(strings.TrimRight(got, " \n"), "[##############################] 100% 4.3 MiB/4.3 MiB in 9m00s, 8.1 KiB/s") ||
		!strings.HasSuffix(got, "\n") {
		t.Errorf("end: %q", got[strings.LastIndex(got, "\r"):])
	}
}

func TestProgressBlanksALongerLine(t *testing.T) {
	clk := &fakeClock{t: time.Unix(0, 0)}
	var b bytes.Buffer
	p := &Progress{W: &b, Label: "upload", Now: clk.now}
	p.Update(0, 100) // "... --/s, time left --"
	clk.add(time.Second)
	p.Update(50, 100) // "... 50 B/s, 1s left": shorter
	lines := strings.Split(b.String(), "\r")[1:]
	if len(lines[1]) < len(lines[0]) || strings.TrimRight(lines[1], " ") == lines[1] {
		t.Errorf("a shorter line is not padded over the longer one:\n%q", lines)
	}
}

func TestClockAndSize(t *testing.T) {
	for d, want := range map[time.Duration]string{0: "0s", 59499 * time.Millisecond: "59s", 61 * time.Second: "1m01s", 3723 * time.Second: "1h02m03s"} {
		if got := clock(d); got != want {
			t.Errorf("clock(%v) = %q, want %q", d, got, want)
		}
	}
	for n, want := range map[int64]string{0: "0 B", 1023: "1023 B", 1536: "1.5 KiB", 15466689: "14.8 MiB"} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// states is a device's answers to status, one a call, the last repeated.
func states(ss ...any) func() (slot.State, error) {
	return func() (slot.State, error) {
		s := ss[0]
		if len(ss) > 1 {
			ss = ss[1:]
		}
		if err, ok := s.(error); ok {
			return slot.State{}, err
		}
		return s.(slot.State), nil
	}
}

func TestWaitReport(t *testing.T) {
	trial := slot.State{Active: slot.A, Candidate: slot.B, Attempts: 1, A: slot.Info{Valid: true, Version: "1.0.0"}, B: slot.Info{Valid: true, Version: "1.1.0"}}
	committed := slot.State{Active: slot.B, A: trial.A, B: trial.B}
	rolled := slot.State{Active: slot.A, A: trial.A, B: trial.B, Rollback: &slot.Rollback{Reason: "crashed"}}
	restarting := errors.New("connection refused")
	tests := []struct {
		name    string
		status  func() (slot.State, error)
		wantErr error
		want    []string
	}{
		{"commits", states(trial, restarting, committed), nil,
			[]string{"candidate b (1.1.0) on trial, attempt 1", "active slot b running 1.1.0, previous 1.0.0 in slot a", "committed"}},
		{"rolls back", states(trial, rolled), ErrRolledBack, []string{"active slot a running 1.0.0"}},
		{"never settles", states(trial), ErrNoOutcome, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			err := Wait(context.Background(), &out, tt.status, slot.B, 1200*time.Millisecond)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Wait: %v, want %v\n%s", err, tt.wantErr, out.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
		})
	}
	if err := Report(io.Discard, states(rolled), ""); err != nil {
		t.Errorf("Report without a candidate: %v", err)
	}
}

func TestShellQuote(t *testing.T) {
	for _, s := range []string{"plain", "it's", `a "b" $c`, "'", ""} {
		out, err := exec.Command("sh", "-c", "printf %s "+ShellQuote(s)).Output()
		if err != nil || string(out) != s {
			t.Errorf("ShellQuote(%q) through sh: %q, %v", s, out, err)
		}
	}
}

// TestUploadOverSSH sends a file with scp -t to an SSH server that runs
// commands with sh, as dropbear or OpenSSH on a device would.
func TestUploadOverSSH(t *testing.T) {
	envtest.Command(t, "scp") // openssh-client: scripts/deps.sh installs it; a failure under CI
	addr, kh, id := sshServer(t)
	c, err := DialSSH("root@"+addr, id, kh)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dir := t.TempDir()
	local := filepath.Join(dir, "bundle.lgb")
	data := bytes.Repeat([]byte("linkguard"), 20000)
	os.WriteFile(local, data, 0o644)
	remote := filepath.Join(dir, "remote", "it's.lgb")
	os.Mkdir(filepath.Dir(remote), 0o755)
	var last int64
	if err := Upload(c, local, remote, func(done, total int64) { last = done }); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(remote); !bytes.Equal(got, data) || last != int64(len(data)) {
		t.Errorf("uploaded %d bytes, progress %d, want %d", len(got), last, len(data))
	}
	if err := Upload(c, local, filepath.Join(dir, "missing", "x"), func(int64, int64) {}); err == nil {
		t.Error("upload into a missing directory succeeded")
	}
	if _, err := run(c, "exit 3"); err == nil || !strings.Contains(err.Error(), "device: exit 3") {
		t.Errorf("failing command: %v", err)
	}
	if _, err := DialSSH("root@"+addr, id, filepath.Join(dir, "none")); err == nil {
		t.Error("dialled without a known_hosts file")
	}
}

// sshServer is an SSH server that runs exec requests with sh.
func sshServer(t *testing.T) (addr, knownHosts, identity string) {
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostSigner, _ := ssh.NewSignerFromKey(hostPriv)
	clientPub, clientPriv, _ := ed25519.GenerateKey(rand.Reader)
	wantPub, _ := ssh.NewPublicKey(clientPub)
	dir := t.TempDir()
	blk, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	identity = filepath.Join(dir, "id_ed25519")
	os.WriteFile(identity, pem.EncodeToMemory(blk), 0o600)
	cfg := &ssh.ServerConfig{PublicKeyCallback: func(_ ssh.ConnMetadata, k ssh.PublicKey) (*ssh.Permissions, error) {
		if bytes.Equal(k.Marshal(), wantPub.Marshal()) {
			return nil, nil
		}
		return nil, errors.New("unknown key")
	}}
	cfg.AddHostKey(hostSigner)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSH(nc, cfg)
		}
	}()
	addr = ln.Addr().String()
	knownHosts = filepath.Join(dir, "known_hosts")
	os.WriteFile(knownHosts, []byte(knownhosts.Line([]string{addr}, hostSigner.PublicKey())+"\n"), 0o644)
	return addr, knownHosts, identity
}

func serveSSH(nc net.Conn, cfg *ssh.ServerConfig) {
	_, chans, reqs, err := ssh.NewServerConn(nc, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nch := range chans {
		ch, reqs, err := nch.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer ch.Close()
			for req := range reqs {
				if req.Type != "exec" {
					req.Reply(false, nil)
					continue
				}
				var p struct{ Cmd string }
				ssh.Unmarshal(req.Payload, &p)
				req.Reply(true, nil)
				cmd := exec.Command("sh", "-c", p.Cmd)
				cmd.Stdout, cmd.Stderr = ch, ch.Stderr()
				stdin, _ := cmd.StdinPipe()
				go func() { io.Copy(stdin, ch); stdin.Close() }()
				code := 0
				if err := cmd.Run(); err != nil {
					code = 1
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						code = ee.ExitCode()
					}
				}
				ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(code)}))
				return
			}
		}()
	}
}
