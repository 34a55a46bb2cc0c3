package bench

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// anchorID names the i-th committee anchor's member of the roster.
func anchorID(i int) string {
	if i == 0 {
		return "committee"
	}
	return fmt.Sprintf("committee-%d", i+1)
}

// rosterYAML renders the bench's roster.
func (b *Bench) rosterYAML() []byte {
	now := time.Now().UTC().Truncate(time.Second)
	var w strings.Builder
	fmt.Fprintf(&w, "serial: %d\nissued: %s\nexpires: %s\nthresholds:\n  committee: %d\noperators:\n", b.rserial,
		now.Add(-time.Hour).Format(time.RFC3339), now.AddDate(1, 0, 0).Format(time.RFC3339), max(b.opt.Threshold, 1))
	for _, m := range b.members {
		roles := make([]string, len(m.Roles))
		for i, r := range m.Roles {
			roles[i] = string(r)
		}
		keys := make([]string, len(m.Keys))
		for i, k := range m.Keys {
			keys[i] = roster.FormatKey(k)
		}
		fmt.Fprintf(&w, "  - id: %s\n    name: %q\n    roles: [%s]\n    keys: [%s]\n", m.ID, "Operator "+m.ID, strings.Join(roles, ", "), strings.Join(keys, ", "))
	}
	return []byte(w.String())
}

// publishRoster signs the next roster with every anchor (the committee on
// its own machines) and publishes it retained. b.rmu held or not needed.
func (b *Bench) publishRoster() error {
	b.rserial++
	env, err := dsse.Sign(roster.PayloadType, b.rosterYAML(), b.Keys.AllAnchors()...)
	if err != nil {
		return fmt.Errorf("bench: sign roster: %w", err)
	}
	if err := b.Broker.Publish(contract.RosterTopic, env, true); err != nil {
		return fmt.Errorf("bench: publish roster: %w", err)
	}
	return nil
}

// Enrol adds an operator's public key (as the roster writes keys) to the
// roster, signed by the committee anchors, and waits until the console has
// it.
func (b *Bench) Enrol(ctx context.Context, id, publicKey string, roles ...roster.Role) error {
	pub, err := roster.ParseKey(publicKey)
	if err != nil {
		return fmt.Errorf("bench: enrol %s: %w", id, err)
	}
	b.rmu.Lock()
	for _, m := range b.members {
		if slices.ContainsFunc(m.Keys, func(k ed25519.PublicKey) bool { return k.Equal(pub) }) {
			b.rmu.Unlock()
			return fmt.Errorf("bench: enrol %s: the key is %s's already", id, m.ID)
		}
	}
	b.members = append(b.members, Member{ID: id, Roles: roles, Keys: []ed25519.PublicKey{pub}})
	b.rmu.Unlock()
	return b.republishRoster(ctx)
}

// autoEnrol adds every enrolment request to the roster (the demo only).
func (b *Bench) autoEnrol(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, e := range b.Console.Enrolments() {
			if e.InRoster != "" {
				continue
			}
			id := strings.Map(func(r rune) rune {
				if unicode.IsLetter(r) || unicode.IsDigit(r) {
					return unicode.ToLower(r)
				}
				return '-'
			}, e.Name) + "-" + e.KeyID[:6]
			if err := b.Enrol(ctx, id, e.PublicKey, roster.Committee, roster.Grid, roster.Technician); err != nil {
				b.log.Error("demo enrolment", "name", e.Name, "err", err)
				continue
			}
			b.log.Info("demo: the simulated committee enrolled an operator", "id", id)
		}
	}
}

// client is a logged-in console client for one of the bench's keys.
func (b *Bench) client(ctx context.Context, name string, key ed25519.PrivateKey) (*console.Client, error) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	if c := b.clients[name]; c != nil {
		return c, nil
	}
	c := &console.Client{URL: b.ConsoleURL, Key: key}
	if _, err := c.Login(ctx); err != nil {
		return nil, fmt.Errorf("bench: %s: %w", name, err)
	}
	b.clients[name] = c
	return c, nil
}

// call runs fn with a client logged in as name, logging in again once if
// the session had expired.
func (b *Bench) call(ctx context.Context, name string, key ed25519.PrivateKey, fn func(*console.Client) (*console.Pending, error)) (*console.Pending, error) {
	c, err := b.client(ctx, name, key)
	if err != nil {
		return nil, err
	}
	p, err := fn(c)
	if he, ok := err.(*console.HTTPError); ok && he.Status == 401 {
		b.rmu.Lock()
		delete(b.clients, name)
		b.rmu.Unlock()
		if c, err = b.client(ctx, name, key); err != nil {
			return nil, err
		}
		return fn(c)
	}
	return p, err
}

// Propose has the committee propose a policy change at the console and
// co-sign it, each anchor member in turn, until it is published.
func (b *Bench) Propose(ctx context.Context, req console.Proposal) (*console.Pending, error) {
	if req.Reason == "" {
		req.Reason = "testbench " + req.Action
	}
	anchors := b.Keys.AllAnchors()
	p, err := b.call(ctx, anchorID(0), anchors[0], func(c *console.Client) (*console.Pending, error) { return c.Propose(ctx, req) })
	if err != nil {
		return nil, err
	}
	for i, a := range anchors {
		if p.State != "collecting" || slices.ContainsFunc(p.Signatures, func(s console.Signature) bool { return s.Operator == anchorID(i) }) {
			continue
		}
		id := p.ID
		if p, err = b.call(ctx, anchorID(i), a, func(c *console.Client) (*console.Pending, error) { return c.Sign(ctx, id, nil) }); err != nil {
			return p, err
		}
	}
	return p, nil
}

// Revoke proposes and co-signs a policy without the approval.
func (b *Bench) Revoke(ctx context.Context, approval string) (*console.Pending, error) {
	return b.Propose(ctx, console.Proposal{Action: "revoke", Approval: approval})
}

// Approve proposes and co-signs a policy with the approval: one revoked
// earlier (a.Remote empty) or a new one.
func (b *Bench) Approve(ctx context.Context, a console.NewApproval) (*console.Pending, error) {
	req := console.Proposal{Action: "approve", Approval: a.ID}
	if len(a.Remote) > 0 {
		req.New = &a
	}
	return b.Propose(ctx, req)
}

// Command has the bench's operator sign a command and send it through the
// console.
func (b *Bench) Command(ctx context.Context, target, typ string, args any) (*console.Pending, error) {
	return b.call(ctx, "operator", b.Keys.Operator, func(c *console.Client) (*console.Pending, error) {
		return c.Command(ctx, target, typ, args, "testbench", 0)
	})
}

// promote gives an operator of the roster one more role; republishRoster
// signs and publishes the result.
func (b *Bench) promote(id string, role roster.Role) {
	b.rmu.Lock()
	defer b.rmu.Unlock()
	for i := range b.members {
		if b.members[i].ID == id && !slices.Contains(b.members[i].Roles, role) {
			b.members[i].Roles = append(b.members[i].Roles, role)
		}
	}
}

// republishRoster signs and publishes the roster as it stands and waits
// for the console to take it.
func (b *Bench) republishRoster(ctx context.Context) error {
	b.rmu.Lock()
	err := b.publishRoster()
	want := b.rserial
	b.rmu.Unlock()
	if err != nil {
		return err
	}
	return b.Poll(ctx, 10*time.Second, func() error {
		if r, ok := b.Console.Roster(); !ok || r.Serial < want {
			return fmt.Errorf("bench: the console has not taken roster serial %d", want)
		}
		return nil
	})
}
