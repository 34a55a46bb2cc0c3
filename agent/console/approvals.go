package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/policy"
)

// Approvals have a life: a validity window, an expiry the committee must
// renew before, and a revocation that leaves a record of what was cut. The
// console warns ahead of every expiry (Options.ExpiryWarning) and keeps
// each approval a newer fleet policy no longer holds as it was in the
// version before, with who signed its removal and when.

// DefaultExpiryWarning is how long before an expiry the console warns.
const DefaultExpiryWarning = 14 * 24 * time.Hour

// maxRevoked bounds the revoked approvals kept (the newest).
const maxRevoked = 500

// reasonPrefix starts the comment line a proposal's reason is signed in.
const reasonPrefix = "# console: "

// approvalNode is an approval the fleet policy no longer holds: its YAML
// (policy.Edited.Removed, to approve it again as it was) and its view as
// in the version before, marked revoked.
type approvalNode struct {
	YAML []byte       `json:"yaml"`
	View ApprovalView `json:"view"`
}

// Warning is an expiry the operators must act on before it comes.
type Warning struct {
	Kind    string    `json:"kind"`    // policy, approval
	Subject string    `json:"subject"` // "fleet policy", the approval id
	Expires time.Time `json:"expires"`
	Expired bool      `json:"expired,omitempty"`
	Text    string    `json:"text"`
}

// inWords says how far off d is: "in 5 days", "in 3 hours".
func inWords(d time.Duration) string {
	switch {
	case d >= 48*time.Hour:
		return fmt.Sprintf("in %d days", int(d/(24*time.Hour)))
	case d >= 2*time.Hour:
		return fmt.Sprintf("in %d hours", int(d/time.Hour))
	}
	return fmt.Sprintf("in %d minutes", int(math.Ceil(d.Minutes())))
}

// expiryWarning is the warning for something expiring at exp, or nil when
// exp is further off than the console's warning.
func (c *Console) expiryWarning(kind, subject string, exp, now time.Time) *Warning {
	if exp.IsZero() || exp.Sub(now) > c.opt.ExpiryWarning {
		return nil
	}
	w := &Warning{Kind: kind, Subject: subject, Expires: exp.UTC()}
	if !now.Before(exp) {
		w.Expired, w.Text = true, fmt.Sprintf("%s expired at %s", subject, exp.UTC().Format(time.RFC3339))
	} else {
		w.Text = fmt.Sprintf("%s expires %s (%s)", subject, inWords(exp.Sub(now)), exp.UTC().Format(time.RFC3339))
	}
	return w
}

// Warnings lists what expires within Options.ExpiryWarning, or has
// expired: the verified fleet policy and each approval's validity.
func (c *Console) Warnings() []Warning {
	pv, ok := c.Policy()
	out := []Warning{}
	if !ok || !pv.Verified {
		return out
	}
	now := c.opt.Now()
	if w := c.expiryWarning("policy", fmt.Sprintf("the fleet policy (serial %d)", pv.Serial), pv.Expires, now); w != nil {
		out = append(out, *w)
	}
	for _, a := range pv.Approvals {
		if a.Revoked || a.ValidUntil == nil {
			continue
		}
		if w := c.expiryWarning("approval", "approval "+a.ID, *a.ValidUntil, now); w != nil {
			out = append(out, *w)
		}
	}
	return out
}

// approvalView is a's view at now.
func (c *Console) approvalView(a *policy.Approval, now time.Time) ApprovalView {
	av := ApprovalView{ID: a.ID, Holder: a.Holder, Sites: a.Sites, Note: a.Note}
	for _, r := range a.Remote {
		av.Remote = append(av.Remote, r.String())
	}
	for _, s := range a.Services {
		av.Services = append(av.Services, s.String())
	}
	if !a.ValidFrom.IsZero() {
		t := a.ValidFrom.UTC()
		av.ValidFrom = &t
		av.NotYet = now.Before(t)
	}
	if !a.ValidUntil.IsZero() {
		t := a.ValidUntil.UTC()
		av.ValidUntil = &t
		av.Expired = !now.Before(t)
		av.Expiring = !av.Expired && t.Sub(now) <= c.opt.ExpiryWarning
	}
	return av
}

// noteRevocations records the approvals a newer verified fleet policy
// (next) no longer holds, as they were in the one before (prev). c.mu held.
func (c *Console) noteRevocations(prev, next *fleetPolicy, at time.Time) {
	if prev == nil || !prev.Verified || prev.Parsed == nil || !next.Verified || next.Parsed.Serial <= prev.Parsed.Serial {
		return
	}
	note := signedReason(next.Doc)
	for i := range prev.Parsed.Approvals {
		a := &prev.Parsed.Approvals[i]
		if slices.ContainsFunc(next.Parsed.Approvals, func(b policy.Approval) bool { return b.ID == a.ID }) {
			continue
		}
		// The approval's own YAML, to approve it again as it was: cut
		// out of the version before by the same edit a revoke makes.
		e, err := policy.Revoke(prev.Doc, a.ID, policy.Reissue{Serial: prev.Parsed.Serial + 1, Issued: prev.Parsed.Issued})
		if err != nil {
			c.log.Warn("console: a revoked approval's text", "approval", a.ID, "err", err)
			continue
		}
		v := c.approvalView(a, at)
		revAt := at.UTC()
		v.Revoked, v.RevokedAt, v.RevokedBy, v.RevokedSerial, v.RevokedNote = true, &revAt, slices.Clone(next.Signers), next.Parsed.Serial, note
		n := approvalNode{YAML: e.Removed, View: v}
		c.revoked[a.ID] = n
		if err := c.store.putDoc("revoked", a.ID, n); err != nil {
			c.log.Error("console: keep a revoked approval", "approval", a.ID, "err", err)
		}
	}
	if len(c.revoked) > maxRevoked {
		ids := make([]string, 0, len(c.revoked))
		for id := range c.revoked {
			ids = append(ids, id)
		}
		slices.SortFunc(ids, func(x, y string) int { return c.revoked[x].View.RevokedAt.Compare(*c.revoked[y].View.RevokedAt) })
		for _, id := range ids[:len(ids)-maxRevoked] {
			c.forgetRevoked(id)
		}
	}
}

// forgetRevoked drops a revoked approval: approved again, or too old to
// keep. c.mu held.
func (c *Console) forgetRevoked(id string) {
	if _, ok := c.revoked[id]; !ok {
		return
	}
	delete(c.revoked, id)
	if err := c.store.deleteDoc("revoked", id); err != nil {
		c.log.Error("console: forget a revoked approval", "approval", id, "err", err)
	}
}

// loadRevoked restores the revoked approvals kept in the store.
func (c *Console) loadRevoked() error {
	return c.store.docs("revoked", func(b []byte) error {
		var n approvalNode
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("console: stored revoked approval: %w", err)
		}
		if n.View.ID != "" && n.View.RevokedAt != nil {
			c.revoked[n.View.ID] = n
		}
		return nil
	})
}

// cleanReason makes a reason one line of printable text, so that it
// cannot end the YAML comment it is signed in.
func cleanReason(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f || r == '\u2028' || r == '\u2029' || r == '\u0085' {
			return ' '
		}
		return r
	}, strings.TrimSpace(s))
}

// withReason puts line at the head of a policy document as a comment, in
// place of the one an earlier proposal left there: the committee's
// signatures then cover the reason, and devices ignore it.
func withReason(doc []byte, line string) []byte {
	for bytes.HasPrefix(doc, []byte(reasonPrefix)) {
		i := bytes.IndexByte(doc, '\n')
		if i < 0 {
			return nil
		}
		doc = doc[i+1:]
	}
	return append([]byte(reasonPrefix+cleanReason(line)+"\n"), doc...)
}

// signedReason is the reason a proposal signed in doc, "" if none.
func signedReason(doc []byte) string {
	if !bytes.HasPrefix(doc, []byte(reasonPrefix)) {
		return ""
	}
	line, _, _ := bytes.Cut(doc[len(reasonPrefix):], []byte("\n"))
	return string(line)
}

// withWindow adds a validity window to an approval's YAML (a block
// mapping, as policy.NewApprovalYAML makes it); Parse judges the window
// with the rest of the edited policy.
func withWindow(approval []byte, from, until *time.Time) []byte {
	for _, f := range []struct {
		key string
		t   *time.Time
	}{{"valid_from", from}, {"valid_until", until}} {
		if f.t != nil && len(approval) > 0 {
			approval = fmt.Appendf(approval, "%s: %s\n", f.key, f.t.UTC().Format(time.RFC3339))
		}
	}
	return approval
}
