package console

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	ssldsse "github.com/secure-systems-lab/go-securesystemslib/dsse"

	"linkguard.dev/linkguard/agent/command"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// Pending is a signed action collecting signatures: a policy proposal the
// committee co-signs, or a command that needs more than one operator. The
// console never signs; it verifies each signature as it arrives and relays
// the envelope once the threshold is met.
type Pending struct {
	ID          string       `json:"id"`
	Kind        string       `json:"kind"`   // policy, command
	Action      string       `json:"action"` // revoke, approve, throttle.set, ...
	Target      string       `json:"target"` // "all" for policies; the command's target
	Detail      string       `json:"detail,omitempty"`
	Reason      string       `json:"reason,omitempty"`
	Changes     []string     `json:"changes,omitempty"` // a policy proposal against the verified base
	BaseSerial  uint64       `json:"base_serial,omitempty"`
	Serial      uint64       `json:"serial,omitempty"`
	PayloadType string       `json:"payload_type"`
	Payload     []byte       `json:"payload"` // the exact bytes every signature covers
	Class       roster.Class `json:"class"`
	Needed      int          `json:"needed"`
	Signatures  []Signature  `json:"signatures"`
	By          string       `json:"by"` // who proposed it
	Created     time.Time    `json:"created"`
	Expires     time.Time    `json:"expires"` // no more signatures after this
	State       string       `json:"state"`   // collecting, published, expired, superseded, failed
	Error       string       `json:"error,omitempty"`
	Published   *time.Time   `json:"published,omitempty"`
}

// Signature is one operator's signature over a pending payload.
type Signature struct {
	Operator string    `json:"operator"`
	KeyID    string    `json:"key_id"`
	Sig      []byte    `json:"sig"`
	At       time.Time `json:"at"`
}

// Sentinel errors the HTTP layer maps to status codes.
var (
	ErrForbidden = errors.New("console: not allowed")
	ErrNoPolicy  = errors.New("console: no verified fleet policy to build on")
	ErrBadAction = errors.New("console: bad action")
	ErrOffline   = errors.New("console: not connected to the broker")
	ErrNotFound  = errors.New("console: no such pending action")
)

// PAE is the DSSE pre-authentication encoding a signature covers.
func PAE(payloadType string, payload []byte) []byte { return ssldsse.PAE(payloadType, payload) }

// envelope assembles the DSSE envelope of p as signed so far.
func (p *Pending) envelope() []byte {
	e := ssldsse.Envelope{PayloadType: p.PayloadType, Payload: base64.StdEncoding.EncodeToString(p.Payload)}
	for _, s := range p.Signatures {
		e.Signatures = append(e.Signatures, ssldsse.Signature{KeyID: s.KeyID, Sig: base64.StdEncoding.EncodeToString(s.Sig)})
	}
	b, _ := json.Marshal(e)
	return b
}

func (p *Pending) signedBy(operator string) bool {
	return slices.ContainsFunc(p.Signatures, func(s Signature) bool { return s.Operator == operator })
}

// signer finds who may sign p with pub: the roster's holder of the key,
// who must hold p's role.
func (c *Console) signer(p *Pending, pub ed25519.PublicKey) (*roster.Operator, error) {
	o, err := c.trust.operator(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	if role := p.Class.Role(); !o.Has(role) {
		return nil, fmt.Errorf("%w: %s does not hold the %s role %s needs", ErrForbidden, o.ID, role, p.Action)
	}
	return o, nil
}

// addSignature verifies sig over p's payload by pub and adds it; it
// publishes p when the threshold is then met. c.pmu must not be held.
func (c *Console) addSignature(id string, pub ed25519.PublicKey, sig []byte) (*Pending, error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p := c.pending[id]
	if p == nil {
		return nil, ErrNotFound
	}
	if err := c.addSignatureLocked(p, pub, sig); err != nil {
		return p, err
	}
	return p, c.settle(p)
}

func (c *Console) addSignatureLocked(p *Pending, pub ed25519.PublicKey, sig []byte) error {
	now := c.opt.Now()
	if p.State != "collecting" {
		return fmt.Errorf("%w: %s is %s", ErrBadAction, p.ID, p.State)
	}
	if !now.Before(p.Expires) {
		p.State = "expired"
		c.savePending(p)
		return fmt.Errorf("%w: %s expired at %s", ErrBadAction, p.ID, p.Expires.UTC().Format(time.RFC3339))
	}
	o, err := c.signer(p, pub)
	if err != nil {
		return err
	}
	if !ed25519.Verify(pub, PAE(p.PayloadType, p.Payload), sig) {
		return fmt.Errorf("%w: the signature of %s does not verify over this payload (was it made over another copy?)", ErrBadAction, o.ID)
	}
	if p.signedBy(o.ID) {
		return fmt.Errorf("%w: %s has already signed %s", ErrBadAction, o.ID, p.ID)
	}
	s := Signature{Operator: o.ID, KeyID: dsse.KeyID(pub), Sig: sig, At: now.UTC()}
	p.Signatures = append(p.Signatures, s)
	c.savePending(p)
	c.audit(AuditRecord{Kind: "signature", Operator: o.ID, KeyID: s.KeyID, Subject: p.ID,
		Detail: jsonDetail(map[string]any{"action": p.Action, "have": len(p.Signatures), "needed": p.Needed}), Signed: sig})
	return nil
}

// addEnvelope takes the signatures of an envelope made elsewhere (lgctl
// policy cosign) over p's exact payload.
func (c *Console) addEnvelope(id string, env []byte) (*Pending, int, error) {
	e, err := dsse.ParseLimited(env, dsse.Limits{})
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %w", ErrBadAction, err)
	}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p := c.pending[id]
	if p == nil {
		return nil, 0, ErrNotFound
	}
	payload, err := base64.StdEncoding.DecodeString(e.Payload)
	if err != nil || e.PayloadType != p.PayloadType || string(payload) != string(p.Payload) {
		return p, 0, fmt.Errorf("%w: the envelope's payload is not %s's (a signature over another copy of the document counts for nothing)", ErrBadAction, p.ID)
	}
	added := 0
	var errs []error
	for _, s := range e.Signatures {
		pub := c.keyByID(s.KeyID)
		sig, err := base64.StdEncoding.DecodeString(s.Sig)
		if pub == nil || err != nil {
			errs = append(errs, fmt.Errorf("signature by %q: not a key of the roster", s.KeyID))
			continue
		}
		if o, err := c.signer(p, pub); err == nil && p.signedBy(o.ID) {
			continue // already here: the envelope we served, co-signed
		}
		if err := c.addSignatureLocked(p, pub, sig); err != nil {
			errs = append(errs, err)
			continue
		}
		added++
	}
	if added == 0 && len(errs) > 0 {
		return p, 0, errors.Join(errs...)
	}
	return p, added, c.settle(p)
}

func (c *Console) keyByID(id string) ed25519.PublicKey {
	cur := c.trust.current()
	if cur == nil {
		return nil
	}
	o := cur.Roster.ByKey(id)
	if o == nil {
		return nil
	}
	for _, k := range o.Keys {
		if k.ID == id {
			return k.Public
		}
	}
	return nil
}

// settle publishes p once enough distinct operators signed it. c.pmu held.
func (c *Console) settle(p *Pending) error {
	if p.State != "collecting" {
		return nil
	}
	p.Needed = c.needed(p)
	if len(p.Signatures) < p.Needed {
		return nil
	}
	env := p.envelope()
	if p.Kind == "policy" {
		// The devices' own check, here first: what is published verifies.
		fp := c.trust.judgePolicy(env)
		if !fp.Verified {
			return fmt.Errorf("console: proposal %s does not verify: %s", p.ID, fp.Problem)
		}
		c.mu.RLock()
		base := c.policy
		c.mu.RUnlock()
		if base != nil && base.Verified && base.Parsed != nil && base.Parsed.Serial >= p.Serial {
			p.State, p.Error = "superseded", fmt.Sprintf("the fleet policy is now serial %d", base.Parsed.Serial)
			c.savePending(p)
			return fmt.Errorf("%w: %s", ErrBadAction, p.Error)
		}
	}
	if c.client == nil || !c.client.IsConnectionOpen() {
		return fmt.Errorf("%w: %s has its signatures; it is published when the broker is back", ErrOffline, p.ID)
	}
	topic, retain := contract.PolicyTopic, true
	if p.Kind == "command" {
		topic, retain = contract.CmdTopicFor(p.Target), false
	}
	var signers []string
	for _, s := range p.Signatures {
		signers = append(signers, s.Operator)
	}
	now := c.opt.Now().UTC()
	a := &Action{ID: p.ID, Kind: p.Action, Target: p.Target, Detail: p.Detail, At: now, Serial: p.Serial, By: signers}
	if p.Kind == "command" {
		// Known before it is sent: a device may answer before the broker
		// acknowledges the publication.
		c.mu.Lock()
		c.byCmd[p.ID] = a
		c.mu.Unlock()
	}
	tok := c.client.Publish(topic, 1, retain, env)
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		p.Error = publishErr(tok.Error()).Error()
		c.savePending(p)
		return fmt.Errorf("console: publish %s: %s", p.ID, p.Error)
	}
	p.State, p.Published, p.Error = "published", &now, ""
	c.savePending(p)
	c.audit(AuditRecord{Kind: "publish", Operator: p.By, Subject: p.ID, Signed: env,
		Detail: jsonDetail(map[string]any{"action": p.Action, "target": p.Target, "topic": topic, "signers": signers, "reason": p.Reason, "serial": p.Serial})})
	c.mu.Lock()
	c.addAction(a)
	if p.Kind == "policy" {
		c.setPolicyLocked(env)
	}
	c.mu.Unlock()
	c.log.Info("console relayed a signed action", "id", p.ID, "action", p.Action, "signers", signers)
	c.notify()
	return nil
}

// needed is how many distinct operators must sign p under the roster in
// force now.
func (c *Console) needed(p *Pending) int {
	t := c.trust.thresholds()
	if p.Class == roster.ClassCommittee {
		return t.Committee
	}
	return t.Of(p.Class)
}

func (c *Console) savePending(p *Pending) {
	if err := c.store.putDoc("pending", p.ID, p); err != nil {
		c.log.Error("console: keep pending action", "id", p.ID, "err", err)
	}
}

// loadPending restores the pending actions kept in the store.
func (c *Console) loadPending() error {
	return c.store.docs("pending", func(b []byte) error {
		var p Pending
		if err := json.Unmarshal(b, &p); err != nil {
			return err
		}
		c.pending[p.ID] = &p
		return nil
	})
}

// Pendings lists the pending actions, newest first.
func (c *Console) Pendings() []Pending {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	now := c.opt.Now()
	out := make([]Pending, 0, len(c.pending))
	for _, p := range c.pending {
		if p.State == "collecting" && !now.Before(p.Expires) {
			p.State = "expired"
			c.savePending(p)
		}
		if p.State == "collecting" {
			p.Needed = c.needed(p)
		}
		cp := *p
		cp.Signatures = slices.Clone(p.Signatures)
		out = append(out, cp)
	}
	slices.SortFunc(out, func(a, b Pending) int { return b.Created.Compare(a.Created) })
	return out
}

// PendingEnvelope is the envelope of a pending action with the signatures
// so far, for lgctl policy cosign.
func (c *Console) PendingEnvelope(id string) ([]byte, error) {
	c.pmu.Lock()
	defer c.pmu.Unlock()
	p := c.pending[id]
	if p == nil {
		return nil, ErrNotFound
	}
	return p.envelope(), nil
}

// Proposal asks for a policy change.
type Proposal struct {
	Action   string       `json:"action"` // revoke, approve
	Approval string       `json:"approval"`
	New      *NewApproval `json:"new,omitempty"`
	Reason   string       `json:"reason"`
}

// Propose builds a new fleet policy from the verified one, with the next
// serial, a fresh issued time and the configured validity, for the
// committee to sign. The proposer must hold the committee role; the
// console signs nothing.
func (c *Console) Propose(s *Session, req Proposal) (*Pending, error) {
	if !s.Can(roster.Committee) {
		return nil, fmt.Errorf("%w: policy changes are proposed by committee members; %s is not one", ErrForbidden, s.Operator)
	}
	if req.Reason = cleanReason(req.Reason); len(req.Reason) < 3 || len(req.Reason) > 500 {
		return nil, fmt.Errorf("%w: give a reason (3 to 500 characters); it goes into the audit log", ErrBadAction)
	}
	c.mu.RLock()
	base := c.policy
	var removed *approvalNode
	if n, ok := c.revoked[req.Approval]; ok {
		removed = &n
	}
	c.mu.RUnlock()
	switch {
	case base == nil:
		return nil, fmt.Errorf("%w: the broker holds no fleet policy", ErrNoPolicy)
	case !base.Verified:
		return nil, fmt.Errorf("%w: the fleet policy on the broker does not verify (%s); it is never built on — publish a signed one with lgctl policy publish", ErrNoPolicy, base.Problem)
	}
	old := base.Parsed
	if old.Serial >= MaxSerial {
		return nil, fmt.Errorf("%w: the fleet policy's serial %d is at the console's bound %d", ErrBadAction, old.Serial, uint64(MaxSerial))
	}
	serial := old.Serial + 1
	now := c.opt.Now().UTC()
	// Issued a minute back, so a device whose clock is a little behind does
	// not see a policy from the future.
	r := policy.Reissue{Serial: serial, Issued: now.Add(-time.Minute).Truncate(time.Second), Validity: c.opt.PolicyValidity}
	var (
		e   *policy.Edited
		err error
	)
	p := &Pending{ID: fmt.Sprintf("policy-%d-%s", serial, newID()[:8]), Kind: "policy", Action: req.Action, Target: "all",
		Detail: req.Approval, Reason: req.Reason, BaseSerial: old.Serial, Serial: serial, PayloadType: policy.PayloadType,
		Class: roster.ClassCommittee, By: s.Operator, Created: now, State: "collecting"}
	switch req.Action {
	case "revoke":
		e, err = policy.Revoke(base.Doc, req.Approval, r)
	case "approve":
		var approval []byte
		switch {
		case req.New != nil && len(req.New.Remote) > 0:
			approval, err = policy.NewApprovalYAML(req.New.ID, req.New.Holder, req.New.Sites, req.New.Remote, req.New.Services)
			approval = withWindow(approval, req.New.ValidFrom, req.New.ValidUntil)
			p.Detail = req.New.ID
		case removed != nil:
			approval = removed.YAML
		default:
			err = fmt.Errorf("approval %q needs remote prefixes", req.Approval)
		}
		if err == nil {
			e, err = policy.Approve(base.Doc, approval, r)
		}
	default:
		err = fmt.Errorf("unknown policy action %q", req.Action)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAction, err)
	}
	// The reason goes into what the committee signs, as a comment the
	// devices ignore.
	p.Payload = withReason(e.Doc, fmt.Sprintf("%s %s, proposed by %s at %s: %s", p.Action, p.Detail, s.Operator, now.Format(time.RFC3339), p.Reason))
	if _, err := policy.Parse(p.Payload); err != nil {
		return nil, fmt.Errorf("console: the proposal with its reason does not parse: %w", err)
	}
	for _, ch := range policy.Diff(old, e.Policy) {
		p.Changes = append(p.Changes, ch.String())
	}
	// A proposal is signed within a day or made again on a fresh base.
	p.Expires = now.Add(24 * time.Hour)
	if e.Policy.Expires.Before(p.Expires) {
		p.Expires = e.Policy.Expires
	}
	p.Needed = c.needed(p)
	c.pmu.Lock()
	c.pending[p.ID] = p
	c.savePending(p)
	c.pmu.Unlock()
	c.audit(AuditRecord{Kind: "proposal", Operator: s.Operator, KeyID: s.KeyID, Subject: p.ID, Signed: p.Payload,
		Detail: jsonDetail(map[string]any{"action": p.Action, "approval": p.Detail, "reason": p.Reason, "serial": serial, "base": old.Serial, "changes": p.Changes})})
	c.notify()
	return p, nil
}

// CommandRequest is a command the operator's browser (or lgctl) built and
// signed: the payload bytes and a signature over their PAE.
type CommandRequest struct {
	Payload   []byte `json:"payload"`   // command.Payload JSON, exactly as signed
	Signature []byte `json:"signature"` // Ed25519 over PAE(command.PayloadType, payload)
	Reason    string `json:"reason,omitempty"`
}

// SubmitCommand verifies a command signed by the session's operator and
// relays it, or keeps it for further signatures when its class needs more.
func (c *Console) SubmitCommand(s *Session, req CommandRequest) (*Pending, error) {
	if err := command.CheckSize(len(req.Payload)); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAction, err)
	}
	cp, err := command.DecodePayload(req.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadAction, err)
	}
	class, ok := command.ClassOf(cp.Type)
	if !ok {
		return nil, fmt.Errorf("%w: no role may sign %q", ErrBadAction, cp.Type)
	}
	now := c.opt.Now()
	switch {
	case !now.Before(cp.Expires):
		return nil, fmt.Errorf("%w: the command expired at %s", ErrBadAction, cp.Expires.UTC().Format(time.RFC3339))
	case cp.Expires.Sub(cp.Issued) > command.MaxLifetime:
		return nil, fmt.Errorf("%w: valid for %s, at most %s", ErrBadAction, cp.Expires.Sub(cp.Issued), command.MaxLifetime)
	case cp.Issued.After(now.Add(command.DefaultSkew)):
		return nil, fmt.Errorf("%w: issued in the future (%s); check this computer's clock", ErrBadAction, cp.Issued.UTC().Format(time.RFC3339))
	case !validTarget(cp.Target):
		return nil, fmt.Errorf("%w: target %q", ErrBadAction, cp.Target)
	}
	p := &Pending{ID: cp.ID, Kind: "command", Action: cp.Type, Target: cp.Target, Detail: string(cp.Args), Reason: req.Reason,
		PayloadType: command.PayloadType, Payload: req.Payload, Class: class, By: s.Operator, Created: now.UTC(),
		Expires: cp.Expires, State: "collecting"}
	c.pmu.Lock()
	defer c.pmu.Unlock()
	if c.pending[p.ID] != nil {
		return nil, fmt.Errorf("%w: command id %s was already submitted", ErrBadAction, p.ID)
	}
	if err := c.addSignatureLocked(p, s.pub, req.Signature); err != nil {
		return nil, err
	}
	c.pending[p.ID] = p
	c.savePending(p)
	c.audit(AuditRecord{Kind: "command", Operator: s.Operator, KeyID: s.KeyID, Subject: p.ID, Signed: req.Payload,
		Detail: jsonDetail(map[string]any{"type": cp.Type, "target": cp.Target, "args": cp.Args, "reason": req.Reason})})
	return p, c.settle(p)
}

// validTarget accepts a device id, "site:NAME" or "all": names that make one
// plain topic level, never a wildcard.
func validTarget(t string) bool {
	name := strings.TrimPrefix(t, "site:")
	if name == "" || len(t) > 128 {
		return false
	}
	for _, r := range name {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return true
}
