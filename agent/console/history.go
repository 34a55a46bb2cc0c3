package console

import (
	"context"
	"encoding/json"
	"fmt"
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
		res, err := stmt.ExecContext(ctx, e.Device, e.ID, int64(e.Seq), e.BootID, e.TS.UTC().Format(time.RFC3339Nano), e.Severity, e.Type, string(doc))
		if err != nil {
			return 0, fmt.Errorf("console: history: %w", err)
		}
		if n, _ := res.RowsAffected(); n > 0 {
			added++
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
		args = append(args, q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		sqlq += ` AND ts < ?`
		args = append(args, q.Until.UTC().Format(time.RFC3339Nano))
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

// recordEvents writes the events the console receives to the store in
// batches until ctx ends, then drains what is left.
func (c *Console) recordEvents(ctx context.Context) {
	var batch []contract.Event
	flush := func() {
		if len(batch) == 0 {
			return
		}
		// A fresh context: what was received is written even as the
		// console stops.
		wctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for attempt := 0; ; attempt++ {
			_, err := c.store.IngestEvents(wctx, batch)
			if err == nil {
				break
			}
			c.log.Error("console: event history write failed; retrying", "events", len(batch), "err", err)
			if attempt == 5 || wctx.Err() != nil {
				c.log.Error("console: event history write gave up", "events", len(batch))
				break
			}
			time.Sleep(time.Duration(attempt+1) * 200 * time.Millisecond)
		}
		batch = batch[:0]
	}
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case e := <-c.history:
			batch = append(batch, e)
			if len(batch) >= historyBatch {
				flush()
			}
		case <-tick.C:
			flush()
		case <-ctx.Done():
			for {
				select {
				case e := <-c.history:
					batch = append(batch, e)
				default:
					flush()
					return
				}
			}
		}
	}
}
