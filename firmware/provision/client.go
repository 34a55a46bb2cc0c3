package provision

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// RemoteError is an ERR reply from the device.
type RemoteError struct {
	Code    string
	Message string
}

func (e *RemoteError) Error() string {
	return fmt.Sprintf("provision: device refused: %s: %s", e.Code, e.Message)
}

// Is makes a refusal with the code "locked" ErrLocked.
func (e *RemoteError) Is(target error) bool { return target == ErrLocked && e.Code == "locked" }

// ErrTimeout: the device did not answer in time, after the retries.
var ErrTimeout = errors.New("provision: no answer from the device")

// Client is the technician's side of the protocol.
type Client struct {
	w       io.Writer
	lines   chan []string
	readErr chan error
	seq     int
	Timeout time.Duration // per attempt; default 5 s
	Retries int           // resends after a timeout or a checksum error; default 3
}

// NewClient starts reading replies from rw. The reader stops when rw's Read
// fails (close rw to stop it).
func NewClient(rw io.ReadWriter) *Client {
	c := &Client{w: rw, lines: make(chan []string, 16), readErr: make(chan error, 1), Timeout: 5 * time.Second, Retries: 3}
	go func() {
		lr := newLineReader(rw)
		for {
			line, err := lr.next()
			if errors.Is(err, ErrLine) {
				continue
			}
			if err != nil {
				c.readErr <- err
				close(c.lines)
				return
			}
			f, err := Parse(line)
			if err != nil || len(f) < 2 {
				c.lines <- []string{"-", "ERR", "checksum"}
				continue
			}
			c.lines <- f
		}
	}()
	return c
}

// Call sends one request and returns the fields after OK. Requests are
// idempotent on the device, so a timeout or a garbled line is answered by
// sending it again.
func (c *Client) Call(ctx context.Context, verb string, args ...string) ([]string, error) {
	var lastErr error
	for attempt := 0; attempt <= c.Retries; attempt++ {
		c.seq++
		seq := strconv.Itoa(c.seq)
		if _, err := c.w.Write(Format(append([]string{seq, verb}, args...)...)); err != nil {
			return nil, fmt.Errorf("provision: write: %w", err)
		}
		timer := time.NewTimer(c.Timeout)
	wait:
		for {
			select {
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			case <-timer.C:
				lastErr = fmt.Errorf("%w: %s (%v)", ErrTimeout, verb, c.Timeout)
				break wait
			case f, ok := <-c.lines:
				if !ok {
					timer.Stop()
					return nil, fmt.Errorf("provision: connection closed: %w", <-c.readErr)
				}
				if f[0] == "-" && f[1] == "ERR" { // a garbled line, ours or theirs
					lastErr = fmt.Errorf("provision: %s: %w", verb, ErrChecksum)
					timer.Stop()
					break wait
				}
				if f[0] != seq {
					continue // a late answer to an earlier attempt
				}
				timer.Stop()
				if f[1] == "OK" {
					return f[2:], nil
				}
				re := &RemoteError{Code: "?"}
				if len(f) > 2 {
					re.Code, re.Message = f[2], strings.Join(f[3:], " ")
				}
				return nil, re
			}
		}
	}
	return nil, lastErr
}

// Plan is what provisioning installs on a device.
type Plan struct {
	Identity Identity
	// SignCSR turns the device's certificate request into a certificate
	// (DER), after checking it names the device.
	SignCSR func(*x509.CertificateRequest) ([]byte, error)
	CA      []byte            // PEM, the broker's CA
	Keys    map[string][]byte // "trust/NAME.pub", "release/NAME.pub", "operators/NAME.pub" -> PEM
	Config  []byte            // the device's configuration
	Policy  []byte            // the signed policy; nil: none sent
	// UnlockToken, if set, is a committee-signed unlock token (an
	// envelope) sent with UNLOCK after HELLO, for a device whose console
	// is locked. DONE locks it again.
	UnlockToken []byte
	// Progress, if set, is told each step as it starts.
	Progress func(step string)
}

// Provision runs every step of p on the device, skipping the certificate
// when the device already holds one for its key. Running it again after an
// interruption, or on a provisioned device, is safe.
func Provision(ctx context.Context, c *Client, p Plan) ([]string, error) {
	step := func(s string) {
		if p.Progress != nil {
			p.Progress(s)
		}
	}
	step("hello")
	if _, err := c.Call(ctx, "HELLO"); err != nil {
		return nil, err
	}
	if p.UnlockToken != nil {
		step("unlock")
		if _, err := Unlock(ctx, c, p.UnlockToken); err != nil {
			return nil, err
		}
	}
	step("identity")
	if _, err := c.Call(ctx, "IDENTITY", p.Identity.DeviceID, p.Identity.Site, p.Identity.Broker); err != nil {
		return nil, err
	}
	st, err := c.Call(ctx, "STATUS")
	if err != nil {
		return nil, err
	}
	if !slices.Contains(st, "cert") {
		step("keygen")
		r, err := c.Call(ctx, "KEYGEN")
		if err != nil {
			return nil, err
		}
		if len(r) != 2 || r[0] != "CSR" {
			return nil, fmt.Errorf("provision: unexpected KEYGEN answer %q", r)
		}
		der, err := base64.StdEncoding.DecodeString(r[1])
		if err != nil {
			return nil, fmt.Errorf("provision: CSR: %w", err)
		}
		csr, err := x509.ParseCertificateRequest(der)
		if err != nil {
			return nil, fmt.Errorf("provision: CSR: %w", err)
		}
		if err := csr.CheckSignature(); err != nil {
			return nil, fmt.Errorf("provision: CSR: %w", err)
		}
		if csr.Subject.CommonName != p.Identity.DeviceID {
			return nil, fmt.Errorf("provision: CSR names %q, want %q", csr.Subject.CommonName, p.Identity.DeviceID)
		}
		step("sign")
		cert, err := p.SignCSR(csr)
		if err != nil {
			return nil, fmt.Errorf("provision: sign: %w", err)
		}
		step("cert")
		if _, err := c.Call(ctx, "CERT", base64.StdEncoding.EncodeToString(cert)); err != nil {
			return nil, err
		}
	}
	files := map[string][]byte{CAName: p.CA, ConfigName: p.Config, PolicyName: p.Policy}
	for k, v := range p.Keys {
		files[k] = v
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if files[n] == nil {
			continue
		}
		step(n)
		if len(files[n]) > ChunkSize {
			return nil, fmt.Errorf("provision: %s: larger than %d bytes", n, ChunkSize)
		}
		if _, err := c.Call(ctx, "FILE", n, base64.StdEncoding.EncodeToString(files[n])); err != nil {
			return nil, err
		}
	}
	step("done")
	if _, err := c.Call(ctx, "DONE"); err != nil {
		return nil, err
	}
	st, err = c.Call(ctx, "STATUS")
	if err != nil {
		return nil, err
	}
	return st[1:], nil
}

// Unlock sends UNLOCK with a committee-signed unlock token (the envelope,
// as lgctl provision unlock-token writes it) and returns the device's
// answer: "UNLOCKED", the action and its expiry, or "UNLOCK not-locked"
// from a console that is not locked. A console older than protocol 2
// does not know UNLOCK, and is not locked either.
func Unlock(ctx context.Context, c *Client, envelope []byte) ([]string, error) {
	if len(envelope) > UnlockLimits.MaxSize {
		return nil, fmt.Errorf("provision: unlock token: %d bytes, more than %d", len(envelope), UnlockLimits.MaxSize)
	}
	r, err := c.Call(ctx, "UNLOCK", base64.StdEncoding.EncodeToString(envelope))
	var re *RemoteError
	if errors.As(err, &re) && re.Code == "verb" {
		return []string{"UNLOCK", "not-locked"}, nil
	}
	return r, err
}

// Installed is the device's answer to a bundle install.
type Installed struct {
	Version   string
	Slot      string
	Candidate bool
}

// SendBundle transfers the bundle at path in chunks, resuming where an
// earlier transfer of the same file stopped, and has the device install it.
// progress is told the bytes acknowledged so far.
func SendBundle(ctx context.Context, c *Client, path string, progress func(done, total int64)) (Installed, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return Installed{}, fmt.Errorf("provision: %w", err)
	}
	sum := sha256.Sum256(data)
	hexSum := hex.EncodeToString(sum[:])
	r, err := c.Call(ctx, "BUNDLE-BEGIN", strconv.Itoa(len(data)), hexSum)
	if err != nil {
		return Installed{}, err
	}
	off, err := offset(r)
	if err != nil {
		return Installed{}, err
	}
	for off < int64(len(data)) {
		if progress != nil {
			progress(off, int64(len(data)))
		}
		end := min(off+ChunkSize, int64(len(data)))
		r, err := c.Call(ctx, "BUNDLE-DATA", strconv.FormatInt(off, 10), base64.StdEncoding.EncodeToString(data[off:end]))
		if err != nil {
			return Installed{}, err
		}
		if off, err = offset(r); err != nil {
			return Installed{}, err
		}
	}
	if progress != nil {
		progress(off, int64(len(data)))
	}
	r, err = c.Call(ctx, "BUNDLE-END", hexSum)
	if err != nil {
		return Installed{}, err
	}
	if len(r) != 4 || r[0] != "INSTALLED" {
		return Installed{}, fmt.Errorf("provision: unexpected answer %q", r)
	}
	return Installed{Version: r[1], Slot: r[2], Candidate: r[3] == "candidate=true"}, nil
}

func offset(r []string) (int64, error) {
	if len(r) != 2 || r[0] != "OFFSET" {
		return 0, fmt.Errorf("provision: unexpected answer %q", r)
	}
	return strconv.ParseInt(r[1], 10, 64)
}

// Health asks the device for its health report.
func Health(ctx context.Context, c *Client) (HealthReport, error) {
	var rep HealthReport
	r, err := c.Call(ctx, "HEALTH")
	if err != nil {
		return rep, err
	}
	if len(r) != 2 {
		return rep, fmt.Errorf("provision: unexpected answer %q", r)
	}
	b, err := base64.StdEncoding.DecodeString(r[1])
	if err != nil {
		return rep, fmt.Errorf("provision: health: %w", err)
	}
	err = json.Unmarshal(b, &rep)
	return rep, err
}
