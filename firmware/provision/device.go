package provision

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/firmware/provision/layout"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/hal/atomicfile"
	"linkguard.dev/linkguard/policy/dsse"
)

// Files the console writes under its directory, at their places in the
// device layout (package layout).
const (
	IdentityFile = layout.Identity
	KeyFile      = layout.Key
	CertFile     = layout.Cert
	CAFile       = layout.CA
	ConfigFile   = layout.Config
	PolicyFile   = layout.Policy
	DoneFile     = layout.Done
)

// Names a FILE request gives the files it installs. The protocol keeps
// them as they were; the console puts each at its place in the layout
// (installPath).
const (
	CAName     = "ca.crt"             // -> CAFile
	ConfigName = "config.yaml"        // -> ConfigFile
	PolicyName = "policy.signed.json" // -> PolicyFile
	// "trust/NAME.pub" -> trust/policy/, "release/NAME.pub" ->
	// trust/release/, "operators/NAME.pub" -> operators/.
)

// installPath is where the console keeps a file FILE names (already
// matched against fileRE), relative to its directory.
func installPath(name string) string {
	switch name {
	case CAName:
		return CAFile
	case ConfigName:
		return ConfigFile
	case PolicyName:
		return PolicyFile
	}
	dir, file, _ := strings.Cut(name, "/")
	return path.Join(map[string]string{"trust": layout.PolicyTrust, "release": layout.ReleaseTrust, "operators": layout.Operators}[dir], file)
}

// Identity is who the device is.
type Identity struct {
	DeviceID string `json:"device_id"`
	Site     string `json:"site"`
	Broker   string `json:"broker"`
}

var (
	idRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$`)
	fileRE = regexp.MustCompile(`^(ca\.crt|config\.yaml|policy\.signed\.json|(trust|release|operators)/[a-z0-9][a-z0-9._-]{0,62}\.pub)$`)
)

// Console is the device side of the protocol.
type Console struct {
	Dir string // where identity, key, certificate, trust keys and config go

	// Installer installs bundles sent with BUNDLE-*; nil refuses them.
	Installer *update.Installer
	// ValidateConfig checks a configuration before it is installed (the
	// agent's strict config parser and an identity match); nil accepts any.
	ValidateConfig func(data []byte, id Identity) error
	// Restart restarts the agent service (to try a new candidate); nil
	// refuses RESTART.
	Restart func() error
	Logger  *slog.Logger

	// Physical are the physical acts that open a locked console for a
	// session (PinPresence, FilePresence); none: only a token does.
	Physical []Presence
	// UnlockThreshold, when above 0, is how many distinct committee keys
	// (trust/policy) must sign an unlock token. Otherwise PolicyThreshold
	// reads it from the installed configuration (the agent's
	// policy.threshold); without either, or when that fails, it is 2 when
	// the device has two committee keys or more, else 1.
	UnlockThreshold int
	PolicyThreshold func(config []byte) (int, error)
	// SessionIdle closes an unlocked session after this long without a
	// request; 0 means DefaultSessionIdle.
	SessionIdle time.Duration
	// Now is the clock tokens and sessions are judged by; nil: time.Now.
	Now func() time.Time

	mu sync.Mutex // LockFile's read-modify-write
}

func (c *Console) log() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

type remoteErr struct{ code, msg string }

func (e *remoteErr) Error() string { return e.code + ": " + e.msg }

func fail(code, format string, a ...any) error {
	return &remoteErr{code, fmt.Sprintf(format, a...)}
}

// Serve answers requests read from rw until it reads EOF, QUIT, or ctx ends
// (the caller closes rw to interrupt a blocked read). Each call is one
// session: on a locked console it starts locked.
func (c *Console) Serve(ctx context.Context, rw io.ReadWriter) error {
	log := c.log()
	var s session
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("provision: %w", err)
	}
	lr := newLineReader(rw)
	for ctx.Err() == nil {
		line, err := lr.next()
		if err == io.EOF || errors.Is(err, os.ErrClosed) {
			return nil
		}
		if err != nil && !errors.Is(err, ErrLine) {
			return fmt.Errorf("provision: read: %w", err)
		}
		var fields []string
		if err == nil {
			fields, err = Parse(line)
		}
		if err != nil || len(fields) < 2 {
			code := "line"
			if errors.Is(err, ErrChecksum) {
				code = "checksum"
			}
			log.Warn("bad request line", "err", err)
			if _, err := rw.Write(Format("-", "ERR", code, "resend")); err != nil {
				return fmt.Errorf("provision: write: %w", err)
			}
			continue
		}
		seq, verb, args := fields[0], fields[1], fields[2:]
		if verb == "QUIT" {
			_, err := rw.Write(Format(seq, "OK", "BYE"))
			return err
		}
		now := c.now()
		if why := s.expire(now, c.idle()); why != "" {
			log.Warn("console locked again", "why", why)
		}
		s.last = now
		reply, err := c.handle(verb, args, &s)
		var out []byte
		if err != nil {
			var re *remoteErr
			if !errors.As(err, &re) {
				re = &remoteErr{"failed", err.Error()}
			}
			log.Warn("request failed", "verb", verb, "code", re.code, "err", re.msg)
			out = Format(append([]string{seq, "ERR", re.code}, strings.Fields(printable(re.msg))...)...)
		} else {
			log.Info("request done", "verb", verb)
			out = Format(append([]string{seq, "OK"}, reply...)...)
		}
		if _, err := rw.Write(out); err != nil {
			return fmt.Errorf("provision: write: %w", err)
		}
	}
	return ctx.Err()
}

// printable replaces what a line may not carry (Parse refuses it).
func printable(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r > 0x7e {
			return '?'
		}
		return r
	}, s)
}

func (c *Console) path(name string) string { return filepath.Join(c.Dir, filepath.FromSlash(name)) }

// write replaces a file under the console's directory, making its
// directory (tls/, trust/policy/, ...) as needed.
func (c *Console) write(name string, data []byte, mode os.FileMode) error {
	p := c.path(name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return atomicfile.Write(p, data, mode)
}

// Proto is the protocol version HELLO announces: 2 adds the lock (LOCK,
// UNLOCK, the code "locked").
const Proto = 2

func (c *Console) handle(verb string, args []string, s *session) ([]string, error) {
	nargs := map[string]int{"HELLO": 0, "STATUS": 0, "IDENTITY": 3, "KEYGEN": 0, "CERT": 1, "FILE": 2, "DONE": 0,
		"RESET": 1, "BUNDLE-BEGIN": 2, "BUNDLE-DATA": 2, "BUNDLE-END": 1, "HEALTH": 0, "RESTART": 0, "LOCK": 0, "UNLOCK": 1}
	n, ok := nargs[verb]
	if !ok {
		return nil, fail("verb", "unknown request %q", verb)
	}
	if len(args) != n && (verb != "UNLOCK" || len(args) != 0) {
		return nil, fail("args", "%s takes %d arguments, got %d", verb, n, len(args))
	}
	if err := c.gate(verb, s); err != nil {
		return nil, err
	}
	switch verb {
	case "HELLO":
		// A locked console does not say who it is to whoever is on the
		// line; the technician knows the id from the device's label.
		if c.locked() && s.access == closed {
			return []string{"HELLO", "proto=" + strconv.Itoa(Proto), "locked"}, nil
		}
		id, _ := c.identity()
		dev := "-"
		if id != nil {
			dev = id.DeviceID
		}
		return []string{"HELLO", "proto=" + strconv.Itoa(Proto), "device=" + dev}, nil
	case "STATUS":
		return c.status(s), nil
	case "LOCK":
		s.close()
		if c.locked() {
			return []string{"LOCKED"}, nil
		}
		return []string{"LOCK", "not-locked"}, nil
	case "UNLOCK":
		return c.unlock(args, s)
	case "IDENTITY":
		return c.setIdentity(Identity{DeviceID: args[0], Site: args[1], Broker: args[2]})
	case "KEYGEN":
		return c.keygen()
	case "CERT":
		return c.cert(args[0])
	case "FILE":
		return c.file(args[0], args[1])
	case "DONE":
		return c.done(s)
	case "RESET":
		return c.reset(args[0], s)
	case "BUNDLE-BEGIN":
		return c.bundleBegin(args[0], args[1])
	case "BUNDLE-DATA":
		return c.bundleData(args[0], args[1])
	case "BUNDLE-END":
		return c.bundleEnd(args[0])
	case "HEALTH":
		return c.health()
	case "RESTART":
		if c.Restart == nil {
			return nil, fail("unsupported", "this console cannot restart the agent")
		}
		if err := c.Restart(); err != nil {
			return nil, fail("restart", "%v", err)
		}
		return []string{"RESTARTED"}, nil
	}
	return nil, fail("verb", "unhandled %q", verb)
}

func (c *Console) identity() (*Identity, error) {
	b, err := os.ReadFile(c.path(IdentityFile))
	if err != nil {
		return nil, err
	}
	var id Identity
	if err := json.Unmarshal(b, &id); err != nil {
		return nil, err
	}
	return &id, nil
}

func exists(p string) bool { _, err := os.Stat(p); return err == nil }

// status lists the steps done: identity, key, cert, ca, config, done,
// trust; then, on a locked console, "locked" or (in a session a physical
// act or a token opened) "unlocked".
func (c *Console) status(s *session) []string {
	out := c.steps()
	if c.locked() {
		if s.access == open {
			out = append(out, "unlocked")
		} else {
			out = append(out, "locked")
		}
	}
	return out
}

// steps lists the steps done.
func (c *Console) steps() []string {
	out := []string{"STATUS"}
	for _, s := range []struct{ name, file string }{
		{"identity", IdentityFile}, {"key", KeyFile}, {"cert", CertFile}, {"ca", CAFile}, {"config", ConfigFile}, {"done", DoneFile},
	} {
		if exists(c.path(s.file)) {
			out = append(out, s.name)
		}
	}
	if m, _ := filepath.Glob(c.path(layout.PolicyTrust + "/*.pub")); len(m) > 0 {
		out = append(out, "trust")
	}
	return out
}

func (c *Console) setIdentity(id Identity) ([]string, error) {
	if !idRE.MatchString(id.DeviceID) || !idRE.MatchString(id.Site) {
		return nil, fail("identity", "device id and site must match %s", idRE)
	}
	if !strings.HasPrefix(id.Broker, "mqtts://") && !strings.HasPrefix(id.Broker, "ssl://") && !strings.HasPrefix(id.Broker, "tls://") && !strings.HasPrefix(id.Broker, "tcp://") && !strings.HasPrefix(id.Broker, "mqtt://") {
		return nil, fail("identity", "broker %q is not an MQTT URL", id.Broker)
	}
	if old, err := c.identity(); err == nil {
		if *old == id {
			return []string{"IDENTITY", "unchanged"}, nil
		}
		if old.DeviceID != id.DeviceID && exists(c.path(KeyFile)) {
			return nil, fail("identity-mismatch", "device is already %s; send RESET %s to re-provision it", old.DeviceID, old.DeviceID)
		}
	}
	b, _ := json.MarshalIndent(id, "", "  ")
	if err := c.write(IdentityFile, append(b, '\n'), 0o644); err != nil {
		return nil, err
	}
	return []string{"IDENTITY", "set"}, nil
}

// keygen creates the device key on the device (once) and answers with a CSR
// for it. The private key never leaves the device.
func (c *Console) keygen() ([]string, error) {
	id, err := c.identity()
	if err != nil {
		return nil, fail("order", "set IDENTITY first")
	}
	key, err := c.loadKey()
	if errors.Is(err, fs.ErrNotExist) {
		key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		der, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := c.write(KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
		Subject: pkix.Name{CommonName: id.DeviceID, OrganizationalUnit: []string{id.Site}},
	}, key)
	if err != nil {
		return nil, err
	}
	return []string{"CSR", base64.StdEncoding.EncodeToString(csr)}, nil
}

func (c *Console) loadKey() (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(c.path(KeyFile))
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("provision: device key is not PEM")
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("provision: device key: %w", err)
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("provision: device key is %T", k)
	}
	return ek, nil
}

func (c *Console) cert(b64 string) ([]string, error) {
	der, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fail("base64", "%v", err)
	}
	crt, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fail("cert", "%v", err)
	}
	key, err := c.loadKey()
	if err != nil {
		return nil, fail("order", "no device key: send KEYGEN first")
	}
	if !key.PublicKey.Equal(crt.PublicKey) {
		return nil, fail("cert", "certificate is not for this device's key")
	}
	id, _ := c.identity()
	if id == nil || crt.Subject.CommonName != id.DeviceID {
		return nil, fail("cert", "certificate names %q, device is %v", crt.Subject.CommonName, id)
	}
	if err := c.write(CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, err
	}
	return []string{"CERT", "installed", crt.NotAfter.UTC().Format(time.RFC3339)}, nil
}

func (c *Console) file(name, b64 string) ([]string, error) {
	if !fileRE.MatchString(name) {
		return nil, fail("name", "%q is not a file the console installs", name)
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fail("base64", "%v", err)
	}
	switch {
	case name == CAName:
		blk, _ := pem.Decode(data)
		if blk == nil || blk.Type != "CERTIFICATE" {
			return nil, fail("content", "ca.crt is not a PEM certificate")
		}
		if _, err := x509.ParseCertificate(blk.Bytes); err != nil {
			return nil, fail("content", "ca.crt: %v", err)
		}
	case name == PolicyName:
		// Only its shape: the trust keys it is checked against may come
		// later in the session, and the agent verifies it when it starts.
		if _, err := dsse.Parse(data); err != nil {
			return nil, fail("content", "%s: %v", name, err)
		}
	case name == ConfigName:
		id, err := c.identity()
		if err != nil {
			return nil, fail("order", "set IDENTITY first")
		}
		if c.ValidateConfig != nil {
			if err := c.ValidateConfig(data, *id); err != nil {
				return nil, fail("config", "%v", err)
			}
		}
	default: // a .pub key file
		blk, _ := pem.Decode(data)
		if blk == nil || blk.Type != "PUBLIC KEY" {
			return nil, fail("content", "%s is not a PEM public key", name)
		}
		if _, err := x509.ParsePKIXPublicKey(blk.Bytes); err != nil {
			return nil, fail("content", "%s: %v", name, err)
		}
	}
	dst := installPath(name)
	if old, err := os.ReadFile(c.path(dst)); err == nil && bytes.Equal(old, data) {
		return []string{"FILE", name, "unchanged"}, nil
	}
	if err := c.write(dst, data, 0o644); err != nil {
		return nil, err
	}
	return []string{"FILE", name, "installed"}, nil
}

// done completes the provisioning and locks the console, this session
// included. It is answered on a locked console too: it changes nothing
// there but the session, which it closes.
func (c *Console) done(s *session) ([]string, error) {
	st := c.steps()
	var missing []string
	for _, need := range []string{"identity", "key", "cert", "ca", "config"} {
		if !slices.Contains(st, need) {
			missing = append(missing, need)
		}
	}
	if len(missing) > 0 {
		return nil, fail("incomplete", "missing %s", strings.Join(missing, ","))
	}
	if !exists(c.path(DoneFile)) {
		b, _ := json.Marshal(map[string]string{"at": time.Now().UTC().Format(time.RFC3339)})
		if err := c.write(DoneFile, b, 0o644); err != nil {
			return nil, err
		}
	}
	if st, err := c.loadLock(); err != nil || !st.Locked {
		if err := c.setLocked(true); err != nil {
			return nil, err
		}
	}
	s.close()
	return []string{"DONE", "locked"}, nil
}

// reset removes the provisioning (not the installed slots) and with it the
// lock (not the used unlock nonces); the device id must be named, so a
// reset is never an accident.
func (c *Console) reset(deviceID string, s *session) ([]string, error) {
	id, err := c.identity()
	if err != nil || id.DeviceID != deviceID {
		return nil, fail("identity-mismatch", "RESET must name this device's id")
	}
	for _, f := range []string{DoneFile, CertFile, KeyFile, IdentityFile, ConfigFile, CAFile, PolicyFile, "trust", layout.Operators} {
		if err := os.RemoveAll(c.path(f)); err != nil {
			return nil, err
		}
	}
	if err := c.setLocked(false); err != nil {
		return nil, err
	}
	s.close()
	c.log().Warn("provisioning reset: the console is unlocked until DONE", "device", deviceID)
	return []string{"RESET"}, nil
}

// Bundle transfer: BUNDLE-BEGIN SIZE SHA256 answers the offset to continue
// from (a resumed transfer keeps what arrived); BUNDLE-DATA OFFSET B64 appends;
// BUNDLE-END SHA256 checks and installs.
func (c *Console) incoming(sum string) string { return c.path("incoming-" + sum + ".lgb.part") }

func (c *Console) bundleBegin(sizeS, sum string) ([]string, error) {
	if c.Installer == nil {
		return nil, fail("unsupported", "this console does not install bundles")
	}
	size, err := strconv.ParseInt(sizeS, 10, 64)
	if err != nil || size <= 0 || size > update.DefaultMaxFetch {
		return nil, fail("size", "size %q", sizeS)
	}
	if b, err := hex.DecodeString(sum); err != nil || len(b) != sha256.Size {
		return nil, fail("sha256", "%q", sum)
	}
	// Only one transfer at a time: drop others.
	olds, _ := filepath.Glob(c.path("incoming-*.lgb.part*"))
	for _, o := range olds {
		if !strings.HasPrefix(o, c.incoming(sum)) {
			os.Remove(o)
		}
	}
	var have int64
	if fi, err := os.Stat(c.incoming(sum)); err == nil {
		have = min(fi.Size(), size)
	}
	if err := os.WriteFile(c.incoming(sum)+".size", []byte(sizeS), 0o600); err != nil {
		return nil, err
	}
	return []string{"OFFSET", strconv.FormatInt(have, 10)}, nil
}

// current returns the transfer BUNDLE-BEGIN started: its file, the bytes
// received so far and the announced size.
func (c *Console) current() (string, int64, int64, error) {
	m, _ := filepath.Glob(c.path("incoming-*.lgb.part.size"))
	if len(m) != 1 {
		return "", 0, 0, fail("order", "send BUNDLE-BEGIN first")
	}
	b, err := os.ReadFile(m[0])
	if err != nil {
		return "", 0, 0, err
	}
	size, _ := strconv.ParseInt(string(b), 10, 64)
	p := strings.TrimSuffix(m[0], ".size")
	var have int64
	if fi, err := os.Stat(p); err == nil {
		have = fi.Size()
	}
	return p, have, size, nil
}

func (c *Console) bundleData(offS, b64 string) ([]string, error) {
	if c.Installer == nil {
		return nil, fail("unsupported", "this console does not install bundles")
	}
	off, err := strconv.ParseInt(offS, 10, 64)
	if err != nil || off < 0 {
		return nil, fail("offset", "%q", offS)
	}
	data, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, fail("base64", "%v", err)
	}
	p, have, size, err := c.current()
	if err != nil {
		return nil, err
	}
	if off > have {
		return nil, fail("offset", "offset %d beyond the %d bytes received", off, have)
	}
	if off+int64(len(data)) > size {
		return nil, fail("size", "chunk ends at %d, bundle has %d bytes", off+int64(len(data)), size)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.WriteAt(data, off)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, err
	}
	return []string{"OFFSET", strconv.FormatInt(max(have, off+int64(len(data))), 10)}, nil
}

func (c *Console) bundleEnd(sum string) ([]string, error) {
	if c.Installer == nil {
		return nil, fail("unsupported", "this console does not install bundles")
	}
	p := c.incoming(sum)
	f, err := os.Open(p)
	if err != nil {
		return nil, fail("order", "no transfer of %s", sum)
	}
	h := sha256.New()
	n, err := io.Copy(h, f)
	f.Close()
	if err != nil {
		return nil, err
	}
	b, _ := os.ReadFile(p + ".size")
	size, _ := strconv.ParseInt(string(b), 10, 64)
	if n != size {
		return nil, fail("incomplete", "%d of %d bytes received", n, size)
	}
	if hex.EncodeToString(h.Sum(nil)) != sum {
		os.Remove(p)
		os.Remove(p + ".size")
		return nil, fail("sha256", "transfer corrupted: start again")
	}
	res, err := c.Installer.InstallFile(p, false)
	os.Remove(p)
	os.Remove(p + ".size")
	if err != nil {
		return nil, fail("install", "%v", err)
	}
	return []string{"INSTALLED", res.Manifest.Version, string(res.Slot), "candidate=" + strconv.FormatBool(res.Candidate)}, nil
}

// HealthReport is what HEALTH answers (base64 JSON on the wire).
type HealthReport struct {
	Provisioned []string       `json:"provisioned"`
	Slots       *slot.State    `json:"slots,omitempty"`
	Rollback    *slot.Rollback `json:"rollback,omitempty"`
}

func (c *Console) health() ([]string, error) {
	rep := HealthReport{Provisioned: c.steps()[1:]}
	if c.Installer != nil {
		if st, err := c.Installer.Slots.Load(); err == nil {
			rep.Slots = &st
			rep.Rollback = st.Rollback
		}
	}
	b, err := json.Marshal(rep)
	if err != nil {
		return nil, err
	}
	return []string{"HEALTH", base64.StdEncoding.EncodeToString(b)}, nil
}
