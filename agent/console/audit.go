package console

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // PostgreSQL through database/sql
	_ "modernc.org/sqlite"             // pure Go: the console stays CGO_ENABLED=0
)

// AuditRecord is one entry of the console's audit log: who did what, with
// the bytes they signed and what the devices answered.
type AuditRecord struct {
	N        int64           `json:"n"`
	At       time.Time       `json:"at"`
	Kind     string          `json:"kind"` // login, login.refused, enrol, proposal, signature, publish, command, result, refused
	Operator string          `json:"operator,omitempty"`
	KeyID    string          `json:"key_id,omitempty"`
	Subject  string          `json:"subject,omitempty"` // proposal or command id, device
	Detail   json.RawMessage `json:"detail,omitempty"`
	Signed   []byte          `json:"signed,omitempty"` // the envelope or signature as received
}

// Audit is the console's durable store: the audit log, the proposals
// awaiting signatures, the enrolment requests, the devices and the fleet's
// event and telemetry history. SQLite by default, one file beside the console; PostgreSQL when
// several consoles share one history (a postgres:// DSN).
type Audit struct {
	db *sql.DB
	pg bool
}

func schemaFor(pg bool) string {
	serial, blob := "INTEGER PRIMARY KEY AUTOINCREMENT", "BLOB"
	// A 128 MiB page cache: the events' search indexes are in address
	// order, not time order, and ingest doubles once they stay in memory.
	head := "PRAGMA journal_mode=WAL;\nPRAGMA busy_timeout=5000;\nPRAGMA cache_size=-131072;\n"
	if pg {
		serial, blob, head = "BIGSERIAL PRIMARY KEY", "BYTEA", ""
	}
	return head + `
CREATE TABLE IF NOT EXISTS audit (
	n        ` + serial + `,
	at       TEXT NOT NULL,
	kind     TEXT NOT NULL,
	operator TEXT NOT NULL DEFAULT '',
	key_id   TEXT NOT NULL DEFAULT '',
	subject  TEXT NOT NULL DEFAULT '',
	detail   TEXT NOT NULL DEFAULT '',
	signed   ` + blob + `
);
CREATE INDEX IF NOT EXISTS audit_subject ON audit(subject);
CREATE TABLE IF NOT EXISTS pending (
	id   TEXT PRIMARY KEY,
	doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS actions (
	id   TEXT PRIMARY KEY,
	doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS revoked (
	id   TEXT PRIMARY KEY,
	doc  TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS enrolments (
	key_id TEXT PRIMARY KEY,
	doc    TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
	n        ` + serial + `,
	device   TEXT NOT NULL,
	id       TEXT NOT NULL,
	seq      BIGINT NOT NULL,
	boot_id  TEXT NOT NULL,
	ts       TEXT NOT NULL,
	severity TEXT NOT NULL,
	type     TEXT NOT NULL,
	doc      TEXT NOT NULL,
	UNIQUE (device, id)
);
CREATE INDEX IF NOT EXISTS events_device_ts ON events(device, ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events(type, ts);
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE TABLE IF NOT EXISTS devices (
	id      TEXT PRIMARY KEY,
	site    TEXT NOT NULL DEFAULT '',
	kind    TEXT NOT NULL DEFAULT '',
	updated BIGINT NOT NULL,
	doc     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS devices_site ON devices(site);
CREATE TABLE IF NOT EXISTS telemetry (
	device  TEXT NOT NULL,
	boot_id TEXT NOT NULL,
	seq     BIGINT NOT NULL,
	ts      BIGINT NOT NULL,
	v       TEXT NOT NULL,
	PRIMARY KEY (device, boot_id, seq)
);
CREATE INDEX IF NOT EXISTS telemetry_ts ON telemetry(ts);
CREATE TABLE IF NOT EXISTS rollup (
	device TEXT NOT NULL,
	series TEXT NOT NULL,
	res    INTEGER NOT NULL,
	bucket BIGINT NOT NULL,
	cnt    BIGINT NOT NULL,
	total  DOUBLE PRECISION NOT NULL,
	lo     DOUBLE PRECISION NOT NULL,
	hi     DOUBLE PRECISION NOT NULL,
	PRIMARY KEY (device, series, res, bucket)
);
CREATE INDEX IF NOT EXISTS rollup_res_bucket ON rollup(res, bucket);
CREATE INDEX IF NOT EXISTS rollup_res_series_bucket ON rollup(res, series, bucket);
` + whySchema
}

// OpenAudit opens (creating) the store: a postgres:// or postgresql://
// DSN, or the path of a SQLite file. An empty path keeps everything in
// memory, for tests that do not restart.
func OpenAudit(path string) (*Audit, error) {
	pg := strings.HasPrefix(path, "postgres://") || strings.HasPrefix(path, "postgresql://")
	driver, dsn := "sqlite", "file::memory:?cache=shared"
	switch {
	case pg:
		driver, dsn = "pgx", path
	case path != "":
		if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
			return nil, fmt.Errorf("console: store: %w", err)
		}
		dsn = "file:" + path
	}
	db, err := sql.Open(driver, dsn)
	if err != nil {
		return nil, fmt.Errorf("console: store %s: %w", redact(path), err)
	}
	if !pg {
		// One writer: SQLite serialises them anyway, and one connection
		// keeps an in-memory database one database.
		db.SetMaxOpenConns(1)
	}
	if _, err := db.Exec(schemaFor(pg)); err != nil {
		db.Close()
		return nil, fmt.Errorf("console: store %s: %w", redact(path), err)
	}
	return &Audit{db: db, pg: pg}, nil
}

// redact hides a DSN's password in messages.
func redact(dsn string) string {
	if u, err := url.Parse(dsn); err == nil && u.User != nil {
		if _, ok := u.User.Password(); ok {
			u.User = url.UserPassword(u.User.Username(), "xxx")
			return u.String()
		}
	}
	return dsn
}

// q rewrites ? placeholders as PostgreSQL's $n.
func (a *Audit) q(query string) string {
	if !a.pg {
		return query
	}
	var b strings.Builder
	n := 0
	for _, r := range query {
		if r == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(r)
	}
	return b.String()
}

// Close closes the database.
func (a *Audit) Close() error { return a.db.Close() }

// Add appends a record and returns its number.
func (a *Audit) Add(r AuditRecord) (int64, error) {
	if r.At.IsZero() {
		r.At = time.Now()
	}
	var n int64
	err := a.db.QueryRow(a.q(`INSERT INTO audit(at, kind, operator, key_id, subject, detail, signed) VALUES(?,?,?,?,?,?,?) RETURNING n`),
		r.At.UTC().Format(time.RFC3339Nano), r.Kind, r.Operator, r.KeyID, r.Subject, string(r.Detail), r.Signed).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("console: audit: %w", err)
	}
	return n, nil
}

// AuditFilter selects audit records.
type AuditFilter struct {
	Subject string
	Kind    string
	After   int64
	Limit   int // 0: all
}

// List returns the records f selects, oldest first.
func (a *Audit) List(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	q := `SELECT n, at, kind, operator, key_id, subject, detail, signed FROM audit WHERE n > ?`
	args := []any{f.After}
	if f.Subject != "" {
		q += ` AND subject = ?`
		args = append(args, f.Subject)
	}
	if f.Kind != "" {
		q += ` AND kind = ?`
		args = append(args, f.Kind)
	}
	if f.Limit > 0 {
		// The newest Limit, still oldest first.
		q = `SELECT * FROM (` + q + ` ORDER BY n DESC LIMIT ?) AS newest ORDER BY n`
		args = append(args, f.Limit)
	} else {
		q += ` ORDER BY n`
	}
	rows, err := a.db.QueryContext(ctx, a.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("console: audit: %w", err)
	}
	defer rows.Close()
	var out []AuditRecord
	for rows.Next() {
		var r AuditRecord
		var at, detail string
		if err := rows.Scan(&r.N, &at, &r.Kind, &r.Operator, &r.KeyID, &r.Subject, &detail, &r.Signed); err != nil {
			return nil, fmt.Errorf("console: audit: %w", err)
		}
		r.At, _ = time.Parse(time.RFC3339Nano, at)
		if detail != "" {
			r.Detail = json.RawMessage(detail)
		}
		out = append(out, r)
	}
	return out, rows.Err()
}

// putDoc stores a JSON document in table under id.
func (a *Audit) putDoc(table, id string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = a.db.Exec(a.q(`INSERT INTO `+table+`(`+keyCol(table)+`, doc) VALUES(?, ?) ON CONFLICT (`+keyCol(table)+`) DO UPDATE SET doc = excluded.doc`), id, string(b))
	if err != nil {
		return fmt.Errorf("console: store %s: %w", table, err)
	}
	return nil
}

func keyCol(table string) string {
	if table == "enrolments" {
		return "key_id"
	}
	return "id"
}

// docs decodes every document of table with fn.
func (a *Audit) docs(table string, fn func([]byte) error) error {
	rows, err := a.db.Query(`SELECT doc FROM ` + table)
	if err != nil {
		return fmt.Errorf("console: store %s: %w", table, err)
	}
	defer rows.Close()
	var errs []error
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			return err
		}
		errs = append(errs, fn([]byte(doc)))
	}
	return errors.Join(append(errs, rows.Err())...)
}

func (a *Audit) deleteDoc(table, id string) error {
	_, err := a.db.Exec(a.q(`DELETE FROM `+table+` WHERE `+keyCol(table)+` = ?`), id)
	return err
}
