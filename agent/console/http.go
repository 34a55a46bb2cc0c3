package console

import (
	"context"
	"embed"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"linkguard.dev/linkguard/policy/dsse"
)

//go:embed static
var static embed.FS

// StateView is what /api/state returns.
type StateView struct {
	Now       time.Time `json:"now"`
	Connected bool      `json:"connected"`
	ConnError string    `json:"conn_error,omitempty"`
	// Fleet counts the devices; the devices themselves are paged
	// (/api/sites, /api/devices), never sent whole.
	Fleet     FleetSummary `json:"fleet"`
	Policy    PolicyView   `json:"policy"`
	HasPolicy bool         `json:"has_policy"`
	Roster    *RosterView  `json:"roster,omitempty"`
	// Warnings are the expiries within ExpiryWarningDays, or past.
	Warnings          []Warning `json:"warnings"`
	ExpiryWarningDays float64   `json:"expiry_warning_days"`
	Pending           []Pending `json:"pending"`
	Actions           []Action  `json:"actions"`
	Ingested          uint64    `json:"ingested"`
	IngestRate        float64   `json:"ingest_rate"`
	// Telemetry counts the fleet's telemetry by its seqs: what is missing.
	Telemetry TelemetryStats `json:"telemetry"`
	Session   *Session       `json:"session,omitempty"`
	// Verifying: reports are checked against the fleet CA; Unverified
	// are the newest refused (UnverifiedTotal in all).
	Verifying       bool         `json:"verifying"`
	Unverified      []Unverified `json:"unverified"`
	UnverifiedTotal uint64       `json:"unverified_total"`
}

// State is the whole view at once.
func (c *Console) State() StateView {
	up, e := c.Connected()
	pv, ok := c.Policy()
	acts := c.Actions()
	if len(acts) > 50 {
		acts = acts[:50]
	}
	pend := c.Pendings()
	if len(pend) > 50 {
		pend = pend[:50]
	}
	v := StateView{Now: c.opt.Now().UTC(), Connected: up, ConnError: e, Fleet: c.Fleet(), Policy: pv, HasPolicy: ok,
		Pending: pend, Actions: acts, Ingested: c.Ingested(), IngestRate: c.IngestRate(), Telemetry: c.Telemetry()}
	if r, ok := c.Roster(); ok {
		v.Roster = &r
	}
	v.Warnings, v.ExpiryWarningDays = c.Warnings(), c.opt.ExpiryWarning.Hours()/24
	v.Verifying = c.Verifying()
	v.Unverified, v.UnverifiedTotal = c.Unverified()
	if len(v.Unverified) > 20 {
		v.Unverified = v.Unverified[:20]
	}
	return v
}

// Handler serves the page, its assets and the JSON API, behind the Host,
// Origin, session and CSRF checks of guard.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		b, _ := static.ReadFile("static/index.html")
		w.Write(b)
	})
	mux.HandleFunc("GET /api/login/challenge", c.serveChallenge)
	mux.HandleFunc("POST /api/login", c.serveLogin)
	mux.HandleFunc("POST /api/logout", c.serveLogout)
	mux.HandleFunc("GET /api/session", c.needSession(func(w http.ResponseWriter, r *http.Request, s *Session) { writeJSON(w, http.StatusOK, s) }))
	mux.HandleFunc("POST /api/enrol", c.serveEnrol)
	mux.HandleFunc("GET /api/enrolments", c.needSession(c.serveEnrolments))
	mux.HandleFunc("GET /api/state", c.needSession(func(w http.ResponseWriter, r *http.Request, s *Session) {
		v := c.State()
		v.Session = s
		writeJSON(w, http.StatusOK, v)
	}))
	// why, inventory, event search
	mux.HandleFunc("GET /api/why", c.needSession(c.serveWhy))
	mux.HandleFunc("GET /api/events", c.needSession(c.serveEventSearch))
	mux.HandleFunc("GET /api/inventory", c.needSession(c.serveInventory))
	// end of why, inventory, event search
	mux.HandleFunc("GET /api/history", c.needSession(func(w http.ResponseWriter, r *http.Request, _ *Session) {
		q := r.URL.Query()
		hq := HistoryQuery{Device: q.Get("device"), Type: q.Get("type")}
		hq.Limit, _ = strconv.Atoi(q.Get("limit"))
		for name, t := range map[string]*time.Time{"since": &hq.Since, "until": &hq.Until} {
			if v := q.Get(name); v != "" {
				var err error
				if *t, err = time.Parse(time.RFC3339, v); err != nil {
					writeJSON(w, http.StatusBadRequest, apiError{name + ": " + err.Error()})
					return
				}
			}
		}
		evs, err := c.store.History(r.Context(), hq)
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, evs)
	}))
	mux.HandleFunc("GET /api/series", c.needSession(c.serveSeries))
	mux.HandleFunc("GET /api/series/names", c.needSession(func(w http.ResponseWriter, r *http.Request, _ *Session) {
		q := r.URL.Query()
		if (q.Get("device") == "") == (q.Get("site") == "") {
			writeJSON(w, http.StatusBadRequest, apiError{"name a device or a site"})
			return
		}
		names, err := c.store.SeriesNames(r.Context(), q.Get("device"), q.Get("site"))
		if err != nil {
			writeErr(w, err)
			return
		}
		writeJSON(w, http.StatusOK, names)
	}))
	mux.HandleFunc("GET /api/pending", c.needSession(func(w http.ResponseWriter, r *http.Request, _ *Session) {
		writeJSON(w, http.StatusOK, c.Pendings())
	}))
	mux.HandleFunc("GET /api/pending/{id}/envelope", c.needSession(func(w http.ResponseWriter, r *http.Request, _ *Session) {
		env, err := c.PendingEnvelope(r.PathValue("id"))
		if err != nil {
			writeErr(w, err)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Disposition", `attachment; filename="`+r.PathValue("id")+`.signed.json"`)
		w.Write(env)
	}))
	mux.HandleFunc("POST /api/pending/{id}/sign", c.withSession(func(w http.ResponseWriter, r *http.Request, s *Session) {
		var req struct {
			Signature []byte `json:"signature"`
		}
		if !decodeBody(w, r, &req, 4<<10) {
			return
		}
		p, err := c.addSignature(r.PathValue("id"), s.pub, req.Signature)
		c.reply(w, p, err)
	}))
	mux.HandleFunc("POST /api/pending/{id}/envelope", c.withSession(func(w http.ResponseWriter, r *http.Request, s *Session) {
		env, err := io.ReadAll(http.MaxBytesReader(w, r.Body, dsse.MaxEnvelopeSize))
		if err != nil {
			writeJSON(w, http.StatusRequestEntityTooLarge, apiError{err.Error()})
			return
		}
		p, n, err := c.addEnvelope(r.PathValue("id"), env)
		if err == nil {
			c.audit(AuditRecord{Kind: "upload", Operator: s.Operator, KeyID: s.KeyID, Subject: r.PathValue("id"), Detail: jsonDetail(map[string]int{"signatures_added": n})})
		}
		c.reply(w, p, err)
	}))
	mux.HandleFunc("POST /api/proposals", c.withSession(func(w http.ResponseWriter, r *http.Request, s *Session) {
		var req Proposal
		if !decodeBody(w, r, &req, 64<<10) {
			return
		}
		p, err := c.Propose(s, req)
		c.reply(w, p, err)
	}))
	mux.HandleFunc("POST /api/commands", c.withSession(func(w http.ResponseWriter, r *http.Request, s *Session) {
		var req CommandRequest
		if !decodeBody(w, r, &req, 128<<10) {
			return
		}
		p, err := c.SubmitCommand(s, req)
		c.reply(w, p, err)
	}))
	mux.HandleFunc("GET /api/audit", c.needSession(c.serveAudit))
	// sites, devices, approvals
	mux.HandleFunc("GET /api/sites", c.needSession(c.serveSites))
	mux.HandleFunc("GET /api/devices", c.needSession(c.serveDevices))
	return securityHeaders(c.guard(mux))
}

// withSession is needSession for POSTs (guard has checked the CSRF token).
func (c *Console) withSession(fn func(w http.ResponseWriter, r *http.Request, s *Session)) http.HandlerFunc {
	return c.needSession(fn)
}

// reply answers with the pending action, or the error's status; a pending
// action whose publication failed is returned beside the error.
func (c *Console) reply(w http.ResponseWriter, p *Pending, err error) {
	if err != nil {
		code := errStatus(err)
		body := map[string]any{"error": err.Error()}
		if p != nil {
			body["pending"] = p
		}
		writeJSON(w, code, body)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func errStatus(err error) int {
	switch {
	case errors.Is(err, ErrBadAction), errors.Is(err, ErrNoPolicy):
		return http.StatusBadRequest
	case errors.Is(err, ErrForbidden):
		return http.StatusForbidden
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrOffline):
		return http.StatusServiceUnavailable
	}
	return http.StatusInternalServerError
}

func writeErr(w http.ResponseWriter, err error) { writeJSON(w, errStatus(err), apiError{err.Error()}) }

// serveAudit lists the audit log as JSON, or as CSV to export.
func (c *Console) serveAudit(w http.ResponseWriter, r *http.Request, _ *Session) {
	q := r.URL.Query()
	after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
	limit, _ := strconv.Atoi(q.Get("limit"))
	if q.Get("format") != "csv" && (limit <= 0 || limit > 1000) {
		limit = 200
	}
	recs, err := c.store.List(r.Context(), AuditFilter{Subject: q.Get("subject"), Kind: q.Get("kind"), After: after, Limit: limit})
	if err != nil {
		writeErr(w, err)
		return
	}
	if recs == nil {
		recs = []AuditRecord{}
	}
	if q.Get("format") != "csv" {
		writeJSON(w, http.StatusOK, recs)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="linkguard-console-audit.csv"`)
	cw := csv.NewWriter(w)
	cw.Write([]string{"n", "at", "kind", "operator", "key_id", "subject", "detail", "signed_base64"})
	for _, a := range recs {
		cw.Write([]string{strconv.FormatInt(a.N, 10), a.At.UTC().Format(time.RFC3339Nano), a.Kind, a.Operator, a.KeyID, a.Subject,
			csvSafe(string(a.Detail)), base64.StdEncoding.EncodeToString(a.Signed)})
	}
	cw.Flush()
}

// csvSafe keeps a spreadsheet from taking a field for a formula.
func csvSafe(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		w.Header().Set("X-Frame-Options", "DENY")
		w.Header().Set("Referrer-Policy", "no-referrer")
		h.ServeHTTP(w, r)
	})
}

// Serve serves h on ln until ctx ends, then shuts down gracefully.
func Serve(ctx context.Context, ln net.Listener, h http.Handler) error {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// serveSeries answers /api/series?device=|site=&series=&res=1m|1h&since=&until=;
// since and until are RFC 3339 times or durations ago ("6h").
func (c *Console) serveSeries(w http.ResponseWriter, r *http.Request, _ *Session) {
	q := r.URL.Query()
	now := c.opt.Now()
	sq := SeriesQuery{Device: q.Get("device"), Site: q.Get("site"), Series: q.Get("series")}
	switch q.Get("res") {
	case "":
	case "1m":
		sq.Res = ResMinute
	case "1h":
		sq.Res = ResHour
	default:
		writeJSON(w, http.StatusBadRequest, apiError{"res: 1m or 1h"})
		return
	}
	for name, t := range map[string]*time.Time{"since": &sq.Since, "until": &sq.Until} {
		v := q.Get(name)
		if v == "" {
			continue
		}
		if d, err := time.ParseDuration(v); err == nil && d >= 0 {
			*t = now.Add(-d)
			continue
		}
		var err error
		if *t, err = time.Parse(time.RFC3339, v); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{name + ": an RFC 3339 time or a duration ago (6h)"})
			return
		}
	}
	v, err := c.store.Series(r.Context(), now, sq)
	if errors.Is(err, ErrSeriesQuery) {
		writeJSON(w, http.StatusBadRequest, apiError{err.Error()})
		return
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}
