package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode"

	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/roster"
)

// maxEnrolments bounds the enrolment requests kept: anyone who reaches the
// console may ask, so the list must not grow without end.
const maxEnrolments = 200

// Enrolment is a request to be added to the roster: a name and a public
// key made in a browser (or with lgctl key gen). It grants nothing; the
// committee adds the key to the next roster it signs, or does not.
type Enrolment struct {
	Name      string    `json:"name"`
	PublicKey string    `json:"public_key"` // as the roster writes keys
	KeyID     string    `json:"key_id"`
	At        time.Time `json:"at"`
	Remote    string    `json:"remote,omitempty"`
	InRoster  string    `json:"in_roster,omitempty"` // the operator id, once the roster names the key
}

func (c *Console) serveEnrol(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string `json:"name"`
		PublicKey string `json:"public_key"`
	}
	if !decodeBody(w, r, &req, 4<<10) {
		return
	}
	e, err := c.Enrol(req.Name, req.PublicKey, r.RemoteAddr)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, e)
}

// Enrol records an enrolment request.
func (c *Console) Enrol(name, publicKey, remote string) (*Enrolment, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 100 || strings.ContainsFunc(name, unicode.IsControl) {
		return nil, fmt.Errorf("give your name (1 to 100 printable characters)")
	}
	pub, err := roster.ParseKey(publicKey)
	if err != nil {
		return nil, fmt.Errorf("public key: %w", err)
	}
	e := &Enrolment{Name: name, PublicKey: roster.FormatKey(pub), KeyID: dsse.KeyID(pub), At: c.opt.Now().UTC(), Remote: remote}
	list := c.Enrolments()
	if len(list) >= maxEnrolments {
		// The oldest request goes.
		if err := c.store.deleteDoc("enrolments", list[len(list)-1].KeyID); err != nil {
			return nil, err
		}
	}
	if err := c.store.putDoc("enrolments", e.KeyID, e); err != nil {
		return nil, err
	}
	c.audit(AuditRecord{Kind: "enrol", KeyID: e.KeyID, Detail: jsonDetail(e)})
	c.notify()
	return e, nil
}

// Enrolments lists the enrolment requests, newest first, each marked with
// the operator the roster in force gives its key, if any.
func (c *Console) Enrolments() []Enrolment {
	var out []Enrolment
	c.store.docs("enrolments", func(b []byte) error {
		var e Enrolment
		if json.Unmarshal(b, &e) == nil {
			out = append(out, e)
		}
		return nil
	})
	if cur := c.trust.current(); cur != nil {
		for i := range out {
			if o := cur.Roster.ByKey(out[i].KeyID); o != nil {
				out[i].InRoster = o.ID
			}
		}
	}
	slices.SortFunc(out, func(a, b Enrolment) int { return b.At.Compare(a.At) })
	return out
}

func (c *Console) serveEnrolments(w http.ResponseWriter, r *http.Request, s *Session) {
	if !s.Can(roster.Committee) {
		writeJSON(w, http.StatusForbidden, apiError{"enrolment requests are for the committee"})
		return
	}
	list := c.Enrolments()
	if list == nil {
		list = []Enrolment{}
	}
	writeJSON(w, http.StatusOK, list)
}
