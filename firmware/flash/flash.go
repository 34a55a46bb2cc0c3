package flash

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/firmware/slot"
)

// Progress draws a one-line progress bar on W: bytes done of total, the
// rate (smoothed) and the time left at that rate. Update is the progress
// callback of Upload and provision.SendBundle.
type Progress struct {
	W     io.Writer
	Label string
	// Now is the clock; nil means time.Now (tests hand in a fake one).
	Now func() time.Time

	start, last, sampled time.Time
	from, lastDone       int64   // bytes done at the first call, at the last sample
	rate                 float64 // bytes per second, smoothed
	width                int     // of the last line drawn, to blank what is left of it
}

// progressTau is how fast the shown rate follows the real one: a serial
// line's rate jitters with every answer the device sends, and an ETA that
// jumps is worse than one a few seconds late.
const progressTau = 3 * time.Second

// Update redraws the bar at most every 100 ms, and always at the end.
func (p *Progress) Update(done, total int64) {
	now := p.now()
	if p.start.IsZero() {
		p.start, p.sampled, p.from, p.lastDone = now, now, done, done
	}
	if dt := now.Sub(p.sampled); dt > 0 && done > p.lastDone {
		inst := float64(done-p.lastDone) / dt.Seconds()
		if p.rate == 0 {
			p.rate = inst
		} else {
			a := float64(dt) / float64(dt+progressTau)
			p.rate += a * (inst - p.rate)
		}
		p.sampled, p.lastDone = now, done
	}
	if now.Sub(p.last) < 100*time.Millisecond && done < total && !p.last.IsZero() {
		return
	}
	p.last = now
	line := p.line(done, total, now)
	pad := max(p.width-len(line), 0)
	p.width = len(line)
	fmt.Fprintf(p.W, "\r%s%s", line, strings.Repeat(" ", pad))
	if done >= total {
		fmt.Fprintln(p.W)
	}
}

func (p *Progress) line(done, total int64, now time.Time) string {
	const width = 30
	n := int(int64(width) * min(done, total) / max(total, 1))
	s := fmt.Sprintf("%s [%s%s] %3d%% %s/%s", p.Label, strings.Repeat("#", n), strings.Repeat(" ", width-n),
		100*done/max(total, 1), byteSize(done), byteSize(total))
	if done >= total {
		el := now.Sub(p.start)
		s += " in " + clock(el)
		if el > 0 && done > p.from {
			s += ", " + byteSize(int64(float64(done-p.from)/el.Seconds())) + "/s"
		}
		return s
	}
	if p.rate <= 0 {
		return s + " --/s, time left --"
	}
	left := time.Duration(float64(total-done) / p.rate * float64(time.Second))
	return s + " " + byteSize(int64(p.rate)) + "/s, " + clock(left) + " left"
}

func (p *Progress) now() time.Time {
	if p.Now != nil {
		return p.Now()
	}
	return time.Now()
}

// byteSize writes n in binary units, three significant figures at most.
func byteSize(n int64) string {
	switch {
	case n < 1<<10:
		return fmt.Sprintf("%d B", n)
	case n < 1<<20:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	}
}

// clock writes d as 1h02m03s, 4m05s or 6s.
func clock(d time.Duration) string {
	d = d.Round(time.Second)
	h, m, sec := int(d/time.Hour), int(d/time.Minute)%60, int(d/time.Second)%60
	switch {
	case h > 0:
		return fmt.Sprintf("%dh%02dm%02ds", h, m, sec)
	case m > 0:
		return fmt.Sprintf("%dm%02ds", m, sec)
	default:
		return fmt.Sprintf("%ds", sec)
	}
}

// DialSSH connects to host (USER@HOST[:PORT]; user root and port 22 when
// left out) with the private key in identity, accepting only a host key
// listed in knownHosts.
func DialSSH(host, identity, knownHosts string) (*ssh.Client, error) {
	user, addr, ok := strings.Cut(host, "@")
	if !ok {
		user, addr = "root", host
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	keyPEM, err := os.ReadFile(identity)
	if err != nil {
		return nil, fmt.Errorf("flash: ssh identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("flash: ssh identity %s: %w", identity, err)
	}
	hostKeys, err := knownhosts.New(knownHosts)
	if err != nil {
		return nil, fmt.Errorf("flash: known hosts: %w", err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys, Timeout: 15 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("flash: ssh %s: %w", addr, err)
	}
	return c, nil
}

// run runs one remote command and returns its stdout; stderr goes to the
// error.
func run(c *ssh.Client, command string) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", fmt.Errorf("flash: ssh session: %w", err)
	}
	defer s.Close()
	var out, errb strings.Builder
	s.Stdout, s.Stderr = &out, &errb
	if err := s.Run(command); err != nil {
		return out.String(), fmt.Errorf("device: %s: %w: %s", command, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Upload sends one file with the scp sink protocol (scp -t), which both
// OpenSSH and dropbear (OpenWrt) provide.
func Upload(c *ssh.Client, local, remote string, prog func(done, total int64)) error {
	f, err := os.Open(local)
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("flash: %w", err)
	}
	s, err := c.NewSession()
	if err != nil {
		return fmt.Errorf("scp: %w", err)
	}
	defer s.Close()
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	var stderr strings.Builder
	s.Stderr = &stderr
	if err := s.Start("scp -t " + ShellQuote(remote)); err != nil {
		return fmt.Errorf("scp: %w", err)
	}
	ack := bufio.NewReader(stdout)
	expectAck := func() error {
		b, err := ack.ReadByte()
		if err != nil {
			return fmt.Errorf("scp: %w: %s", err, stderr.String())
		}
		if b != 0 {
			msg, _ := ack.ReadString('\n')
			return fmt.Errorf("scp: device refused: %s", strings.TrimSpace(msg))
		}
		return nil
	}
	if err := expectAck(); err != nil {
		return err
	}
	fmt.Fprintf(stdin, "C0644 %d %s\n", fi.Size(), path.Base(remote))
	if err := expectAck(); err != nil {
		return err
	}
	var sent int64
	buf := make([]byte, 32<<10)
	for {
		n, rerr := f.Read(buf)
		if n > 0 {
			if _, err := stdin.Write(buf[:n]); err != nil {
				return fmt.Errorf("scp: %w", err)
			}
			sent += int64(n)
			prog(sent, fi.Size())
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			return fmt.Errorf("flash: %w", rerr)
		}
	}
	stdin.Write([]byte{0})
	if err := expectAck(); err != nil {
		return err
	}
	stdin.Close()
	if err := s.Wait(); err != nil {
		return fmt.Errorf("scp: %w: %s", err, stderr.String())
	}
	return nil
}

// SSHOptions say where things are on a device reached over SSH.
type SSHOptions struct {
	RemoteDir     string        // where the bundle is uploaded
	LinkGuard     string        // the linkguard command
	Config        string        // the device's configuration file
	RestartCmd    string        // a shell command restarting the service
	HealthTimeout time.Duration // how long the candidate has to commit or roll back
}

// OverSSH uploads the bundle at bundlePath, installs it with linkguard
// update install, restarts the service into the candidate and waits for
// the outcome. Steps go to out, the upload's progress to progress.
func OverSSH(ctx context.Context, c *ssh.Client, o SSHOptions, out, progress io.Writer, bundlePath string) error {
	remote := path.Join(o.RemoteDir, filepath.Base(bundlePath))
	p := &Progress{W: progress, Label: "upload"}
	if err := Upload(c, bundlePath, remote, p.Update); err != nil {
		return err
	}
	defer run(c, "rm -f "+ShellQuote(remote))
	lg := ShellQuote(o.LinkGuard)
	cfg := " -c " + ShellQuote(o.Config)
	status := func() (slot.State, error) {
		var st slot.State
		s, err := run(c, lg+" update status"+cfg)
		if err != nil {
			return st, err
		}
		if err := json.Unmarshal([]byte(s), &st); err != nil {
			return st, fmt.Errorf("device: update status: %w", err)
		}
		return st, nil
	}
	fmt.Fprintln(out, "installing (the device verifies signature, arch, version and sha256 first)")
	res, err := run(c, lg+" update install"+cfg+" "+ShellQuote(remote))
	if err != nil {
		return err
	}
	fmt.Fprint(out, res)
	if !strings.Contains(res, "candidate") {
		return Report(out, status, "")
	}
	st, err := status()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "restarting the service into the candidate")
	if _, err := run(c, o.RestartCmd); err != nil {
		return err
	}
	return Wait(ctx, out, status, st.Candidate, o.HealthTimeout)
}

// OverSerial does what OverSSH does over the device's serial console
// (firmware/provision's protocol), whose RESTART restarts the service.
func OverSerial(ctx context.Context, c *provision.Client, healthTimeout time.Duration, out, progress io.Writer, bundlePath string) error {
	p := &Progress{W: progress, Label: "upload"}
	in, err := provision.SendBundle(ctx, c, bundlePath, p.Update)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "installed %s into slot %s (candidate %v)\n", in.Version, in.Slot, in.Candidate)
	status := func() (slot.State, error) {
		rep, err := provision.Health(ctx, c)
		if err != nil {
			return slot.State{}, err
		}
		if rep.Slots == nil {
			return slot.State{}, errors.New("flash: the device console reports no slots")
		}
		return *rep.Slots, nil
	}
	if !in.Candidate {
		return Report(out, status, "")
	}
	st, err := status()
	if err != nil {
		return err
	}
	if _, err := c.Call(ctx, "RESTART"); err != nil {
		return err
	}
	return Wait(ctx, out, status, st.Candidate, healthTimeout)
}

// ErrNoOutcome: the candidate neither committed nor rolled back in time.
var ErrNoOutcome = errors.New("the candidate neither committed nor rolled back")

// ErrRolledBack: the device went back from the candidate.
var ErrRolledBack = errors.New("the device rolled back")

// Wait polls status every 500 ms until candidate cand commits or is rolled
// back, then reports (Report). A failing status is a device restarting,
// and is polled again until timeout.
func Wait(ctx context.Context, out io.Writer, status func() (slot.State, error), cand slot.Name, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for first := true; time.Now().Before(deadline); first = false {
		if !first {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(500 * time.Millisecond):
			}
		}
		st, err := status()
		if err != nil {
			continue // the device may be restarting
		}
		if st.Candidate == "" {
			return Report(out, status, cand)
		}
		fmt.Fprintf(out, "  candidate %s (%s) on trial, attempt %d\n", cand, st.Slot(cand).Version, st.Attempts)
	}
	return fmt.Errorf("%w within %v", ErrNoOutcome, timeout)
}

// Report prints the device's slots: the active one and what it runs, and
// the previous one. With a candidate cand, a device not running it is
// ErrRolledBack, with the device's reason.
func Report(out io.Writer, status func() (slot.State, error), cand slot.Name) error {
	st, err := status()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "health report: active slot %s running %s", st.Active, st.Installed())
	if other := st.Slot(st.Active.Other()); other.Valid {
		fmt.Fprintf(out, ", previous %s in slot %s", other.Version, st.Active.Other())
	}
	fmt.Fprintln(out)
	if cand != "" && st.Active != cand {
		reason := "unknown"
		if st.Rollback != nil {
			reason = st.Rollback.Reason
		}
		return fmt.Errorf("%w from %s: %s", ErrRolledBack, st.Slot(cand).Version, reason)
	}
	if cand != "" {
		fmt.Fprintln(out, "the new version reported healthy and is committed")
	}
	return nil
}
