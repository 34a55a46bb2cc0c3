package main

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

	"github.com/spf13/cobra"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"linkguard.dev/linkguard/firmware/provision"
	"linkguard.dev/linkguard/firmware/slot"
)

type flashFlags struct {
	host, identity, knownHosts string
	remoteDir, remoteLG        string
	remoteConfig, restartCmd   string
	healthTimeout              time.Duration
	sf                         serialFlags
}

func newFlashCmd() *cobra.Command {
	var ff flashFlags
	cmd := &cobra.Command{
		Use:   "flash (--host USER@HOST[:PORT] | --port PORT) BUNDLE",
		Short: "Push a bundle to a device, install it, restart into it and report the device's health",
		Long: `Push a signed bundle to a device over SSH (SCP) or its serial console, run the
install (the device verifies everything first), restart the service into the
candidate and wait until it commits itself or is rolled back.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			switch {
			case ff.host != "" && ff.sf.port == "":
				return ff.viaSSH(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
			case ff.sf.port != "" && ff.host == "":
				return ff.viaSerial(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), args[0])
			default:
				return errors.New("give exactly one of --host and --port")
			}
		},
	}
	home, _ := os.UserHomeDir()
	f := cmd.Flags()
	f.StringVar(&ff.host, "host", "", "device SSH address USER@HOST[:PORT]")
	f.StringVar(&ff.identity, "identity", filepath.Join(home, ".ssh", "id_ed25519"), "SSH private key")
	f.StringVar(&ff.knownHosts, "known-hosts", filepath.Join(home, ".ssh", "known_hosts"), "known_hosts file the device's host key must be in")
	f.StringVar(&ff.remoteDir, "remote-dir", "/tmp", "where the bundle is uploaded on the device")
	f.StringVar(&ff.remoteLG, "remote-linkguard", "/usr/sbin/linkguard", "the linkguard command on the device")
	f.StringVar(&ff.remoteConfig, "remote-config", "/etc/linkguard/linkguard.yaml", "the device's configuration file")
	f.StringVar(&ff.restartCmd, "restart-cmd", "/etc/init.d/linkguard restart 2>/dev/null || systemctl restart linkguard", "how the service is restarted on the device (SSH)")
	f.DurationVar(&ff.healthTimeout, "health-timeout", 5*time.Minute, "how long to wait for the candidate to commit or roll back")
	ff.sf.register(cmd)
	return cmd
}

// progress draws a one-line progress bar.
type progress struct {
	w     io.Writer
	label string
	last  time.Time
}

func (p *progress) update(done, total int64) {
	if time.Since(p.last) < 100*time.Millisecond && done < total {
		return
	}
	p.last = time.Now()
	const width = 30
	n := int(int64(width) * done / max(total, 1))
	fmt.Fprintf(p.w, "\r%s [%s%s] %3d%% %d/%d bytes", p.label, strings.Repeat("#", n), strings.Repeat(" ", width-n), 100*done/max(total, 1), done, total)
	if done >= total {
		fmt.Fprintln(p.w)
	}
}

func (ff *flashFlags) dial() (*ssh.Client, error) {
	user, addr, ok := strings.Cut(ff.host, "@")
	if !ok {
		user, addr = "root", ff.host
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		addr = net.JoinHostPort(addr, "22")
	}
	keyPEM, err := os.ReadFile(ff.identity)
	if err != nil {
		return nil, fmt.Errorf("ssh identity: %w", err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ssh identity %s: %w", ff.identity, err)
	}
	hostKeys, err := knownhosts.New(ff.knownHosts)
	if err != nil {
		return nil, fmt.Errorf("known hosts: %w", err)
	}
	c, err := ssh.Dial("tcp", addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback: hostKeys, Timeout: 15 * time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return c, nil
}

// run runs one remote command and returns its stdout; stderr goes to the
// error.
func run1(c *ssh.Client, command string, stdin io.Reader) (string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	var out, errb strings.Builder
	s.Stdout, s.Stderr, s.Stdin = &out, &errb, stdin
	if err := s.Run(command); err != nil {
		return out.String(), fmt.Errorf("device: %s: %w: %s", command, err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// scpUpload sends one file with the scp sink protocol (scp -t), which both
// OpenSSH and dropbear (OpenWrt) provide.
func scpUpload(c *ssh.Client, local, remote string, prog func(done, total int64)) error {
	f, err := os.Open(local)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	s, err := c.NewSession()
	if err != nil {
		return err
	}
	defer s.Close()
	stdin, _ := s.StdinPipe()
	stdout, _ := s.StdoutPipe()
	var stderr strings.Builder
	s.Stderr = &stderr
	if err := s.Start("scp -t " + shellQuote(remote)); err != nil {
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
			return rerr
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

func (ff *flashFlags) viaSSH(ctx context.Context, out, errw io.Writer, bundlePath string) error {
	c, err := ff.dial()
	if err != nil {
		return err
	}
	defer c.Close()
	remote := path.Join(ff.remoteDir, filepath.Base(bundlePath))
	p := &progress{w: errw, label: "upload"}
	if err := scpUpload(c, bundlePath, remote, p.update); err != nil {
		return err
	}
	defer run1(c, "rm -f "+shellQuote(remote), nil)
	lg := shellQuote(ff.remoteLG)
	cfg := " -c " + shellQuote(ff.remoteConfig)
	fmt.Fprintln(out, "installing (the device verifies signature, arch, version and sha256 first)")
	res, err := run1(c, lg+" update install"+cfg+" "+shellQuote(remote), nil)
	if err != nil {
		return err
	}
	fmt.Fprint(out, res)
	if !strings.Contains(res, "candidate") {
		return ff.report(out, func() (slot.State, error) { return sshStatus(c, lg, cfg) }, "")
	}
	status := func() (slot.State, error) { return sshStatus(c, lg, cfg) }
	st, err := status()
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "restarting the service into the candidate")
	if _, err := run1(c, ff.restartCmd, nil); err != nil {
		return err
	}
	return ff.wait(ctx, out, status, st.Candidate)
}

func sshStatus(c *ssh.Client, lg, cfg string) (slot.State, error) {
	var st slot.State
	s, err := run1(c, lg+" update status"+cfg, nil)
	if err != nil {
		return st, err
	}
	return st, json.Unmarshal([]byte(s), &st)
}

// wait polls the device until candidate cand commits or is rolled back.
func (ff *flashFlags) wait(ctx context.Context, out io.Writer, status func() (slot.State, error), cand slot.Name) error {
	deadline := time.Now().Add(ff.healthTimeout)
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
			return ff.report(out, status, cand)
		}
		fmt.Fprintf(out, "  candidate %s (%s) on trial, attempt %d\n", cand, st.Slot(cand).Version, st.Attempts)
	}
	return fmt.Errorf("the candidate neither committed nor rolled back within %v", ff.healthTimeout)
}

func (ff *flashFlags) report(out io.Writer, status func() (slot.State, error), cand slot.Name) error {
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
		return fmt.Errorf("the device rolled back from %s: %s", st.Slot(cand).Version, reason)
	}
	if cand != "" {
		fmt.Fprintln(out, "the new version reported healthy and is committed")
	}
	return nil
}

func (ff *flashFlags) viaSerial(ctx context.Context, out, errw io.Writer, bundlePath string) error {
	port, c, err := ff.sf.open()
	if err != nil {
		return err
	}
	defer port.Close()
	p := &progress{w: errw, label: "upload"}
	in, err := provision.SendBundle(ctx, c, bundlePath, p.update)
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
			return slot.State{}, errors.New("the device console reports no slots")
		}
		return *rep.Slots, nil
	}
	if !in.Candidate {
		return ff.report(out, status, "")
	}
	st, err := status()
	if err != nil {
		return err
	}
	if _, err := c.Call(ctx, "RESTART"); err != nil {
		return err
	}
	return ff.wait(ctx, out, status, st.Candidate)
}
