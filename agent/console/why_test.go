package console

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

func TestParseTerms(t *testing.T) {
	for _, tc := range []struct {
		in, want, err string
	}{
		{"203.0.113.5", "ends=[203.0.113.5/32]", ""},
		{"  103.1.2.3   203.0.113.5 tcp/22 ", "ends=[103.1.2.3/32 203.0.113.5/32] proto=tcp port=22", ""},
		{"203.0.113.0/24 udp port:53 site:vientiane-north", "ends=[203.0.113.0/24] proto=udp port=53 site=vientiane-north", ""},
		{"2001:db8:feed::/48 icmp", "ends=[2001:db8:feed::/48] proto=icmp", ""},
		{"::ffff:203.0.113.5", "ends=[203.0.113.5/32]", ""},
		{`holder:"Example Telecom" approval:LA-1 device:r1 type:link.denied`, "approval=LA-1 holder=Example Telecom device=r1 type=link.denied", ""},
		{`LA-2026-0017 "Transit Carrier"`, "words=[LA-2026-0017 Transit Carrier]", ""},
		{"", "", ""},
		{"203.0.113.5/24", "", "host bits set: did you mean 203.0.113.0/24"},
		{"1.2.3.4 5.6.7.8 9.9.9.9", "", "at most two"},
		{"tcp/22 udp/53", "", "two services"},
		{"tcp/1000-2000", "", "one port"},
		{"port:0", "", "1-65535"},
		{"port:70000", "", "1-65535"},
		{"colour:red", "", "unknown key"},
		{"site:", "", "names nothing"},
		{"site:a site:b", "", "two values"},
		{`holder:"open`, "", "not closed"},
		{"a\x00b", "", "control character"},
		{"\xff\xfe", "", "not UTF-8"},
		{strings.Repeat("a ", 300), "", "over 512 bytes"},
		{strings.Repeat("a ", 17), "", "more than 16 terms"},
		{strings.Repeat("x", 200), "", "term over 128"},
		{"fe80::1%eth0", "", "zone"},
		{"::ffff:203.0.113.0/120", "", "IPv4 prefix as IPv4"},
	} {
		got, err := ParseTerms(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrSearch) {
				t.Errorf("%q: err %v, want one saying %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if s := got.String(); s != tc.want {
			t.Errorf("%q: %s, want %s", tc.in, s, tc.want)
		}
	}
}

// String spells the terms, for tests.
func (t Terms) String() string {
	var parts []string
	add := func(k, v string) {
		if v != "" {
			parts = append(parts, k+"="+v)
		}
	}
	if len(t.Ends) > 0 {
		add("ends", fmt.Sprint(t.Ends))
	}
	add("proto", t.Proto)
	if t.DPort != 0 {
		add("port", fmt.Sprint(t.DPort))
	}
	add("site", t.Site)
	add("approval", t.Approval)
	add("holder", t.Holder)
	add("device", t.Device)
	add("type", t.Type)
	if len(t.Words) > 0 {
		add("words", fmt.Sprint(t.Words))
	}
	return strings.Join(parts, " ")
}

// FuzzParseTerms: whatever a browser sends, the parser refuses it with a
// search error or returns terms within the bounds.
func FuzzParseTerms(f *testing.F) {
	for _, s := range []string{"203.0.113.5", "103.1.2.3 203.0.113.5 tcp/22", "2001:db8::/32 icmp site:x", `holder:"a b" LA-1`, "port:443", "ip/47", `"`, "a:b:c"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseTerms(s)
		if err != nil {
			if !errors.Is(err, ErrSearch) {
				t.Fatalf("%q: %v is not a search error", s, err)
			}
			return
		}
		if len(got.Ends) > 2 || len(got.Words) > maxWords {
			t.Fatalf("%q: %+v beyond the bounds", s, got)
		}
		for _, e := range got.Ends {
			if !e.IsValid() || e != e.Masked() {
				t.Fatalf("%q: end %v", s, e)
			}
		}
		if got.Proto != "" {
			if _, err := policy.ParseProto(got.Proto); err != nil {
				t.Fatalf("%q: proto %q", s, got.Proto)
			}
		}
	})
}

func deniedEvent(i int, dev, site, src, dst string, dport int, ts time.Time) contract.Event {
	return contract.Event{ID: fmt.Sprint("ev-", dev, "-", i), Device: dev, Seq: uint64(i + 1), BootID: "b", TS: ts, Severity: "warning", Type: "link.denied",
		Fields: map[string]any{"site": site, "mode": "inline", "action": "dropped", "verdict": "denied", "reason": "service",
			"src": src, "dst": dst, "proto": "tcp", "sport": 40000, "dport": dport, "policy_serial": 42}}
}

func summaryEvent(i int, dev, site string, ts time.Time) contract.Event {
	return contract.Event{ID: fmt.Sprint("sum-", dev, "-", i), Device: dev, Seq: uint64(1000 + i), BootID: "b", TS: ts, Severity: "notice", Type: "link.denied",
		Fields: map[string]any{"site": site, "summary": true, "interval_s": 5, "packets": 3, "bytes": 300, "flows": 1, "events_suppressed": 0}}
}

// TestEventSearchStore: events are found by address, prefix, pair,
// service, approval prefixes, device, site, type and time, page by page,
// with summaries folded and counts per type and site, on SQLite and a real
// PostgreSQL; a redelivered event is one row, and retention prunes the
// keys with the events.
func TestEventSearchStore(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st, _ := openStore(t, backend)
			ctx := context.Background()
			if err := st.PutDevices(ctx, []Device{{ID: "r1", Site: "north", Kind: "router"}, {ID: "r2", Site: "south", Kind: "router"}}, nil, t0); err != nil {
				t.Fatal(err)
			}
			var evs []contract.Event
			for i := range 6 {
				evs = append(evs, deniedEvent(i, "r1", "north", "103.1.2.3", fmt.Sprint("203.0.113.", i), 22, t0.Add(time.Duration(i)*time.Minute)))
				evs = append(evs, summaryEvent(i, "r1", "north", t0.Add(time.Duration(i)*time.Minute+time.Second)))
			}
			evs = append(evs, deniedEvent(10, "r2", "south", "2001:db8:feed::9", "103.1.7.7", 443, t0.Add(10*time.Minute)),
				contract.Event{ID: "pol", Device: "r2", Seq: 99, BootID: "b", TS: t0.Add(11 * time.Minute), Severity: "notice", Type: "policy.applied", Fields: map[string]any{"serial": 42}})
			if _, err := st.IngestEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if n, err := st.IngestEvents(ctx, evs[:3]); err != nil || n != 0 {
				t.Fatalf("redelivery: %d new, %v", n, err)
			}
			search := func(s EventSearch) SearchResult {
				t.Helper()
				r, err := st.SearchEvents(ctx, s)
				if err != nil {
					t.Fatal(err)
				}
				return r
			}
			ids := func(r SearchResult) string {
				var s []string
				for _, e := range r.Events {
					s = append(s, e.ID)
				}
				return strings.Join(s, " ")
			}
			pfx := func(s string) netip.Prefix { return netip.MustParsePrefix(s) }
			for _, tc := range []struct {
				name string
				s    EventSearch
				want string
			}{
				{"address", EventSearch{Ends: []netip.Prefix{pfx("203.0.113.4/32")}}, "ev-r1-4"},
				{"prefix", EventSearch{Ends: []netip.Prefix{pfx("203.0.113.0/30")}}, "ev-r1-3 ev-r1-2 ev-r1-1 ev-r1-0"},
				{"pair either way", EventSearch{Ends: []netip.Prefix{pfx("203.0.113.1/32"), pfx("103.1.0.0/16")}}, "ev-r1-1"},
				{"IPv6 prefix", EventSearch{Ends: []netip.Prefix{pfx("2001:db8:feed::/48")}}, "ev-r2-10"},
				{"service", EventSearch{Proto: "tcp", DPort: 443}, "ev-r2-10"},
				{"approval's remotes", EventSearch{Remotes: []netip.Prefix{pfx("2001:db8:feed::/48"), pfx("203.0.113.5/32")}}, "ev-r2-10 ev-r1-5"},
				{"site", EventSearch{Site: "south"}, "pol ev-r2-10"},
				{"site of the device, for an event naming none", EventSearch{Site: "south", Type: "policy"}, "pol"},
				{"time window", EventSearch{Device: "r1", Type: "link.denied", Since: t0.Add(4 * time.Minute), Until: t0.Add(5 * time.Minute)}, "sum-r1-4 ev-r1-4"},
			} {
				if got := ids(search(tc.s)); got != tc.want {
					t.Errorf("%s: %q, want %q", tc.name, got, tc.want)
				}
			}
			// The device's summaries between its flows are folded; a page
			// of 4 rows continues where it stopped.
			r := search(EventSearch{Device: "r1", Limit: 4})
			if len(r.Events) != 4 || r.Next == 0 || r.Total != 12 {
				t.Fatalf("first page: %d rows, next %d, total %d", len(r.Events), r.Next, r.Total)
			}
			seen := map[string]bool{}
			for page := 0; ; page++ {
				for _, e := range r.Events {
					if seen[e.ID] {
						t.Fatalf("%s on two pages", e.ID)
					}
					seen[e.ID] = true
				}
				if r.Next == 0 {
					break
				}
				r = search(EventSearch{Device: "r1", Limit: 4, Before: r.Next})
			}
			if len(seen) != 12 {
				t.Errorf("paging saw %d events, want 12", len(seen))
			}
			// Two summaries of r1 next to each other fold into one row.
			st.IngestEvents(ctx, []contract.Event{summaryEvent(20, "r1", "north", t0.Add(20*time.Minute)), summaryEvent(21, "r1", "north", t0.Add(21*time.Minute))})
			r = search(EventSearch{Device: "r1", Limit: 3})
			if f := r.Events[0]; f.Folded != 3 || f.Packets != 9 || f.Bytes != 900 || !f.First.Equal(t0.Add(5*time.Minute+time.Second)) {
				t.Errorf("folded row: %+v", f)
			}
			counts := map[string]int64{}
			for _, c := range search(EventSearch{}).Counts {
				counts[c.Type+"@"+c.Site] = c.Count
			}
			if counts["link.denied@north"] != 14 || counts["link.denied@south"] != 1 || counts["policy.applied@south"] != 1 {
				t.Errorf("counts: %v", counts)
			}
			if _, err := st.SearchEvents(ctx, EventSearch{Ends: make([]netip.Prefix, 3)}); !errors.Is(err, ErrSearch) {
				t.Errorf("three ends: %v", err)
			}
			seenBy, err := st.seenBy(ctx, EventSearch{Ends: []netip.Prefix{pfx("203.0.113.0/24")}, Type: "link.denied"})
			if err != nil || len(seenBy) != 1 || seenBy[0].Device != "r1" || seenBy[0].Events != 6 || seenBy[0].Dst != "203.0.113.5" ||
				seenBy[0].DPort != 22 || seenBy[0].PolicySerial != 42 || seenBy[0].Reason != "service" || seenBy[0].Site != "north" {
				t.Errorf("seen by: %+v %v", seenBy, err)
			}
			if _, err := st.Prune(ctx, t0.Add(400*24*time.Hour+5*time.Minute+30*time.Second), DefaultRetention); err != nil {
				t.Fatal(err)
			}
			var keys int
			st.db.QueryRow(`SELECT COUNT(*) FROM event_keys`).Scan(&keys)
			if r := search(EventSearch{Since: t0.Add(-time.Hour)}); keys != int(r.Total) || r.Total != 4 {
				t.Errorf("after pruning: %d keys, %d found, want 4", keys, r.Total)
			}
		})
	}
}

// TestInventoryStore: the remotes routers send are kept once per message
// however often it comes, summed by prefix and service per verdict over a
// window, per site, and pruned with the 1-minute rollups.
func TestInventoryStore(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st, _ := openStore(t, backend)
			ctx := context.Background()
			st.PutDevices(ctx, []Device{{ID: "r1", Site: "north"}, {ID: "r2", Site: "north"}, {ID: "r3", Site: "south"}}, nil, t0)
			rt := func(prefix, verdict, approval string, dport uint16, bytes uint64) contract.RemoteTraffic {
				return contract.RemoteTraffic{Prefix: prefix, Proto: "tcp", DPort: dport, Verdict: verdict, Approval: approval,
					RemoteTotals: contract.RemoteTotals{Flows: 1, Packets: bytes / 100, Bytes: bytes}}
			}
			var samples []Sample
			for i, dev := range []string{"r1", "r2", "r3"} {
				for seq := uint64(1); seq <= 3; seq++ {
					samples = append(samples, Sample{Device: dev, BootID: "b", Seq: seq, TS: t0.Add(time.Duration(seq) * time.Minute), Values: map[string]float64{},
						Remotes: []contract.RemoteTraffic{rt("203.0.113.0/24", "denied", "", 22, 1000), rt("198.51.100.0/24", "approved", "LA-18", 443, uint64(5000*(i+1))),
							rt("2001:db8:feed::/48", "monitored", "", 443, 100)}})
				}
			}
			for range 2 { // a redelivery counts once
				if _, _, err := st.IngestTelemetry(ctx, t0.Add(time.Hour), samples); err != nil {
					t.Fatal(err)
				}
			}
			inv, err := st.Inventory(ctx, t0.Add(time.Hour), InventoryQuery{Site: "north", Since: t0})
			if err != nil {
				t.Fatal(err)
			}
			if len(inv.Denied) != 1 || inv.Denied[0] != (InventoryRow{Prefix: "203.0.113.0/24", Proto: "tcp", DPort: 22, Verdict: "denied", Flows: 6, Packets: 60, Bytes: 6000, Devices: 2}) {
				t.Errorf("denied: %+v", inv.Denied)
			}
			if len(inv.Approved) != 1 || inv.Approved[0].Bytes != 45000 || inv.Approved[0].Approval != "LA-18" || len(inv.Monitored) != 1 {
				t.Errorf("approved %+v monitored %+v", inv.Approved, inv.Monitored)
			}
			if inv, _ := st.Inventory(ctx, t0.Add(time.Hour), InventoryQuery{Since: t0.Add(150 * time.Second)}); len(inv.Denied) != 1 || inv.Denied[0].Flows != 3 || inv.Denied[0].Devices != 3 {
				t.Errorf("the fleet, last minute: %+v", inv.Denied)
			}
			var b bytes.Buffer
			inv.writeCSV(&b)
			rows, err := csv.NewReader(&b).ReadAll()
			if err != nil || len(rows) != 4 || rows[1][3] != "denied" || rows[1][4] != "203.0.113.0/24" || rows[3][7] != "LA-18" {
				t.Errorf("CSV: %v %v", rows, err)
			}
			st.Prune(ctx, t0.Add(30*24*time.Hour+150*time.Second), DefaultRetention)
			var n int
			st.db.QueryRow(`SELECT COUNT(*) FROM remotes`).Scan(&n)
			if n != 9 { // seq 3 of each device: 3 entries each
				t.Errorf("%d remotes after pruning, want 9", n)
			}
		})
	}
}

// TestRemotesOfRefusesJunk: what a hostile device puts in its remotes
// section is bounded and checked before the store sees it.
func TestRemotesOfRefusesJunk(t *testing.T) {
	r := &contract.Remotes{}
	for i := range contract.MaxRemotes + 5 {
		r.Top = append(r.Top, contract.RemoteTraffic{Prefix: fmt.Sprintf("10.%d.%d.0/24", i/256, i%256), Proto: "tcp", Verdict: "denied"})
	}
	r.Top[0].Prefix = "10.0.0.1/24"
	r.Top[1].Verdict = "blocked"
	r.Top[2].Bytes = 1 << 63
	r.Top[3].Prefix = "'; DROP TABLE remotes; --"
	if got := remotesOf(r); len(got) != contract.MaxRemotes || got[0].Prefix != "10.0.4.0/24" {
		t.Errorf("%d kept, first %+v", len(got), got[0])
	}
}

// TestAdvice: what the console tells an operator to do, verdict by
// verdict, from the same explanation linkguard policy explain prints.
func TestAdvice(t *testing.T) {
	p, err := policy.Parse(examplePolicy(t))
	if err != nil {
		t.Fatal(err)
	}
	m := match.Compile(p)
	at := func(day string) time.Time { d, _ := time.Parse(time.DateOnly, day); return d.Add(12 * time.Hour) }
	for _, tc := range []struct {
		site, dst string
		proto     uint8
		dport     uint16
		now       time.Time
		want      string
	}{
		{"vientiane-north", "203.0.113.5", policy.ProtoTCP, 443, at("2027-01-05"), "approval LA-2026-0017 (Example Telecom) covers remote 203.0.113.0/24 but expired on 2026-12-31: extend it"},
		{"vientiane-north", "203.0.113.5", policy.ProtoTCP, 22, at("2026-12-05"), "does not allow tcp/22 (its services: tcp/443, udp/5060-5061, icmp): add the service to it"},
		{"luang", "203.0.113.5", policy.ProtoTCP, 443, at("2026-12-05"), "does not apply at site luang (its sites: vientiane-north): add the site to it"},
		{"luang", "192.0.2.9", policy.ProtoTCP, 443, at("2026-12-05"), "no approval covers remote 192.0.2.9: request one for the customer's link at site luang, service tcp/443, remote 192.0.2.0/24"},
		{"luang", "198.51.100.7", policy.ProtoUDP, 53, at("2026-12-05"), "approval LA-2026-0018 (Transit Carrier) covers it with no end date: nothing to request"},
		{"luang", "103.1.9.9", policy.ProtoTCP, 443, at("2026-12-05"), "both ends are domestic"},
		{"vientiane-north", "203.0.113.5", policy.ProtoTCP, 443, at("2026-11-20"), "opens on 2026-12-01: wait"},
	} {
		q := match.Query{Site: tc.site, Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr(tc.dst), Proto: tc.proto, DPort: tc.dport, Now: tc.now}
		got := strings.Join(advise(match.Explain(m, &q), tc.site), "; ")
		if !strings.Contains(got, tc.want) {
			t.Errorf("%s %s %d/%d: %q, want %q", tc.site, tc.dst, tc.proto, tc.dport, got, tc.want)
		}
	}
}

// TestWhyAPI: /api/why answers from the devices' link.denied events and the
// verified fleet policy with explain's words and what to do, /api/events
// searches and folds, /api/inventory lists and exports what routers sent;
// hostile input is a 400 that says why.
func TestWhyAPI(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	f.publish(contract.Prefix+"r1/state", mustJSON(t, contract.State{Device: "r1", Site: "vientiane-north", Kind: "router", Online: true, BootID: "b", TS: now}))
	f.waitFor("r1 known", func() bool { _, ok := f.c.Device("r1"); return ok })
	for i := range 3 {
		f.publish(contract.Prefix+"r1/events", mustJSON(t, deniedEvent(i, "r1", "vientiane-north", "103.1.2.3", "203.0.113.5", 22, now.Add(-time.Duration(3-i)*time.Minute))))
	}
	remotes, _ := json.Marshal(contract.Remotes{IntervalS: 1, Top: []contract.RemoteTraffic{
		{Prefix: "203.0.113.0/24", Proto: "tcp", DPort: 22, Verdict: "denied", RemoteTotals: contract.RemoteTotals{Flows: 1, Packets: 3, Bytes: 180}}}})
	f.publish(contract.Prefix+"r1/telemetry", mustJSON(t, contract.Telemetry{Device: "r1", BootID: "b", Seq: 1, TS: now, Sections: map[string]json.RawMessage{contract.SectionRemotes: remotes}}))
	cl := f.client("vic")
	ctx := context.Background()
	get := func(path string, out any) error { return cl.do(ctx, "GET", path, nil, out) }

	var ans WhyAnswer
	f.waitFor("the events in the store", func() bool {
		return get("/api/why?q="+url.QueryEscape("203.0.113.5"), &ans) == nil && len(ans.Seen) == 1 && ans.Seen[0].Events == 3
	})
	if s := ans.Seen[0]; s.Device != "r1" || s.Site != "vientiane-north" || s.Verdict != "denied" || s.DPort != 22 {
		t.Errorf("seen: %+v", s)
	}
	if len(ans.Verdicts) != 1 {
		t.Fatalf("verdicts: %+v", ans.Verdicts)
	}
	v := ans.Verdicts[0]
	// The same answer linkguard policy explain gives: the same function,
	// the same words.
	p, _ := policy.Parse(examplePolicy(t))
	q := match.Query{Site: "vientiane-north", Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr("203.0.113.5"), Proto: policy.ProtoTCP, DPort: 22, Now: v.Explanation.At}
	if want := match.Explain(match.Compile(p), &q).String(); v.Text != want {
		t.Errorf("text:\n%s\nwant explain's:\n%s", v.Text, want)
	}
	if v.Explanation.Verdict != "denied" || len(v.Explanation.Candidates) != 1 || v.Explanation.Candidates[0].ID != "LA-2026-0017" ||
		len(v.Advice) != 1 || !strings.Contains(v.Advice[0], "does not allow tcp/22") || strings.Join(v.Devices, ",") != "r1" {
		t.Errorf("verdict: %+v", v)
	}
	// Nothing seen: judged from the search, saying what was assumed.
	if err := get("/api/why?q="+url.QueryEscape("192.0.2.0/24 site:vientiane-north"), &ans); err != nil || len(ans.Seen) != 0 || len(ans.Verdicts) != 1 ||
		!strings.Contains(ans.Verdicts[0].Advice[0], "no approval covers remote 192.0.2.0") || len(ans.Notes) == 0 {
		t.Errorf("unseen prefix: %+v %v", ans, err)
	}
	for _, bad := range []string{"", "203.0.113.5/24", "1.1.1.1 2.2.2.2 3.3.3.3", "colour:red 1.1.1.1", "1.1.1.1 nobody-knows-me", strings.Repeat("1", 600), "%00", "\"1.1.1.1"} {
		err := get("/api/why?q="+url.QueryEscape(bad), &ans)
		if status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "search") {
			t.Errorf("q=%q: %v, want a 400 that says why", bad, err)
		}
	}
	if err := get("/api/why?q=1.1.1.1&since=yesterday", &ans); status(err) != http.StatusBadRequest {
		t.Errorf("since=yesterday: %v", err)
	}

	var res SearchResult
	if err := get("/api/events?q="+url.QueryEscape("203.0.113.0/24 LA-2026-0017")+"&type=link.denied&site=vientiane-north&since=1h&limit=2", &res); err != nil ||
		len(res.Events) != 2 || res.Next == 0 || res.Total != 3 || res.Query.Approvals[0] != "LA-2026-0017" {
		t.Fatalf("event search: %+v %v", res, err)
	}
	if err := get(fmt.Sprintf("/api/events?q=203.0.113.5&before=%d&limit=2", res.Next), &res); err != nil || len(res.Events) != 1 || res.Events[0].ID != "ev-r1-0" {
		t.Errorf("second page: %+v %v", res, err)
	}
	if err := get("/api/events?q="+url.QueryEscape(`holder:"Example"`)+"&device=r1", &res); err != nil || res.Total != 3 {
		t.Errorf("by holder: %+v %v", res, err)
	}
	for _, bad := range []string{"limit=x", "before=-1", "since=soon", "q=" + url.QueryEscape(`holder:"Nobody"`), "q=r1&device=r2"} {
		if err := get("/api/events?"+bad, &res); status(err) != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", bad, err)
		}
	}

	var inv Inventory
	f.waitFor("the remotes in the store", func() bool {
		return get("/api/inventory?site=vientiane-north&since=1h", &inv) == nil && len(inv.Denied) == 1
	})
	if inv.Denied[0].Prefix != "203.0.113.0/24" || inv.Denied[0].DPort != 22 {
		t.Errorf("inventory: %+v", inv)
	}
	var raw []byte
	if err := get("/api/inventory?site=vientiane-north&since=1h&format=csv", &raw); err != nil || !strings.Contains(string(raw), "denied,203.0.113.0/24,tcp,22") {
		t.Errorf("CSV: %v\n%s", err, raw)
	}
	for _, bad := range []string{"format=xml", "since=1y", "limit=-3"} {
		if err := get("/api/inventory?"+bad, &inv); status(err) != http.StatusBadRequest {
			t.Errorf("%s: %v, want 400", bad, err)
		}
	}
}

// BenchmarkEventSearch searches a SQLite store of 1,000,000 events (1,000
// routers at 50 sites over 10 days, 90% of them denied flows to 65,536
// remote addresses, a tenth summaries) the way the console's search box
// does: one address, a customer's /24, a site's last hour, with counts.
func BenchmarkEventSearch(b *testing.B) {
	st, err := OpenAudit(b.TempDir() + "/console.db")
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	const total, batch = 1_000_000, 20_000
	var devs []Device
	for d := range 1000 {
		devs = append(devs, Device{ID: fmt.Sprint("r", d), Site: fmt.Sprint("site-", d%50), Kind: "router"})
	}
	if err := st.PutDevices(ctx, devs, nil, t0); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	evs := make([]contract.Event, 0, batch)
	for i := range total {
		d := i % 1000
		ts := t0.Add(time.Duration(i) * 864 * time.Millisecond) // 10 days
		dev, site := fmt.Sprint("r", d), fmt.Sprint("site-", d%50)
		if i%10 == 9 {
			evs = append(evs, summaryEvent(i, dev, site, ts))
		} else {
			dst := netip.AddrFrom4([4]byte{203, byte(i >> 16 & 0x3f), byte(i >> 8), byte(i)})
			evs = append(evs, deniedEvent(i, dev, site, "103.1.2.3", dst.String(), 22+i%5, ts))
		}
		if len(evs) == batch {
			if _, err := st.IngestEvents(ctx, evs); err != nil {
				b.Fatal(err)
			}
			evs = evs[:0]
		}
	}
	b.Logf("stored %d events in %s", total, time.Since(start).Round(time.Second))
	end := t0.Add(total * 864 * time.Millisecond)
	for _, bc := range []struct {
		name string
		s    EventSearch
	}{
		{"address", EventSearch{Ends: []netip.Prefix{netip.MustParsePrefix("203.5.7.9/32")}}},
		{"prefix24", EventSearch{Ends: []netip.Prefix{netip.MustParsePrefix("203.5.7.0/24")}, Type: "link.denied"}},
		{"site_last_hour", EventSearch{Site: "site-7", Since: end.Add(-time.Hour)}},
		{"fleet_last_hour", EventSearch{Since: end.Add(-time.Hour)}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				r, err := st.SearchEvents(ctx, bc.s)
				if err != nil || r.Total == 0 {
					b.Fatal(r.Total, err)
				}
			}
		})
	}
}

// TestOlderEventsIndexed: events stored before the search keys existed (a
// console upgraded with its history) are given them, batch by batch.
func TestOlderEventsIndexed(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st, _ := openStore(t, backend)
			ctx := context.Background()
			var evs []contract.Event
			for i := range 2500 {
				evs = append(evs, deniedEvent(i, "r1", "north", "103.1.2.3", "203.0.113.5", 22, t0.Add(time.Duration(i)*time.Second)))
			}
			if _, err := st.IngestEvents(ctx, evs); err != nil {
				t.Fatal(err)
			}
			if _, err := st.db.Exec(`DELETE FROM event_keys WHERE n % 3 <> 0`); err != nil {
				t.Fatal(err)
			}
			st.indexOlderEvents(ctx, slog.New(slog.DiscardHandler))
			r, err := st.SearchEvents(ctx, EventSearch{Ends: []netip.Prefix{netip.MustParsePrefix("203.0.113.5/32")}})
			if err != nil || r.Total != 2500 {
				t.Fatalf("after indexing: %d found, %v", r.Total, err)
			}
		})
	}
}
