package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// Sentinel errors the HTTP layer maps to status codes.
var (
	ErrNoKey     = errors.New("console: no key for this action")
	ErrNoPolicy  = errors.New("console: no fleet policy on the broker")
	ErrBadAction = errors.New("console: bad action")
	ErrOffline   = errors.New("console: not connected to the broker")
)

// fleetPolicy is the retained fleet policy, as published.
type fleetPolicy struct {
	Envelope []byte
	Doc      []byte // the signed YAML
	Parsed   *policy.Policy
}

// approvalNode is an approval revoked here, kept to be approved again as it
// was (policy.Edited.Removed).
type approvalNode struct {
	yaml   []byte
	holder string
}

// PolicyView is the fleet policy for the page.
type PolicyView struct {
	Serial    uint64         `json:"serial"`
	Expires   time.Time      `json:"expires"`
	Approvals []ApprovalView `json:"approvals"`
	CanSign   bool           `json:"can_sign"`
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

func (c *Console) setPolicy(env []byte) {
	if len(env) == 0 {
		c.mu.Lock()
		c.policy = nil
		c.mu.Unlock()
		return
	}
	e, err := dsse.Parse(env)
	if err != nil {
		c.log.Warn("console: fleet policy is not an envelope", "err", err)
		return
	}
	doc, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil {
		c.log.Warn("console: fleet policy payload", "err", err)
		return
	}
	p, err := policy.Parse(doc)
	if err != nil {
		c.log.Warn("console: fleet policy does not parse", "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.policy != nil && c.policy.Parsed.Serial > p.Serial {
		return
	}
	c.policy = &fleetPolicy{Envelope: env, Doc: doc, Parsed: p}
	for _, a := range p.Approvals {
		delete(c.revoked, a.ID)
	}
}

// Policy returns the fleet policy view, ok false when there is none.
func (c *Console) Policy() (PolicyView, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v := PolicyView{CanSign: len(c.opt.Committee) > 0}
	if c.policy == nil {
		return v, false
	}
	p := c.policy.Parsed
	v.Serial, v.Expires = p.Serial, p.Expires
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

// NewApproval is an approval the operator adds.
type NewApproval struct {
	ID       string   `json:"id"`
	Holder   string   `json:"holder"`
	Sites    []string `json:"sites,omitempty"`
	Remote   []string `json:"remote"`
	Services []string `json:"services,omitempty"`
}

// Revoke publishes a new fleet policy without the approval id.
func (c *Console) Revoke(id string) (*Action, error) {
	return c.editPolicy("revoke", id, func(doc []byte, r policy.Reissue) (*policy.Edited, error) {
		e, err := policy.Revoke(doc, id, r)
		if err != nil {
			return nil, err
		}
		holder := ""
		for _, a := range c.policy.Parsed.Approvals {
			if a.ID == id {
				holder = a.Holder
			}
		}
		c.revoked[id] = approvalNode{yaml: e.Removed, holder: holder}
		return e, nil
	})
}

// Approve publishes a new fleet policy with an approval: one revoked
// earlier in this console (a.Remote empty) or a new one.
func (c *Console) Approve(a NewApproval) (*Action, error) {
	return c.editPolicy("approve", a.ID, func(doc []byte, r policy.Reissue) (*policy.Edited, error) {
		var approval []byte
		if len(a.Remote) == 0 {
			old, ok := c.revoked[a.ID]
			if !ok {
				return nil, fmt.Errorf("%w: approval %q needs remote prefixes", ErrBadAction, a.ID)
			}
			approval = old.yaml
		} else {
			var err error
			if approval, err = policy.NewApprovalYAML(a.ID, a.Holder, a.Sites, a.Remote, a.Services); err != nil {
				return nil, fmt.Errorf("console: %w", err)
			}
		}
		return policy.Approve(doc, approval, r)
	})
}

// editPolicy has the fleet policy edited (policy.Revoke or policy.Approve)
// with a serial above every serial seen and a fresh issued time and expiry
// (the validity of the policy it replaces), signs it with the committee
// keys and publishes it retained.
func (c *Console) editPolicy(kind, id string, edit func(doc []byte, r policy.Reissue) (*policy.Edited, error)) (*Action, error) {
	if len(c.opt.Committee) == 0 {
		return nil, fmt.Errorf("%w: the console was given no committee key", ErrNoKey)
	}
	if c.client == nil || !c.client.IsConnectionOpen() {
		return nil, ErrOffline
	}
	c.mu.Lock()
	if c.policy == nil {
		c.mu.Unlock()
		return nil, ErrNoPolicy
	}
	old := c.policy.Parsed
	serial := old.Serial
	for _, d := range c.devices {
		serial = max(serial, d.PolicySerial)
	}
	serial++
	now := c.opt.Now().UTC()
	// Issued a minute back, so a device whose clock is a little behind
	// does not see a policy from the future.
	r := policy.Reissue{Serial: serial, Issued: now.Add(-time.Minute), Validity: old.Expires.Sub(old.Issued)}
	e, err := edit(c.policy.Doc, r)
	if err != nil {
		c.mu.Unlock()
		if errors.Is(err, ErrBadAction) {
			return nil, err
		}
		// The operator's request does not fit the policy (no such
		// approval, one already in force, an invalid edit).
		return nil, fmt.Errorf("%w: %w", ErrBadAction, err)
	}
	env, err := dsse.Sign(policy.PayloadType, e.Doc, c.opt.Committee...)
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("console: sign policy: %w", err)
	}
	c.policy = &fleetPolicy{Envelope: env, Doc: e.Doc, Parsed: e.Policy}
	a := &Action{ID: fmt.Sprintf("policy-%d", serial), Kind: kind, Target: "all", Detail: id, At: now, Serial: serial}
	c.actions = append(c.actions, a)
	c.mu.Unlock()
	tok := c.client.Publish(contract.PolicyTopic, 1, true, env)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return a, fmt.Errorf("console: publish policy: %w", publishErr(tok.Error()))
	}
	c.log.Info("console published a fleet policy", "serial", serial, "action", kind, "approval", id)
	c.notify()
	return a, nil
}

// publishErr is a publish's error, or one saying it timed out.
func publishErr(err error) error {
	if err == nil {
		return errors.New("no acknowledgement from the broker in time")
	}
	return err
}

// Command signs a command with the operator key and publishes it to target
// (a device id, "site:NAME" or "all").
func (c *Console) Command(target, typ string, args any) (*Action, error) {
	if c.opt.Operator == nil {
		return nil, fmt.Errorf("%w: the console was given no operator key", ErrNoKey)
	}
	if target == "" || typ == "" {
		return nil, fmt.Errorf("%w: target and type are required", ErrBadAction)
	}
	if c.client == nil || !c.client.IsConnectionOpen() {
		return nil, ErrOffline
	}
	var raw json.RawMessage
	if args != nil {
		b, err := json.Marshal(args)
		if err != nil {
			return nil, fmt.Errorf("%w: args: %w", ErrBadAction, err)
		}
		raw = b
	}
	now := c.opt.Now().UTC()
	p := command.Payload{ID: newID(), Target: target, Issued: now, Expires: now.Add(10 * time.Minute), Type: typ, Args: raw}
	env, err := command.Sign(p, c.opt.Operator)
	if err != nil {
		return nil, err
	}
	a := &Action{ID: p.ID, Kind: typ, Target: target, Detail: string(raw), At: now}
	c.mu.Lock()
	c.actions = append(c.actions, a)
	c.byCmd[p.ID] = a
	c.mu.Unlock()
	tok := c.client.Publish(contract.CmdTopicFor(target), 1, false, env)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return a, fmt.Errorf("console: publish command: %w", publishErr(tok.Error()))
	}
	c.notify()
	return a, nil
}

// PublishRetained publishes a retained message (an empty payload clears
// it). Tools use it to place or clear a fleet policy they signed elsewhere.
func (c *Console) PublishRetained(topic string, payload []byte) (bool, error) {
	if c.client == nil || !c.client.IsConnectionOpen() {
		return false, ErrOffline
	}
	tok := c.client.Publish(topic, 1, true, payload)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		return false, fmt.Errorf("console: publish %s: %w", topic, publishErr(tok.Error()))
	}
	return true, nil
}
