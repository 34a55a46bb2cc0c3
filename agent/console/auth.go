package console

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// LoginContext starts every login message a key signs, so a login
// signature can never be mistaken for, or replayed as, anything else (DSSE
// signatures sign a PAE, which never starts with it).
const LoginContext = "linkguard-console-login-v1"

// LoginMessage is what a key signs to log in at the console named host with
// the challenge nonce.
func LoginMessage(host, nonce string) []byte {
	return []byte(LoginContext + "\n" + host + "\n" + nonce)
}

const (
	sessionCookie = "lg_session"
	csrfHeader    = "X-CSRF-Token"
	challengeTTL  = 2 * time.Minute
	maxChallenges = 1000
	maxSessions   = 1000
)

// Session is one operator logged in.
type Session struct {
	Operator string        `json:"operator"`
	Name     string        `json:"name,omitempty"`
	KeyID    string        `json:"key_id"`
	Roles    []roster.Role `json:"roles"`
	CSRF     string        `json:"csrf"`
	Expires  time.Time     `json:"expires"`
	token    string
	pub      ed25519.PublicKey
}

// Can reports whether the session's operator holds role.
func (s *Session) Can(r roster.Role) bool { return s != nil && slices.Contains(s.Roles, r) }

// auth holds the outstanding challenges and the sessions, in memory: a
// restarted console logs everyone out, which is as it should be.
type auth struct {
	mu         sync.Mutex
	challenges map[string]time.Time
	sessions   map[string]*Session
}

func newToken() string {
	var b [32]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// challenge issues a single-use login nonce.
func (a *auth) challenge(now time.Time) (string, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for n, exp := range a.challenges {
		if !now.Before(exp) {
			delete(a.challenges, n)
		}
	}
	if len(a.challenges) >= maxChallenges {
		return "", errors.New("too many logins under way; try again in a minute")
	}
	n := newToken()
	a.challenges[n] = now.Add(challengeTTL)
	return n, nil
}

// take consumes a nonce; false when it was never issued, expired or used.
func (a *auth) take(nonce string, now time.Time) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	exp, ok := a.challenges[nonce]
	delete(a.challenges, nonce)
	return ok && now.Before(exp)
}

func (a *auth) open(s *Session, now time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for t, x := range a.sessions {
		if !now.Before(x.Expires) {
			delete(a.sessions, t)
		}
	}
	if len(a.sessions) >= maxSessions {
		// The oldest goes: a flood of logins cannot lock the operators out.
		var oldest *Session
		for _, x := range a.sessions {
			if oldest == nil || x.Expires.Before(oldest.Expires) {
				oldest = x
			}
		}
		delete(a.sessions, oldest.token)
	}
	a.sessions[s.token] = s
}

func (a *auth) get(token string, now time.Time) *Session {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.sessions[token]
	if s == nil {
		return nil
	}
	if !now.Before(s.Expires) {
		delete(a.sessions, token)
		return nil
	}
	return s
}

func (a *auth) close(token string) {
	a.mu.Lock()
	delete(a.sessions, token)
	a.mu.Unlock()
}

// LoginRequest is the body of POST /api/login.
type LoginRequest struct {
	PublicKey string `json:"public_key"` // base64 SPKI DER, as the roster writes keys
	Nonce     string `json:"nonce"`
	Signature string `json:"signature"` // base64 Ed25519 signature of LoginMessage(host, nonce)
}

// login checks a signed challenge and opens a session for the roster's
// holder of the key.
func (c *Console) login(host string, req LoginRequest) (*Session, error) {
	now := c.opt.Now()
	if !c.auth.take(req.Nonce, now) {
		return nil, errors.New("unknown, used or expired challenge; ask for a new one")
	}
	pub, err := roster.ParseKey(req.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	sig, err := base64.StdEncoding.DecodeString(req.Signature)
	if err != nil || !ed25519.Verify(pub, LoginMessage(host, req.Nonce), sig) {
		return nil, errors.New("the signature does not verify for this key and challenge")
	}
	o, err := c.trust.operator(pub)
	if err != nil {
		return nil, err
	}
	s := &Session{Operator: o.ID, Name: o.Name, KeyID: dsse.KeyID(pub), Roles: slices.Clone(o.Roles),
		CSRF: newToken(), Expires: now.Add(c.opt.SessionTTL), token: newToken(), pub: pub}
	c.auth.open(s, now)
	return s, nil
}

// session is the request's session, checked against the roster in force:
// an operator the committee removed is logged out at once.
func (c *Console) session(r *http.Request) *Session {
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil
	}
	s := c.auth.get(ck.Value, c.opt.Now())
	if s == nil {
		return nil
	}
	o, err := c.trust.operator(s.pub)
	if err != nil || o.ID != s.Operator {
		c.auth.close(s.token)
		return nil
	}
	if !slices.Equal(o.Roles, s.Roles) {
		s.Roles = slices.Clone(o.Roles) // a new roster changed what they may do
	}
	return s
}

// hostAllowed reports whether the Host header names this console. A page
// on another origin reaching the console by DNS rebinding sends its own
// name, and is refused.
func (c *Console) hostAllowed(host string) bool {
	return slices.Contains(c.hosts, strings.ToLower(host))
}

// originAllowed checks a browser's Origin (when it sends one) against the
// console's own names.
func (c *Console) originAllowed(origin string) bool {
	if origin == "" {
		return true
	}
	for _, h := range c.hosts {
		if origin == c.scheme()+"://"+h {
			return true
		}
	}
	return false
}

func (c *Console) scheme() string {
	if c.opt.Secure {
		return "https"
	}
	return "http"
}

// DefaultHosts are the names a console on addr answers to when none are
// configured: the address itself and, on loopback, localhost.
func DefaultHosts(addr string) []string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return []string{addr}
	}
	out := []string{net.JoinHostPort(host, port)}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		out = append(out, net.JoinHostPort("localhost", port), net.JoinHostPort("127.0.0.1", port), net.JoinHostPort("::1", port))
	}
	return out
}

// guard refuses a request with a foreign Host or Origin, and a POST without
// a session and its CSRF token (login and enrolment excepted: they open or
// ask for one).
func (c *Console) guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !c.hostAllowed(r.Host) {
			c.log.Warn("console: request for a foreign host refused", "host", r.Host, "remote", r.RemoteAddr)
			writeJSON(w, http.StatusMisdirectedRequest, apiError{"this console does not answer to host " + fmt.Sprintf("%q", r.Host)})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !c.originAllowed(r.Header.Get("Origin")) {
				writeJSON(w, http.StatusForbidden, apiError{"cross-origin request refused"})
				return
			}
			switch r.URL.Path {
			case "/api/login", "/api/enrol":
			default:
				s := c.session(r)
				if s == nil {
					writeJSON(w, http.StatusUnauthorized, apiError{"log in first (no session, or it expired)"})
					return
				}
				if subtle.ConstantTimeCompare([]byte(r.Header.Get(csrfHeader)), []byte(s.CSRF)) != 1 {
					writeJSON(w, http.StatusForbidden, apiError{"missing or wrong " + csrfHeader + " header"})
					return
				}
			}
		}
		h.ServeHTTP(w, r)
	})
}

// needSession wraps a GET handler that shows the fleet: it needs a login.
func (c *Console) needSession(fn func(w http.ResponseWriter, r *http.Request, s *Session)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		s := c.session(r)
		if s == nil {
			writeJSON(w, http.StatusUnauthorized, apiError{"log in first (no session, or it expired)"})
			return
		}
		fn(w, r, s)
	}
}

type apiError struct {
	Error string `json:"error"`
}

func (c *Console) serveChallenge(w http.ResponseWriter, r *http.Request) {
	n, err := c.auth.challenge(c.opt.Now())
	if err != nil {
		writeJSON(w, http.StatusTooManyRequests, apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"nonce": n, "host": r.Host, "context": LoginContext})
}

func (c *Console) serveLogin(w http.ResponseWriter, r *http.Request) {
	var req LoginRequest
	if !decodeBody(w, r, &req, 8<<10) {
		return
	}
	s, err := c.login(r.Host, req)
	if err != nil {
		c.audit(AuditRecord{Kind: "login.refused", Detail: jsonDetail(map[string]string{"error": err.Error(), "remote": r.RemoteAddr})})
		writeJSON(w, http.StatusForbidden, apiError{"login refused: " + err.Error()})
		return
	}
	c.audit(AuditRecord{Kind: "login", Operator: s.Operator, KeyID: s.KeyID, Detail: jsonDetail(map[string]any{"remote": r.RemoteAddr, "roles": s.Roles})})
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.token, Path: "/", HttpOnly: true, Secure: c.opt.Secure,
		SameSite: http.SameSiteStrictMode, Expires: s.Expires, MaxAge: int(c.opt.SessionTTL / time.Second)})
	writeJSON(w, http.StatusOK, s)
}

func (c *Console) serveLogout(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		c.auth.close(ck.Value)
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", HttpOnly: true, Secure: c.opt.Secure,
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
	writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// decodeBody reads a JSON body of at most limit bytes strictly.
func decodeBody(w http.ResponseWriter, r *http.Request, v any, limit int64) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"bad request body: " + err.Error()})
		return false
	}
	return true
}

func jsonDetail(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}
