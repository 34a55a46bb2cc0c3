package config

import (
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/yamlpos"
)

// LastGoodPolicy is where the policy store keeps the last-known-good policy
// under the state directory (policy/store's lkgPath; a test holds the two
// together).
const LastGoodPolicy = "policy/last-good.json"

// LoadChecked loads a configuration file and checks what it names on this
// machine. `linkguard run` and `linkguard run --check` both call it, so a
// configuration --check passes is one the agent starts with.
func LoadChecked(path string) (*Config, error) {
	c, err := Load(path)
	if err != nil {
		return nil, err
	}
	if err := Check(c); err != nil {
		return nil, err
	}
	return c, nil
}

// Check looks at what a parsed configuration names, as the agent will when
// it starts, and reports every problem at its key: key files exist, are
// public keys where public keys belong, and each key has one role; the
// certificates parse and the client key matches its certificate and is
// private to its owner; files and directories are what they should be and
// not writable by anyone; the policy file (or a last-known-good policy)
// exists; the interfaces, serial ports and watchdog exist. It returns an
// *Error, or nil.
func Check(c *Config) error {
	k := &checker{c: c}
	k.run()
	if len(k.errs) == 0 {
		return nil
	}
	return &Error{File: c.src.name, Errs: k.errs}
}

type checker struct {
	c    *Config
	errs []error
}

// bad records a problem at a key path; a nil path is the file itself.
func (k *checker) bad(path []any, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	switch {
	case k.c.src.doc != nil && path != nil:
		k.errs = append(k.errs, k.c.src.doc.Errorf(path, "%s", msg))
	case path != nil:
		k.errs = append(k.errs, fmt.Errorf("%s: %s", yamlpos.PathString(path...), msg))
	default:
		k.errs = append(k.errs, errors.New(msg))
	}
}

func at(path []any, more ...any) []any { return append(slices.Clone(path), more...) }

func (k *checker) run() {
	c := k.c
	if p := c.src.path; p != "" {
		k.file(nil, p)
	}
	k.keys()
	k.policyFile()
	k.dir([]any{"state_dir"}, c.StateDir)
	if l := c.Links; l != nil {
		k.links(l)
	}
	if m := c.MQTT; m != nil {
		k.tls(m)
	}
	k.ports()
	if u := c.Update; u != nil {
		k.dir([]any{"update", "root"}, u.Root)
	}
	if w := c.Watchdog; w != nil {
		if _, err := os.Stat(w.Device); err != nil {
			k.bad([]any{"watchdog", "device"}, "%s", statMessage(w.Device, err))
		}
	}
}

// statMessage says why a path cannot be used.
func statMessage(p string, err error) string {
	if errors.Is(err, fs.ErrNotExist) {
		return p + " does not exist"
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Sprintf("%s: %v", p, pe.Err)
	}
	return err.Error()
}

// file checks that p is a regular file that not everyone can replace, and
// reads it.
func (k *checker) file(path []any, p string) ([]byte, bool) {
	fi, err := os.Stat(p)
	switch {
	case err != nil:
		k.bad(path, "%s", statMessage(p, err))
		return nil, false
	case fi.IsDir():
		k.bad(path, "%s is a directory, not a file", p)
		return nil, false
	case !fi.Mode().IsRegular():
		k.bad(path, "%s is not a regular file (%v)", p, fi.Mode().Type())
		return nil, false
	case fi.Mode().Perm()&0o002 != 0:
		k.bad(path, "%s is writable by anyone (mode %v): chmod o-w it", p, fi.Mode().Perm())
		return nil, false
	}
	if d := filepath.Dir(p); writableByAnyone(d) {
		k.bad(path, "%s is in %s, which anyone may write to: keep it in a directory only root writes", p, d)
		return nil, false
	}
	data, err := os.ReadFile(p)
	if err != nil {
		k.bad(path, "%s", statMessage(p, err))
		return nil, false
	}
	return data, true
}

// writableByAnyone: anyone may replace what the directory holds (the
// sticky bit, as on /tmp, stops them).
func writableByAnyone(dir string) bool {
	fi, err := os.Stat(dir)
	return err == nil && fi.Mode().Perm()&0o002 != 0 && fi.Mode()&fs.ModeSticky == 0
}

// dir checks a directory the agent uses, or creates: it is a directory not
// writable by anyone, or missing below a directory (the agent makes it).
func (k *checker) dir(path []any, p string) {
	fi, err := os.Stat(p)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		parent := filepath.Dir(p)
		for parent != filepath.Dir(parent) {
			if pfi, err := os.Stat(parent); err == nil {
				if !pfi.IsDir() {
					k.bad(path, "%s cannot be made: %s is not a directory", p, parent)
				}
				return
			}
			parent = filepath.Dir(parent)
		}
	case err != nil:
		k.bad(path, "%s", statMessage(p, err))
	case !fi.IsDir():
		k.bad(path, "%s is not a directory", p)
	case writableByAnyone(p):
		k.bad(path, "%s is writable by anyone (mode %v): chmod o-w it", p, fi.Mode().Perm())
	}
}

// keys checks every public key list and that no key has two roles or is
// listed twice.
func (k *checker) keys() {
	c := k.c
	type role struct {
		path  []any
		files []string
	}
	roles := []role{{[]any{"policy", "trust"}, c.Policy.Trust}}
	if c.MQTT != nil {
		roles = append(roles, role{[]any{"mqtt", "operators"}, c.MQTT.Operators})
	}
	if c.Update != nil {
		roles = append(roles, role{[]any{"update", "trust"}, c.Update.Trust})
	}
	first := map[string][]any{} // key id -> where it was listed first
	for _, r := range roles {
		for i, p := range r.files {
			where := at(r.path, i)
			pub, ok := k.publicKey(where, p)
			if !ok {
				continue
			}
			id := dsse.KeyID(pub)
			if prev, dup := first[id]; dup {
				why := "a key has one role: policy, operator or release"
				if slices.Equal(prev[:len(r.path)], r.path) {
					why = "list each key once"
				}
				k.bad(where, "%s is the same key as %s: %s", p, yamlpos.PathString(prev...), why)
				continue
			}
			first[id] = where
		}
	}
}

// publicKey reads an ed25519 public key file, refusing a private key, a
// directory and anything else.
func (k *checker) publicKey(path []any, p string) (ed25519.PublicKey, bool) {
	data, ok := k.file(path, p)
	if !ok {
		return nil, false
	}
	pub, err := dsse.ParsePublicKey(data)
	if err == nil {
		return pub, true
	}
	if _, perr := dsse.ParsePrivateKey(data); perr == nil || strings.Contains(string(data), "PRIVATE KEY-----") {
		k.bad(path, "%s is a private key: list its public half (the .pub file lgctl key gen wrote beside it), and keep the private one off the device", p)
		return nil, false
	}
	k.bad(path, "%s is not a public key file: %s", p, strings.TrimPrefix(err.Error(), "dsse: "))
	return nil, false
}

// policyFile: the agent watches the policy file's directory and enforces
// the file, or its last-known-good policy while the file is missing.
func (k *checker) policyFile() {
	p := k.c.Policy.File
	if p == "" {
		return
	}
	path := []any{"policy", "file"}
	fi, err := os.Stat(p)
	switch {
	case err == nil && fi.IsDir():
		k.bad(path, "%s is a directory, not the signed policy file", p)
	case err == nil:
	case !errors.Is(err, fs.ErrNotExist):
		k.bad(path, "%s", statMessage(p, err))
	default:
		dir := filepath.Dir(p)
		if dfi, err := os.Stat(dir); err != nil || !dfi.IsDir() {
			k.bad(path, "%s does not exist, nor its directory %s (the agent watches it for the policy)", p, dir)
			return
		}
		lkg := filepath.Join(k.c.StateDir, filepath.FromSlash(LastGoodPolicy))
		if _, err := os.Stat(lkg); err != nil {
			k.bad(path, "%s does not exist and there is no last-known-good policy (%s): install the signed policy there", p, lkg)
		}
	}
}

// links: the interfaces exist, and a bridge's two share one MTU.
func (k *checker) links(l *Links) {
	var mtu [2]int
	for i, side := range []struct{ key, name string }{{"inside", l.Inside}, {"outside", l.Outside}} {
		if side.name == "" {
			continue
		}
		ifi, err := net.InterfaceByName(side.name)
		if err != nil {
			k.bad([]any{"links", side.key}, "interface %q does not exist on this machine (ip link lists them)", side.name)
			continue
		}
		mtu[i] = ifi.MTU
	}
	if l.Mode == ModeInline && mtu[0] != 0 && mtu[1] != 0 && mtu[0] != mtu[1] {
		k.bad([]any{"links", "outside"}, "%s has MTU %d and %s %d: the two sides of a bridge need one MTU", l.Outside, mtu[1], l.Inside, mtu[0])
	}
	if l.Evidence.Dir != "" {
		k.dir([]any{"links", "evidence", "dir"}, l.Evidence.Dir)
	}
}

// tls: the broker CA and the client certificate load as the link loads
// them, and the client key is the device's alone.
func (k *checker) tls(m *MQTT) {
	if m.CA != "" {
		if data, ok := k.file([]any{"mqtt", "ca"}, m.CA); ok && !x509.NewCertPool().AppendCertsFromPEM(data) {
			k.bad([]any{"mqtt", "ca"}, "%s holds no PEM certificate", m.CA)
		}
	}
	if m.Cert == "" || m.Key == "" {
		return
	}
	_, certOK := k.file([]any{"mqtt", "cert"}, m.Cert)
	_, keyOK := k.file([]any{"mqtt", "key"}, m.Key)
	if !certOK || !keyOK {
		return
	}
	if fi, err := os.Stat(m.Key); err == nil && fi.Mode().Perm()&0o077 != 0 {
		k.bad([]any{"mqtt", "key"}, "%s is open to group or others (mode %v): chmod 600 it", m.Key, fi.Mode().Perm())
	}
	if _, err := tls.LoadX509KeyPair(m.Cert, m.Key); err != nil {
		k.bad([]any{"mqtt", "cert"}, "%s with key %s: %s", m.Cert, m.Key, strings.TrimPrefix(err.Error(), "tls: "))
	}
}

// ports: every serial port a bus, meter or relay names exists.
func (k *checker) ports() {
	seen := map[string]bool{}
	check := func(path []any, port string) {
		if port == "" || seen[port] {
			return
		}
		seen[port] = true
		if _, err := os.Stat(port); err != nil {
			k.bad(path, "serial port %s", statMessage(port, err))
		}
	}
	for i, b := range k.c.Buses {
		check([]any{"buses", i, "port"}, b.Port)
	}
	for i, f := range k.c.Feeds {
		check([]any{"feeds", i, "meter", "bus"}, f.Meter.Bus)
		for j, ci := range f.Circuits {
			check([]any{"feeds", i, "circuits", j, "relay", "bus"}, ci.Relay.Bus)
		}
	}
}
