package console

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/policy/roster"
)

// Client is an operator using the console with a key file instead of a
// browser (lgctl console sign, the testbench): it logs in with the same
// challenge, and signs on its own side, so the key never leaves it.
type Client struct {
	URL  string // the console's base URL
	Key  ed25519.PrivateKey
	HTTP *http.Client // nil: one with a cookie jar
	// TLS, when set, is used for an https console (its CA).
	TLS *tls.Config

	csrf string
}

func (c *Client) http() *http.Client {
	if c.HTTP == nil {
		jar, _ := cookiejar.New(nil)
		c.HTTP = &http.Client{Jar: jar, Timeout: 30 * time.Second}
		if c.TLS != nil {
			c.HTTP.Transport = &http.Transport{TLSClientConfig: c.TLS}
		}
	}
	return c.HTTP
}

// do sends a request and decodes a JSON answer into out.
func (c *Client) do(ctx context.Context, method, path string, body any, out any) error {
	var rd io.Reader
	ctype := "application/json"
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.URL, "/")+path, rd)
	if err != nil {
		return err
	}
	if rd != nil {
		req.Header.Set("Content-Type", ctype)
	}
	if c.csrf != "" {
		req.Header.Set(csrfHeader, c.csrf)
	}
	resp, err := c.http().Do(req)
	if err != nil {
		return fmt.Errorf("console: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return fmt.Errorf("console: %s %s: %w", method, path, err)
	}
	if resp.StatusCode != http.StatusOK {
		var e apiError
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			return &HTTPError{Status: resp.StatusCode, Msg: e.Error}
		}
		return &HTTPError{Status: resp.StatusCode, Msg: strings.TrimSpace(string(data))}
	}
	if out == nil {
		return nil
	}
	if raw, ok := out.(*[]byte); ok {
		*raw = data
		return nil
	}
	return json.Unmarshal(data, out)
}

// HTTPError is a refusal from the console.
type HTTPError struct {
	Status int
	Msg    string
}

func (e *HTTPError) Error() string { return fmt.Sprintf("console: %d %s", e.Status, e.Msg) }

// Login answers the console's challenge with the key.
func (c *Client) Login(ctx context.Context) (*Session, error) {
	var ch struct{ Nonce, Host string }
	if err := c.do(ctx, http.MethodGet, "/api/login/challenge", nil, &ch); err != nil {
		return nil, err
	}
	u, err := url.Parse(c.URL)
	if err != nil {
		return nil, err
	}
	pub := c.Key.Public().(ed25519.PublicKey)
	sig := ed25519.Sign(c.Key, LoginMessage(u.Host, ch.Nonce))
	var s Session
	if err := c.do(ctx, http.MethodPost, "/api/login", LoginRequest{PublicKey: roster.FormatKey(pub), Nonce: ch.Nonce,
		Signature: base64.StdEncoding.EncodeToString(sig)}, &s); err != nil {
		return nil, err
	}
	c.csrf = s.CSRF
	return &s, nil
}

// Pending lists the pending actions.
func (c *Client) Pending(ctx context.Context) ([]Pending, error) {
	var out []Pending
	return out, c.do(ctx, http.MethodGet, "/api/pending", nil, &out)
}

// Propose asks for a policy change; the proposer signs it with Sign.
func (c *Client) Propose(ctx context.Context, p Proposal) (*Pending, error) {
	var out Pending
	return &out, c.do(ctx, http.MethodPost, "/api/proposals", p, &out)
}

// Sign signs the pending action id over the payload the console holds.
// check, when set, sees the payload first and can refuse to sign it.
func (c *Client) Sign(ctx context.Context, id string, check func(*Pending) error) (*Pending, error) {
	list, err := c.Pending(ctx)
	if err != nil {
		return nil, err
	}
	for _, p := range list {
		if p.ID != id {
			continue
		}
		if check != nil {
			if err := check(&p); err != nil {
				return nil, err
			}
		}
		sig := ed25519.Sign(c.Key, PAE(p.PayloadType, p.Payload))
		var out Pending
		return &out, c.do(ctx, http.MethodPost, "/api/pending/"+url.PathEscape(id)+"/sign", map[string][]byte{"signature": sig}, &out)
	}
	return nil, fmt.Errorf("console: no pending action %q", id)
}

// Envelope downloads a pending action's envelope with its signatures so far.
func (c *Client) Envelope(ctx context.Context, id string) ([]byte, error) {
	var out []byte
	return out, c.do(ctx, http.MethodGet, "/api/pending/"+url.PathEscape(id)+"/envelope", nil, &out)
}

// Upload gives the console the signatures of an envelope co-signed
// elsewhere (lgctl policy cosign).
func (c *Client) Upload(ctx context.Context, id string, env []byte) (*Pending, error) {
	var out Pending
	return &out, c.do(ctx, http.MethodPost, "/api/pending/"+url.PathEscape(id)+"/envelope", env, &out)
}

// Command builds a command, signs it here and submits it; validity bounds
// how long devices accept it (default 10 minutes).
func (c *Client) Command(ctx context.Context, target, typ string, args any, reason string, validity time.Duration) (*Pending, error) {
	if validity <= 0 {
		validity = 10 * time.Minute
	}
	var raw json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, err
		}
		raw = b
	}
	now := time.Now().UTC()
	p := command.Payload{ID: newID(), Target: target, Issued: now.Add(-5 * time.Second), Expires: now.Add(validity), Type: typ, Args: raw}
	payload, err := json.Marshal(p)
	if err != nil {
		return nil, err
	}
	sig := ed25519.Sign(c.Key, PAE(command.PayloadType, payload))
	var out Pending
	return &out, c.do(ctx, http.MethodPost, "/api/commands", CommandRequest{Payload: payload, Signature: sig, Reason: reason}, &out)
}

// Audit fetches the audit log.
func (c *Client) Audit(ctx context.Context, subject string) ([]AuditRecord, error) {
	var out []AuditRecord
	q := "/api/audit?limit=1000"
	if subject != "" {
		q += "&subject=" + url.QueryEscape(subject)
	}
	return out, c.do(ctx, http.MethodGet, q, nil, &out)
}
