package console

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// The fleet's telemetry is kept as series: a few numbers per message
// (counters since the agent started, gauges), raw for a day and in 1-minute
// and 1-hour rollups after. Rollups are written as each sample is ingested,
// in the same transaction and only when the raw sample is new, so ingest is
// idempotent on (device, boot_id, seq): two consoles can ingest the same
// stream and the rollups count every sample once.
//
// A counter's rollup holds the increase over the bucket, so a chart shows
// rates, not totals since boot. The increase of a sample is taken from the
// sample before it in the same boot; a sample arriving late (out of order,
// a device's queue replaying after an outage) also corrects the increase
// of the one after it. The result depends only on the set of samples
// stored, not on the order they came in.

// Rollup resolutions.
const (
	ResMinute = time.Minute
	ResHour   = time.Hour
)

// Bounds on what one telemetry message may add: a hostile device must not
// fill the store.
const (
	maxSeriesPerSample = 512
	maxSeriesName      = 96
	telemetryBatch     = 500
	telemetryQueue     = 20000
	// maxFutureSkew refuses samples stamped further ahead than a device's
	// clock could plausibly be: they would outlive every retention.
	maxFutureSkew = 10 * time.Minute
)

// Retention is how long the store keeps each kind of history; zero keeps
// it for ever. The audit log is never pruned.
type Retention struct {
	Raw    time.Duration // raw telemetry samples (default 24 h)
	Minute time.Duration // 1-minute rollups (default 30 days)
	Hour   time.Duration // 1-hour rollups (default 400 days)
	Events time.Duration // the fleet's events (default 400 days)
}

// DefaultRetention is what a console keeps unless told otherwise.
var DefaultRetention = Retention{Raw: 24 * time.Hour, Minute: 30 * 24 * time.Hour, Hour: 400 * 24 * time.Hour, Events: 400 * 24 * time.Hour}

// Sample is one telemetry message as the store keeps it.
type Sample struct {
	Device string
	BootID string
	Seq    uint64
	TS     time.Time
	Values map[string]float64 // series name -> value
	// Remotes is the router's remote traffic since its last message
	// (inventory.go), bounded.
	Remotes []contract.RemoteTraffic
}

// IsCounter reports whether series counts since the agent started (its
// rollups hold increases) rather than measuring a level.
func IsCounter(series string) bool {
	return strings.HasPrefix(series, "approval.") || strings.HasPrefix(series, "links.") && series != "links.flows"
}

// SampleOf extracts the series of one telemetry message: the filter's and
// each approval's counters, each feed's power, cap, circuits on and relay
// operations in the last hour, the agent's queue and memory.
func SampleOf(t *contract.Telemetry) Sample {
	l, _ := t.Links()
	fs, _ := t.Feeds()
	return sampleOf(t, l, fs)
}

// sampleOf is SampleOf with the sections already decoded (nil: absent or
// malformed), so a message is decoded once for the model and the store.
func sampleOf(t *contract.Telemetry, l *contract.Links, fs contract.Feeds) Sample {
	s := Sample{Device: t.Device, BootID: t.BootID, Seq: t.Seq, TS: t.TS, Values: map[string]float64{
		"agent.queue_depth": float64(t.Agent.Queue.Depth),
		"agent.rss_bytes":   float64(t.Agent.RSSBytes),
	}}
	if r, err := t.Remotes(); err == nil { // why, inventory, event search
		s.Remotes = remotesOf(r)
	}
	put := func(name string, v float64) {
		if len(s.Values) < maxSeriesPerSample && len(name) <= maxSeriesName && !math.IsNaN(v) && !math.IsInf(v, 0) {
			s.Values[name] = v
		}
	}
	if l != nil {
		for name, v := range map[string]uint64{"passed": l.Passed, "passed_bytes": l.PassedBytes, "denied": l.Denied,
			"denied_bytes": l.DeniedBytes, "denied_flows": l.DeniedFlows, "domestic": l.Domestic, "new_flows": l.NewFlows,
			"tunnelled": l.Tunnelled, "spoofed": l.Spoofed, "link_control": l.LinkControl, "malformed": l.Malformed} {
			put("links."+name, float64(v))
		}
		put("links.flows", float64(l.Flows))
		for _, a := range l.Approvals {
			if a.ID != "" {
				put("approval."+a.ID+".packets", float64(a.Packets))
				put("approval."+a.ID+".bytes", float64(a.Bytes))
			}
		}
	}
	for _, f := range fs {
		if f.Feed == "" {
			continue
		}
		p := "feed." + f.Feed + "."
		if f.PowerKW != nil {
			put(p+"power_w", *f.PowerKW*1000)
		}
		if f.CapKW != nil {
			put(p+"cap_w", *f.CapKW*1000)
		}
		on, ops := 0, 0
		for _, c := range f.Circuits {
			if c.On {
				on++
			}
			ops += c.OpsLastHour
		}
		put(p+"circuits_on", float64(on))
		put(p+"relay_ops_last_hour", float64(ops))
	}
	return s
}

// delta is a counter's increase at a sample of seq whose value is v,
// given the values of the sample before it in the same boot (nil: none is
// stored). A counter lower than before restarted from zero; one absent
// before carried nothing then. Without the sample before, only the boot's
// first sample says how much came since the start.
func delta(series string, v float64, prev map[string]float64, seq int64) float64 {
	if prev == nil {
		if seq == 1 {
			return v
		}
		return 0
	}
	if pv, ok := prev[series]; ok && v >= pv {
		return v - pv
	}
	return v
}

type rollupKey struct {
	device, series string
	res            int64 // seconds
	bucket         int64 // Unix seconds of the bucket's start
}

type rollupAgg struct {
	n             int64
	total, lo, hi float64
}

type rollups map[rollupKey]*rollupAgg

// add counts one sample's value (n = 1) or corrects a counter's increase
// (n = 0) in both resolutions.
func (r rollups) add(device, series string, tsMs int64, n int64, v float64) {
	counter := IsCounter(series)
	for _, res := range []int64{60, 3600} {
		k := rollupKey{device, series, res, floorDiv(tsMs/1000, res) * res}
		a := r[k]
		if a == nil {
			a = &rollupAgg{lo: math.Inf(1), hi: math.Inf(-1)}
			if counter {
				a.lo, a.hi = 0, 0
			}
			r[k] = a
		}
		a.n += n
		a.total += v
		if !counter {
			a.lo, a.hi = min(a.lo, v), max(a.hi, v)
		}
	}
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && (a < 0) != (b < 0) {
		q--
	}
	return q
}

// IngestTelemetry stores samples, ignoring those already stored, and
// updates the rollups; it returns how many were new. Samples stamped more
// than a few minutes in the future or with a seq beyond int64 are refused
// (counted in the second result).
func (a *Audit) IngestTelemetry(ctx context.Context, now time.Time, samples []Sample) (added, refused int, err error) {
	if len(samples) == 0 {
		return 0, 0, nil
	}
	ss := make([]*Sample, 0, len(samples))
	for i := range samples {
		s := &samples[i]
		if s.Seq == 0 || s.Seq > math.MaxInt64 || s.Device == "" || s.TS.After(now.Add(maxFutureSkew)) {
			refused++
			continue
		}
		ss = append(ss, s)
	}
	// One order for every console: with PostgreSQL the device locks below
	// are taken in it, so two consoles ingesting the same stream never
	// deadlock.
	slices.SortFunc(ss, func(x, y *Sample) int {
		return cmp.Or(strings.Compare(x.Device, y.Device), strings.Compare(x.BootID, y.BootID), cmp.Compare(x.Seq, y.Seq))
	})
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, refused, fmt.Errorf("console: telemetry store: %w", err)
	}
	defer tx.Rollback()
	prep := func(q string) *sql.Stmt {
		if err != nil {
			return nil
		}
		var st *sql.Stmt
		st, err = tx.PrepareContext(ctx, a.q(q))
		return st
	}
	ins := prep(`INSERT INTO telemetry(device, boot_id, seq, ts, v) VALUES(?,?,?,?,?) ON CONFLICT (device, boot_id, seq) DO NOTHING`)
	before := prep(`SELECT v FROM telemetry WHERE device = ? AND boot_id = ? AND seq < ? ORDER BY seq DESC LIMIT 1`)
	after := prep(`SELECT seq, ts, v FROM telemetry WHERE device = ? AND boot_id = ? AND seq > ? ORDER BY seq ASC LIMIT 1`)
	var lock *sql.Stmt
	if a.pg {
		// Each device's samples are ingested by one transaction at a
		// time: the increase of a sample depends on its neighbours.
		lock = prep(`SELECT pg_advisory_xact_lock(hashtextextended(?, 0))`)
	}
	if err != nil {
		return 0, refused, fmt.Errorf("console: telemetry store: %w", err)
	}
	for _, st := range []*sql.Stmt{ins, before, after, lock} {
		if st != nil {
			defer st.Close()
		}
	}
	fail := func(err error) (int, int, error) {
		return 0, refused, fmt.Errorf("console: telemetry store: %w", err)
	}
	acc := rollups{}
	locked := ""
	for _, s := range ss {
		if lock != nil && s.Device != locked {
			if _, err := lock.ExecContext(ctx, s.Device); err != nil {
				return fail(err)
			}
			locked = s.Device
		}
		v, err := json.Marshal(s.Values)
		if err != nil {
			return fail(err)
		}
		ts, seq := s.TS.UnixMilli(), int64(s.Seq)
		res, err := ins.ExecContext(ctx, s.Device, s.BootID, seq, ts, string(v))
		if err != nil {
			return fail(err)
		}
		if n, _ := res.RowsAffected(); n == 0 {
			continue // stored before: a redelivery, or the other console's
		}
		added++
		if err := a.ingestRemotes(ctx, tx, s); err != nil { // why, inventory, event search
			return fail(err)
		}
		var prev map[string]float64
		if err := scanValues(before.QueryRowContext(ctx, s.Device, s.BootID, seq), &prev); err != nil {
			return fail(err)
		}
		for name, x := range s.Values {
			if IsCounter(name) {
				acc.add(s.Device, name, ts, 1, delta(name, x, prev, seq))
			} else {
				acc.add(s.Device, name, ts, 1, x)
			}
		}
		// The sample after this one took its increase from prev; it now
		// takes it from this one.
		var nseq, nts int64
		var nv map[string]float64
		row := after.QueryRowContext(ctx, s.Device, s.BootID, seq)
		if err := scanValues(row, &nv, &nseq, &nts); err != nil {
			return fail(err)
		}
		for name, x := range nv {
			if IsCounter(name) {
				if d := delta(name, x, s.Values, nseq) - delta(name, x, prev, nseq); d != 0 {
					acc.add(s.Device, name, nts, 0, d)
				}
			}
		}
	}
	if err := a.writeRollups(ctx, tx, acc); err != nil {
		return fail(err)
	}
	if err := tx.Commit(); err != nil {
		return fail(err)
	}
	return added, refused, nil
}

// scanValues scans a row of (…, v) into dst, leaving dst nil when there is
// no row; the leading columns go to lead.
func scanValues(row *sql.Row, dst *map[string]float64, lead ...any) error {
	var v string
	if err := row.Scan(append(lead, &v)...); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		return err
	}
	m := map[string]float64{}
	if err := json.Unmarshal([]byte(v), &m); err != nil {
		return fmt.Errorf("stored sample: %w", err)
	}
	*dst = m
	return nil
}

func (a *Audit) writeRollups(ctx context.Context, tx *sql.Tx, acc rollups) error {
	if len(acc) == 0 {
		return nil
	}
	lo, hi := "MIN", "MAX"
	if a.pg {
		lo, hi = "LEAST", "GREATEST"
	}
	st, err := tx.PrepareContext(ctx, a.q(`INSERT INTO rollup(device, series, res, bucket, cnt, total, lo, hi) VALUES(?,?,?,?,?,?,?,?)
ON CONFLICT (device, series, res, bucket) DO UPDATE SET cnt = rollup.cnt + excluded.cnt, total = rollup.total + excluded.total,
	lo = `+lo+`(rollup.lo, excluded.lo), hi = `+hi+`(rollup.hi, excluded.hi)`))
	if err != nil {
		return err
	}
	defer st.Close()
	keys := make([]rollupKey, 0, len(acc))
	for k := range acc {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(x, y rollupKey) int {
		return cmp.Or(strings.Compare(x.device, y.device), strings.Compare(x.series, y.series), cmp.Compare(x.res, y.res), cmp.Compare(x.bucket, y.bucket))
	})
	for _, k := range keys {
		g := acc[k]
		if math.IsInf(g.lo, 1) { // only corrections: a counter's
			g.lo, g.hi = 0, 0
		}
		if _, err := st.ExecContext(ctx, k.device, k.series, k.res, k.bucket, g.n, g.total, g.lo, g.hi); err != nil {
			return err
		}
	}
	return nil
}

// SeriesQuery selects one series of a device, or of a site's devices
// summed, over a time range.
type SeriesQuery struct {
	Device string
	Site   string // when Device is empty: the site's devices together
	Series string
	// Res is ResMinute or ResHour; zero picks by the range (1-minute
	// rollups up to 12 hours, 1-hour beyond).
	Res   time.Duration
	Since time.Time
	Until time.Time // zero: now
}

// SeriesPoint is one bucket of a series. Value is a counter's rate per
// second over the bucket, or a gauge's mean (summed over a site's
// devices); Min and Max are a device's gauge extremes in the bucket.
type SeriesPoint struct {
	T     int64    `json:"t"` // Unix milliseconds of the bucket's start
	Value float64  `json:"v"`
	Min   *float64 `json:"min,omitempty"`
	Max   *float64 `json:"max,omitempty"`
	N     int64    `json:"n"` // samples in the bucket
}

// SeriesView is a series as the API returns it.
type SeriesView struct {
	Device  string        `json:"device,omitempty"`
	Site    string        `json:"site,omitempty"`
	Series  string        `json:"series"`
	Counter bool          `json:"counter"`
	Res     int64         `json:"res_s"`
	Points  []SeriesPoint `json:"points"`
}

// ErrSeriesQuery is a series query that cannot be answered as asked.
var ErrSeriesQuery = errors.New("console: series")

// maxPoints bounds one query's answer.
const maxPoints = 5000

// Series returns the rollups q selects, oldest first.
func (a *Audit) Series(ctx context.Context, now time.Time, q SeriesQuery) (SeriesView, error) {
	if q.Series == "" || (q.Device == "") == (q.Site == "") {
		return SeriesView{}, fmt.Errorf("%w: name a series and a device or a site", ErrSeriesQuery)
	}
	if q.Until.IsZero() {
		q.Until = now
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-time.Hour)
	}
	if !q.Since.Before(q.Until) {
		return SeriesView{}, fmt.Errorf("%w: since must be before until", ErrSeriesQuery)
	}
	switch {
	case q.Res == 0 && q.Until.Sub(q.Since) <= 12*time.Hour:
		q.Res = ResMinute
	case q.Res == 0:
		q.Res = ResHour
	case q.Res != ResMinute && q.Res != ResHour:
		return SeriesView{}, fmt.Errorf("%w: resolution %s: 1m or 1h", ErrSeriesQuery, q.Res)
	}
	res := int64(q.Res / time.Second)
	from, to := floorDiv(q.Since.Unix(), res)*res, q.Until.Unix()
	if (to-from)/res > maxPoints {
		return SeriesView{}, fmt.Errorf("%w: more than %d points; choose a shorter range or 1h", ErrSeriesQuery, maxPoints)
	}
	counter := IsCounter(q.Series)
	v := SeriesView{Device: q.Device, Site: q.Site, Series: q.Series, Counter: counter, Res: res, Points: []SeriesPoint{}}
	var rows *sql.Rows
	var err error
	if q.Device != "" {
		rows, err = a.db.QueryContext(ctx, a.q(`SELECT bucket, cnt, total, lo, hi FROM rollup
WHERE device = ? AND series = ? AND res = ? AND bucket >= ? AND bucket < ? ORDER BY bucket`), q.Device, q.Series, res, from, to)
	} else {
		// A site's devices: counters add up; gauges add each device's mean.
		rows, err = a.db.QueryContext(ctx, a.q(`SELECT bucket, CAST(SUM(cnt) AS BIGINT), SUM(CASE WHEN ? THEN total ELSE total / cnt END), 0, 0 FROM rollup
WHERE device IN (SELECT id FROM devices WHERE site = ?) AND series = ? AND res = ? AND bucket >= ? AND bucket < ? AND (cnt > 0 OR ?)
GROUP BY bucket ORDER BY bucket`), counter, q.Site, q.Series, res, from, to, counter)
	}
	if err != nil {
		return SeriesView{}, fmt.Errorf("console: series: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var b, n int64
		var total, lo, hi float64
		if err := rows.Scan(&b, &n, &total, &lo, &hi); err != nil {
			return SeriesView{}, fmt.Errorf("console: series: %w", err)
		}
		p := SeriesPoint{T: b * 1000, N: n}
		switch {
		case counter:
			p.Value = total / float64(res)
		case q.Device != "":
			if n == 0 {
				continue
			}
			p.Value, p.Min, p.Max = total/float64(n), &lo, &hi
		default:
			p.Value = total
		}
		v.Points = append(v.Points, p)
	}
	return v, rows.Err()
}

// SeriesNames lists the series stored for a device or a site.
func (a *Audit) SeriesNames(ctx context.Context, device, site string) ([]string, error) {
	query, arg := `SELECT DISTINCT series FROM rollup WHERE device = ? AND res = 3600 ORDER BY series`, device
	if device == "" {
		query, arg = `SELECT DISTINCT series FROM rollup WHERE device IN (SELECT id FROM devices WHERE site = ?) AND res = 3600 ORDER BY series`, site
	}
	rows, err := a.db.QueryContext(ctx, a.q(query), arg)
	if err != nil {
		return nil, fmt.Errorf("console: series: %w", err)
	}
	defer rows.Close()
	out := []string{}
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// Prune deletes what the retention no longer keeps; it returns the rows
// deleted.
func (a *Audit) Prune(ctx context.Context, now time.Time, r Retention) (int64, error) {
	var total int64
	del := func(query string, keep time.Duration, arg func(time.Time) any) error {
		if keep <= 0 {
			return nil
		}
		res, err := a.db.ExecContext(ctx, a.q(query), arg(now.Add(-keep)))
		if err != nil {
			return fmt.Errorf("console: prune: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		return nil
	}
	ms := func(t time.Time) any { return t.UnixMilli() }
	sec := func(t time.Time) any { return t.Unix() }
	err := errors.Join(
		del(`DELETE FROM telemetry WHERE ts < ?`, r.Raw, ms),
		del(`DELETE FROM rollup WHERE res = 60 AND bucket < ?`, r.Minute, sec),
		del(`DELETE FROM rollup WHERE res = 3600 AND bucket < ?`, r.Hour, sec),
		del(`DELETE FROM events WHERE ts < ?`, r.Events, func(t time.Time) any { return eventTS(t) }),
		del(`DELETE FROM event_keys WHERE ts < ?`, r.Events, func(t time.Time) any { return eventTS(t) }), // why, inventory, event search
		del(`DELETE FROM remotes WHERE ts < ?`, r.Minute, ms),
	)
	return total, err
}

// PutDevices keeps what the console knows of devices, for a restart and
// for queries by site, and forgets those gone (their retained state was
// cleared; their history stays).
func (a *Audit) PutDevices(ctx context.Context, put []Device, gone []string, at time.Time) error {
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("console: device store: %w", err)
	}
	defer tx.Rollback()
	for _, d := range put {
		doc, err := json.Marshal(d)
		if err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, a.q(`INSERT INTO devices(id, site, kind, updated, doc) VALUES(?,?,?,?,?)
ON CONFLICT (id) DO UPDATE SET site = excluded.site, kind = excluded.kind, updated = excluded.updated, doc = excluded.doc`),
			d.ID, d.Site, d.Kind, at.UnixMilli(), string(doc)); err != nil {
			return fmt.Errorf("console: device store: %w", err)
		}
	}
	for _, id := range gone {
		if _, err := tx.ExecContext(ctx, a.q(`DELETE FROM devices WHERE id = ?`), id); err != nil {
			return fmt.Errorf("console: device store: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("console: device store: %w", err)
	}
	return nil
}

// StoredDevices returns the devices the store knows.
func (a *Audit) StoredDevices(ctx context.Context) ([]Device, error) {
	rows, err := a.db.QueryContext(ctx, `SELECT doc FROM devices`)
	if err != nil {
		return nil, fmt.Errorf("console: device store: %w", err)
	}
	defer rows.Close()
	var out []Device
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var d Device
		if err := json.Unmarshal([]byte(doc), &d); err != nil {
			return nil, fmt.Errorf("console: device store: %w", err)
		}
		out = append(out, d)
	}
	return out, rows.Err()
}
