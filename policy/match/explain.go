package match

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"linkguard.dev/linkguard/policy"
)

// Explanation is what the policy does to one flow and why: the decision,
// and every approval that lists the flow's remote end with which of its
// conditions (site, service, validity window) the flow meets. It is the
// one answer to "why is this link cut?": linkguard policy explain prints
// its String, the console serves it as JSON.
type Explanation struct {
	Site  string     `json:"site"`
	Src   netip.Addr `json:"src"`
	Dst   netip.Addr `json:"dst"`
	Proto string     `json:"proto"`
	DPort uint16     `json:"dport,omitempty"` // TCP, UDP and SCTP only
	At    time.Time  `json:"at"`
	// Serial and Default are the judging policy's; Draft marks an unsigned
	// draft (set by the caller, who knows where the policy came from).
	Serial  uint64 `json:"policy_serial"`
	Default string `json:"policy_default"`
	Draft   bool   `json:"draft,omitempty"`

	Verdict  string     `json:"verdict"`
	Reason   string     `json:"reason"`
	Approval *Candidate `json:"approval,omitempty"` // the approval that covers the flow
	Remote   netip.Addr `json:"remote,omitzero"`    // the international end judged; zero when domestic
	// Candidates are the approvals listing either end, once per listed
	// prefix (the destination's first); none when the flow is domestic.
	Candidates []Candidate `json:"candidates"`

	proto uint8
}

// Candidate is one approval that lists a flow's remote address, and how the
// flow fares against each of its conditions.
type Candidate struct {
	ID       string       `json:"id"`
	Holder   string       `json:"holder"`
	Prefix   netip.Prefix `json:"prefix,omitzero"` // the listed prefix that holds the address
	Address  netip.Addr   `json:"address,omitzero"`
	SiteOK   bool         `json:"site_ok"`
	Service  bool         `json:"service_ok"`
	WindowOK bool         `json:"window_ok"`
	Sites    []string     `json:"sites,omitempty"`    // empty: every site
	Services []string     `json:"services,omitempty"` // empty: any service
	// ValidFrom and ValidUntil bound the approval's window (zero: open);
	// Window spells it and where the flow's time lies in it.
	ValidFrom  time.Time `json:"valid_from,omitzero"`
	ValidUntil time.Time `json:"valid_until,omitzero"`
	Window     string    `json:"window"`
}

// Covers reports whether the flow meets every condition of c.
func (c *Candidate) Covers() bool { return c.SiteOK && c.Service && c.WindowOK }

// HasPorts reports whether flows of proto are opened to a port.
func HasPorts(proto uint8) bool {
	return proto == policy.ProtoTCP || proto == policy.ProtoUDP || proto == policy.ProtoSCTP
}

// Explain judges q with m and lists the approvals that name its remote end.
func Explain(m *Matcher, q *Query) *Explanation {
	d := m.Decide(q)
	p := m.Policy()
	e := &Explanation{Site: q.Site, Src: q.Src, Dst: q.Dst, Proto: policy.ProtoName(q.Proto), At: q.Now.UTC(),
		Serial: p.Serial, Default: p.Default.String(), Verdict: d.Verdict.String(), Reason: d.Reason.String(),
		Candidates: []Candidate{}, proto: q.Proto}
	if HasPorts(q.Proto) {
		e.DPort = q.DPort
	}
	if a := m.Approval(d.Approval); a != nil {
		c := candidate(a, netip.Prefix{}, netip.Addr{}, q)
		e.Approval = &c
	}
	if d.Verdict == Domestic {
		return e
	}
	e.Remote = d.Remote
	for _, remote := range []netip.Addr{q.Dst.Unmap(), q.Src.Unmap()} {
		if m.IsDomestic(remote) {
			continue
		}
		for i := range p.Approvals {
			a := &p.Approvals[i]
			for _, pfx := range a.Remote {
				if pfx.Contains(remote) {
					e.Candidates = append(e.Candidates, candidate(a, pfx, remote, q))
				}
			}
		}
	}
	return e
}

func candidate(a *policy.Approval, pfx netip.Prefix, remote netip.Addr, q *Query) Candidate {
	c := Candidate{ID: a.ID, Holder: a.Holder, Prefix: pfx, Address: remote,
		SiteOK: a.CoversSite(q.Site), Service: a.CoversService(q.Proto, q.DPort), WindowOK: a.ActiveAt(q.Now),
		Sites: a.Sites, ValidFrom: a.ValidFrom.UTC(), ValidUntil: a.ValidUntil.UTC(), Window: Window(a, q.Now)}
	if a.ValidFrom.IsZero() {
		c.ValidFrom = time.Time{}
	}
	if a.ValidUntil.IsZero() {
		c.ValidUntil = time.Time{}
	}
	for _, s := range a.Services {
		c.Services = append(c.Services, s.String())
	}
	return c
}

// String is the explanation as linkguard policy explain prints it.
func (e *Explanation) String() string {
	var w strings.Builder
	if e.Draft {
		fmt.Fprintln(&w, "UNSIGNED DRAFT: this policy is not signed; no device enforces it until the committee signs it")
	}
	port := ""
	if HasPorts(e.proto) {
		port = fmt.Sprintf(" port %d", e.DPort)
	}
	at := fmt.Sprintf("at site %q", e.Site)
	if e.Site == "" {
		at = "at no site (no approval is site-restricted)"
	}
	label := "serial " + fmt.Sprint(e.Serial)
	if e.Draft {
		label = "UNSIGNED DRAFT, " + label
	}
	fmt.Fprintf(&w, "flow:     %s %s -> %s%s %s, %s\n", e.Proto, e.Src, e.Dst, port, at, e.At.Format(time.RFC3339))
	fmt.Fprintf(&w, "policy:   %s, default %s\n", label, e.Default)
	fmt.Fprintf(&w, "verdict:  %s\nreason:   %s\n", strings.ToUpper(e.Verdict), e.Reason)
	if a := e.Approval; a != nil {
		fmt.Fprintf(&w, "approval: %s (%s)\n", a.ID, a.Holder)
	}
	if e.Verdict == Domestic.String() {
		return w.String()
	}
	fmt.Fprintf(&w, "remote:   %s\n", e.Remote)
	for _, c := range e.Candidates {
		fmt.Fprintf(&w, "  %s (%s) lists %s: site %s, service %s, window %s\n", c.ID, c.Holder, c.Prefix,
			yesNo(c.SiteOK), yesNo(c.Service), yesNo(c.WindowOK))
		if !c.SiteOK {
			fmt.Fprintf(&w, "      sites:    %s\n", strings.Join(c.Sites, ", "))
		}
		if !c.Service {
			services := "any"
			if len(c.Services) > 0 {
				services = strings.Join(c.Services, ", ")
			}
			fmt.Fprintf(&w, "      services: %s\n", services)
		}
		if !c.WindowOK || !c.ValidUntil.IsZero() {
			fmt.Fprintf(&w, "      valid:    %s\n", c.Window)
		}
	}
	if len(e.Candidates) == 0 {
		fmt.Fprintln(&w, "  no approval lists this address")
	}
	return w.String()
}

// Window spells an approval's validity window and where t lies in it.
func Window(a *policy.Approval, t time.Time) string {
	from, until := "always", "revoked"
	if !a.ValidFrom.IsZero() {
		from = a.ValidFrom.UTC().Format(time.RFC3339)
	}
	if !a.ValidUntil.IsZero() {
		until = a.ValidUntil.UTC().Format(time.RFC3339)
	}
	s := "from " + from + " until " + until
	switch {
	case !a.ValidFrom.IsZero() && t.Before(a.ValidFrom):
		s += fmt.Sprintf(" (opens in %s)", Days(a.ValidFrom.Sub(t)))
	case !a.ValidUntil.IsZero() && !t.Before(a.ValidUntil):
		s += fmt.Sprintf(" (lapsed %s ago)", Days(t.Sub(a.ValidUntil)))
	case !a.ValidUntil.IsZero():
		s += fmt.Sprintf(" (%s left)", Days(a.ValidUntil.Sub(t)))
	}
	return s
}

// Days spells a duration in days and hours, or hours and minutes under a
// day.
func Days(d time.Duration) string {
	const day = 24 * time.Hour
	if d < day {
		return d.Round(time.Minute).String()
	}
	n, h := int(d/day), int((d%day).Round(time.Hour)/time.Hour)
	if h == 24 {
		n, h = n+1, 0
	}
	s := fmt.Sprintf("%d days", n)
	if n == 1 {
		s = "1 day"
	}
	if h > 0 {
		s += fmt.Sprintf(" %dh", h)
	}
	return s
}

func yesNo(ok bool) string {
	if ok {
		return "ok"
	}
	return "NO"
}
