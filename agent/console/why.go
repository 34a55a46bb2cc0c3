package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// "Why is this link cut?" One search box: an address, a pair, a customer's
// prefix, with a service or a site if the operator knows them. The answer
// comes from the fleet's stored link.denied events (which devices saw it,
// with what verdict) and from the verified fleet policy, judged by
// match.Explain — the answer linkguard policy explain gives on a device —
// with what to do: the approval to extend, or the one to request.

// Bounds on a typed search: it comes from a browser.
const (
	maxTermsLen   = 512
	maxTerms      = 16
	maxTermLen    = 128
	maxWords      = 8
	maxVerdicts   = 10
	defaultWhyAgo = 7 * 24 * time.Hour
)

// Terms is a search as an operator types it: words separated by spaces,
// "quotes" around a phrase.
//
//	203.0.113.5                     an address
//	103.1.2.3 203.0.113.5           a pair: the flow between them
//	203.0.113.0/24                  a customer's prefix
//	tcp/443  udp  icmp  port:22     a service
//	site:vientiane-north  device:vte-border-01  approval:LA-7
//	holder:"Example Telecom"  type:link.denied
//	LA-7  vte-border-01  Example    a bare word: an approval, a device or a holder
type Terms struct {
	Ends     []netip.Prefix // addresses (a /32 or /128) and prefixes, at most two
	Proto    string         // as events spell it; "" any
	proto    uint8
	DPort    uint16
	Site     string
	Device   string
	Approval string
	Holder   string
	Type     string
	Words    []string
}

// ParseTerms parses a search box's text, refusing what no search means.
func ParseTerms(s string) (Terms, error) {
	var t Terms
	if len(s) > maxTermsLen {
		return t, fmt.Errorf("%w: the search is over %d bytes", ErrSearch, maxTermsLen)
	}
	if !utf8.ValidString(s) {
		return t, fmt.Errorf("%w: the search is not UTF-8", ErrSearch)
	}
	toks, err := tokens(s)
	if err != nil {
		return t, err
	}
	for _, tok := range toks {
		if err := t.add(tok); err != nil {
			return Terms{}, err
		}
	}
	return t, nil
}

// tokens splits s at spaces, keeping "quoted phrases" (and key:"quoted
// values") whole.
func tokens(s string) ([]string, error) {
	var out []string
	var b strings.Builder
	quoted, has := false, false
	flush := func() error {
		if has {
			if len(out) == maxTerms {
				return fmt.Errorf("%w: more than %d terms", ErrSearch, maxTerms)
			}
			out = append(out, b.String())
		}
		b.Reset()
		has = false
		return nil
	}
	for _, r := range s {
		switch {
		case r == '"':
			quoted, has = !quoted, true
		case unicode.IsSpace(r) && !quoted:
			if err := flush(); err != nil {
				return nil, err
			}
		case unicode.IsControl(r):
			return nil, fmt.Errorf("%w: a control character in the search", ErrSearch)
		default:
			b.WriteRune(r)
			has = true
		}
		if b.Len() > maxTermLen {
			return nil, fmt.Errorf("%w: a term over %d bytes", ErrSearch, maxTermLen)
		}
	}
	if quoted {
		return nil, fmt.Errorf("%w: a quote is not closed", ErrSearch)
	}
	return out, flush()
}

func (t *Terms) add(tok string) error {
	if tok == "" {
		return nil
	}
	if a, err := netip.ParseAddr(tok); err == nil {
		if a.Zone() != "" {
			return fmt.Errorf("%w: %q: an address with a zone is never a border flow's", ErrSearch, tok)
		}
		return t.addEnd(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	if p, err := netip.ParsePrefix(tok); err == nil {
		if p.Addr().Is4In6() {
			return fmt.Errorf("%w: %q: write an IPv4 prefix as IPv4", ErrSearch, tok)
		}
		if p != p.Masked() {
			return fmt.Errorf("%w: %q has host bits set: did you mean %s?", ErrSearch, tok, p.Masked())
		}
		return t.addEnd(p)
	}
	if k, v, ok := strings.Cut(tok, ":"); ok {
		if v == "" {
			return fmt.Errorf("%w: %q names nothing", ErrSearch, tok)
		}
		switch strings.ToLower(k) {
		case "site":
			return set(&t.Site, k, v)
		case "device":
			return set(&t.Device, k, v)
		case "approval":
			return set(&t.Approval, k, v)
		case "holder":
			return set(&t.Holder, k, v)
		case "type":
			return set(&t.Type, k, v)
		case "proto":
			return t.addService(v)
		case "port", "dport":
			n, err := strconv.ParseUint(v, 10, 16)
			if err != nil || n == 0 {
				return fmt.Errorf("%w: %q: a port is 1-65535", ErrSearch, tok)
			}
			if t.DPort != 0 {
				return fmt.Errorf("%w: two ports", ErrSearch)
			}
			t.DPort = uint16(n)
			return nil
		}
		return fmt.Errorf("%w: %q: unknown key %q (site, device, approval, holder, type, proto, port)", ErrSearch, tok, k)
	}
	if _, err := policy.ParseProto(strings.SplitN(tok, "/", 2)[0]); err == nil && !isNumber(tok) {
		return t.addService(tok)
	}
	if len(t.Words) == maxWords {
		return fmt.Errorf("%w: more than %d words", ErrSearch, maxWords)
	}
	t.Words = append(t.Words, tok)
	return nil
}

func isNumber(s string) bool {
	_, err := strconv.ParseUint(s, 10, 64)
	return err == nil
}

func set(dst *string, k, v string) error {
	if *dst != "" && *dst != v {
		return fmt.Errorf("%w: two values for %s", ErrSearch, k)
	}
	*dst = v
	return nil
}

func (t *Terms) addEnd(p netip.Prefix) error {
	if len(t.Ends) == 2 {
		return fmt.Errorf("%w: at most two addresses or prefixes (the two ends of a flow)", ErrSearch)
	}
	t.Ends = append(t.Ends, p)
	return nil
}

// addService takes "tcp", "tcp/443" or "ip/47": one protocol, one port.
func (t *Terms) addService(v string) error {
	svc, err := policy.ParseService(v)
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrSearch, v, err)
	}
	if svc.PortLo != svc.PortHi {
		return fmt.Errorf("%w: %q: name one port, not a range", ErrSearch, v)
	}
	if t.Proto != "" {
		return fmt.Errorf("%w: two services", ErrSearch)
	}
	t.proto, t.Proto = svc.Proto, policy.ProtoName(svc.Proto)
	if svc.PortLo != 0 {
		if t.DPort != 0 && t.DPort != svc.PortLo {
			return fmt.Errorf("%w: two ports", ErrSearch)
		}
		t.DPort = svc.PortLo
	}
	return nil
}

// fleetPolicyNow is the fleet policy when it verifies, else why not.
func (c *Console) fleetPolicyNow() (*policy.Policy, string) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	switch {
	case c.policy == nil:
		return nil, "no fleet policy has been published"
	case !c.policy.Verified || c.policy.Parsed == nil:
		return nil, "the fleet policy does not verify against the committee keys (" + c.policy.Problem + ")"
	}
	return c.policy.Parsed, ""
}

// resolve turns the terms into an event search: a holder or approval
// becomes the approvals' ids and remote prefixes (from the fleet policy),
// a bare word whatever it names.
func (c *Console) resolve(t Terms, p *policy.Policy) (EventSearch, error) {
	s := EventSearch{Ends: t.Ends, Proto: t.Proto, DPort: t.DPort, Device: t.Device, Site: t.Site, Type: t.Type}
	addApproval := func(a *policy.Approval) {
		if !slices.Contains(s.Approvals, a.ID) {
			s.Approvals = append(s.Approvals, a.ID)
			s.Remotes = append(s.Remotes, a.Remote...)
		}
	}
	approvals := func(fn func(a *policy.Approval) bool) bool {
		found := false
		if p != nil {
			for i := range p.Approvals {
				if fn(&p.Approvals[i]) {
					addApproval(&p.Approvals[i])
					found = true
				}
			}
		}
		return found
	}
	holder := func(h string) func(a *policy.Approval) bool {
		h = strings.ToLower(h)
		return func(a *policy.Approval) bool { return strings.Contains(strings.ToLower(a.Holder), h) }
	}
	if t.Approval != "" && !approvals(func(a *policy.Approval) bool { return a.ID == t.Approval }) {
		s.Approvals = append(s.Approvals, t.Approval) // events may name an approval the policy no longer has
	}
	if t.Holder != "" && !approvals(holder(t.Holder)) {
		return s, fmt.Errorf("%w: no approval of the fleet policy has a holder like %q", ErrSearch, t.Holder)
	}
	for _, w := range t.Words {
		if approvals(func(a *policy.Approval) bool { return a.ID == w }) {
			continue
		}
		if _, ok := c.Device(w); ok && s.Device == "" {
			s.Device = w
			continue
		}
		if approvals(holder(w)) {
			continue
		}
		return s, fmt.Errorf("%w: %q is not an address, prefix, service, approval, holder or device the console knows", ErrSearch, w)
	}
	if len(s.Approvals)+len(s.Remotes) > maxSearchRemotes {
		return s, fmt.Errorf("%w: that names more than %d approvals and prefixes; narrow it", ErrSearch, maxSearchRemotes)
	}
	return s, nil
}

// WhySeen is what one device reported of the flows asked about.
type WhySeen struct {
	Device       string    `json:"device"`
	Site         string    `json:"site"`
	Events       int64     `json:"events"`
	First        time.Time `json:"first"`
	Last         time.Time `json:"last"`
	Src          string    `json:"src"`
	Dst          string    `json:"dst"`
	Proto        string    `json:"proto"`
	DPort        uint16    `json:"dport,omitempty"`
	Verdict      string    `json:"verdict"`
	Reason       string    `json:"reason"`
	Action       string    `json:"action"`
	PolicySerial uint64    `json:"policy_serial,omitempty"`
}

// WhyVerdict is the fleet policy's verdict on one flow at one site, and
// what to do about it.
type WhyVerdict struct {
	Site        string             `json:"site"`
	Devices     []string           `json:"devices,omitempty"` // those that saw it
	Explanation *match.Explanation `json:"explanation"`
	Text        string             `json:"text"` // as linkguard policy explain prints it
	Advice      []string           `json:"advice"`
}

// WhyAnswer answers one search.
type WhyAnswer struct {
	Query        string       `json:"query"`
	Since        time.Time    `json:"since"`
	PolicySerial uint64       `json:"policy_serial,omitempty"`
	Seen         []WhySeen    `json:"seen"`
	Verdicts     []WhyVerdict `json:"verdicts"`
	Notes        []string     `json:"notes,omitempty"`
}

// Why answers "why is this link cut?" for the search q, from the events
// stored since since.
func (c *Console) Why(ctx context.Context, q string, since time.Time) (WhyAnswer, error) {
	t, err := ParseTerms(q)
	if err != nil {
		return WhyAnswer{}, err
	}
	if len(t.Ends) == 0 {
		return WhyAnswer{}, fmt.Errorf("%w: name an address, a pair of addresses or a prefix", ErrSearch)
	}
	p, problem := c.fleetPolicyNow()
	ans := WhyAnswer{Query: q, Since: since.UTC(), Seen: []WhySeen{}, Verdicts: []WhyVerdict{}}
	s, err := c.resolve(t, p)
	if err != nil {
		return WhyAnswer{}, err
	}
	s.Type, s.Since = "link.denied", since
	if ans.Seen, err = c.store.seenBy(ctx, s); err != nil {
		return WhyAnswer{}, err
	}
	if p == nil {
		ans.Notes = append(ans.Notes, "no verdict: "+problem)
		return ans, nil
	}
	ans.PolicySerial = p.Serial
	m := match.Compile(p)
	now := c.opt.Now()
	// The flows to judge: those the devices saw, else one built from the
	// search.
	var flows []*whyFlow
	find := func(f whyFlow) *whyFlow {
		for _, x := range flows {
			if x.site == f.site && x.src == f.src && x.dst == f.dst && x.proto == f.proto && x.dport == f.dport {
				return x
			}
		}
		return nil
	}
	for _, seen := range ans.Seen {
		src, e1 := netip.ParseAddr(seen.Src)
		dst, e2 := netip.ParseAddr(seen.Dst)
		proto, e3 := policy.ParseProto(seen.Proto)
		if e1 != nil || e2 != nil || e3 != nil {
			continue // a frame denied for what it is, with no flow to judge
		}
		f := whyFlow{site: seen.Site, src: src, dst: dst, proto: proto, dport: seen.DPort}
		if x := find(f); x != nil {
			x.devices = append(x.devices, seen.Device)
			continue
		}
		if len(flows) < maxVerdicts {
			f.devices, f.serialSeen = []string{seen.Device}, seen.PolicySerial
			flows = append(flows, &f)
		}
	}
	if len(flows) == 0 {
		f, notes := c.assumedFlow(t, p)
		ans.Notes = append(ans.Notes, notes...)
		sites := []string{t.Site}
		if t.Site == "" {
			sites = c.routerSites(p)
		}
		for _, site := range sites {
			g := f
			g.site = site
			flows = append(flows, &g)
		}
	}
	for _, f := range flows {
		qq := match.Query{Site: f.site, Src: f.src, Dst: f.dst, Proto: f.proto, DPort: f.dport, Now: now}
		e := match.Explain(m, &qq)
		v := WhyVerdict{Site: f.site, Devices: f.devices, Explanation: e, Text: e.String(), Advice: advise(e, f.site)}
		if f.serialSeen != 0 && f.serialSeen != p.Serial {
			v.Advice = append(v.Advice, fmt.Sprintf("%s judged it under policy serial %d; the fleet policy is serial %d: check that the device has the fleet policy",
				strings.Join(f.devices, ", "), f.serialSeen, p.Serial))
		}
		ans.Verdicts = append(ans.Verdicts, v)
	}
	return ans, nil
}

// whyFlow is a flow to judge at a site, and the devices that saw it.
type whyFlow struct {
	site       string
	src, dst   netip.Addr
	proto      uint8
	dport      uint16
	devices    []string
	serialSeen uint64 // the policy serial the newest event was judged under
}

// routerSites are the sites to judge a flow no device saw at: those of
// the fleet's routers, or none when no approval is site-restricted.
func (c *Console) routerSites(p *policy.Policy) []string {
	restricted := slices.ContainsFunc(p.Approvals, func(a policy.Approval) bool { return len(a.Sites) > 0 })
	if !restricted {
		return []string{""}
	}
	var sites []string
	for _, d := range c.Devices() {
		if d.Kind != "relay" && d.Site != "" && !slices.Contains(sites, d.Site) && len(sites) < maxVerdicts {
			sites = append(sites, d.Site)
		}
	}
	if len(sites) == 0 {
		return []string{""}
	}
	return sites
}

// assumedFlow builds the flow to judge from the search alone, saying what
// it had to assume.
func (c *Console) assumedFlow(t Terms, p *policy.Policy) (f whyFlow, notes []string) {
	notes = append(notes, "no device reported a denied flow like it in this window: judged as the policy would judge it")
	repr := func(e netip.Prefix) netip.Addr {
		if !e.IsSingleIP() {
			notes = append(notes, fmt.Sprintf("judged for %s, the first address of %s", e.Addr(), e))
		}
		return e.Addr()
	}
	if len(t.Ends) == 2 {
		f.src, f.dst = repr(t.Ends[0]), repr(t.Ends[1])
	} else {
		f.dst = repr(t.Ends[0])
		f.src = netip.MustParseAddr("10.0.0.1")
		if f.dst.Is6() {
			f.src = netip.MustParseAddr("fd00::1")
		}
		for _, d := range p.Domestic {
			if d.Addr().Is4() == f.dst.Is4() {
				f.src = d.Addr().Next()
				break
			}
		}
		notes = append(notes, fmt.Sprintf("from %s, a domestic address", f.src))
	}
	f.proto, f.dport = t.proto, t.DPort
	if t.Proto == "" {
		f.proto = policy.ProtoTCP
		if f.dport == 0 {
			f.dport = 443
		}
		notes = append(notes, fmt.Sprintf("no service given: judged for tcp/%d", f.dport))
	} else if match.HasPorts(f.proto) && f.dport == 0 {
		f.dport = 443
		notes = append(notes, "no port given: judged for port 443")
	}
	return f, notes
}

// advise says what to do about a verdict: which approval to extend, or
// which to request.
func advise(e *match.Explanation, site string) []string {
	svc := e.Proto
	if e.DPort != 0 {
		svc += "/" + strconv.Itoa(int(e.DPort))
	}
	at := ""
	if site != "" {
		at = " at site " + site
	}
	switch e.Verdict {
	case match.Domestic.String():
		return []string{"both ends are domestic: the border policy does not cut it"}
	case match.Approved.String():
		a := e.Approval
		until := "with no end date"
		if !a.ValidUntil.IsZero() {
			until = "until " + a.ValidUntil.Format(time.DateOnly)
		}
		return []string{fmt.Sprintf("approval %s (%s) covers it %s: nothing to request; if a device still cuts it, check that it enforces policy serial %d",
			a.ID, a.Holder, until, e.Serial)}
	}
	var out []string
	if e.Verdict == match.Monitored.String() {
		out = append(out, "passed and reported: the policy's default is monitor, no approval covers it")
	}
	if len(e.Candidates) == 0 {
		remote := e.Remote
		pfx, _ := remote.Prefix(map[bool]int{true: 24, false: 48}[remote.Is4()])
		return append(out, fmt.Sprintf("no approval covers remote %s: request one for the customer's link%s, service %s, remote %s", remote, at, svc, pfx))
	}
	// The candidate closest to covering it: the fewest conditions to change.
	best := e.Candidates[0]
	missing := func(c match.Candidate) int {
		n := 0
		for _, ok := range []bool{c.SiteOK, c.Service, c.WindowOK} {
			if !ok {
				n++
			}
		}
		return n
	}
	for _, c := range e.Candidates[1:] {
		if missing(c) < missing(best) {
			best = c
		}
	}
	var fix []string
	if !best.WindowOK {
		switch {
		case !best.ValidUntil.IsZero() && !e.At.Before(best.ValidUntil):
			fix = append(fix, "expired on "+best.ValidUntil.Format(time.DateOnly)+": extend it")
		case !best.ValidFrom.IsZero():
			fix = append(fix, "opens on "+best.ValidFrom.Format(time.DateOnly)+": wait, or ask the committee to bring it forward")
		}
	}
	if !best.SiteOK {
		fix = append(fix, fmt.Sprintf("does not apply%s (its sites: %s): add the site to it", at, strings.Join(best.Sites, ", ")))
	}
	if !best.Service {
		fix = append(fix, fmt.Sprintf("does not allow %s (its services: %s): add the service to it", svc, strings.Join(best.Services, ", ")))
	}
	return append(out, fmt.Sprintf("approval %s (%s) covers remote %s but %s", best.ID, best.Holder, best.Prefix, strings.Join(fix, "; ")))
}

// seenBy groups the denied-flow events s selects by device: how many, when,
// and the newest one's flow and verdict.
func (a *Audit) seenBy(ctx context.Context, s EventSearch) ([]WhySeen, error) {
	where, args, err := s.where()
	if err != nil {
		return nil, err
	}
	rows, err := a.db.QueryContext(ctx, a.q(`SELECT k.device, k.site, COUNT(*), MIN(k.ts), MAX(k.ts), MAX(k.n) FROM event_keys k WHERE `+where+
		` AND k.summary = 0 GROUP BY k.device, k.site ORDER BY COUNT(*) DESC, k.device LIMIT 50`), args...)
	if err != nil {
		return nil, fmt.Errorf("console: why: %w", err)
	}
	out := []WhySeen{}
	var newest []int64
	for rows.Next() {
		var w WhySeen
		var first, last string
		var n int64
		if err := rows.Scan(&w.Device, &w.Site, &w.Events, &first, &last, &n); err != nil {
			rows.Close()
			return nil, fmt.Errorf("console: why: %w", err)
		}
		w.First, _ = time.Parse(time.RFC3339Nano, first)
		w.Last, _ = time.Parse(time.RFC3339Nano, last)
		out = append(out, w)
		newest = append(newest, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("console: why: %w", err)
	}
	for i, n := range newest {
		var doc string
		if err := a.db.QueryRowContext(ctx, a.q(`SELECT doc FROM events WHERE n = ?`), n).Scan(&doc); err != nil {
			return nil, fmt.Errorf("console: why: %w", err)
		}
		var e contract.Event
		if err := json.Unmarshal([]byte(doc), &e); err != nil {
			return nil, fmt.Errorf("console: why: stored event: %w", err)
		}
		w, f := &out[i], e.Fields
		w.Src, w.Dst, w.Proto = fieldString(f, "src"), fieldString(f, "dst"), fieldString(f, "proto")
		w.Verdict, w.Reason, w.Action = fieldString(f, "verdict"), fieldString(f, "reason"), fieldString(f, "action")
		if d := fieldNumber(f, "dport"); d > 0 && d <= 65535 {
			w.DPort = uint16(d)
		}
		if s := fieldNumber(f, "policy_serial"); s > 0 && s < 1<<53 {
			w.PolicySerial = uint64(s)
		}
	}
	return out, nil
}

// serveWhy answers GET /api/why?q=...&since=7d.
func (c *Console) serveWhy(w http.ResponseWriter, r *http.Request, _ *Session) {
	q := r.URL.Query()
	now := c.opt.Now()
	since, err := parseAgo(q.Get("since"), now, defaultWhyAgo)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"since: " + err.Error()})
		return
	}
	ans, err := c.Why(r.Context(), q.Get("q"), since)
	if err != nil {
		writeSearchErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, ans)
}

// parseAgo reads a time as an RFC 3339 time or a duration ago ("6h", "7d");
// empty is def ago.
func parseAgo(v string, now time.Time, def time.Duration) (time.Time, error) {
	if v == "" {
		return now.Add(-def), nil
	}
	if len(v) > 40 {
		return time.Time{}, fmt.Errorf("an RFC 3339 time or a duration ago (6h, 7d)")
	}
	if days, ok := strings.CutSuffix(v, "d"); ok {
		if n, err := strconv.ParseUint(days, 10, 16); err == nil && n <= 3660 {
			return now.Add(-time.Duration(n) * 24 * time.Hour), nil
		}
	}
	if d, err := time.ParseDuration(v); err == nil && d >= 0 {
		return now.Add(-d), nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("an RFC 3339 time or a duration ago (6h, 7d)")
	}
	return t, nil
}

// writeSearchErr answers a search that cannot be answered as asked with a
// 400 that says why.
func writeSearchErr(w http.ResponseWriter, err error) {
	if errors.Is(err, ErrSearch) {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	writeErr(w, err)
}
