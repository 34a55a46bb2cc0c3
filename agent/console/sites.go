package console

import (
	"cmp"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The fleet by site: the page's first level is a site overview (each
// site's devices' health, policy serials, traffic rates and feeds), then a
// site's devices. Both are paged on the server, so a national fleet is
// never shipped to a browser whole.

// Paging bounds of /api/sites and /api/devices.
const (
	defaultPerPage = 50
	maxPerPage     = 200
	maxQuery       = 128 // bytes of a search
	// maxSiteFeeds bounds the feeds one site's summary lists.
	maxSiteFeeds = 20
	// ratesEvery is how often the rates are read from the store again:
	// they come from 1-minute rollups, which move slowly.
	ratesEvery = 5 * time.Second
)

// Device states as the page filters them.
const (
	StateOnline  = "online"
	StateOffline = "offline"
	StateSilent  = "silent"
)

// Rates are a device's or a site's traffic per second over the last one
// to two minutes, from the store's 1-minute rollups.
type Rates struct {
	Passed float64 `json:"passed"`
	Denied float64 `json:"denied"`
}

// SerialCount is how many devices run one policy serial.
type SerialCount struct {
	Serial  uint64 `json:"serial"`
	Devices int    `json:"devices"`
}

// FeedSummary is one feed of a site's relay controllers.
type FeedSummary struct {
	Device string  `json:"device"`
	ID     string  `json:"id"`
	PowerW float64 `json:"power_w"`
	CapW   float64 `json:"cap_w"` // 0: no cap
	Status string  `json:"status,omitempty"`
	Online bool    `json:"online"`
}

// SiteView is one site of the overview.
type SiteView struct {
	Site    string `json:"site"`
	Devices int    `json:"devices"`
	Online  int    `json:"online"`
	Offline int    `json:"offline"` // silent ones not included
	Silent  int    `json:"silent"`
	Routers int    `json:"routers"`
	Relays  int    `json:"relays"`
	// Serials are the policy serials its devices run, newest first;
	// SameSerial says they all run one, Current that it is the fleet
	// policy's (false while the console has no verified fleet policy).
	Serials    []SerialCount `json:"serials"`
	SameSerial bool          `json:"same_serial"`
	Current    bool          `json:"current"`
	Rates      Rates         `json:"rates"`
	Feeds      []FeedSummary `json:"feeds"`
	FeedsTotal int           `json:"feeds_total"`
	LastHeard  *time.Time    `json:"last_heard,omitempty"`
}

// FleetSummary counts the fleet for the page's header.
type FleetSummary struct {
	Sites   int `json:"sites"`
	Devices int `json:"devices"`
	Online  int `json:"online"`
	Offline int `json:"offline"`
	Silent  int `json:"silent"`
	// Serial is the verified fleet policy's (0: none); Behind counts
	// devices on an older one.
	Serial uint64 `json:"serial"`
	Behind int    `json:"behind"`
}

// SitePage is what /api/sites returns.
type SitePage struct {
	Fleet   FleetSummary `json:"fleet"`
	Total   int          `json:"total"` // sites matching the search
	Page    int          `json:"page"`
	PerPage int          `json:"per_page"`
	Sites   []SiteView   `json:"sites"`
}

// DeviceRow is one device of /api/devices: what a table row shows, and its
// feeds' present readings (their history is in the store's series).
type DeviceRow struct {
	ID            string     `json:"id"`
	Site          string     `json:"site,omitempty"`
	Kind          string     `json:"kind,omitempty"`
	State         string     `json:"state"`
	Version       string     `json:"version,omitempty"`
	PolicySerial  uint64     `json:"policy_serial"`
	PolicyExpires *time.Time `json:"policy_expires,omitempty"`
	Verified      bool       `json:"verified"`
	TelemetryAt   time.Time  `json:"telemetry_at"`
	Rates         *Rates     `json:"rates,omitempty"` // routers
	Approvals     []string   `json:"approvals,omitempty"`
	Capabilities  []string   `json:"capabilities,omitempty"`
	// Feeds are its feeds' present readings, without history (the
	// store's series hold it).
	Feeds []Feed `json:"feeds,omitempty"`
}

// DeviceQuery selects a page of devices.
type DeviceQuery struct {
	Q       string // a substring of the id, site or kind, or a state, any case
	Site    string // exactly this site
	State   string // online, offline, silent
	Page    int    // from 1
	PerPage int
}

// DevicePage is what /api/devices returns.
type DevicePage struct {
	Total   int         `json:"total"`
	Page    int         `json:"page"`
	PerPage int         `json:"per_page"`
	Devices []DeviceRow `json:"devices"`
}

// stateOf is how the page names d's state now.
func (c *Console) stateOf(d *Device, now time.Time) string {
	switch {
	case d.Online && !d.heard.IsZero() && now.Sub(d.heard) > c.opt.Silence:
		return StateSilent
	case d.Online:
		return StateOnline
	}
	return StateOffline
}

// pageBounds clamps page and perPage and returns the slice [lo, hi) of n
// items they select.
func pageBounds(page, perPage, n int) (p, pp, lo, hi int) {
	pp = perPage
	if pp <= 0 {
		pp = defaultPerPage
	}
	pp = min(pp, maxPerPage)
	// A page past the last is empty; bounded first, so that no page
	// number a client sends overflows the offset.
	p = min(max(page, 1), n/pp+2)
	lo = min((p-1)*pp, n)
	hi = min(lo+pp, n)
	return p, pp, lo, hi
}

// fleetSerial is the verified fleet policy's serial, 0 without one.
// c.mu must be held.
func (c *Console) fleetSerial() uint64 {
	if c.policy != nil && c.policy.Verified && c.policy.Parsed != nil {
		return c.policy.Parsed.Serial
	}
	return 0
}

// Sites returns a page of the site overview, sites sorted by name; q
// selects sites whose name holds it (any case).
func (c *Console) Sites(ctx context.Context, q string, page, perPage int) SitePage {
	rates := c.rates(ctx)
	now := c.opt.Now()
	q = strings.ToLower(q)
	c.mu.RLock()
	defer c.mu.RUnlock()
	fleet := c.fleetSummaryLocked(now)
	bySite := map[string]*SiteView{}
	serials := map[string]map[uint64]int{}
	for _, d := range c.devices {
		st := c.stateOf(d, now)
		if q != "" && !strings.Contains(strings.ToLower(d.Site), q) {
			continue
		}
		s := bySite[d.Site]
		if s == nil {
			s = &SiteView{Site: d.Site, Serials: []SerialCount{}, Feeds: []FeedSummary{}}
			bySite[d.Site] = s
			serials[d.Site] = map[uint64]int{}
		}
		s.Devices++
		switch st {
		case StateOnline:
			s.Online++
		case StateSilent:
			s.Silent++
		default:
			s.Offline++
		}
		switch d.Kind {
		case "router":
			s.Routers++
		case "relay":
			s.Relays++
		}
		serials[d.Site][d.PolicySerial]++
		if r, ok := rates[d.ID]; ok {
			s.Rates.Passed += r.Passed
			s.Rates.Denied += r.Denied
		}
		if h := d.heard; !h.IsZero() && (s.LastHeard == nil || h.After(*s.LastHeard)) {
			s.LastHeard = &h
		}
		for _, f := range d.Feeds {
			s.FeedsTotal++
			if len(s.Feeds) < maxSiteFeeds {
				s.Feeds = append(s.Feeds, FeedSummary{Device: d.ID, ID: f.ID, PowerW: f.PowerW, CapW: f.CapW, Status: f.Status, Online: st == StateOnline})
			}
		}
	}
	all := make([]*SiteView, 0, len(bySite))
	for _, s := range bySite {
		all = append(all, s)
	}
	slices.SortFunc(all, func(a, b *SiteView) int { return strings.Compare(a.Site, b.Site) })
	p, pp, lo, hi := pageBounds(page, perPage, len(all))
	out := SitePage{Fleet: fleet, Total: len(all), Page: p, PerPage: pp, Sites: make([]SiteView, 0, hi-lo)}
	for _, s := range all[lo:hi] {
		for serial, n := range serials[s.Site] {
			s.Serials = append(s.Serials, SerialCount{Serial: serial, Devices: n})
		}
		slices.SortFunc(s.Serials, func(a, b SerialCount) int { return cmp.Compare(b.Serial, a.Serial) })
		s.SameSerial = len(s.Serials) == 1
		s.Current = s.SameSerial && fleet.Serial != 0 && s.Serials[0].Serial == fleet.Serial
		slices.SortFunc(s.Feeds, func(a, b FeedSummary) int {
			return cmp.Or(strings.Compare(a.Device, b.Device), strings.Compare(a.ID, b.ID))
		})
		out.Sites = append(out.Sites, *s)
	}
	return out
}

// fleetSummaryLocked counts the fleet; c.mu must be held.
func (c *Console) fleetSummaryLocked(now time.Time) FleetSummary {
	f := FleetSummary{Serial: c.fleetSerial()}
	sites := map[string]struct{}{}
	for _, d := range c.devices {
		sites[d.Site] = struct{}{}
		f.Devices++
		switch c.stateOf(d, now) {
		case StateOnline:
			f.Online++
		case StateSilent:
			f.Silent++
		default:
			f.Offline++
		}
		if f.Serial != 0 && d.PolicySerial < f.Serial {
			f.Behind++
		}
	}
	f.Sites = len(sites)
	return f
}

// Fleet counts the fleet now.
func (c *Console) Fleet() FleetSummary {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.fleetSummaryLocked(c.opt.Now())
}

// DevicesPage returns the devices q selects, sorted by site then id, one
// page of them.
func (c *Console) DevicesPage(ctx context.Context, q DeviceQuery) DevicePage {
	rates := c.rates(ctx)
	now := c.opt.Now()
	needle := strings.ToLower(q.Q)
	c.mu.RLock()
	defer c.mu.RUnlock()
	match := make([]*Device, 0, 64)
	for _, d := range c.devices {
		if q.Site != "" && d.Site != q.Site {
			continue
		}
		st := c.stateOf(d, now)
		if q.State != "" && st != q.State {
			continue
		}
		if needle != "" && st != needle && !strings.Contains(strings.ToLower(d.ID), needle) &&
			!strings.Contains(strings.ToLower(d.Site), needle) && !strings.Contains(strings.ToLower(d.Kind), needle) {
			continue
		}
		match = append(match, d)
	}
	slices.SortFunc(match, func(a, b *Device) int { return cmp.Or(strings.Compare(a.Site, b.Site), strings.Compare(a.ID, b.ID)) })
	p, pp, lo, hi := pageBounds(q.Page, q.PerPage, len(match))
	out := DevicePage{Total: len(match), Page: p, PerPage: pp, Devices: make([]DeviceRow, 0, hi-lo)}
	for _, d := range match[lo:hi] {
		row := DeviceRow{ID: d.ID, Site: d.Site, Kind: d.Kind, State: c.stateOf(d, now), Version: d.Version, PolicySerial: d.PolicySerial,
			PolicyExpires: d.PolicyExpires, Verified: d.Verified, TelemetryAt: d.TelemetryAt, Capabilities: slices.Clone(d.Capabilities)}
		if d.Filter != nil || d.Kind == "router" {
			r := rates[d.ID]
			row.Rates = &r
		}
		if d.Filter != nil {
			for _, a := range d.Filter.Approvals {
				row.Approvals = append(row.Approvals, a.ID)
			}
		}
		for _, f := range d.Feeds {
			row.Feeds = append(row.Feeds, Feed{ID: f.ID, PowerW: f.PowerW, CapW: f.CapW, Status: f.Status, Circuits: slices.Clone(f.Circuits)})
		}
		out.Devices = append(out.Devices, row)
	}
	return out
}

// rateCache holds every device's rates, read from the store every
// ratesEvery by keepRates while a page asks for them: one query for the
// fleet, whatever the pages ask, and no request waits for it.
type rateCache struct {
	mu       sync.Mutex
	at       time.Time // when byDevice was read
	asked    time.Time // when a page last asked
	byDevice map[string]Rates
}

// rates returns the devices' rates. It reads them itself only when
// keepRates has not (the first ask, or a console not running).
func (c *Console) rates(ctx context.Context) map[string]Rates {
	rc := &c.rateCache
	now := c.opt.Now()
	rc.mu.Lock()
	rc.asked = now
	if rc.byDevice != nil && now.Sub(rc.at) < 3*ratesEvery && !now.Before(rc.at) {
		defer rc.mu.Unlock()
		return rc.byDevice
	}
	rc.mu.Unlock()
	return c.readRates(ctx)
}

// readRates reads the rates from the store into the cache; a store that
// fails is logged and the last rates kept.
func (c *Console) readRates(ctx context.Context) map[string]Rates {
	now := c.opt.Now()
	m, err := c.store.RecentRates(ctx, now)
	rc := &c.rateCache
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if err != nil {
		c.log.Warn("console: rates from the store", "err", err)
		if rc.byDevice == nil {
			rc.byDevice = map[string]Rates{}
		}
		return rc.byDevice
	}
	rc.byDevice, rc.at = m, now
	return m
}

// keepRates reads the rates every ratesEvery while a page has asked for
// them in the last minute, until ctx ends.
func (c *Console) keepRates(ctx context.Context) {
	t := time.NewTicker(ratesEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			if c.ratesWanted() {
				c.readRates(ctx)
			}
		case <-ctx.Done():
			return
		}
	}
}

// ratesWanted says a page asked for rates in the last minute.
func (c *Console) ratesWanted() bool {
	c.rateCache.mu.Lock()
	defer c.rateCache.mu.Unlock()
	return c.opt.Now().Sub(c.rateCache.asked) < time.Minute
}

// RecentRates is each device's passed and denied frames per second over
// the 1-minute buckets of the last minute and the one before it (one to
// two minutes, to now).
func (a *Audit) RecentRates(ctx context.Context, now time.Time) (map[string]Rates, error) {
	from := floorDiv(now.Unix(), 60)*60 - 60
	secs := float64(now.UnixMilli()-from*1000) / 1000
	rows, err := a.db.QueryContext(ctx, a.q(`SELECT device, series, SUM(total) FROM rollup
WHERE res = 60 AND bucket >= ? AND series IN ('links.passed', 'links.denied') GROUP BY device, series`), from)
	if err != nil {
		return nil, fmt.Errorf("console: rates: %w", err)
	}
	defer rows.Close()
	out := map[string]Rates{}
	for rows.Next() {
		var dev, series string
		var total float64
		if err := rows.Scan(&dev, &series, &total); err != nil {
			return nil, fmt.Errorf("console: rates: %w", err)
		}
		r := out[dev]
		if series == "links.passed" {
			r.Passed = total / secs
		} else {
			r.Denied = total / secs
		}
		out[dev] = r
	}
	return out, rows.Err()
}

// queryText is a bounded search parameter.
func queryText(v url.Values, name string) (string, bool) {
	s := strings.TrimSpace(v.Get(name))
	return s, len(s) <= maxQuery
}

// serveSites answers /api/sites?q=&page=&per_page=.
func (c *Console) serveSites(w http.ResponseWriter, r *http.Request, _ *Session) {
	v := r.URL.Query()
	q, ok := queryText(v, "q")
	if !ok {
		writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("q: at most %d bytes", maxQuery)})
		return
	}
	page, _ := strconv.Atoi(v.Get("page"))
	per, _ := strconv.Atoi(v.Get("per_page"))
	writeJSON(w, http.StatusOK, c.Sites(r.Context(), q, page, per))
}

// serveDevices answers /api/devices?q=&site=&state=&page=&per_page=.
func (c *Console) serveDevices(w http.ResponseWriter, r *http.Request, _ *Session) {
	v := r.URL.Query()
	var dq DeviceQuery
	for name, dst := range map[string]*string{"q": &dq.Q, "site": &dq.Site, "state": &dq.State} {
		s, ok := queryText(v, name)
		if !ok {
			writeJSON(w, http.StatusBadRequest, apiError{fmt.Sprintf("%s: at most %d bytes", name, maxQuery)})
			return
		}
		*dst = s
	}
	switch dq.State {
	case "", StateOnline, StateOffline, StateSilent:
	default:
		writeJSON(w, http.StatusBadRequest, apiError{"state: online, offline or silent"})
		return
	}
	dq.Page, _ = strconv.Atoi(v.Get("page"))
	dq.PerPage, _ = strconv.Atoi(v.Get("per_page"))
	writeJSON(w, http.StatusOK, c.DevicesPage(r.Context(), dq))
}
