package console

import (
	"context"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// The fleet's events are searched by what operators ask about — an
// address, a customer's prefix, an approval, a device, a site, a time
// window — over a national fleet's history. Those keys live inside each
// event's JSON, so every stored event also gets a row of event_keys with
// them as columns, indexed: a prefix is a range of fixed-width hex
// addresses, so "everything 203.0.113.0/24 did" is an index range scan.

// whySchema is created beside the store's own schema: the events' search
// keys and the routers' remote-traffic samples (inventory.go).
const whySchema = eventKeysSchema + remotesSchema

const eventKeysSchema = `
CREATE TABLE IF NOT EXISTS event_keys (
	n        BIGINT PRIMARY KEY,
	ts       TEXT NOT NULL,
	device   TEXT NOT NULL,
	site     TEXT NOT NULL,
	type     TEXT NOT NULL,
	severity TEXT NOT NULL,
	src      TEXT NOT NULL,
	dst      TEXT NOT NULL,
	proto    TEXT NOT NULL,
	dport    INTEGER NOT NULL,
	approval TEXT NOT NULL,
	summary  INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS event_keys_ts ON event_keys(ts, type, site);
CREATE INDEX IF NOT EXISTS event_keys_src ON event_keys(src, ts);
CREATE INDEX IF NOT EXISTS event_keys_dst ON event_keys(dst, ts);
CREATE INDEX IF NOT EXISTS event_keys_device ON event_keys(device, ts);
CREATE INDEX IF NOT EXISTS event_keys_site ON event_keys(site, ts);
CREATE INDEX IF NOT EXISTS event_keys_approval ON event_keys(approval, ts);
`

// addrKey is an address as stored: 32 hex digits of its 16-byte form (an
// IPv4 address mapped), so that text order is address order and a prefix
// is a range.
func addrKey(a netip.Addr) string {
	b := a.Unmap().As16()
	return hex.EncodeToString(b[:])
}

// prefixRange is the first and last stored key of p's addresses.
func prefixRange(p netip.Prefix) (lo, hi string) {
	p = p.Masked()
	bits := p.Bits()
	if p.Addr().Is4() {
		bits += 96
	}
	b := p.Addr().Unmap().As16()
	lo = hex.EncodeToString(b[:])
	for i := bits; i < 128; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	return lo, hex.EncodeToString(b[:])
}

// fieldString is an event field as text ("" when absent or not text).
func fieldString(f map[string]any, k string) string {
	s, _ := f[k].(string)
	return s
}

// fieldNumber is an event field as a number, as decoded from JSON or set
// by a producer in the same process.
func fieldNumber(f map[string]any, k string) float64 {
	switch v := f[k].(type) {
	case float64:
		return v
	case int:
		return float64(v)
	case int64:
		return float64(v)
	case uint64:
		return float64(v)
	case uint16:
		return float64(v)
	case json.Number:
		x, _ := v.Float64()
		return x
	}
	return 0
}

func fieldAddr(f map[string]any, k string) string {
	a, err := netip.ParseAddr(fieldString(f, k))
	if err != nil {
		return ""
	}
	return addrKey(a)
}

// indexEvent writes the search keys of e, just stored in tx. An event that
// names no site takes its device's.
func (a *Audit) indexEvent(ctx context.Context, tx *sql.Tx, e *contract.Event) error {
	f := e.Fields
	approval := fieldString(f, "approval")
	if approval == "" {
		approval = fieldString(f, "approval_id")
	}
	summary := 0
	if b, _ := f["summary"].(bool); b {
		summary = 1
	}
	dport := fieldNumber(f, "dport")
	if dport < 0 || dport > 65535 {
		dport = 0
	}
	_, err := tx.ExecContext(ctx, a.q(`INSERT INTO event_keys(n, ts, device, site, type, severity, src, dst, proto, dport, approval, summary)
SELECT n, ts, device, COALESCE(NULLIF(?, ''), (SELECT site FROM devices WHERE id = events.device), ''), type, severity, ?, ?, ?, ?, ?, ?
FROM events WHERE device = ? AND id = ? ON CONFLICT (n) DO NOTHING`),
		clip(fieldString(f, "site"), 128), fieldAddr(f, "src"), fieldAddr(f, "dst"), clip(fieldString(f, "proto"), 16), int(dport),
		clip(approval, 128), summary, e.Device, e.ID)
	return err
}

func clip(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// EventSearch selects stored events. Every set field narrows the search.
type EventSearch struct {
	// Ends are one or two addresses or prefixes: events with an end in
	// the one, or a flow between the two (either way round).
	Ends  []netip.Prefix
	Proto string // as events spell it: tcp, udp, icmp, ip/N
	DPort uint16
	// Approvals and Remotes: events naming one of the approvals, or whose
	// flow has an end in one of the remote prefixes (those of the
	// approvals or holder asked about, from the fleet policy).
	Approvals []string
	Remotes   []netip.Prefix
	Device    string
	Site      string
	Type      string // prefix
	Severity  string
	Since     time.Time
	Until     time.Time
	Before    int64 // page: the events after this one (its n) in the order of the answer
	Limit     int   // default 100, at most 1000
}

// Bounds of one search.
const (
	maxSearchRemotes = 64
	maxSearchLimit   = 1000
)

// ErrSearch is a search that cannot be answered as asked.
var ErrSearch = errors.New("console: event search")

// FoundEvent is one row of a search's answer: an event, or several of a
// device's denied-traffic summaries folded into one.
type FoundEvent struct {
	N    int64  `json:"n"`
	Site string `json:"site,omitempty"`
	contract.Event
	// Folded counts the summaries this row stands for (0: a single
	// event); First is the oldest one's time, Packets, Bytes and Flows
	// their sums.
	Folded  int       `json:"folded,omitempty"`
	First   time.Time `json:"first,omitzero"`
	Packets float64   `json:"packets,omitempty"`
	Bytes   float64   `json:"bytes,omitempty"`
	Flows   float64   `json:"flows,omitempty"`
}

// EventCount is how many events of a type one site has in a search.
type EventCount struct {
	Type  string `json:"type"`
	Site  string `json:"site"`
	Count int64  `json:"count"`
}

// SearchResult is a page of a search, its counts and the cursor of the
// next page (0: none).
type SearchResult struct {
	Events []FoundEvent `json:"events"`
	Counts []EventCount `json:"counts"`
	Total  int64        `json:"total"`
	Next   int64        `json:"next_before,omitempty"`
	Query  *SearchEcho  `json:"query,omitempty"`
	Notes  []string     `json:"notes,omitempty"`
}

// SearchEcho is what a search was understood as, for the page to show.
type SearchEcho struct {
	Ends      []string `json:"ends,omitempty"`
	Proto     string   `json:"proto,omitempty"`
	DPort     uint16   `json:"dport,omitempty"`
	Approvals []string `json:"approvals,omitempty"`
	Device    string   `json:"device,omitempty"`
	Site      string   `json:"site,omitempty"`
}

// where is the search's condition over event_keys k, and its arguments.
func (s *EventSearch) where() (string, []any, error) {
	var w []string
	var args []any
	in := func(col string, p netip.Prefix) string {
		lo, hi := prefixRange(p)
		args = append(args, lo, hi)
		return "k." + col + " BETWEEN ? AND ?"
	}
	switch len(s.Ends) {
	case 0:
	case 1:
		w = append(w, "("+in("src", s.Ends[0])+" OR "+in("dst", s.Ends[0])+")")
	case 2:
		w = append(w, "(("+in("src", s.Ends[0])+" AND "+in("dst", s.Ends[1])+") OR ("+in("src", s.Ends[1])+" AND "+in("dst", s.Ends[0])+"))")
	default:
		return "", nil, fmt.Errorf("%w: at most two addresses or prefixes", ErrSearch)
	}
	if s.Proto != "" {
		w = append(w, "k.proto = ?")
		args = append(args, s.Proto)
	}
	if s.DPort != 0 {
		w = append(w, "k.dport = ?")
		args = append(args, int(s.DPort))
	}
	if len(s.Approvals) > 0 || len(s.Remotes) > 0 {
		if len(s.Approvals)+len(s.Remotes) > maxSearchRemotes {
			return "", nil, fmt.Errorf("%w: the approvals asked about list more than %d prefixes; search for one of them", ErrSearch, maxSearchRemotes)
		}
		var or []string
		for _, id := range s.Approvals {
			or = append(or, "k.approval = ?")
			args = append(args, id)
		}
		for _, p := range s.Remotes {
			or = append(or, in("src", p), in("dst", p))
		}
		w = append(w, "("+strings.Join(or, " OR ")+")")
	}
	for _, c := range []struct{ col, v string }{{"device", s.Device}, {"site", s.Site}, {"severity", s.Severity}} {
		if c.v != "" {
			w = append(w, "k."+c.col+" = ?")
			args = append(args, c.v)
		}
	}
	if s.Type != "" {
		// A prefix match without LIKE's wildcards: the type is data.
		w = append(w, "substr(k.type, 1, ?) = ?")
		args = append(args, len(s.Type), s.Type)
	}
	if !s.Since.IsZero() {
		w = append(w, "k.ts >= ?")
		args = append(args, eventTS(s.Since))
	}
	if !s.Until.IsZero() {
		w = append(w, "k.ts < ?")
		args = append(args, eventTS(s.Until))
	}
	if len(w) == 0 {
		return "1=1", args, nil
	}
	return strings.Join(w, " AND "), args, nil
}

// SearchEvents returns the newest events s selects (newest first, folded)
// with their counts per type and site.
func (a *Audit) SearchEvents(ctx context.Context, s EventSearch) (SearchResult, error) {
	if s.Limit <= 0 {
		s.Limit = 100
	}
	s.Limit = min(s.Limit, maxSearchLimit)
	where, args, err := s.where()
	if err != nil {
		return SearchResult{}, err
	}
	res := SearchResult{Events: []FoundEvent{}, Counts: []EventCount{}}
	page, pargs := where, args
	if s.Before > 0 {
		// Newest first by time, then by arrival: the page goes on after
		// the event it ended with.
		page += " AND (k.ts < (SELECT ts FROM event_keys WHERE n = ?) OR k.ts = (SELECT ts FROM event_keys WHERE n = ?) AND k.n < ?)"
		pargs = append(append([]any{}, args...), s.Before, s.Before, s.Before)
	}
	rows, err := a.db.QueryContext(ctx, a.q(`SELECT k.n, k.site, e.doc FROM event_keys k JOIN events e ON e.n = k.n WHERE `+page+
		` ORDER BY k.ts DESC, k.n DESC LIMIT ?`), append(pargs, s.Limit+1)...)
	if err != nil {
		return SearchResult{}, fmt.Errorf("console: event search: %w", err)
	}
	var found []FoundEvent
	for rows.Next() {
		var f FoundEvent
		var doc string
		if err := rows.Scan(&f.N, &f.Site, &doc); err != nil {
			rows.Close()
			return SearchResult{}, fmt.Errorf("console: event search: %w", err)
		}
		if err := json.Unmarshal([]byte(doc), &f.Event); err != nil {
			rows.Close()
			return SearchResult{}, fmt.Errorf("console: event search: stored event: %w", err)
		}
		found = append(found, f)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return SearchResult{}, fmt.Errorf("console: event search: %w", err)
	}
	if len(found) > s.Limit {
		found = found[:s.Limit]
		res.Next = found[len(found)-1].N
	}
	res.Events = fold(found)
	// Grouped by expressions, not columns: SQLite would otherwise walk an
	// index in (type, …) order rather than the rows the search narrows to.
	crows, err := a.db.QueryContext(ctx, a.q(`SELECT k.type || '' AS t, k.site || '' AS s, COUNT(*) FROM event_keys k WHERE `+where+
		` GROUP BY t, s ORDER BY COUNT(*) DESC, t, s LIMIT 200`), args...)
	if err != nil {
		return SearchResult{}, fmt.Errorf("console: event search: %w", err)
	}
	defer crows.Close()
	for crows.Next() {
		var c EventCount
		if err := crows.Scan(&c.Type, &c.Site, &c.Count); err != nil {
			return SearchResult{}, fmt.Errorf("console: event search: %w", err)
		}
		res.Total += c.Count
		res.Counts = append(res.Counts, c)
	}
	return res, crows.Err()
}

// fold merges each device's denied-traffic summaries (one every few
// seconds per router) that follow one another in the page, newest first,
// into one row with their sums: the list shows what happened, not a
// router's heartbeat.
func fold(evs []FoundEvent) []FoundEvent {
	out := make([]FoundEvent, 0, len(evs))
	open := map[string]int{} // device -> index in out of its folding row
	for _, e := range evs {
		summary, _ := e.Fields["summary"].(bool)
		if !summary || e.Type != "link.denied" {
			delete(open, e.Device)
			out = append(out, e)
			continue
		}
		if i, ok := open[e.Device]; ok {
			r := &out[i]
			r.Folded++
			r.First = e.TS
			r.Packets += fieldNumber(e.Fields, "packets")
			r.Bytes += fieldNumber(e.Fields, "bytes")
			r.Flows += fieldNumber(e.Fields, "flows")
			continue
		}
		e.Folded, e.First = 1, e.TS
		e.Packets, e.Bytes, e.Flows = fieldNumber(e.Fields, "packets"), fieldNumber(e.Fields, "bytes"), fieldNumber(e.Fields, "flows")
		open[e.Device] = len(out)
		out = append(out, e)
	}
	return out
}

// defaultEventsAgo is the window of an event search that names none.
const defaultEventsAgo = 24 * time.Hour

// serveEventSearch answers GET /api/events?q=&type=&site=&device=&severity=
// &since=&until=&limit=&before=: a page of the stored events, newest first,
// with denied-traffic summaries folded and counts per type and site.
func (c *Console) serveEventSearch(w http.ResponseWriter, r *http.Request, _ *Session) {
	q := r.URL.Query()
	now := c.opt.Now()
	t, err := ParseTerms(q.Get("q"))
	if err != nil {
		writeSearchErr(w, err)
		return
	}
	p, _ := c.fleetPolicyNow()
	s, err := c.resolve(t, p)
	if err != nil {
		writeSearchErr(w, err)
		return
	}
	for _, f := range []struct {
		dst   *string
		name  string
		value string
	}{{&s.Type, "type", q.Get("type")}, {&s.Site, "site", q.Get("site")}, {&s.Device, "device", q.Get("device")}, {&s.Severity, "severity", q.Get("severity")}} {
		if f.value == "" {
			continue
		}
		if len(f.value) > maxTermLen {
			writeJSON(w, http.StatusBadRequest, apiError{f.name + ": over " + strconv.Itoa(maxTermLen) + " bytes"})
			return
		}
		if *f.dst != "" && *f.dst != f.value {
			writeJSON(w, http.StatusBadRequest, apiError{f.name + ": the search names another"})
			return
		}
		*f.dst = f.value
	}
	if s.Since, err = parseAgo(q.Get("since"), now, defaultEventsAgo); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"since: " + err.Error()})
		return
	}
	if v := q.Get("until"); v != "" {
		if s.Until, err = parseAgo(v, now, 0); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"until: " + err.Error()})
			return
		}
	}
	for name, dst := range map[string]*int64{"limit": nil, "before": &s.Before} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 {
			writeJSON(w, http.StatusBadRequest, apiError{name + ": a whole number"})
			return
		}
		if dst != nil {
			*dst = n
		} else {
			s.Limit = int(min(n, maxSearchLimit))
		}
	}
	res, err := c.store.SearchEvents(r.Context(), s)
	if err != nil {
		writeSearchErr(w, err)
		return
	}
	res.Query = &SearchEcho{Proto: s.Proto, DPort: s.DPort, Approvals: s.Approvals, Device: s.Device, Site: s.Site}
	for _, e := range s.Ends {
		res.Query.Ends = append(res.Query.Ends, e.String())
	}
	writeJSON(w, http.StatusOK, res)
}

// indexOlderEvents gives the events stored before the search keys existed
// (a console upgraded with its history) their keys, newest first, a batch
// per transaction so the recorder's writes go on in between, until every
// event has them or ctx ends.
func (a *Audit) indexOlderEvents(ctx context.Context, log *slog.Logger) {
	before, total := int64(math.MaxInt64), 0
	for ctx.Err() == nil {
		n, last, err := a.indexOlderBatch(ctx, before, 1000)
		if err != nil {
			if ctx.Err() == nil {
				log.Error("console: indexing stored events for search failed", "err", err)
			}
			return
		}
		total += n
		if last == 0 {
			break
		}
		before = last
	}
	if total > 0 {
		log.Info("console: stored events indexed for search", "events", total)
	}
}

// indexOlderBatch indexes up to limit events below before that have no
// keys; last is the lowest n looked at (0: none left).
func (a *Audit) indexOlderBatch(ctx context.Context, before int64, limit int) (n int, last int64, err error) {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, 0, err
	}
	defer tx.Rollback()
	rows, err := tx.QueryContext(ctx, a.q(`SELECT e.n, e.doc FROM events e WHERE e.n < ? AND NOT EXISTS (SELECT 1 FROM event_keys k WHERE k.n = e.n)
ORDER BY e.n DESC LIMIT ?`), before, limit)
	if err != nil {
		return 0, 0, err
	}
	var evs []contract.Event
	for rows.Next() {
		var doc string
		if err := rows.Scan(&last, &doc); err != nil {
			rows.Close()
			return 0, 0, err
		}
		var e contract.Event
		if json.Unmarshal([]byte(doc), &e) == nil {
			evs = append(evs, e)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return 0, 0, err
	}
	for i := range evs {
		if err := a.indexEvent(ctx, tx, &evs[i]); err != nil {
			return 0, 0, err
		}
	}
	return len(evs), last, tx.Commit()
}
