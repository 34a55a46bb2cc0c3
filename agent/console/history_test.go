package console

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/hal/envtest"
)

// startPostgres runs a throwaway PostgreSQL cluster (Debian's server
// binaries, initdb into a temporary directory) and returns its DSN. As
// root the server runs as the postgres user, which it insists on.
func startPostgres(t *testing.T) string {
	t.Helper()
	bins, _ := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if len(bins) == 0 {
		envtest.Missing(t, "PostgreSQL's server (Debian package postgresql)")
	}
	bin := filepath.Dir(bins[len(bins)-1])
	dir, err := os.MkdirTemp("", "lgpg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.Chmod(dir, 0o755)
	data := filepath.Join(dir, "data")
	run := func(name string, args ...string) {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, name), args...)
		if os.Geteuid() == 0 {
			u, err := user.Lookup("postgres")
			if err != nil {
				t.Fatalf("running PostgreSQL as root needs the postgres user: %v", err)
			}
			uid, _ := strconv.Atoi(u.Uid)
			gid, _ := strconv.Atoi(u.Gid)
			os.Chown(dir, uid, gid)
			cmd = exec.Command("runuser", append([]string{"-u", "postgres", "--", filepath.Join(bin, name)}, args...)...)
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("%s: %v\n%s", name, err, out)
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	run("initdb", "-D", data, "-A", "trust", "-U", "lg", "--no-sync")
	run("pg_ctl", "-D", data, "-l", filepath.Join(dir, "log"), "-w", "-o",
		fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir), "start")
	t.Cleanup(func() { run("pg_ctl", "-D", data, "-m", "immediate", "stop") })
	return fmt.Sprintf("postgres://lg@127.0.0.1:%d/postgres?sslmode=disable", port)
}

// TestStoreBackends: the audit log, documents and the event history behave
// the same on SQLite and a real PostgreSQL: events arriving twice (a QoS 1
// redelivery, a cluster node change) are stored once; queries by device,
// type prefix and time.
func TestStoreBackends(t *testing.T) {
	for _, backend := range []string{"sqlite", "postgres"} {
		t.Run(backend, func(t *testing.T) {
			st, _ := openStore(t, backend)
			ctx := context.Background()
			var evs []contract.Event
			for i := range 10 {
				dev, typ := "r1", "link.denied"
				if i%2 == 1 {
					dev, typ = "r2", "policy.applied"
				}
				evs = append(evs, contract.Event{ID: fmt.Sprintf("e%d", i), Device: dev, Seq: uint64(i), BootID: "b", Severity: "notice",
					Type: typ, TS: t0.Add(time.Duration(i) * time.Minute), Prev: contract.Genesis, Fields: map[string]any{"n": float64(i)}})
			}
			if n, err := st.IngestEvents(ctx, evs); err != nil || n != 10 {
				t.Fatalf("first ingest: %d %v", n, err)
			}
			if n, err := st.IngestEvents(ctx, append(evs[3:6:6], evs[0])); err != nil || n != 0 {
				t.Fatalf("redelivered events stored again: %d %v", n, err)
			}
			got, err := st.History(ctx, HistoryQuery{Device: "r1"})
			if err != nil || len(got) != 5 || got[0].ID != "e8" || got[0].Fields["n"] != float64(8) {
				t.Fatalf("r1's history: %v %+v", err, got)
			}
			if got, _ := st.History(ctx, HistoryQuery{Type: "policy", Since: t0.Add(3 * time.Minute), Until: t0.Add(8 * time.Minute)}); len(got) != 3 {
				t.Fatalf("policy events between 10:03 and 10:08: %+v", got)
			}
			if got, _ := st.History(ctx, HistoryQuery{Type: "%"}); len(got) != 0 {
				t.Fatalf("a %% type matched %d events (a LIKE wildcard)", len(got))
			}
			for i := range 3 {
				if _, err := st.Add(AuditRecord{Kind: "login", Operator: fmt.Sprint("op", i), Signed: []byte{0, 1, 2}}); err != nil {
					t.Fatal(err)
				}
			}
			recs, err := st.List(ctx, AuditFilter{Limit: 2})
			if err != nil || len(recs) != 2 || recs[1].Operator != "op2" || string(recs[1].Signed) != "\x00\x01\x02" {
				t.Fatalf("audit: %v %+v", err, recs)
			}
			if err := st.putDoc("pending", "p1", map[string]int{"v": 1}); err != nil {
				t.Fatal(err)
			}
			if err := st.putDoc("pending", "p1", map[string]int{"v": 2}); err != nil {
				t.Fatal(err)
			}
			var docs []string
			st.docs("pending", func(b []byte) error { docs = append(docs, string(b)); return nil })
			if len(docs) != 1 || docs[0] != `{"v":2}` {
				t.Fatalf("upserted documents: %q", docs)
			}
		})
	}
}

// TestHistoryFromTheBroker: events a device publishes are kept in the
// store once each though the broker delivers some twice, and an event on
// r1's topic claiming to be r2's is kept for neither.
func TestHistoryFromTheBroker(t *testing.T) {
	f := newFixture(t)
	now := time.Now().UTC()
	for i := range 5 {
		e := contract.Event{ID: fmt.Sprintf("r1-%d", i), Device: "r1", Seq: uint64(i), BootID: "b", Severity: "notice", Type: "link.denied", TS: now, Prev: contract.Genesis}
		f.publish(contract.Prefix+"r1/events", mustJSON(t, e))
		if i%2 == 0 {
			f.publish(contract.Prefix+"r1/events", mustJSON(t, e)) // redelivered
		}
	}
	forged := contract.Event{ID: "forged", Device: "r2", Seq: 1, BootID: "b", Severity: "critical", Type: "link.denied", TS: now, Prev: contract.Genesis}
	f.publish(contract.Prefix+"r1/events", mustJSON(t, forged))
	cl := f.client("vic")
	var got []contract.Event
	f.waitFor("r1's five events stored", func() bool {
		got = nil
		cl.do(context.Background(), "GET", "/api/history?device=r1", nil, &got)
		return len(got) == 5
	})
	time.Sleep(500 * time.Millisecond)
	var r2 []contract.Event
	if err := cl.do(context.Background(), "GET", "/api/history?device=r2", nil, &r2); err != nil || len(r2) != 0 {
		t.Fatalf("r2's history holds %d events (%v): a forged event was merged", len(r2), err)
	}
	if err := cl.do(context.Background(), "GET", "/api/history?device=r1", nil, &got); err != nil || len(got) != 5 {
		t.Fatalf("r1's history after the duplicates: %d %v", len(got), err)
	}
	if evs := f.c.Events(EventFilter{Device: "r2"}); len(evs) != 0 {
		t.Fatalf("the live list shows the forged event under r2: %+v", evs)
	}
}
