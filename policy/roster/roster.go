package roster

import (
	"crypto/ed25519"
	"slices"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

// PayloadType is the DSSE payload type of a signed roster.
const PayloadType = "application/vnd.linkguard.roster+yaml"

// Role is what an operator may sign.
type Role string

// The roles a roster hands out.
const (
	Committee  Role = "committee"  // policies and rosters
	Grid       Role = "grid"       // feed commands: throttles and relays
	Technician Role = "technician" // diagnostics, evidence, rebirth, log level
	Release    Role = "release"    // firmware
	Viewer     Role = "viewer"     // reads; signs nothing a device acts on
)

// Roles lists every role, in the order documents show them.
var Roles = []Role{Committee, Grid, Technician, Release, Viewer}

// Class is a kind of action with its own threshold of signatures.
type Class string

// The action classes. Each is signed by one role; Protected is signed by
// grid operators but needs more of them than an ordinary feed command.
const (
	ClassCommittee  Class = "committee"  // a policy or a roster
	ClassGrid       Class = "grid"       // a feed command
	ClassProtected  Class = "protected"  // a command that touches a protected circuit
	ClassTechnician Class = "technician" // a diagnostic command
	ClassRelease    Class = "release"    // a firmware command
)

// Classes lists every class, in the order documents show them.
var Classes = []Class{ClassCommittee, ClassGrid, ClassProtected, ClassTechnician, ClassRelease}

// Role is the role whose signatures count for the class.
func (c Class) Role() Role {
	switch c {
	case ClassCommittee:
		return Committee
	case ClassGrid, ClassProtected:
		return Grid
	case ClassTechnician:
		return Technician
	case ClassRelease:
		return Release
	}
	return ""
}

// MinProtected is the least number of grid signatures a command that touches
// a protected circuit needs from afar, whatever a roster or a configuration
// says: one remote key never switches a hospital off.
const MinProtected = 2

// Thresholds are how many distinct operators of a class's role must sign an
// action of that class.
type Thresholds struct {
	Committee  int
	Grid       int
	Protected  int
	Technician int
	Release    int
}

// Defaults are the thresholds of a roster that names none: one signature,
// except MinProtected for protected circuits.
var Defaults = Thresholds{Committee: 1, Grid: 1, Protected: MinProtected, Technician: 1, Release: 1}

func (t *Thresholds) field(c Class) *int {
	switch c {
	case ClassCommittee:
		return &t.Committee
	case ClassGrid:
		return &t.Grid
	case ClassProtected:
		return &t.Protected
	case ClassTechnician:
		return &t.Technician
	case ClassRelease:
		return &t.Release
	}
	return nil
}

// Of is the threshold of class c; 0 for a class that does not exist.
func (t Thresholds) Of(c Class) int {
	if f := t.field(c); f != nil {
		return *f
	}
	return 0
}

// AtLeast returns t raised, class by class, to floor and to Defaults: what
// a device enforces when the roster says t and its configuration floor.
func (t Thresholds) AtLeast(floor Thresholds) Thresholds {
	out := t
	for _, c := range Classes {
		f := out.field(c)
		*f = max(*f, floor.Of(c), Defaults.Of(c))
	}
	return out
}

// Key is one public key of an operator.
type Key struct {
	ID     string // dsse.KeyID of Public
	Public ed25519.PublicKey
}

// Operator is a person the roster names.
type Operator struct {
	ID    string
	Name  string
	Roles []Role
	Keys  []Key
}

// Has reports whether the operator holds role r.
func (o *Operator) Has(r Role) bool { return slices.Contains(o.Roles, r) }

// Roster is a parsed, validated roster document.
type Roster struct {
	Serial  uint64
	Issued  time.Time
	Expires time.Time
	// Thresholds as signed, with Defaults for the classes it leaves out.
	Thresholds Thresholds
	Operators  []Operator
}

// Expired reports whether the roster's expiry has passed at now.
func (r *Roster) Expired(now time.Time) bool { return !now.Before(r.Expires) }

// ByKey returns the operator holding the key with id keyID, or nil.
func (r *Roster) ByKey(keyID string) *Operator {
	for i := range r.Operators {
		for _, k := range r.Operators[i].Keys {
			if k.ID == keyID {
				return &r.Operators[i]
			}
		}
	}
	return nil
}

// Operator returns the operator with the given id, or nil.
func (r *Roster) Operator(id string) *Operator {
	for i := range r.Operators {
		if r.Operators[i].ID == id {
			return &r.Operators[i]
		}
	}
	return nil
}

// Holders lists the operators holding role, in roster order.
func (r *Roster) Holders(role Role) []*Operator {
	var out []*Operator
	for i := range r.Operators {
		if r.Operators[i].Has(role) {
			out = append(out, &r.Operators[i])
		}
	}
	return out
}

// Keyring trusts the keys of every operator holding any of roles (of every
// operator when none is given), each labelled with its operator's id.
func (r *Roster) Keyring(roles ...Role) *dsse.Keyring {
	ring := dsse.NewKeyring()
	for i := range r.Operators {
		o := &r.Operators[i]
		if len(roles) > 0 && !slices.ContainsFunc(roles, o.Has) {
			continue
		}
		for _, k := range o.Keys {
			ring.Add(k.Public, o.ID)
		}
	}
	return ring
}
