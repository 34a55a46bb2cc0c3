package console

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy/policytest"
)

// fleetConsole is a console with n devices over n/20 sites (site-0000 …),
// every tenth a relay controller with one feed, the rest routers; every
// seventh is offline and device 3 of each site runs serial 1 where the
// others run 2. Each router has stored telemetry (unless noTelemetry):
// 600 passed and 60 denied frames over the minute before now, and with
// allSeries the 16 other series a router sends.
// What fleetConsole stores of the routers' telemetry.
type stored int

const (
	noTelemetry stored = iota // nothing: pages without rates
	rateSeries                // links.passed and links.denied
	allSeries                 // the 18 series a router sends
)

func fleetConsole(tb testing.TB, n int, what stored) (*Console, time.Time) {
	tb.Helper()
	now := time.Date(2026, 12, 3, 12, 0, 30, 0, time.UTC)
	c, err := New(Options{Broker: "tcp://127.0.0.1:1", Now: func() time.Time { return now },
		Trust: []ed25519.PublicKey{policytest.Key(tb).Public().(ed25519.PublicKey)}})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { c.Close() })
	var samples []Sample
	for i := range n {
		id, site, kind := fmt.Sprintf("dev-%05d", i), fmt.Sprintf("site-%04d", i/20), "router"
		if i%10 == 9 {
			kind = "relay"
		}
		serial := uint64(2)
		if i%20 == 3 {
			serial = 1
		}
		st := contract.State{Online: true, Device: id, Site: site, Kind: kind, BootID: "b1", TS: now, Policy: &contract.PolicyState{Serial: serial}}
		b, _ := json.Marshal(st)
		c.Ingest(contract.Prefix+id+"/state", b)
		if i%7 == 6 {
			b, _ = json.Marshal(contract.State{Online: false, Device: id, BootID: "b1"})
			c.Ingest(contract.Prefix+id+"/state", b)
		}
		if kind == "relay" {
			b, _ = json.Marshal(contract.Telemetry{Device: id, BootID: "b1", Seq: 1, TS: now, Sections: map[string]json.RawMessage{
				contract.SectionFeeds: json.RawMessage(`[{"feed":"feed-` + id + `","power_kw":42,"cap_kw":40,"circuits":[{"id":"c1","on":true}]}]`)}})
			c.Ingest(contract.Prefix+id+"/telemetry", b)
			continue
		}
		if what == noTelemetry {
			continue
		}
		for s := range 2 {
			// The series a router sends, the two rates among them.
			v := map[string]float64{"links.passed": float64(600 * s), "links.denied": float64(60 * s)}
			if what == allSeries {
				v["agent.queue_depth"], v["agent.rss_bytes"], v["links.flows"] = 0, 1<<24, 40
				v["approval.LA-1.packets"], v["approval.LA-1.bytes"] = float64(300*s), float64(300000*s)
			}
			for _, n := range []string{"passed_bytes", "denied_bytes", "denied_flows", "domestic", "new_flows", "tunnelled", "spoofed", "link_control", "malformed"} {
				if what == allSeries {
					v["links."+n] = float64(10 * s)
				}
			}
			samples = append(samples, Sample{Device: id, BootID: "b1", Seq: uint64(s + 1), TS: now.Add(time.Duration(s-1) * time.Minute), Values: v})
		}
	}
	storeSamples(tb, c.store, now, samples)
	return c, now
}

// storeSamples stores samples in batches, as the console's recorder does.
func storeSamples(tb testing.TB, a *Audit, now time.Time, samples []Sample) {
	tb.Helper()
	for len(samples) > 0 {
		k := min(len(samples), telemetryBatch)
		if _, _, err := a.IngestTelemetry(context.Background(), now, samples[:k]); err != nil {
			tb.Fatal(err)
		}
		samples = samples[k:]
	}
}

// TestSiteOverview: each site counts its devices' states and kinds, lists
// the serials they run and whether they all run one, sums its routers'
// rates from the store (per second, not totals) and lists its feeds with
// power against cap; the fleet summary counts everything.
func TestSiteOverview(t *testing.T) {
	c, _ := fleetConsole(t, 40, rateSeries)
	pg := c.Sites(context.Background(), "", 1, 0)
	if pg.Total != 2 || len(pg.Sites) != 2 || pg.Fleet.Devices != 40 || pg.Fleet.Sites != 2 {
		t.Fatalf("page %+v", pg)
	}
	s := pg.Sites[0]
	// Devices 0..19: 6 and 13 offline; 9 and 19 relays; 3 on serial 1.
	if s.Site != "site-0000" || s.Devices != 20 || s.Online != 18 || s.Offline != 2 || s.Routers != 18 || s.Relays != 2 {
		t.Fatalf("site %+v", s)
	}
	if s.SameSerial || len(s.Serials) != 2 || s.Serials[0] != (SerialCount{2, 19}) || s.Serials[1] != (SerialCount{1, 1}) {
		t.Fatalf("serials %+v same=%v", s.Serials, s.SameSerial)
	}
	// 18 routers, each 600 passed and 60 denied over the last 90 s.
	if want := 18 * 600 / 90.0; s.Rates.Passed < want-0.01 || s.Rates.Passed > want+0.01 || s.Rates.Denied < want/10-0.01 || s.Rates.Denied > want/10+0.01 {
		t.Fatalf("rates %+v, want %.2f passed/s", s.Rates, want)
	}
	if s.FeedsTotal != 2 || len(s.Feeds) != 2 || s.Feeds[0].PowerW != 42000 || s.Feeds[0].CapW != 40000 || s.Feeds[0].Device != "dev-00009" {
		t.Fatalf("feeds %+v", s.Feeds)
	}
	if pg = c.Sites(context.Background(), "0001", 1, 0); pg.Total != 1 || pg.Sites[0].Site != "site-0001" || pg.Fleet.Sites != 2 {
		t.Fatalf("search: %+v", pg)
	}
}

// TestDevicesPage: search by id, site, kind or state, filters by site and
// state, sorted by site then id, paged with the page size bounded.
func TestDevicesPage(t *testing.T) {
	c, _ := fleetConsole(t, 100, rateSeries)
	ctx := context.Background()
	for _, tc := range []struct {
		q     DeviceQuery
		total int
		first string
	}{
		{DeviceQuery{}, 100, "dev-00000"},
		{DeviceQuery{Q: "DEV-0004"}, 10, "dev-00040"},
		{DeviceQuery{Q: "relay"}, 10, "dev-00009"},
		{DeviceQuery{Q: "offline"}, 14, "dev-00006"},
		{DeviceQuery{State: StateOffline, Site: "site-0001"}, 3, "dev-00020"},
		{DeviceQuery{Site: "site-0004", Page: 2, PerPage: 15}, 20, "dev-00095"},
		{DeviceQuery{Site: "nowhere"}, 0, ""},
	} {
		pg := c.DevicesPage(ctx, tc.q)
		if pg.Total != tc.total || (tc.first != "" && (len(pg.Devices) == 0 || pg.Devices[0].ID != tc.first)) {
			t.Errorf("%+v: total %d, first %v", tc.q, pg.Total, pg.Devices)
		}
	}
	pg := c.DevicesPage(ctx, DeviceQuery{PerPage: 1 << 20})
	if pg.PerPage != maxPerPage || len(pg.Devices) != 100 {
		t.Fatalf("per_page not bounded: %d, %d rows", pg.PerPage, len(pg.Devices))
	}
	pg = c.DevicesPage(ctx, DeviceQuery{Q: "dev-00009"})
	if d := pg.Devices[0]; d.Kind != "relay" || len(d.Feeds) != 1 || d.Feeds[0].CapW != 40000 || d.Rates != nil {
		t.Fatalf("relay row %+v", d)
	}
	pg = c.DevicesPage(ctx, DeviceQuery{Q: "dev-00001"})
	if d := pg.Devices[0]; d.State != StateOnline || d.Rates == nil || d.Rates.Passed < 6.66 || d.Rates.Passed > 6.67 || d.PolicySerial != 2 {
		t.Fatalf("router row %+v", d)
	}
}

// TestSitesAPI: the handlers answer with bounded pages and refuse what
// they cannot search; without a session the API answers nothing.
func TestSitesAPI(t *testing.T) {
	c, _ := fleetConsole(t, 60, rateSeries)
	get := func(h func(http.ResponseWriter, *http.Request, *Session), path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", path, nil), nil)
		return w
	}
	w := get(c.serveDevices, "/api/devices?site=site-0002&state=online&per_page=5&page=2")
	var dp DevicePage
	if w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &dp) != nil || dp.Total != 17 || len(dp.Devices) != 5 || dp.Page != 2 || dp.Devices[0].ID != "dev-00046" {
		t.Fatalf("%d %s", w.Code, w.Body)
	}
	for _, bad := range []string{"/api/devices?state=asleep", "/api/devices?q=" + strings.Repeat("x", maxQuery+1)} {
		if w := get(c.serveDevices, bad); w.Code != http.StatusBadRequest {
			t.Errorf("%s: %d", bad, w.Code)
		}
	}
	if w := get(c.serveSites, "/api/sites?q="+strings.Repeat("x", maxQuery+1)); w.Code != http.StatusBadRequest {
		t.Errorf("long site search: %d", w.Code)
	}
	var sp SitePage
	if w := get(c.serveSites, "/api/sites?per_page=2&page=2"); w.Code != 200 || json.Unmarshal(w.Body.Bytes(), &sp) != nil || sp.Total != 3 || len(sp.Sites) != 1 || sp.Sites[0].Site != "site-0002" {
		t.Fatalf("sites page: %s", w.Body)
	}
	srv := httptest.NewServer(c.Handler())
	defer srv.Close()
	c.SetListener(strings.TrimPrefix(srv.URL, "http://"))
	for _, p := range []string{"/api/sites", "/api/devices"} {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a session: %d", p, resp.StatusCode)
		}
	}
}

// TestPagesAt10000Devices: with 10,000 devices in the model a page of
// devices or sites is a bounded answer, whatever the page size asked;
// the state the page polls carries counts, not the fleet.
func TestPagesAt10000Devices(t *testing.T) {
	c, _ := fleetConsole(t, 10000, noTelemetry)
	size := func(h func(http.ResponseWriter, *http.Request, *Session), path string) int {
		w := httptest.NewRecorder()
		h(w, httptest.NewRequest("GET", path, nil), nil)
		if w.Code != 200 {
			t.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		return w.Body.Len()
	}
	if n := size(c.serveDevices, "/api/devices?per_page=1000000"); n > 128<<10 {
		t.Errorf("a page of devices is %d bytes", n)
	}
	if n := size(c.serveDevices, "/api/devices?q=site-0321"); n > 16<<10 {
		t.Errorf("a site's first page of devices is %d bytes", n)
	}
	if n := size(c.serveSites, "/api/sites?per_page=1000000"); n > 256<<10 {
		t.Errorf("a page of sites is %d bytes", n)
	}
	st, _ := json.Marshal(c.State())
	if len(st) > 32<<10 {
		t.Errorf("the state is %d bytes with 10,000 devices", len(st))
	}
	if f := c.Fleet(); f.Devices != 10000 || f.Sites != 500 || f.Offline != 1428 {
		t.Errorf("fleet %+v", f)
	}
}

// BenchmarkDevicesPage10000 is one search of /api/devices over 10,000
// devices, encoded as served (rates cached, as between two reads of the
// store).
func BenchmarkDevicesPage10000(b *testing.B) {
	c, _ := fleetConsole(b, 10000, noTelemetry)
	for _, path := range []string{"/api/devices?page=3", "/api/devices?q=site-0321", "/api/devices?state=offline&q=relay"} {
		b.Run(strings.TrimPrefix(path, "/api/devices"), func(b *testing.B) {
			req := httptest.NewRequest("GET", path, nil)
			for b.Loop() {
				c.serveDevices(httptest.NewRecorder(), req, nil)
			}
		})
	}
}

// BenchmarkSites10000 is one page of the site overview over 10,000
// devices in 500 sites.
func BenchmarkSites10000(b *testing.B) {
	c, _ := fleetConsole(b, 10000, noTelemetry)
	req := httptest.NewRequest("GET", "/api/sites", nil)
	for b.Loop() {
		c.serveSites(httptest.NewRecorder(), req, nil)
	}
}

// BenchmarkRecentRates10000 is the store's query behind the rates, read
// at most every ratesEvery.
func BenchmarkRecentRates10000(b *testing.B) {
	c, now := fleetConsole(b, 10000, allSeries)
	for b.Loop() {
		if _, err := c.store.RecentRates(context.Background(), now); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRecentRatesBackends: the rates query gives the same rates per second
// on SQLite and a real PostgreSQL: the increase over the last minute and
// the one under way, over the seconds they span to now; older buckets
// and other series count nothing.
func TestRecentRatesBackends(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st, _ := openStore(t, backend)
			now := t0.Add(30 * time.Second) // 10:00:30: the window is 09:59:00 to now, 90 s
			var samples []Sample
			for i, ts := range []time.Duration{-5 * time.Minute, -time.Minute, 0} {
				samples = append(samples, Sample{Device: "r1", BootID: "b", Seq: uint64(i + 1), TS: now.Add(ts),
					Values: map[string]float64{"links.passed": float64(900 * i), "links.denied": float64(90 * i), "links.domestic": float64(5000 * i)}})
			}
			storeSamples(t, st, now, samples)
			r, err := st.RecentRates(context.Background(), now)
			if err != nil {
				t.Fatal(err)
			}
			// The increases at 09:59:30 and 10:00:30: 900 + 900 passed.
			if got := r["r1"]; len(r) != 1 || got.Passed != 20 || got.Denied != 2 {
				t.Fatalf("rates %+v", r)
			}
		})
	}
}

// FuzzDevicesQuery: whatever a client puts in the query of /api/devices
// or /api/sites, the answer is a bounded page or a refusal.
func FuzzDevicesQuery(f *testing.F) {
	for _, s := range []string{"page=2&per_page=5", "page=9223372036854775807&per_page=200", "page=-9223372036854775808&per_page=-1",
		"state=silent&q=RELAY", "q=%00%ff&site=site-0001", "per_page=1e9", "site=" + strings.Repeat("s", 200)} {
		f.Add(s)
	}
	c, _ := fleetConsole(f, 60, rateSeries)
	f.Fuzz(func(t *testing.T, query string) {
		for _, h := range []func(http.ResponseWriter, *http.Request, *Session){c.serveDevices, c.serveSites} {
			r := httptest.NewRequest("GET", "/api/x", nil)
			r.URL.RawQuery = query
			w := httptest.NewRecorder()
			h(w, r, nil)
			switch {
			case w.Code == http.StatusBadRequest:
			case w.Code != http.StatusOK:
				t.Fatalf("%q: %d", query, w.Code)
			case w.Body.Len() > 64<<10:
				t.Fatalf("%q: %d bytes", query, w.Body.Len())
			}
		}
	})
}
