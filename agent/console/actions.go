package console

import (
	"errors"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/policy/roster"
)

// PolicyView is the fleet policy for the page.
type PolicyView struct {
	Serial    uint64         `json:"serial"`
	Issued    time.Time      `json:"issued"`
	Expires   time.Time      `json:"expires"`
	Expired   bool           `json:"expired,omitempty"`
	Expiring  bool           `json:"expiring,omitempty"` // within Options.ExpiryWarning
	Verified  bool           `json:"verified"`
	Problem   string         `json:"problem,omitempty"`
	Signers   []string       `json:"signers,omitempty"`
	Needed    int            `json:"needed"`
	Approvals []ApprovalView `json:"approvals"`
}

// ApprovalView is one approval, in force or revoked: a revoked one as it
// was in the policy version before its revocation.
type ApprovalView struct {
	ID         string     `json:"id"`
	Holder     string     `json:"holder"`
	Sites      []string   `json:"sites,omitempty"`
	Remote     []string   `json:"remote"`
	Services   []string   `json:"services,omitempty"`
	Note       string     `json:"note,omitempty"`
	ValidFrom  *time.Time `json:"valid_from,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
	NotYet     bool       `json:"not_yet,omitempty"`  // its window has not opened
	Expired    bool       `json:"expired,omitempty"`  // its window has closed
	Expiring   bool       `json:"expiring,omitempty"` // closes within Options.ExpiryWarning
	Revoked    bool       `json:"revoked,omitempty"`
	// RevokedAt is when the console saw the policy without it, signed by
	// RevokedBy as serial RevokedSerial; RevokedNote is the reason that
	// policy's proposal signed.
	RevokedAt     *time.Time `json:"revoked_at,omitempty"`
	RevokedBy     []string   `json:"revoked_by,omitempty"`
	RevokedSerial uint64     `json:"revoked_serial,omitempty"`
	RevokedNote   string     `json:"revoked_note,omitempty"`
}

// RosterView is the roster in force for the page.
type RosterView struct {
	Serial     uint64            `json:"serial"`
	Expires    time.Time         `json:"expires"`
	Thresholds roster.Thresholds `json:"thresholds"`
	Operators  []OperatorView    `json:"operators"`
}

// OperatorView is one operator of the roster.
type OperatorView struct {
	ID    string        `json:"id"`
	Name  string        `json:"name,omitempty"`
	Roles []roster.Role `json:"roles"`
	Keys  []string      `json:"keys"` // key ids
}

// NewApproval is an approval the committee adds, with its validity
// window when it has one.
type NewApproval struct {
	ID         string     `json:"id"`
	Holder     string     `json:"holder"`
	Sites      []string   `json:"sites,omitempty"`
	Remote     []string   `json:"remote"`
	Services   []string   `json:"services,omitempty"`
	ValidFrom  *time.Time `json:"valid_from,omitempty"`
	ValidUntil *time.Time `json:"valid_until,omitempty"`
}

// setPolicy takes the retained fleet policy: verified against the committee
// before anything is shown or built on it. An unverifiable one is kept only
// to be shown as such.
func (c *Console) setPolicy(env []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.setPolicyLocked(env)
}

func (c *Console) setPolicyLocked(env []byte) {
	if len(env) == 0 {
		c.policy = nil
		return
	}
	fp := c.trust.judgePolicy(env)
	if !fp.Verified {
		c.log.Warn("console: the fleet policy on the broker does not verify", "problem", fp.Problem)
	}
	c.noteRevocations(c.policy, fp, c.opt.Now())
	c.policy = fp
	if fp.Verified {
		for _, a := range fp.Parsed.Approvals {
			c.forgetRevoked(a.ID)
		}
	}
}

// setRoster takes a retained roster: the roster store verifies it against
// the committee anchors and keeps the newest good one.
func (c *Console) setRoster(env []byte) {
	if len(env) == 0 {
		return
	}
	cur, err := c.trust.roster.Apply(env, "mqtt")
	switch {
	case errors.Is(err, roster.ErrUnchanged):
		return
	case err != nil:
		c.log.Warn("console: roster refused", "err", err)
		c.audit(AuditRecord{Kind: "roster.refused", Detail: jsonDetail(map[string]string{"error": err.Error()}), Signed: env})
		return
	}
	c.audit(AuditRecord{Kind: "roster", Subject: "roster", Detail: jsonDetail(map[string]any{"serial": cur.Serial(), "signers": cur.Signers}), Signed: env})
	// The policy's trust may have changed with it.
	c.mu.Lock()
	if c.policy != nil {
		c.setPolicyLocked(c.policy.Envelope)
	}
	c.mu.Unlock()
}

// Policy returns the fleet policy view, ok false when there is none.
func (c *Console) Policy() (PolicyView, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v := PolicyView{Needed: c.trust.thresholds().Committee}
	if c.policy == nil {
		return v, false
	}
	v.Verified, v.Problem, v.Signers = c.policy.Verified, c.policy.Problem, c.policy.Signers
	p := c.policy.Parsed
	if p == nil {
		return v, true
	}
	v.Serial, v.Issued, v.Expires = p.Serial, p.Issued, p.Expires
	now := c.opt.Now()
	v.Expired = !now.Before(p.Expires)
	v.Expiring = !v.Expired && p.Expires.Sub(now) <= c.opt.ExpiryWarning
	for i := range p.Approvals {
		v.Approvals = append(v.Approvals, c.approvalView(&p.Approvals[i], now))
	}
	for _, n := range c.revoked {
		v.Approvals = append(v.Approvals, n.View)
	}
	slices.SortFunc(v.Approvals, func(a, b ApprovalView) int { return strings.Compare(a.ID, b.ID) })
	return v, true
}

// Roster returns the roster in force, ok false when there is none.
func (c *Console) Roster() (RosterView, bool) {
	cur := c.trust.current()
	if cur == nil {
		return RosterView{}, false
	}
	r := cur.Roster
	v := RosterView{Serial: r.Serial, Expires: r.Expires, Thresholds: c.trust.thresholds()}
	for _, o := range r.Operators {
		ov := OperatorView{ID: o.ID, Name: o.Name, Roles: o.Roles}
		for _, k := range o.Keys {
			ov.Keys = append(ov.Keys, k.ID)
		}
		v.Operators = append(v.Operators, ov)
	}
	return v, true
}

// publishErr is a publish's error, or one saying it timed out.
func publishErr(err error) error {
	if err == nil {
		return errors.New("no acknowledgement from the broker in time")
	}
	return err
}
