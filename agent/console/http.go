package console

import (
	"context"
	"embed"
	"encoding/json"
	"errors"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"strconv"
	"time"
)

//go:embed static
var static embed.FS

var page = template.Must(template.New("index.html").Funcs(template.FuncMap{
	"ts": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04Z")
	},
}).ParseFS(static, "static/index.html"))

// actionHeader must accompany every POST: a cross-site form cannot set it
// without a CORS preflight, which this server never grants.
const actionHeader = "X-LinkGuard-Console"

// StateView is what /api/state returns.
type StateView struct {
	Now        time.Time  `json:"now"`
	Connected  bool       `json:"connected"`
	ConnError  string     `json:"conn_error,omitempty"`
	Devices    []Device   `json:"devices"`
	Policy     PolicyView `json:"policy"`
	HasPolicy  bool       `json:"has_policy"`
	Actions    []Action   `json:"actions"`
	Ingested   uint64     `json:"ingested"`
	IngestRate float64    `json:"ingest_rate"`
	Operator   string     `json:"operator,omitempty"`
}

// State is the whole view at once.
func (c *Console) State() StateView {
	up, e := c.Connected()
	pv, ok := c.Policy()
	acts := c.Actions()
	if len(acts) > 50 {
		acts = acts[:50]
	}
	return StateView{Now: c.opt.Now().UTC(), Connected: up, ConnError: e, Devices: c.Devices(), Policy: pv, HasPolicy: ok,
		Actions: acts, Ingested: c.Ingested(), IngestRate: c.IngestRate(), Operator: c.opt.OperatorName}
}

// Handler serves the page, its assets and the JSON API.
func (c *Console) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, _ := fs.Sub(static, "static")
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		if err := page.Execute(w, c.State()); err != nil {
			c.log.Warn("console: page", "err", err)
		}
	})
	mux.HandleFunc("GET /api/state", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, http.StatusOK, c.State()) })
	mux.HandleFunc("GET /api/events", func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		after, _ := strconv.ParseInt(q.Get("after"), 10, 64)
		limit, _ := strconv.Atoi(q.Get("limit"))
		if limit <= 0 || limit > 500 {
			limit = 200
		}
		ev := c.Events(EventFilter{Device: q.Get("device"), Type: q.Get("type"), Severity: q.Get("severity"), After: after, Limit: limit})
		if ev == nil {
			ev = []EventRecord{}
		}
		writeJSON(w, http.StatusOK, ev)
	})
	mux.HandleFunc("POST /api/action", c.serveAction)
	return securityHeaders(mux)
}

// ActionRequest is the body of POST /api/action.
type ActionRequest struct {
	Action   string       `json:"action"` // revoke approve throttle.set throttle.clear rebirth
	Target   string       `json:"target,omitempty"`
	Approval string       `json:"approval,omitempty"`
	New      *NewApproval `json:"new,omitempty"`
	Feed     string       `json:"feed,omitempty"`
	CapKW    float64      `json:"cap_kw,omitempty"`
}

func (c *Console) serveAction(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(actionHeader) != "1" {
		writeJSON(w, http.StatusForbidden, map[string]string{"error": "missing " + actionHeader + " header"})
		return
	}
	var req ActionRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	a, err := c.Do(req)
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrBadAction), errors.Is(err, ErrNoPolicy):
			code = http.StatusBadRequest
		case errors.Is(err, ErrNoKey):
			code = http.StatusForbidden
		case errors.Is(err, ErrOffline):
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, map[string]string{"error": err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// Do carries out one action request.
func (c *Console) Do(req ActionRequest) (*Action, error) {
	switch req.Action {
	case "revoke":
		return c.Revoke(req.Approval)
	case "approve":
		if req.New != nil {
			return c.Approve(*req.New)
		}
		return c.Approve(NewApproval{ID: req.Approval})
	case "throttle.set":
		if req.Feed == "" || req.CapKW <= 0 {
			return nil, errors.Join(ErrBadAction, errors.New("throttle.set needs a feed and a cap_kw above 0"))
		}
		return c.Command(req.Target, "throttle.set", map[string]any{"feed": req.Feed, "cap_kw": req.CapKW})
	case "throttle.clear":
		if req.Feed == "" {
			return nil, errors.Join(ErrBadAction, errors.New("throttle.clear needs a feed"))
		}
		return c.Command(req.Target, "throttle.clear", map[string]any{"feed": req.Feed})
	case "rebirth":
		return c.Command(req.Target, "rebirth", nil)
	}
	return nil, errors.Join(ErrBadAction, errors.New("unknown action "+strconv.Quote(req.Action)))
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
