package console

import (
	"errors"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/policy/roster"
)

// approvalNode is an approval revoked here, kept to be approved again as it
// was (policy.Edited.Removed).
type approvalNode struct {
	yaml   []byte
	holder string
}

// PolicyView is the fleet policy for the page.
type PolicyView struct {
	Serial    uint64         `json:"serial"`
	Issued    time.Time      `json:"issued"`
	Expires   time.Time      `json:"expires"`
	Expired   bool           `json:"expired,omitempty"`
	Verified  bool           `json:"verified"`
	Problem   string         `json:"problem,omitempty"`
	Signers   []string       `json:"signers,omitempty"`
	Needed    int            `json:"needed"`
	Approvals []ApprovalView `json:"approvals"`
}

// ApprovalView is one approval, in force or revoked here.
type ApprovalView struct {
	ID       string   `json:"id"`
	Holder   string   `json:"holder"`
	Sites    []string `json:"sites,omitempty"`
	Remote   []string `json:"remote"`
	Services []string `json:"services,omitempty"`
	Revoked  bool     `json:"revoked,omitempty"`
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

// NewApproval is an approval the committee adds.
type NewApproval struct {
	ID       string   `json:"id"`
	Holder   string   `json:"holder"`
	Sites    []string `json:"sites,omitempty"`
	Remote   []string `json:"remote"`
	Services []string `json:"services,omitempty"`
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
	c.policy = fp
	if fp.Verified {
		for _, a := range fp.Parsed.Approvals {
			delete(c.revoked, a.ID)
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
	v.Expired = !c.opt.Now().Before(p.Expires)
	for _, a := range p.Approvals {
		av := ApprovalView{ID: a.ID, Holder: a.Holder, Sites: a.Sites}
		for _, r := range a.Remote {
			av.Remote = append(av.Remote, r.String())
		}
		for _, s := range a.Services {
			av.Services = append(av.Services, s.String())
		}
		v.Approvals = append(v.Approvals, av)
	}
	for id, n := range c.revoked {
		v.Approvals = append(v.Approvals, ApprovalView{ID: id, Holder: n.holder, Revoked: true})
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
