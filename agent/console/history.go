package console

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// The fleet's events are kept in the store, not only in the console's
// memory: operators need the history, and another console (or the next one)
// must see what this one received. Brokers redeliver QoS 1 messages (after a
// reconnect, on a cluster node change), so ingest is idempotent: an event is
// one row per device and event id, however often it arrives.

const (
	historyBatch = 500
	historyQueue = 20000
)

// eventTS is an event's time as stored: fixed width, so that the text
// order is the time order (RFC 3339 with trimmed fractions is not:
// "10:00:00Z" sorts after "10:00:00.5Z").
func eventTS(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000000000Z") }

// IngestEvents stores events, ignoring those already stored; it returns how
// many were new.
func (a *Audit) IngestEvents(ctx context.Context, evs []contract.Event) (int, error) {
	if len(evs) == 0 {
		return 0, nil
	}
	tx, err := a.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("console: history: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, a.q(`INSERT INTO events(device, id, seq, boot_id, ts, severity, type, doc) VALUES(?,?,?,?,?,?,?,?) ON CONFLICT (device, id) DO NOTHING`))
	if err != nil {
		return 0, fmt.Errorf("console: history: %w", err)
	}
	defer stmt.Close()
	added := 0
	for i := range evs {
		e := &evs[i]
		doc, err := json.Marshal(e)
		if err != nil {
			return 0, err
		}
		res, err := stmt.ExecContext(ctx, e.Device, e.ID, int64(e.Seq), e.BootID, eventTS(e.TS), e.Severity, e.Type, string(doc))
		if err != nil {
			return 0, fmt.Errorf("console: history: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added++
			if err := a.indexEvent(ctx, tx, e); err != nil { // why, inventory, event search
				return 0, fmt.Errorf("console: history: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("console: history: %w", err)
	}
	return added, nil
}

// HistoryQuery selects stored events.
type HistoryQuery struct {
	Device string
	Type   string // prefix
	Since  time.Time
	Until  time.Time
	Limit  int // default 500, at most 5000
}

// History returns the stored events q selects, newest first.
func (a *Audit) History(ctx context.Context, q HistoryQuery) ([]contract.Event, error) {
	sqlq := `SELECT doc FROM events WHERE 1=1`
	var args []any
	if q.Device != "" {
		sqlq += ` AND device = ?`
		args = append(args, q.Device)
	}
	if q.Type != "" {
		// A prefix match without LIKE's wildcards: the type is data.
		sqlq += ` AND substr(type, 1, ?) = ?`
		args = append(args, len(q.Type), q.Type)
	}
	if !q.Since.IsZero() {
		sqlq += ` AND ts >= ?`
		args = append(args, eventTS(q.Since))
	}
	if !q.Until.IsZero() {
		sqlq += ` AND ts < ?`
		args = append(args, eventTS(q.Until))
	}
	if q.Limit <= 0 || q.Limit > 5000 {
		q.Limit = 500
	}
	sqlq += ` ORDER BY ts DESC, n DESC LIMIT ?`
	args = append(args, q.Limit)
	rows, err := a.db.QueryContext(ctx, a.q(sqlq), args...)
	if err != nil {
		return nil, fmt.Errorf("console: history: %w", err)
	}
	defer rows.Close()
	out := []contract.Event{}
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return nil, err
		}
		var e contract.Event
		if err := json.Unmarshal([]byte(doc), &e); err != nil {
			return nil, fmt.Errorf("console: history: stored event: %w", err)
		}
		out = append(out, e)
	}
	return out, rows.Err()
}

// record writes what the console receives to the store in batches until
// ctx ends, then drains what is left: the fleet's events, its telemetry and
// the devices that changed. It is the store's one writer of history, and
// prunes what the retention no longer keeps.
func (c *Console) record(ctx context.Context) {
	var events []contract.Event
	var samples []Sample
	// retry runs a write with a fresh context, so what was received is
	// written even as the console stops, and retries it a few times.
	retry := func(what string, n int, write func(context.Context) error) {
		wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for attempt := 0; ; attempt++ {
			err := write(wctx)
			if err == nil {
				return
			}
			c.log.Error("console: history write failed; retrying", "what", what, "records", n, "err", err)
			if attempt == 5 || wctx.Err() != nil {
				c.log.Error("console: history write gave up", "what", what, "records", n)
				return
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
	}
	flushEvents := func() {
		if len(events) > 0 {
			retry("events", len(events), func(ctx context.Context) error { _, err := c.store.IngestEvents(ctx, events); return err })
			events = events[:0]
		}
	}
	flushSamples := func() {
		if len(samples) == 0 {
			return
		}
		retry("telemetry", len(samples), func(ctx context.Context) error {
			_, refused, err := c.store.IngestTelemetry(ctx, c.opt.Now(), samples)
			if refused > 0 {
				c.log.Warn("console: telemetry not stored: seq 0 or beyond int64, or stamped in the future", "samples", refused)
			}
			return err
		})
		samples = samples[:0]
	}
	flushDevices := func() {
		c.mu.Lock()
		if len(c.dirty) == 0 {
			c.mu.Unlock()
			return
		}
		put, gone := []Device{}, []string{}
		for id := range c.dirty {
			if d := c.devices[id]; d != nil {
				v := d.clone()
				for _, f := range v.Feeds {
					f.History = nil // the store's series hold it
				}
				put = append(put, v)
			} else {
				gone = append(gone, id)
			}
		}
		clear(c.dirty)
		c.mu.Unlock()
		now := c.opt.Now()
		retry("devices", len(put)+len(gone), func(ctx context.Context) error {
			return c.store.PutDevices(ctx, put, gone, now)
		})
	}
	flushActions := func() {
		c.mu.Lock()
		var acts []Action
		for _, a := range c.actions {
			if _, ok := c.dirtyA[a.ID]; ok {
				acts = append(acts, a.copy())
			}
		}
		clear(c.dirtyA)
		c.mu.Unlock()
		for _, a := range acts {
			retry("action", 1, func(context.Context) error { return c.store.putDoc("actions", a.ID, a) })
		}
	}
	flush := func() { flushEvents(); flushSamples(); flushDevices(); flushActions() }
	prune := func() {
		n, err := c.store.Prune(ctx, c.opt.Now(), c.opt.Retention)
		if err != nil {
			c.log.Error("console: pruning the store failed", "err", err)
		} else if n > 0 {
			c.log.Info("console: pruned the store", "rows", n)
		}
	}
	prune()
	var backfill sync.WaitGroup // why, inventory, event search
	backfill.Go(func() { c.store.indexOlderEvents(ctx, c.log) })
	defer backfill.Wait()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	pruneTick := time.NewTicker(10 * time.Minute)
	defer pruneTick.Stop()
	for {
		select {
		case e := <-c.history:
			events = append(events, e)
			if len(events) >= historyBatch {
				flushEvents()
			}
		case s := <-c.samples:
			samples = append(samples, s)
			if len(samples) >= telemetryBatch {
				flushSamples()
			}
		case <-tick.C:
			flush()
		case <-pruneTick.C:
			prune()
		case <-ctx.Done():
			for {
				select {
				case e := <-c.history:
					events = append(events, e)
				case s := <-c.samples:
					samples = append(samples, s)
				default:
					flush()
					return
				}
			}
		}
	}
}

// loadDevices restores the devices the store knows, offline until heard
// from: the list survives a console restart.
func (c *Console) loadDevices() error {
	ds, err := c.store.StoredDevices(context.Background())
	if err != nil {
		return err
	}
	for i := range ds {
		d := ds[i]
		d.Online, d.Silent = false, false
		c.devices[d.ID] = &d
	}
	return nil
}

// maxActions bounds the actions kept in memory (the newest); the store
// keeps them all.
const maxActions = 1000

// addAction records a published action; c.mu must be held.
func (c *Console) addAction(a *Action) {
	c.actions = append(c.actions, a)
	c.dirtyA[a.ID] = struct{}{}
	if n := len(c.actions); n > maxActions {
		for _, old := range c.actions[:n-maxActions] {
			if c.byCmd[old.ID] == old {
				delete(c.byCmd, old.ID)
			}
		}
		c.actions = append(c.actions[:0:0], c.actions[n-maxActions:]...)
	}
}

// copy is a copy of a for a reader outside the lock.
func (a *Action) copy() Action {
	v := *a
	v.Results = slices.Clone(a.Results)
	v.Applied = slices.Clone(a.Applied)
	v.By = slices.Clone(a.By)
	return v
}

// loadActions restores the newest actions kept in the store, with their
// results so far: a device answering after a restart still finds its
// command.
func (c *Console) loadActions() error {
	var acts []*Action
	err := c.store.docs("actions", func(b []byte) error {
		var a Action
		if err := json.Unmarshal(b, &a); err != nil {
			return fmt.Errorf("console: stored action: %w", err)
		}
		acts = append(acts, &a)
		return nil
	})
	if err != nil {
		return err
	}
	slices.SortStableFunc(acts, func(x, y *Action) int { return x.At.Compare(y.At) })
	if len(acts) > maxActions {
		acts = acts[len(acts)-maxActions:]
	}
	for _, a := range acts {
		c.actions = append(c.actions, a)
		if a.Serial == 0 { // a command: its results are still coming
			c.byCmd[a.ID] = a
		}
	}
	return nil
}
