package console

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"reflect"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

var t0 = time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)

// routerSamples are n samples of a router 10 s apart from t0, one boot:
// 100 packets passed and 10 denied per sample, 5 of them by approval a1;
// the queue depth goes 0, 1, 2 ….
func routerSamples(dev, boot string, n int) []Sample {
	var out []Sample
	for i := 1; i <= n; i++ {
		out = append(out, Sample{Device: dev, BootID: boot, Seq: uint64(i), TS: t0.Add(time.Duration(i-1) * 10 * time.Second),
			Values: map[string]float64{"links.passed": float64(100 * i), "links.denied": float64(10 * i),
				"approval.a1.packets": float64(5 * i), "agent.queue_depth": float64(i - 1)}})
	}
	return out
}

// dumpRollups is the whole rollup table, for comparing two stores.
func dumpRollups(t *testing.T, a *Audit) map[string][4]float64 {
	t.Helper()
	rows, err := a.db.Query(`SELECT device, series, res, bucket, cnt, total, lo, hi FROM rollup`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string][4]float64{}
	for rows.Next() {
		var dev, series string
		var res, bucket, n int64
		var total, lo, hi float64
		if err := rows.Scan(&dev, &series, &res, &bucket, &n, &total, &lo, &hi); err != nil {
			t.Fatal(err)
		}
		out[fmt.Sprint(dev, " ", series, " ", res, " ", bucket)] = [4]float64{float64(n), total, lo, hi}
	}
	return out
}

func openStore(t *testing.T, backend string) (*Audit, string) {
	t.Helper()
	dsn := filepath.Join(t.TempDir(), "console.db")
	if backend == "postgres" {
		dsn = startPostgres(t)
	}
	st, err := OpenAudit(dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st, dsn
}

// TestTelemetryStore: telemetry is kept raw and in 1-minute and 1-hour
// rollups on SQLite and a real PostgreSQL. Counters become rates, gauges
// means with their extremes; samples arriving twice, out of order or with
// a hole filled late give the same rollups as the stream in order; a
// reboot and a counter that restarts are not negative rates; a site sums
// its devices; samples from the future are refused; retention prunes each
// kind on its own; two consoles ingesting the same stream at once store
// every sample once.
func TestTelemetryStore(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			ctx := context.Background()
			now := t0.Add(time.Hour)
			st, dsn := openStore(t, backend)
			ref, _ := openStore(t, "sqlite")
			samples := routerSamples("r1", "b1", 18) // 3 minutes
			if n, _, err := ref.IngestTelemetry(ctx, now, samples); err != nil || n != 18 {
				t.Fatalf("in order: %d %v", n, err)
			}
			// The same stream shuffled, in batches, some twice, and the
			// 7th sample held back to the end (a hole filled late).
			r := rand.New(rand.NewPCG(1, 2))
			mixed := append([]Sample(nil), samples...)
			late := mixed[6]
			mixed = append(mixed[:6], mixed[7:]...)
			r.Shuffle(len(mixed), func(i, j int) { mixed[i], mixed[j] = mixed[j], mixed[i] })
			mixed = append(mixed, mixed[2], mixed[9])
			total := 0
			for i := 0; i < len(mixed); i += 5 {
				n, _, err := st.IngestTelemetry(ctx, now, mixed[i:min(i+5, len(mixed))])
				if err != nil {
					t.Fatal(err)
				}
				total += n
			}
			n, _, err := st.IngestTelemetry(ctx, now, []Sample{late, late})
			if err != nil || total+n != 18 {
				t.Fatalf("stored %d+%d samples of 18 (%v)", total, n, err)
			}
			if got, want := dumpRollups(t, st), dumpRollups(t, ref); !reflect.DeepEqual(got, want) {
				t.Fatalf("rollups depend on arrival order:\n got  %v\n want %v", got, want)
			}

			// 6 samples a minute: 600 packets passed, 10/s; the first
			// minute also holds the boot's first sample's 100.
			v, err := st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "links.passed", Since: t0, Until: t0.Add(3 * time.Minute)})
			if err != nil || v.Res != 60 || len(v.Points) != 3 || !v.Counter {
				t.Fatalf("passed by minute: %+v %v", v, err)
			}
			for i, want := range []float64{600.0 / 60, 10, 10} {
				if p := v.Points[i]; p.Value != want || p.N != 6 || p.T != t0.Add(time.Duration(i)*time.Minute).UnixMilli() {
					t.Fatalf("minute %d: %+v, want %.2f/s over 6 samples", i, p, want)
				}
			}
			g, err := st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "agent.queue_depth", Since: t0, Until: t0.Add(3 * time.Minute)})
			if err != nil || len(g.Points) != 3 || g.Points[1].Value != 8.5 || *g.Points[1].Min != 6 || *g.Points[1].Max != 11 {
				t.Fatalf("queue depth by minute: %+v %v", g, err)
			}
			h, err := st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "approval.a1.packets", Res: ResHour, Since: t0, Until: t0.Add(time.Hour)})
			if err != nil || len(h.Points) != 1 || h.Points[0].Value != 90.0/3600 {
				t.Fatalf("approval a1 by hour: %+v %v", h, err)
			}

			// r1 reboots: its counters start again from zero.
			reboot := routerSamples("r1", "b2", 6)
			for i := range reboot {
				reboot[i].TS = reboot[i].TS.Add(3 * time.Minute)
			}
			// A counter that goes down within a boot restarted (a policy
			// swap resetting a counter): its increase is its value.
			reboot[4].Values["links.denied"] = 5
			if n, _, err := st.IngestTelemetry(ctx, now, reboot); err != nil || n != 6 {
				t.Fatalf("after the reboot: %d %v", n, err)
			}
			v, _ = st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "links.passed", Since: t0.Add(3 * time.Minute), Until: t0.Add(4 * time.Minute)})
			if len(v.Points) != 1 || v.Points[0].Value != 10 {
				t.Fatalf("passed in the minute after the reboot: %+v (a negative or doubled rate?)", v.Points)
			}
			d, _ := st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "links.denied", Since: t0.Add(3 * time.Minute), Until: t0.Add(4 * time.Minute)})
			// 10+10+10+10 then 5 (restart) then 60-5=55.
			if len(d.Points) != 1 || d.Points[0].Value != (40+5+55)/60.0 {
				t.Fatalf("denied around a counter restart: %+v", d.Points)
			}

			// A site sums its devices.
			if err := st.PutDevices(ctx, []Device{{ID: "r1", Site: "s1"}, {ID: "r2", Site: "s1"}, {ID: "r3", Site: "s2"}}, nil, now); err != nil {
				t.Fatal(err)
			}
			if _, _, err := st.IngestTelemetry(ctx, now, append(routerSamples("r2", "x", 18), routerSamples("r3", "y", 18)...)); err != nil {
				t.Fatal(err)
			}
			s, err := st.Series(ctx, now, SeriesQuery{Site: "s1", Series: "links.passed", Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)})
			if err != nil || len(s.Points) != 1 || s.Points[0].Value != 20 || s.Points[0].N != 12 {
				t.Fatalf("site s1's passed rate: %+v %v", s, err)
			}
			s, _ = st.Series(ctx, now, SeriesQuery{Site: "s1", Series: "agent.queue_depth", Since: t0.Add(time.Minute), Until: t0.Add(2 * time.Minute)})
			if len(s.Points) != 1 || s.Points[0].Value != 17 {
				t.Fatalf("site s1's queue depth (each device's mean, summed): %+v", s.Points)
			}
			if names, err := st.SeriesNames(ctx, "", "s1"); err != nil || len(names) != 4 {
				t.Fatalf("s1's series: %v %v", names, err)
			}

			// Refused: from the future, seq 0, seq beyond int64.
			bad := routerSamples("r9", "z", 3)
			bad[0].TS = now.Add(time.Hour)
			bad[1].Seq = 0
			bad[2].Seq = 1 << 63
			if n, refused, err := st.IngestTelemetry(ctx, now, bad); err != nil || n != 0 || refused != 3 {
				t.Fatalf("hostile samples: stored %d, refused %d (%v)", n, refused, err)
			}
			if _, err := st.Series(ctx, now, SeriesQuery{Device: "r1", Series: "links.passed", Res: ResMinute, Since: t0, Until: t0.Add(30 * 24 * time.Hour)}); err == nil {
				t.Fatal("a query for 43,200 minutes was answered")
			}

			// Retention: raw for 30 min, minutes for 2 h; hours stay.
			later := t0.Add(150 * time.Minute)
			if _, err := st.Prune(ctx, later, Retention{Raw: 30 * time.Minute, Minute: 2 * time.Hour, Hour: -1}); err != nil {
				t.Fatal(err)
			}
			var raw, minutes, hours int
			st.db.QueryRow(`SELECT COUNT(*) FROM telemetry`).Scan(&raw)
			st.db.QueryRow(`SELECT COUNT(*) FROM rollup WHERE res = 60`).Scan(&minutes)
			st.db.QueryRow(`SELECT COUNT(*) FROM rollup WHERE res = 3600`).Scan(&hours)
			if raw != 0 || minutes != 0 || hours == 0 {
				t.Fatalf("after pruning: %d raw, %d minute and %d hour rollups", raw, minutes, hours)
			}

			// Two consoles, one store, the same stream at once in opposite
			// orders: every sample counted once.
			other, err := OpenAudit(dsn)
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			both := routerSamples("r4", "b", 60)
			ref2, _ := openStore(t, "sqlite")
			ref2.IngestTelemetry(ctx, now, both)
			rev := append([]Sample(nil), both...)
			r.Shuffle(len(rev), func(i, j int) { rev[i], rev[j] = rev[j], rev[i] })
			var wg sync.WaitGroup
			added := make([]int, 2)
			for i, a := range []*Audit{st, other} {
				in := both
				if i == 1 {
					in = rev
				}
				wg.Go(func() {
					for k := 0; k < len(in); k += 7 {
						n, _, err := a.IngestTelemetry(ctx, now, in[k:min(k+7, len(in))])
						if err != nil {
							t.Error(err)
							return
						}
						added[i] += n
					}
				})
			}
			wg.Wait()
			if added[0]+added[1] != 60 {
				t.Fatalf("two consoles stored %d+%d samples of 60", added[0], added[1])
			}
			got, want := map[string][4]float64{}, dumpRollups(t, ref2)
			for k, v := range dumpRollups(t, st) {
				if k[:3] == "r4 " {
					got[k] = v
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("rollups of two consoles at once:\n got  %v\n want %v", got, want)
			}
		})
	}
}

// TestSampleOf: what a router's and a relay controller's telemetry become,
// and a hostile message's series are bounded.
func TestSampleOf(t *testing.T) {
	kw := func(v float64) *float64 { return &v }
	links, _ := json.Marshal(contract.Links{Passed: 7, Denied: 2, Flows: 3, Approvals: []contract.ApprovalCount{{ID: "a1", Packets: 5, Bytes: 500}}})
	feeds, _ := json.Marshal(contract.Feeds{{Feed: "f1", PowerKW: kw(1.5), CapKW: kw(2), Circuits: []contract.Circuit{{ID: "c1", On: true, OpsLastHour: 3}, {ID: "c2", OpsLastHour: 1}}}})
	s := SampleOf(&contract.Telemetry{Device: "d", BootID: "b", Seq: 1, TS: t0, Sections: map[string]json.RawMessage{"links": links, "feeds": feeds}})
	for name, want := range map[string]float64{"links.passed": 7, "links.denied": 2, "links.flows": 3, "approval.a1.bytes": 500,
		"feed.f1.power_w": 1500, "feed.f1.cap_w": 2000, "feed.f1.circuits_on": 1, "feed.f1.relay_ops_last_hour": 4} {
		if s.Values[name] != want {
			t.Errorf("%s = %v, want %v", name, s.Values[name], want)
		}
	}
	if IsCounter("links.flows") || !IsCounter("links.passed") || IsCounter("feed.f1.power_w") {
		t.Error("counter and gauge series confused")
	}
	var many contract.Links
	for i := range 5000 {
		many.Approvals = append(many.Approvals, contract.ApprovalCount{ID: fmt.Sprint("a", i), Packets: 1})
	}
	many.Approvals = append(many.Approvals, contract.ApprovalCount{ID: string(make([]byte, 200)), Packets: 1})
	raw, _ := json.Marshal(many)
	s = SampleOf(&contract.Telemetry{Device: "d", Sections: map[string]json.RawMessage{"links": raw}})
	if len(s.Values) != maxSeriesPerSample {
		t.Fatalf("a message with 5,000 approvals gave %d series", len(s.Values))
	}
}

// TestConsoleKeepsTelemetry: telemetry from the broker reaches the store's
// series (through the API), and a console restart keeps the series and the
// devices it knew, offline until they are heard again.
func TestConsoleKeepsTelemetry(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC().Truncate(time.Minute)
	state := func(dev string) []byte {
		return mustJSON(t, contract.State{Device: dev, Site: "s1", Kind: "router", Online: true, BootID: "b", TS: now})
	}
	f.publish(contract.Prefix+"r1/state", state("r1"))
	f.publish(contract.Prefix+"r7/state", state("r7"))
	for i := 1; i <= 4; i++ {
		links, _ := json.Marshal(contract.Links{Passed: uint64(60 * i)})
		f.publish(contract.Prefix+"r1/telemetry", mustJSON(t, contract.Telemetry{Device: "r1", BootID: "b", Seq: uint64(i),
			TS: now.Add(time.Duration(i) * time.Second), Sections: map[string]json.RawMessage{"links": links}}))
	}
	cl := f.client("vic")
	var v SeriesView
	f.waitFor("r1's telemetry in the store", func() bool {
		err := cl.do(context.Background(), "GET", "/api/series?site=s1&series=links.passed&since=10m", nil, &v)
		return err == nil && len(v.Points) == 1 && v.Points[0].N == 4
	})
	if v.Points[0].Value != 4.0 { // 240 packets in the minute
		t.Fatalf("s1's passed rate: %+v", v.Points)
	}
	if err := cl.do(context.Background(), "GET", "/api/series?device=r1&series=links.passed&res=5m", nil, &v); status(err) != 400 {
		t.Fatalf("res=5m: %v, want 400", err)
	}
	f.publish(contract.Prefix+"r7/state", nil) // forgotten by the broker, not by the store
	f.waitFor("r7 forgotten by the console", func() bool { _, ok := f.c.Device("r7"); return !ok })
	f.publish(contract.Prefix+"r8/state", state("r8"))
	f.waitFor("r8 known", func() bool { _, ok := f.c.Device("r8"); return ok })
	time.Sleep(500 * time.Millisecond) // the recorder's next flush
	f.stop()
	f.publish(contract.Prefix+"r8/state", nil) // r8's retained state goes while the console is away
	f.start(filepath.Join(f.dir, "roster.signed.json"))
	if d, ok := f.c.Device("r8"); !ok || d.Online || d.Site != "s1" {
		t.Fatalf("r8 after the restart: %+v %v, want known, offline, at s1", d, ok)
	}
	if _, ok := f.c.Device("r7"); ok {
		t.Fatal("r7, forgotten before the restart, is back")
	}
	cl = f.client("vic")
	if err := cl.do(context.Background(), "GET", "/api/series?device=r1&series=links.passed&since=10m", nil, &v); err != nil || len(v.Points) != 1 || v.Points[0].N != 4 {
		t.Fatalf("r1's series after the restart: %+v %v", v, err)
	}
}

// BenchmarkIngestTelemetry: batches of 500 router samples (10 devices, 17
// series each, 3 of them approvals) into a SQLite file; the figure to hold
// against a fleet's telemetry rate (10,000 devices every 10 s: 1,000/s).
func BenchmarkIngestTelemetry(b *testing.B) {
	st, err := OpenAudit(filepath.Join(b.TempDir(), "console.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	ctx := context.Background()
	seq := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		batch := make([]Sample, 0, 500)
		for range 50 {
			seq++
			for d := range 10 {
				v := map[string]float64{"agent.queue_depth": 0, "agent.rss_bytes": 3e7, "links.flows": 40}
				for _, n := range []string{"passed", "passed_bytes", "denied", "denied_bytes", "denied_flows", "domestic", "new_flows", "tunnelled", "spoofed", "link_control", "malformed"} {
					v["links."+n] = float64(seq * 10)
				}
				for a := range 3 {
					v[fmt.Sprint("approval.a", a, ".packets")] = float64(seq)
				}
				batch = append(batch, Sample{Device: fmt.Sprint("r", d), BootID: "b", Seq: seq, TS: t0.Add(time.Duration(seq) * 10 * time.Second), Values: v})
			}
		}
		if _, _, err := st.IngestTelemetry(ctx, t0.Add(1000*time.Hour), batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*500)/b.Elapsed().Seconds(), "samples/s")
}
