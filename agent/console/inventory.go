package console

import (
	"context"
	"database/sql"
	"encoding/csv"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
)

// What crosses the border: each router's telemetry carries its top remote
// prefixes × service × verdict since the message before (the remotes
// section); the store keeps them beside the sample they came with, keyed
// on (device, boot, seq, entry) so a redelivered message counts once, and
// prunes them with the 1-minute rollups. The inventory sums them over a
// window, per site or for the fleet.

const remotesSchema = `
CREATE TABLE IF NOT EXISTS remotes (
	device   TEXT NOT NULL,
	boot_id  TEXT NOT NULL,
	seq      BIGINT NOT NULL,
	i        INTEGER NOT NULL,
	ts       BIGINT NOT NULL,
	prefix   TEXT NOT NULL,
	proto    TEXT NOT NULL,
	dport    INTEGER NOT NULL,
	verdict  TEXT NOT NULL,
	approval TEXT NOT NULL,
	flows    BIGINT NOT NULL,
	packets  BIGINT NOT NULL,
	bytes    BIGINT NOT NULL,
	PRIMARY KEY (device, boot_id, seq, i)
);
CREATE INDEX IF NOT EXISTS remotes_ts ON remotes(ts);
CREATE INDEX IF NOT EXISTS remotes_device_ts ON remotes(device, ts);
`

// remotesOf keeps what the store takes of a remotes section: entries that
// name a prefix, a verdict of the contract and counters a database holds,
// at most contract.MaxRemotes.
func remotesOf(r *contract.Remotes) []contract.RemoteTraffic {
	if r == nil {
		return nil
	}
	var out []contract.RemoteTraffic
	for _, e := range r.Top {
		if len(out) == contract.MaxRemotes {
			break
		}
		p, err := netip.ParsePrefix(e.Prefix)
		switch {
		case err != nil, p != p.Masked(), len(e.Proto) > 16, len(e.Approval) > 128:
			continue
		case e.Verdict != "approved" && e.Verdict != "denied" && e.Verdict != "monitored":
			continue
		case e.Flows > 1<<62, e.Packets > 1<<62, e.Bytes > 1<<62:
			continue
		}
		out = append(out, e)
	}
	return out
}

// ingestRemotes stores the remotes of a sample just stored in tx.
func (a *Audit) ingestRemotes(ctx context.Context, tx *sql.Tx, s *Sample) error {
	if len(s.Remotes) == 0 {
		return nil
	}
	st, err := tx.PrepareContext(ctx, a.q(`INSERT INTO remotes(device, boot_id, seq, i, ts, prefix, proto, dport, verdict, approval, flows, packets, bytes)
VALUES(?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT (device, boot_id, seq, i) DO NOTHING`))
	if err != nil {
		return err
	}
	defer st.Close()
	for i, e := range s.Remotes {
		if _, err := st.ExecContext(ctx, s.Device, s.BootID, int64(s.Seq), i, s.TS.UnixMilli(), e.Prefix, e.Proto, int(e.DPort), e.Verdict, e.Approval,
			int64(e.Flows), int64(e.Packets), int64(e.Bytes)); err != nil {
			return err
		}
	}
	return nil
}

// InventoryQuery selects the remote traffic of a site (or the fleet) over
// a window.
type InventoryQuery struct {
	Site  string // empty: every site
	Since time.Time
	Until time.Time // zero: now
	Limit int       // rows per verdict; default 100, at most 1000
}

// InventoryRow is one remote prefix and service under one verdict, summed
// over the window.
type InventoryRow struct {
	Prefix   string `json:"prefix"`
	Proto    string `json:"proto"`
	DPort    uint16 `json:"dport,omitempty"`
	Verdict  string `json:"verdict"`
	Approval string `json:"approval,omitempty"`
	Flows    int64  `json:"flows"`
	Packets  int64  `json:"packets"`
	Bytes    int64  `json:"bytes"`
	Devices  int64  `json:"devices"` // how many routers saw it
}

// Inventory is what crossed the border over a window: the heaviest remote
// prefixes and services, split by verdict.
type Inventory struct {
	Site      string         `json:"site,omitempty"`
	Since     time.Time      `json:"since"`
	Until     time.Time      `json:"until"`
	Approved  []InventoryRow `json:"approved"`
	Denied    []InventoryRow `json:"denied"`
	Monitored []InventoryRow `json:"monitored"`
}

// Inventory sums the stored remotes q selects.
func (a *Audit) Inventory(ctx context.Context, now time.Time, q InventoryQuery) (Inventory, error) {
	if q.Until.IsZero() {
		q.Until = now
	}
	if q.Since.IsZero() {
		q.Since = q.Until.Add(-time.Hour)
	}
	if !q.Since.Before(q.Until) {
		return Inventory{}, fmt.Errorf("%w: since must be before until", ErrSearch)
	}
	if q.Limit <= 0 {
		q.Limit = 100
	}
	q.Limit = min(q.Limit, maxSearchLimit)
	inv := Inventory{Site: q.Site, Since: q.Since.UTC(), Until: q.Until.UTC(), Approved: []InventoryRow{}, Denied: []InventoryRow{}, Monitored: []InventoryRow{}}
	for verdict, dst := range map[string]*[]InventoryRow{"approved": &inv.Approved, "denied": &inv.Denied, "monitored": &inv.Monitored} {
		where, args := `verdict = ? AND ts >= ? AND ts < ?`, []any{verdict, q.Since.UnixMilli(), q.Until.UnixMilli()}
		if q.Site != "" {
			where += ` AND device IN (SELECT id FROM devices WHERE site = ?)`
			args = append(args, q.Site)
		}
		rows, err := a.db.QueryContext(ctx, a.q(`SELECT prefix, proto, dport, approval, CAST(SUM(flows) AS BIGINT), CAST(SUM(packets) AS BIGINT),
	CAST(SUM(bytes) AS BIGINT), COUNT(DISTINCT device) FROM remotes WHERE `+where+`
GROUP BY prefix, proto, dport, approval ORDER BY SUM(bytes) DESC, SUM(packets) DESC, prefix LIMIT ?`), append(args, q.Limit)...)
		if err != nil {
			return Inventory{}, fmt.Errorf("console: inventory: %w", err)
		}
		for rows.Next() {
			r := InventoryRow{Verdict: verdict}
			var dport int
			if err := rows.Scan(&r.Prefix, &r.Proto, &dport, &r.Approval, &r.Flows, &r.Packets, &r.Bytes, &r.Devices); err != nil {
				rows.Close()
				return Inventory{}, fmt.Errorf("console: inventory: %w", err)
			}
			r.DPort = uint16(dport)
			*dst = append(*dst, r)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return Inventory{}, fmt.Errorf("console: inventory: %w", err)
		}
	}
	return inv, nil
}

// Inventory is what crossed the border over q's window, from the store.
func (c *Console) Inventory(ctx context.Context, q InventoryQuery) (Inventory, error) {
	return c.store.Inventory(ctx, c.opt.Now(), q)
}

// writeCSV exports the inventory, one row per prefix, service and verdict.
func (inv *Inventory) writeCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"site", "since", "until", "verdict", "remote_prefix", "proto", "dport", "approval", "flows", "packets", "bytes", "devices"})
	for _, rows := range [][]InventoryRow{inv.Denied, inv.Monitored, inv.Approved} {
		for _, r := range rows {
			port := ""
			if r.DPort != 0 {
				port = strconv.Itoa(int(r.DPort))
			}
			cw.Write([]string{csvSafe(inv.Site), inv.Since.Format(time.RFC3339), inv.Until.Format(time.RFC3339), r.Verdict, r.Prefix, csvSafe(r.Proto), port,
				csvSafe(r.Approval), strconv.FormatInt(r.Flows, 10), strconv.FormatInt(r.Packets, 10), strconv.FormatInt(r.Bytes, 10), strconv.FormatInt(r.Devices, 10)})
		}
	}
	cw.Flush()
	return cw.Error()
}

// serveInventory answers GET /api/inventory?site=&since=1h&until=&limit=&format=csv.
func (c *Console) serveInventory(w http.ResponseWriter, r *http.Request, _ *Session) {
	q := r.URL.Query()
	now := c.opt.Now()
	iq := InventoryQuery{Site: q.Get("site")}
	if len(iq.Site) > maxTermLen {
		writeJSON(w, http.StatusBadRequest, apiError{"site: over " + strconv.Itoa(maxTermLen) + " bytes"})
		return
	}
	var err error
	if iq.Since, err = parseAgo(q.Get("since"), now, time.Hour); err != nil {
		writeJSON(w, http.StatusBadRequest, apiError{"since: " + err.Error()})
		return
	}
	if v := q.Get("until"); v != "" {
		if iq.Until, err = parseAgo(v, now, 0); err != nil {
			writeJSON(w, http.StatusBadRequest, apiError{"until: " + err.Error()})
			return
		}
	}
	if v := q.Get("limit"); v != "" {
		if iq.Limit, err = strconv.Atoi(v); err != nil || iq.Limit < 0 {
			writeJSON(w, http.StatusBadRequest, apiError{"limit: a whole number"})
			return
		}
	}
	format := q.Get("format")
	if format != "" && format != "csv" && format != "json" {
		writeJSON(w, http.StatusBadRequest, apiError{"format: csv or json"})
		return
	}
	inv, err := c.store.Inventory(r.Context(), now, iq)
	if err != nil {
		writeSearchErr(w, err)
		return
	}
	if format != "csv" {
		writeJSON(w, http.StatusOK, inv)
		return
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="linkguard-border-inventory.csv"`)
	inv.writeCSV(w)
}
