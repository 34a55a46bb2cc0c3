package provision

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"periph.io/x/conn/v3/gpio"

	"linkguard.dev/linkguard/firmware/provision/layout"
	"linkguard.dev/linkguard/policy/dsse"
)

// The lock. DONE locks the console, in LockFile under its directory (and
// provisioned.json, which a device provisioned before the lock existed
// has, counts as the lock too). A locked console answers HELLO, STATUS,
// DONE (which only ever locks), LOCK and UNLOCK; every other request is
// refused with the code "locked" until the session is opened:
//
//   - by a physical act (Console.Physical): consulted when a refused
//     request or a bare UNLOCK arrives; if one is present the session
//     opens, and stays open even if the jumper is then removed;
//   - by UNLOCK with a committee-signed token for this device (an
//     "unlock" token opens the session, a "reset" one permits RESET only),
//     whose nonce the console then never accepts again.
//
// A session is the rest of one Serve call. It closes at DONE or LOCK,
// after Console.SessionIdle without a request, when a token that opened
// it expires, and when Serve returns (EOF, QUIT, the context ends): the
// next conversation starts locked. RESET removes the provisioning and with
// it the lock; the used nonces stay, so a reset token cannot be used again
// once the device is provisioned anew.

// LockFile is where the console keeps its lock and the nonces of the
// unlock tokens it has used, under its directory.
const LockFile = layout.Lock

// MaxUsedNonces bounds the remembered nonces; one that has expired is
// dropped, since its token is refused as expired anyway.
const MaxUsedNonces = 256

// DefaultSessionIdle is how long an open session lasts without a request.
const DefaultSessionIdle = 10 * time.Minute

// ErrLocked is the state of a console that answers HELLO and STATUS only;
// a RemoteError with the code "locked" is one.
var ErrLocked = errors.New("provision: the console is locked")

// Presence is a physical act at the device that opens a locked console
// for one session: a jumper fitted or a button held (PinPresence), or a
// file only root can create (FilePresence). Present may consume what it
// found (FilePresence removes its file).
type Presence interface {
	Present() (bool, error)
}

// PresenceFunc is a Presence from a function.
type PresenceFunc func() (bool, error)

// Present calls f.
func (f PresenceFunc) Present() (bool, error) { return f() }

var (
	_ Presence = PresenceFunc(nil)
	_ Presence = (*PinPresence)(nil)
	_ Presence = (*FilePresence)(nil)
)

// PinPresence is a GPIO input: a jumper or a button is present while the
// line reads its active level.
type PinPresence struct {
	pin    gpio.PinIn
	active gpio.Level
}

// NewPinPresence sets pin up as an input pulled away from its active level
// (up for an active-low jumper to ground, down for active high), so an
// open jumper reads inactive.
func NewPinPresence(pin gpio.PinIn, activeLow bool) (*PinPresence, error) {
	pull, active := gpio.PullDown, gpio.High
	if activeLow {
		pull, active = gpio.PullUp, gpio.Low
	}
	if err := pin.In(pull, gpio.NoEdge); err != nil {
		return nil, fmt.Errorf("provision: unlock pin %s: %w", pin, err)
	}
	return &PinPresence{pin: pin, active: active}, nil
}

// Present reads the line.
func (p *PinPresence) Present() (bool, error) { return p.pin.Read() == p.active, nil }

func (p *PinPresence) String() string {
	return fmt.Sprintf("fit the unlock jumper on %s (active %s)", p.pin.Name(), strings.ToLower(p.active.String()))
}

// FilePresence is a file that only root on the device can have created:
// a regular file (not a link) owned by uid 0 and not writable by group or
// others, in a directory owned by uid 0 and not writable by group or
// others either (so not /tmp). It opens one session and is consumed:
// Present removes it, and reports absent if it cannot.
type FilePresence struct{ Path string }

// Present checks the file and removes it. A file that is there but fails
// a check is left alone and reported as the error.
func (f *FilePresence) Present() (bool, error) {
	fi, err := os.Lstat(f.Path)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("unlock file: %w", err)
	}
	if err := rootOnly(f.Path, fi, false); err != nil {
		return false, err
	}
	dir := filepath.Dir(f.Path)
	di, err := os.Lstat(dir)
	if err != nil {
		return false, fmt.Errorf("unlock file: %w", err)
	}
	if err := rootOnly(dir, di, true); err != nil {
		return false, err
	}
	if err := os.Remove(f.Path); err != nil {
		return false, fmt.Errorf("unlock file: cannot consume it: %w", err)
	}
	return true, nil
}

func (f *FilePresence) String() string {
	return "as root on the device create " + f.Path + " (used once)"
}

// rootOnly refuses what someone other than root could have made or
// changed.
func rootOnly(p string, fi fs.FileInfo, dir bool) error {
	switch {
	case dir && !fi.IsDir():
		return fmt.Errorf("unlock file: %s is not a directory", p)
	case !dir && !fi.Mode().IsRegular():
		return fmt.Errorf("unlock file: %s is not a regular file", p)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("unlock file: %s: no owner to check", p)
	}
	if st.Uid != 0 {
		return fmt.Errorf("unlock file: %s is owned by uid %d, not root", p, st.Uid)
	}
	if fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("unlock file: %s is writable by group or others (%v)", p, fi.Mode().Perm())
	}
	return nil
}

// lockState is LockFile.
type lockState struct {
	Locked   bool        `json:"locked"`
	LockedAt time.Time   `json:"locked_at,omitzero"`
	Used     []usedNonce `json:"used_nonces,omitempty"`
}

type usedNonce struct {
	Nonce   string    `json:"nonce"`
	Expires time.Time `json:"expires"`
}

// loadLock reads LockFile; a missing file is an unlocked console that has
// used no token.
func (c *Console) loadLock() (lockState, error) {
	var st lockState
	b, err := os.ReadFile(c.path(LockFile))
	if errors.Is(err, fs.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("provision: %s: %w", LockFile, err)
	}
	return st, nil
}

func (c *Console) saveLock(st lockState) error {
	b, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	return c.write(LockFile, append(b, '\n'), 0o600)
}

// locked reports whether the console is locked. A lock file it cannot
// read locks it (fail closed).
func (c *Console) locked() bool {
	st, err := c.loadLock()
	return err != nil || st.Locked || exists(c.path(DoneFile))
}

// setLocked writes the lock, keeping the used nonces. If the lock file
// cannot be read it is written anew, without them.
func (c *Console) setLocked(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, _ := c.loadLock()
	st.Locked = on
	st.LockedAt = time.Time{}
	if on {
		st.LockedAt = c.now().UTC()
	}
	return c.saveLock(st)
}

// useNonce records a token's nonce before the session it opens begins,
// pruning those expired; it refuses one already used.
func (c *Console) useNonce(t UnlockToken) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	st, err := c.loadLock()
	if err != nil {
		return fail("unlock", "%v: unlock physically", err)
	}
	now := c.now()
	st.Used = slices.DeleteFunc(st.Used, func(u usedNonce) bool { return !now.Before(u.Expires) })
	if slices.ContainsFunc(st.Used, func(u usedNonce) bool { return u.Nonce == t.Nonce }) {
		return fail("unlock-token", "token %s was used already: make a new one", t.Nonce)
	}
	if len(st.Used) >= MaxUsedNonces {
		return fail("unlock-token", "%d unexpired tokens used already: wait until one expires, or unlock physically", len(st.Used))
	}
	st.Used = append(st.Used, usedNonce{Nonce: t.Nonce, Expires: t.Expires.UTC()})
	return c.saveLock(st)
}

// access is what a session has been allowed on a locked console.
type access int

const (
	closed    access = iota // HELLO, STATUS, DONE, LOCK, UNLOCK
	resetOnly               // and RESET
	open                    // everything
)

// session is one Serve call's state.
type session struct {
	access  access
	how     string    // what opened it, for logs
	nonce   string    // of the token that opened it: a resent UNLOCK is answered again
	expires time.Time // of that token; zero for a physical unlock
	last    time.Time // the last request
}

func (s *session) close() { *s = session{last: s.last} }

// expire closes a session idle for longer than idle or past its token.
func (s *session) expire(now time.Time, idle time.Duration) string {
	switch {
	case s.access == closed:
		return ""
	case !s.last.IsZero() && now.Sub(s.last) > idle:
		s.close()
		return "idle"
	case !s.expires.IsZero() && !now.Before(s.expires):
		s.close()
		return "token expired"
	}
	return ""
}

func (c *Console) now() time.Time {
	if c.Now != nil {
		return c.Now()
	}
	return time.Now()
}

func (c *Console) idle() time.Duration {
	if c.SessionIdle > 0 {
		return c.SessionIdle
	}
	return DefaultSessionIdle
}

// alwaysAnswered are the requests a locked console answers.
var alwaysAnswered = []string{"HELLO", "STATUS", "DONE", "LOCK", "UNLOCK"}

// gate refuses what a locked console's session does not allow, after
// asking the physical unlocks.
func (c *Console) gate(verb string, s *session) error {
	if slices.Contains(alwaysAnswered, verb) || s.access == open || !c.locked() {
		return nil
	}
	if s.access == resetOnly {
		if verb == "RESET" {
			return nil
		}
		return fail("locked", "this session's token permits RESET only; %s needs an unlock token (action unlock) or a physical unlock", verb)
	}
	ok, why := c.physical(s)
	if ok {
		return nil
	}
	return c.lockedErr(why)
}

// physical asks each physical unlock; the first present opens s.
func (c *Console) physical(s *session) (bool, []string) {
	var why []string
	for _, p := range c.Physical {
		ok, err := p.Present()
		if err != nil {
			c.log().Warn("physical unlock refused", "err", err)
			why = append(why, err.Error())
			continue
		}
		if ok {
			*s = session{access: open, how: describe(p), last: s.last}
			c.log().Warn("console unlocked for this session", "by", s.how)
			return true, nil
		}
	}
	return false, why
}

func describe(p Presence) string {
	if s, ok := p.(fmt.Stringer); ok {
		return s.String()
	}
	return "the physical unlock"
}

// lockedErr names how to unlock.
func (c *Console) lockedErr(why []string) error {
	ways := []string{"UNLOCK with a committee-signed token (lgctl provision or lgctl flash --unlock-token FILE)"}
	for _, p := range c.Physical {
		ways = append(ways, describe(p))
	}
	msg := "the device is provisioned and its console locked (HELLO and STATUS only); to unlock: " + strings.Join(ways, ", or ")
	if len(why) > 0 {
		msg += " (" + strings.Join(why, "; ") + ")"
	}
	return fail("locked", "%s", msg)
}

// unlock answers UNLOCK: bare, it asks the physical unlocks; with a token
// it verifies it against the committee keys under trust/policy.
func (c *Console) unlock(args []string, s *session) ([]string, error) {
	if !c.locked() {
		return []string{"UNLOCK", "not-locked"}, nil
	}
	if len(args) == 0 {
		if s.access == open {
			return []string{"UNLOCKED", ActionUnlock}, nil
		}
		if ok, why := c.physical(s); !ok {
			return nil, c.lockedErr(why)
		}
		return []string{"UNLOCKED", ActionUnlock}, nil
	}
	env, err := base64.StdEncoding.DecodeString(args[0])
	if err != nil {
		return nil, fail("base64", "%v", err)
	}
	t, err := c.verifyToken(env)
	if err != nil {
		return nil, err
	}
	if t.Nonce == s.nonce && s.access != closed { // a resent UNLOCK
		return []string{"UNLOCKED", t.Action, "until", s.expires.UTC().Format(time.RFC3339)}, nil
	}
	if err := c.useNonce(t); err != nil {
		return nil, err
	}
	a := open
	if t.Action == ActionReset {
		a = resetOnly
	}
	*s = session{access: a, how: "token " + t.Nonce, nonce: t.Nonce, expires: t.Expires, last: s.last}
	c.log().Warn("console unlocked for this session", "by", s.how, "action", t.Action, "until", t.Expires)
	return []string{"UNLOCKED", t.Action, "until", t.Expires.UTC().Format(time.RFC3339)}, nil
}

// verifyToken checks an unlock envelope: signed by the threshold of the
// committee keys installed under trust/policy, for this device, in its
// lifetime.
func (c *Console) verifyToken(env []byte) (UnlockToken, error) {
	id, err := c.identity()
	if err != nil {
		return UnlockToken{}, fail("unlock", "the device has no identity")
	}
	keys, _ := filepath.Glob(c.path(layout.PolicyTrust + "/*.pub"))
	ring := dsse.NewKeyring()
	for _, k := range keys {
		pub, err := dsse.LoadPublicKey(k)
		if err != nil {
			return UnlockToken{}, fail("unlock", "committee key %s: %v", filepath.Base(k), err)
		}
		ring.Add(pub, filepath.Base(k))
	}
	if ring.Len() == 0 {
		return UnlockToken{}, fail("unlock", "no committee keys under %s to check a token with: unlock physically", layout.PolicyTrust)
	}
	need := c.unlockThreshold(ring.Len())
	v, err := ring.VerifyLimited(env, UnlockPayloadType, need, UnlockLimits)
	if err != nil {
		return UnlockToken{}, fail("unlock-token", "%d of the %d committee keys must sign: %v", need, ring.Len(), err)
	}
	t, err := ParseUnlockToken(v.Payload)
	if err != nil {
		return UnlockToken{}, fail("unlock-token", "%v", err)
	}
	if err := t.Check(id.DeviceID, c.now()); err != nil {
		return UnlockToken{}, fail("unlock-token", "%v", err)
	}
	return t, nil
}

// unlockThreshold is UnlockThreshold when set; else the installed
// configuration's policy threshold (PolicyThreshold); else 2 when there
// are two committee keys or more, 1 otherwise.
func (c *Console) unlockThreshold(keys int) int {
	if c.UnlockThreshold > 0 {
		return c.UnlockThreshold
	}
	if c.PolicyThreshold != nil {
		if b, err := os.ReadFile(c.path(ConfigFile)); err == nil {
			if n, err := c.PolicyThreshold(b); err == nil && n >= 1 {
				return n
			}
		}
	}
	return min(2, max(1, keys))
}
