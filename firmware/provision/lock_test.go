package provision

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"periph.io/x/conn/v3/gpio"

	"linkguard.dev/linkguard/firmware/bundle/bundletest"
	"linkguard.dev/linkguard/firmware/slot"
	"linkguard.dev/linkguard/firmware/update"
	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/dsse"
)

// fleet is the technician's side: a CA, committee keys and a plan for
// rtr-017 that installs them under trust/policy.
type fleet struct {
	ca        *CA
	committee []ed25519.PrivateKey
	plan      Plan
}

func newFleet(t *testing.T, members int) *fleet {
	t.Helper()
	f := &fleet{ca: testCA(t)}
	dir := t.TempDir()
	keys := map[string][]byte{}
	for i := range members {
		name := "committee-" + string(rune('a'+i))
		kp, pp, err := dsse.GenerateKeyFiles(dir, name)
		if err != nil {
			t.Fatal(err)
		}
		priv, _ := dsse.LoadPrivateKey(kp)
		pub, _ := os.ReadFile(pp)
		f.committee = append(f.committee, priv)
		keys["trust/"+name+".pub"] = pub
	}
	_, opsPub, _ := dsse.GenerateKeyFiles(dir, "ops")
	keys["operators/ops.pub"], _ = os.ReadFile(opsPub)
	f.plan = Plan{
		Identity: Identity{DeviceID: "rtr-017", Site: "north-3", Broker: "mqtts://broker.example:8883"},
		SignCSR:  func(csr *x509.CertificateRequest) ([]byte, error) { return f.ca.Sign(csr, "rtr-017", 24*time.Hour) },
		CA:       f.ca.CertPEM,
		Keys:     keys,
		Config:   []byte("device:\n  id: rtr-017\n  site: north-3\npolicy:\n  threshold: 2\n"),
	}
	return f
}

// token signs an unlock token for rtr-017 with the given committee keys.
func (f *fleet) token(t *testing.T, action string, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	tok, err := NewUnlockToken("rtr-017", action, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	env, err := SignUnlockToken(tok, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// rawToken signs any payload, so tests can make tokens SignUnlockToken
// refuses to.
func rawToken(t *testing.T, payloadType string, tok UnlockToken, keys ...ed25519.PrivateKey) []byte {
	t.Helper()
	b, _ := json.Marshal(tok)
	env, err := dsse.Sign(payloadType, b, keys...)
	if err != nil {
		t.Fatal(err)
	}
	return env
}

// line is a console served over a real pty pair, with a client on the
// technician's end.
type line struct {
	*Client
	stop func() error
}

func openLine(t *testing.T, con *Console) *line {
	t.Helper()
	devEnd, techEnd := ptyPair(t)
	stop := serve(t, con, devEnd)
	c := NewClient(techEnd)
	c.Timeout, c.Retries = 2*time.Second, 1
	var once sync.Once
	var err error
	l := &line{Client: c, stop: func() error { once.Do(func() { err = stop(); techEnd.Close() }); return err }}
	t.Cleanup(func() { l.stop() })
	return l
}

func (l *line) call(t *testing.T, req ...string) ([]string, error) {
	t.Helper()
	return l.Call(context.Background(), req[0], req[1:]...)
}

// mustLock expects a request to be refused as locked.
func (l *line) mustLock(t *testing.T, req ...string) *RemoteError {
	t.Helper()
	_, err := l.call(t, req...)
	var re *RemoteError
	if !errors.Is(err, ErrLocked) || !errors.As(err, &re) {
		t.Fatalf("%s on a locked console: %v, want locked", req[0], err)
	}
	return re
}

func (l *line) must(t *testing.T, req ...string) []string {
	t.Helper()
	r, err := l.call(t, req...)
	if err != nil {
		t.Fatalf("%s: %v", req[0], err)
	}
	return r
}

// provisionDir provisions a fresh directory over a pty and returns it,
// locked.
func provisionDir(t *testing.T, f *fleet) string {
	t.Helper()
	dir := t.TempDir()
	l := openLine(t, &Console{Dir: dir})
	st, err := Provision(context.Background(), l.Client, f.plan)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(st, ","); got != "identity,key,cert,ca,config,done,trust,locked" {
		t.Fatalf("status after provisioning %q", got)
	}
	if err := l.stop(); err != nil {
		t.Fatal(err)
	}
	return dir
}

// snapshot is every file under dir and its bytes.
func snapshot(t *testing.T, dir string) map[string]string {
	t.Helper()
	m := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		m[strings.TrimPrefix(p, dir)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func sameFiles(t *testing.T, before, after map[string]string) {
	t.Helper()
	for p, b := range before {
		if a, ok := after[p]; !ok || a != b {
			t.Errorf("%s changed (%v)", p, ok)
		}
	}
	for p := range after {
		if _, ok := before[p]; !ok {
			t.Errorf("%s appeared", p)
		}
	}
}

// attacks are what the second peer on the line of the issue tried, and
// every other request that changes or reveals the device.
func attacks(t *testing.T) [][]string {
	evilKey, _, _ := ed25519.GenerateKey(rand.Reader)
	der, _ := x509.MarshalPKIXPublicKey(evilKey)
	pub := b64(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
	sum := sha([]byte("x"))
	return [][]string{
		{"IDENTITY", "rtr-017", "north-3", "tcp://evil.example:1883"},
		{"IDENTITY", "evil-1", "nowhere", "tcp://evil.example:1883"},
		{"FILE", "trust/evil.pub", pub},
		{"FILE", "trust/committee-a.pub", pub},
		{"FILE", "operators/evil.pub", pub},
		{"FILE", "release/evil.pub", pub},
		{"FILE", "config.yaml", b64([]byte("device: {id: rtr-017, site: north-3}\nlinks: {mode: monitor}\nmqtt: {url: tcp://evil.example:1883}\n"))},
		{"FILE", "ca.crt", b64(testCA(t).CertPEM)},
		{"FILE", "policy.signed.json", b64([]byte("{}"))},
		{"RESET", "rtr-017"},
		{"KEYGEN"},
		{"CERT", b64([]byte("x"))},
		{"BUNDLE-BEGIN", "1", sum},
		{"BUNDLE-DATA", "0", "eA=="},
		{"BUNDLE-END", sum},
		{"HEALTH"},
		{"RESTART"},
	}
}

// TestLockedAfterDone: after a full provisioning and DONE, the peer on the
// line (the technician's laptop left behind, or another one) can change
// nothing, read no more than the steps, and every refusal names how to
// unlock.
func TestLockedAfterDone(t *testing.T) {
	f := newFleet(t, 2)
	dir := t.TempDir()
	rel := bundletest.NewRelease(t)
	slots, _ := slot.New(filepath.Join(t.TempDir(), "slots"))
	var restarted atomic.Bool
	con := &Console{Dir: dir, Installer: &update.Installer{Slots: slots, Keys: rel.Ring, Arch: "amd64"},
		Restart: func() error { restarted.Store(true); return nil }, Physical: []Presence{&FilePresence{Path: "/run/linkguard-unlock"}}}
	l := openLine(t, con)
	if _, err := Provision(context.Background(), l.Client, f.plan); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)
	if _, ok := before["/"+LockFile]; !ok {
		t.Fatalf("no %s after DONE: %v", LockFile, before)
	}

	if r := l.must(t, "HELLO"); strings.Contains(strings.Join(r, " "), "rtr-017") || !slices.Contains(r, "locked") {
		t.Errorf("HELLO on a locked console: %q", r)
	}
	if r := l.must(t, "STATUS"); strings.Join(r, " ") != "STATUS identity key cert ca config done trust locked" {
		t.Errorf("STATUS on a locked console: %q", r)
	}
	for _, req := range attacks(t) {
		re := l.mustLock(t, req...)
		for _, way := range []string{"UNLOCK", "--unlock-token", "/run/linkguard-unlock"} {
			if !strings.Contains(re.Message, way) {
				t.Errorf("%s: the refusal %q does not name %s", req[0], re.Message, way)
			}
		}
	}
	// DONE is answered (it only locks) and opens nothing.
	l.must(t, "DONE")
	l.mustLock(t, "KEYGEN")
	sameFiles(t, before, snapshot(t, dir))
	if restarted.Load() {
		t.Error("RESTART ran on a locked console")
	}
}

// TestLockSurvivesRestart: a console started anew on a provisioned
// directory is locked, and one on a directory provisioned before the lock
// existed (provisioned.json, no lock file) is too.
func TestLockSurvivesRestart(t *testing.T) {
	f := newFleet(t, 1)
	dir := provisionDir(t, f)
	before := snapshot(t, dir)
	l := openLine(t, &Console{Dir: dir})
	for _, req := range attacks(t) {
		l.mustLock(t, req...)
	}
	l.stop()
	sameFiles(t, before, snapshot(t, dir))

	os.Remove(filepath.Join(dir, LockFile))
	l = openLine(t, &Console{Dir: dir})
	l.mustLock(t, "FILE", "trust/evil.pub", b64([]byte("x")))
	if r := l.must(t, "STATUS"); !slices.Contains(r, "locked") {
		t.Errorf("STATUS %q", r)
	}
}

// TestUnlockFile: a file only root can have made opens one session and is
// consumed; one another user owns, one writable by others, one in a
// directory others may write, and a link do not.
func TestUnlockFile(t *testing.T) {
	envtest.Root(t)
	f := newFleet(t, 1)
	dir := provisionDir(t, f)
	run := t.TempDir() // 0700, root's
	unlock := filepath.Join(run, "unlock")
	shared := filepath.Join(run, "shared")
	os.Mkdir(shared, 0o755)
	os.Chmod(shared, 0o777)
	l := openLine(t, &Console{Dir: dir, Physical: []Presence{&FilePresence{Path: unlock}, &FilePresence{Path: filepath.Join(shared, "unlock")}}})
	pub := f.plan.Keys["operators/ops.pub"]
	install := []string{"FILE", "operators/ops2.pub", b64(pub)}

	l.mustLock(t, install...)
	for _, tt := range []struct {
		name, path string
		make       func(p string)
		want       string
	}{
		{"another user's", unlock, func(p string) { os.WriteFile(p, nil, 0o600); os.Chown(p, 1000, 1000) }, "owned by uid 1000, not root"},
		{"world-writable", unlock, func(p string) { os.WriteFile(p, nil, 0o600); os.Chmod(p, 0o666) }, "writable by group or others"},
		{"group-writable", unlock, func(p string) { os.WriteFile(p, nil, 0o600); os.Chmod(p, 0o620) }, "writable by group or others"},
		{"a link", unlock, func(p string) { os.WriteFile(p+".real", nil, 0o600); os.Symlink(p+".real", p) }, "not a regular file"},
		{"in a shared directory", filepath.Join(shared, "unlock"), func(p string) { os.WriteFile(p, nil, 0o600) }, "writable by group or others"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.make(tt.path)
			defer os.Remove(tt.path)
			if re := l.mustLock(t, install...); !strings.Contains(re.Message, tt.want) {
				t.Errorf("refusal %q, want %q", re.Message, tt.want)
			}
			if _, err := os.Lstat(tt.path); err != nil {
				t.Errorf("a refused unlock file was removed: %v", err)
			}
		})
	}
	if _, err := os.Stat(filepath.Join(dir, "operators/ops2.pub")); err == nil {
		t.Fatal("installed while locked")
	}

	// Root's own file: the session opens, the file is used up.
	os.WriteFile(unlock, nil, 0o600)
	if r := l.must(t, install...); r[2] != "installed" {
		t.Fatalf("FILE after the unlock file: %q", r)
	}
	if _, err := os.Stat(unlock); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the unlock file was not consumed: %v", err)
	}
	if r := l.must(t, "STATUS"); !slices.Contains(r, "unlocked") {
		t.Errorf("STATUS in an unlocked session %q", r)
	}
	l.must(t, "HEALTH")
	// DONE ends the session; the file is gone, so it stays locked.
	l.must(t, "DONE")
	l.mustLock(t, "FILE", "operators/ops3.pub", b64(pub))
	// So does LOCK.
	os.WriteFile(unlock, nil, 0o600)
	l.must(t, "UNLOCK")
	l.must(t, "FILE", "operators/ops3.pub", b64(pub))
	l.must(t, "LOCK")
	l.mustLock(t, "FILE", "operators/ops4.pub", b64(pub))
}

// fakePin is a GPIO input line with a jumper: In records the pull, Read
// gives the level the test sets. (hal has no GPIO fake of its own, and
// periph's gpiotest would pull in github.com/jonboulle/clockwork; the
// same reason hal/relay's tests give.)
type fakePin struct {
	gpio.PinIO
	mu    sync.Mutex
	level gpio.Level
	pull  gpio.Pull
}

func (p *fakePin) In(pull gpio.Pull, _ gpio.Edge) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.pull = pull
	return nil
}

func (p *fakePin) Read() gpio.Level {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.level
}

func (p *fakePin) set(l gpio.Level) { p.mu.Lock(); p.level = l; p.mu.Unlock() }
func (p *fakePin) Name() string     { return "GPIO17" }
func (p *fakePin) String() string   { return "GPIO17" }

// TestUnlockPin: an active-low jumper on a GPIO line opens the session
// while fitted when a request arrives; the session outlives its removal
// and ends at DONE.
func TestUnlockPin(t *testing.T) {
	f := newFleet(t, 1)
	dir := provisionDir(t, f)
	pin := &fakePin{PinIO: gpio.INVALID, level: gpio.High}
	jumper, err := NewPinPresence(pin, true)
	if err != nil {
		t.Fatal(err)
	}
	if pin.pull != gpio.PullUp {
		t.Fatalf("an active-low jumper wants a pull-up, got %v", pin.pull)
	}
	l := openLine(t, &Console{Dir: dir, Physical: []Presence{jumper}})
	pub := b64(f.plan.Keys["operators/ops.pub"])
	if re := l.mustLock(t, "FILE", "operators/ops2.pub", pub); !strings.Contains(re.Message, "jumper on GPIO17 (active low)") {
		t.Errorf("refusal %q does not name the jumper", re.Message)
	}
	if _, err := l.call(t, "UNLOCK"); !errors.Is(err, ErrLocked) {
		t.Fatalf("bare UNLOCK without the jumper: %v", err)
	}
	pin.set(gpio.Low) // fitted
	l.must(t, "FILE", "operators/ops2.pub", pub)
	pin.set(gpio.High) // removed: the session stays open
	l.must(t, "FILE", "operators/ops3.pub", pub)
	if r := l.must(t, "HELLO"); !slices.Contains(r, "device=rtr-017") {
		t.Errorf("HELLO in an unlocked session: %q", r)
	}
	l.must(t, "DONE")
	l.mustLock(t, "FILE", "operators/ops4.pub", pub)

	// Active high: pulled down, present while high.
	hi := &fakePin{PinIO: gpio.INVALID}
	p, _ := NewPinPresence(hi, false)
	if ok, _ := p.Present(); ok || hi.pull != gpio.PullDown {
		t.Fatalf("active-high jumper: present %v with the line low, pull %v", ok, hi.pull)
	}
	hi.set(gpio.High)
	if ok, _ := p.Present(); !ok {
		t.Fatal("active-high jumper not present with the line high")
	}
}

// clock is a settable clock safe to read from the console's goroutine.
type clock struct{ off atomic.Int64 }

func (c *clock) now() time.Time              { return time.Now().Add(time.Duration(c.off.Load())) }
func (c *clock) advance(d time.Duration)     { c.off.Add(int64(d)) }
func (c *clock) console(dir string) *Console { return &Console{Dir: dir, Now: c.now} }

// TestUnlockToken: a committee token opens the session only with the
// threshold of the device's committee keys, for this device, in its
// lifetime, once.
func TestUnlockToken(t *testing.T) {
	f := newFleet(t, 2)
	a, b := f.committee[0], f.committee[1]
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	dir := provisionDir(t, f)
	var clk clock
	l := openLine(t, clk.console(dir))
	pub := b64(f.plan.Keys["operators/ops.pub"])
	now := time.Now().UTC().Truncate(time.Second)
	tok := func(device string, issued, expires time.Time) UnlockToken {
		return UnlockToken{Device: device, Action: ActionUnlock, Nonce: "n0nce-" + strings.Repeat("x", 12) + device + issued.Format("150405"), Issued: issued, Expires: expires}
	}
	valid := tok("rtr-017", now, now.Add(time.Hour))
	for _, tt := range []struct {
		name string
		env  []byte
		want string
	}{
		{"1 of 2", f.token(t, ActionUnlock, a), "1 of 2 distinct trusted keys signed"},
		{"the other one alone", rawToken(t, UnlockPayloadType, valid, b), "1 of 2"},
		{"a stranger and one", rawToken(t, UnlockPayloadType, valid, stranger, b), "untrusted key"},
		{"another device", rawToken(t, UnlockPayloadType, tok("rtr-018", now, now.Add(time.Hour)), a, b), "for device rtr-018, not this one"},
		{"expired", rawToken(t, UnlockPayloadType, tok("rtr-017", now.Add(-2*time.Hour), now.Add(-time.Hour)), a, b), "expired at"},
		{"issued in the future", rawToken(t, UnlockPayloadType, tok("rtr-017", now.Add(time.Hour), now.Add(2*time.Hour)), a, b), "in the future"},
		{"valid too long", rawToken(t, UnlockPayloadType, tok("rtr-017", now, now.Add(25*time.Hour)), a, b), "more than 24h0m0s"},
		{"a policy's payload type", rawToken(t, "application/vnd.linkguard.policy+yaml", valid, a, b), "wrong payload type"},
		{"not an envelope", []byte(`{"device":"rtr-017"}`), "malformed envelope"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Unlock(context.Background(), l.Client, tt.env)
			var re *RemoteError
			if !errors.As(err, &re) || re.Code != "unlock-token" || !strings.Contains(re.Message, tt.want) {
				t.Fatalf("UNLOCK: %v, want unlock-token: %q", err, tt.want)
			}
			l.mustLock(t, "FILE", "operators/evil.pub", pub)
		})
	}

	// 2 of 2, gathered one by one: the session opens until LOCK.
	env, err := dsse.Cosign(f.token(t, ActionUnlock, a), b, UnlockLimits)
	if err != nil {
		t.Fatal(err)
	}
	r, err := Unlock(context.Background(), l.Client, env)
	if err != nil || r[0] != "UNLOCKED" || r[1] != ActionUnlock {
		t.Fatalf("UNLOCK 2 of 2: %q %v", r, err)
	}
	if r, err := Unlock(context.Background(), l.Client, env); err != nil || r[0] != "UNLOCKED" {
		t.Fatalf("UNLOCK resent in its session: %q %v", r, err)
	}
	l.must(t, "FILE", "operators/ops2.pub", pub)
	l.must(t, "LOCK")
	l.mustLock(t, "FILE", "operators/ops3.pub", pub)
	// Replayed, in this session and after a restart.
	if _, err := Unlock(context.Background(), l.Client, env); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("replayed token: %v", err)
	}
	l.stop()
	l = openLine(t, clk.console(dir))
	if _, err := Unlock(context.Background(), l.Client, env); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("replayed token after a restart: %v", err)
	}

	// The session also ends when idle, and when its token expires.
	if _, err := Unlock(context.Background(), l.Client, f.token(t, ActionUnlock, a, b)); err != nil {
		t.Fatal(err)
	}
	clk.advance(DefaultSessionIdle + time.Minute)
	l.mustLock(t, "FILE", "operators/ops3.pub", pub)
	if _, err := Unlock(context.Background(), l.Client, f.token(t, ActionUnlock, a, b)); err != nil {
		t.Fatal(err)
	}
	for range 7 {
		clk.advance(9 * time.Minute)
		l.must(t, "STATUS")
	}
	l.mustLock(t, "FILE", "operators/ops3.pub", pub)
}

// TestUnlockResetToken: a reset token permits RESET only; after RESET the
// device is blank and open, and once provisioned again the token is
// refused as used.
func TestUnlockResetToken(t *testing.T) {
	f := newFleet(t, 2)
	dir := provisionDir(t, f)
	l := openLine(t, &Console{Dir: dir})
	env := f.token(t, ActionReset, f.committee...)
	if r, err := Unlock(context.Background(), l.Client, env); err != nil || r[1] != ActionReset {
		t.Fatalf("UNLOCK reset: %q %v", r, err)
	}
	for _, req := range attacks(t) {
		if req[0] == "RESET" {
			continue
		}
		if re := l.mustLock(t, req...); !strings.Contains(re.Message, "RESET only") {
			t.Errorf("%s: %q", req[0], re.Message)
		}
	}
	if _, err := l.call(t, "RESET", "rtr-018"); err == nil {
		t.Fatal("RESET naming another device")
	}
	l.must(t, "RESET", "rtr-017")
	if r := l.must(t, "STATUS"); len(r) != 1 {
		t.Fatalf("STATUS after RESET %q", r)
	}
	if _, err := Provision(context.Background(), l.Client, f.plan); err != nil {
		t.Fatal(err)
	}
	if _, err := Unlock(context.Background(), l.Client, env); err == nil || !strings.Contains(err.Error(), "used already") {
		t.Fatalf("reset token again after re-provisioning: %v", err)
	}
}

// TestUnlockThreshold: the threshold comes from UnlockThreshold, else the
// installed configuration, else 2 of 2 or more keys; one key needs one.
func TestUnlockThreshold(t *testing.T) {
	f := newFleet(t, 3)
	dir := provisionDir(t, f)
	cfg := func(b []byte) (int, error) {
		if bytes.Contains(b, []byte("threshold: 2")) {
			return 2, nil
		}
		return 0, errors.New("no threshold")
	}
	for _, tt := range []struct {
		name  string
		con   *Console
		signs int
		ok    bool
	}{
		{"default 2 of 3: 1", &Console{Dir: dir}, 1, false},
		{"default 2 of 3: 2", &Console{Dir: dir}, 2, true},
		{"config says 2: 1", &Console{Dir: dir, PolicyThreshold: cfg}, 1, false},
		{"config says 2: 2", &Console{Dir: dir, PolicyThreshold: cfg}, 2, true},
		{"given 3: 2", &Console{Dir: dir, PolicyThreshold: cfg, UnlockThreshold: 3}, 2, false},
		{"given 3: 3", &Console{Dir: dir, UnlockThreshold: 3}, 3, true},
		{"given 1: 1", &Console{Dir: dir, UnlockThreshold: 1}, 1, true},
		{"given 4 of 3 keys", &Console{Dir: dir, UnlockThreshold: 4}, 3, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.con.verifyToken(f.token(t, ActionUnlock, f.committee[:tt.signs]...))
			if (err == nil) != tt.ok {
				t.Fatalf("verify: %v, want ok %v", err, tt.ok)
			}
		})
	}
	if n := (&Console{Dir: t.TempDir()}).unlockThreshold(1); n != 1 {
		t.Errorf("one key: threshold %d", n)
	}
}

// TestUsedNoncesBounded: the used nonces are pruned once expired and
// capped; the cap refuses rather than forgets one still in force.
func TestUsedNoncesBounded(t *testing.T) {
	var clk clock
	con := clk.console(t.TempDir())
	tok := func(i int) UnlockToken {
		return UnlockToken{Nonce: "nonce-" + strings.Repeat("0", 10) + itoa(i), Expires: clk.now().Add(time.Hour)}
	}
	for i := range MaxUsedNonces {
		if err := con.useNonce(tok(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := con.useNonce(tok(MaxUsedNonces)); err == nil || !strings.Contains(err.Error(), "unexpired tokens") {
		t.Fatalf("over the cap: %v", err)
	}
	clk.advance(2 * time.Hour)
	if err := con.useNonce(tok(0)); err != nil {
		t.Fatalf("a nonce whose token expired: %v", err)
	}
	st, _ := con.loadLock()
	if len(st.Used) != 1 {
		t.Fatalf("%d nonces kept after they expired", len(st.Used))
	}
}

// TestCASignNames: the certificate names the device it was asked for and
// nothing the request chose; a request for another device is refused.
func TestCASignNames(t *testing.T) {
	ca := testCA(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	evil, _ := url.Parse("spiffe://fleet/operator")
	csr := func(cn string) *x509.CertificateRequest {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{
			Subject:        pkix.Name{CommonName: cn, OrganizationalUnit: []string{"operators"}, Organization: []string{"committee"}},
			DNSNames:       []string{"broker.example"},
			EmailAddresses: []string{"ops@example"},
			URIs:           []*url.URL{evil},
		}, key)
		if err != nil {
			t.Fatal(err)
		}
		r, _ := x509.ParseCertificateRequest(der)
		return r
	}
	der, err := ca.Sign(csr("rtr-017"), "rtr-017", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	crt, _ := x509.ParseCertificate(der)
	if crt.Subject.String() != "CN=rtr-017" || len(crt.DNSNames)+len(crt.EmailAddresses)+len(crt.URIs)+len(crt.IPAddresses) != 0 {
		t.Fatalf("certificate names %q, %v %v %v", crt.Subject, crt.DNSNames, crt.EmailAddresses, crt.URIs)
	}
	if !slices.Equal(crt.ExtKeyUsage, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}) || crt.IsCA {
		t.Fatalf("usage %v, CA %v", crt.ExtKeyUsage, crt.IsCA)
	}
	if _, err := ca.Sign(csr("rtr-018"), "rtr-017", time.Hour); err == nil || !strings.Contains(err.Error(), `CSR names device "rtr-018", not "rtr-017"`) {
		t.Fatalf("CSR for another device: %v", err)
	}
	if _, err := ca.Sign(csr(""), "", time.Hour); err == nil {
		t.Fatal("signed for no device")
	}
}

func FuzzUnlockToken(f *testing.F) {
	now := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	for _, tok := range []UnlockToken{
		{Device: "rtr-017", Action: ActionUnlock, Nonce: "0123456789abcdef", Issued: now, Expires: now.Add(time.Hour)},
		{Device: "rtr-017", Action: ActionReset, Nonce: "0123456789abcdef0123", Issued: now, Expires: now.Add(MaxUnlockLifetime)},
	} {
		b, _ := json.Marshal(tok)
		f.Add(b)
	}
	f.Add([]byte(`{"device":"a","action":"unlock","nonce":"x","issued":"2025-01-01T00:00:00Z","expires":"2024-01-01T00:00:00Z"}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseUnlockToken(b)
		if err != nil {
			return
		}
		if life := tok.Expires.Sub(tok.Issued); life <= 0 || life > MaxUnlockLifetime {
			t.Fatalf("accepted a lifetime of %v", life)
		}
		if tok.Action != ActionUnlock && tok.Action != ActionReset {
			t.Fatalf("accepted action %q", tok.Action)
		}
		again, _ := json.Marshal(tok)
		if tok2, err := ParseUnlockToken(again); err != nil || !tok2.Issued.Equal(tok.Issued) || tok2.Nonce != tok.Nonce || tok2.Device != tok.Device {
			t.Fatalf("%q parsed to %+v, which does not read back: %+v %v", b, tok, tok2, err)
		}
	})
}
