package queue

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"
)

func open(t testing.TB, dir string, opt Options) *Queue {
	t.Helper()
	q, err := Open(dir, opt)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func next(t testing.TB, q *Queue) Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := q.Next(ctx)
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	return r
}

// drain reads every record available now, acknowledging each.
func drain(t testing.TB, q *Queue, ack bool) []Record {
	t.Helper()
	var out []Record
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Millisecond)
		r, err := q.Next(ctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, r)
		if ack {
			if err := q.Ack(r.Seq); err != nil {
				t.Fatal(err)
			}
		}
	}
}

func payload(i int) []byte { return []byte("record-" + strconv.Itoa(i)) }

func TestOrderAcrossClassesAndRestart(t *testing.T) {
	dir := t.TempDir()
	q := open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 256})
	for i := range 100 {
		c := Telemetry
		if i%3 == 0 {
			c = Event
		}
		if _, err := q.Append(c, payload(i)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 40 {
		r := next(t, q)
		if !bytes.Equal(r.Data, payload(i)) {
			t.Fatalf("record %d = %q", i, r.Data)
		}
		if want := map[bool]Class{true: Event, false: Telemetry}[i%3 == 0]; r.Class != want {
			t.Fatalf("record %d class %v", i, r.Class)
		}
		if err := q.Ack(r.Seq); err != nil {
			t.Fatal(err)
		}
	}
	// Handed out but not acknowledged: delivered again after a restart.
	for range 5 {
		next(t, q)
	}
	if d := q.Stats().Depth; d != 60 {
		t.Fatalf("depth = %d, want 60", d)
	}
	if err := q.Close(); err != nil {
		t.Fatal(err)
	}
	q2 := open(t, dir, Options{MaxBytes: 1 << 20, SegmentBytes: 256})
	if d := q2.Stats().Depth; d != 60 {
		t.Fatalf("depth after reopen = %d, want 60", d)
	}
	got := drain(t, q2, true)
	if len(got) != 60 {
		t.Fatalf("after restart got %d records, want 60", len(got))
	}
	for i, r := range got {
		if !bytes.Equal(r.Data, payload(40+i)) {
			t.Fatalf("after restart record %d = %q", i, r.Data)
		}
	}
	if s := q2.Stats(); s.Depth != 0 {
		t.Fatalf("depth after drain = %d", s.Depth)
	}
	// Appends continue the sequence.
	seq, err := q2.Append(Event, []byte("x"))
	if err != nil || seq != got[len(got)-1].Seq+1 {
		t.Fatalf("Append after restart seq %d err %v", seq, err)
	}
	// Acknowledged segments are deleted; only the active ones remain.
	segs, _ := filepath.Glob(filepath.Join(dir, "*.seg"))
	if len(segs) > 2 {
		t.Fatalf("%d segment files left after acknowledging everything", len(segs))
	}
}

func TestRewind(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	for i := range 5 {
		q.Append(Event, payload(i))
	}
	a := next(t, q)
	q.Ack(a.Seq)
	next(t, q)
	next(t, q)
	q.Rewind()
	got := drain(t, q, true)
	if len(got) != 4 || !bytes.Equal(got[0].Data, payload(1)) {
		t.Fatalf("after Rewind got %d records starting %q", len(got), got[0].Data)
	}
}

func TestBoundDropsTelemetryFirst(t *testing.T) {
	q := open(t, t.TempDir(), Options{MaxBytes: 64 << 10, SegmentBytes: 4 << 10})
	big := bytes.Repeat([]byte("t"), 200)
	for i := range 200 {
		if _, err := q.Append(Event, []byte(fmt.Sprintf("event-%04d", i))); err != nil {
			t.Fatal(err)
		}
	}
	for range 2000 {
		if _, err := q.Append(Telemetry, big); err != nil {
			t.Fatal(err)
		}
	}
	s := q.Stats()
	if s.Bytes > 64<<10 {
		t.Fatalf("queue holds %d bytes, over its 64 KiB bound", s.Bytes)
	}
	if s.Dropped[Event] != 0 || s.Dropped[Telemetry] == 0 {
		t.Fatalf("dropped %+v: want telemetry dropped, events kept", s.Dropped)
	}
	got := drain(t, q, true)
	events := 0
	for _, r := range got {
		if r.Class == Event {
			if want := fmt.Sprintf("event-%04d", events); string(r.Data) != want {
				t.Fatalf("event %d = %q", events, r.Data)
			}
			events++
		}
	}
	if events != 200 {
		t.Fatalf("%d events delivered, want 200", events)
	}
	if uint64(len(got))+s.Dropped[Telemetry] != 2200 {
		t.Fatalf("delivered %d + dropped %d != appended 2200", len(got), s.Dropped[Telemetry])
	}
	// With no telemetry left, the oldest events go, and are counted.
	for i := range 2000 {
		if _, err := q.Append(Event, append([]byte("late-event-"), big...)); err != nil {
			t.Fatal(i, err)
		}
	}
	s = q.Stats()
	if s.Dropped[Event] == 0 || s.Bytes > 64<<10 {
		t.Fatalf("events not dropped under pressure: %+v", s)
	}
	got = drain(t, q, true)
	if uint64(len(got))+s.Dropped[Event] != 2000 {
		t.Fatalf("delivered %d + dropped %d != 2000", len(got), s.Dropped[Event])
	}
	if _, err := q.Append(Event, make([]byte, 32<<10)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized record: %v", err)
	}
}

// TestTornTail cuts the last segment at every byte offset, as a power cut
// during a write would, and reopens: what survives is an intact prefix.
func TestTornTail(t *testing.T) {
	src := t.TempDir()
	q := open(t, src, Options{})
	for i := range 20 {
		q.Append(Event, payload(i))
	}
	q.Close()
	segs, _ := filepath.Glob(filepath.Join(src, "e-*.seg"))
	if len(segs) != 1 {
		t.Fatalf("segments %v", segs)
	}
	full, _ := os.ReadFile(segs[0])
	for cut := 0; cut <= len(full); cut += 7 {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, filepath.Base(segs[0])), full[:cut], 0o600)
		// and garbage after the cut, as a sector of old data would leave
		if cut%2 == 0 {
			f, _ := os.OpenFile(filepath.Join(dir, filepath.Base(segs[0])), os.O_WRONLY|os.O_APPEND, 0)
			f.Write([]byte{0xff, 0, 0, 0, 1, 2, 3, 4, 9, 9, 9, 9, 9, 9, 9, 9, 'x'})
			f.Close()
		}
		q := open(t, dir, Options{})
		got := drain(t, q, false)
		for i, r := range got {
			if !bytes.Equal(r.Data, payload(i)) {
				t.Fatalf("cut %d: record %d = %q", cut, i, r.Data)
			}
		}
		if cut == len(full) && len(got) != 20 {
			t.Fatalf("uncut file gave %d records", len(got))
		}
		// New appends go after the intact prefix and read back.
		q.Append(Event, []byte("after"))
		more := drain(t, q, false)
		if len(more) != 1 || string(more[0].Data) != "after" {
			t.Fatalf("cut %d: append after recovery read %v", cut, more)
		}
		q.Close()
	}
}

func TestConcurrentProducerConsumer(t *testing.T) {
	q := open(t, t.TempDir(), Options{MaxBytes: 8 << 20, SegmentBytes: 16 << 10})
	const n = 5000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := range n {
			c := Class(i % 2)
			if _, err := q.Append(c, payload(i)); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for i := range n {
		r := next(t, q)
		if !bytes.Equal(r.Data, payload(i)) {
			t.Fatalf("record %d = %q", i, r.Data)
		}
		q.Ack(r.Seq)
	}
	wg.Wait()
}

func TestNextHonoursContextAndClose(t *testing.T) {
	q := open(t, t.TempDir(), Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := q.Next(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Next on empty queue: %v", err)
	}
	done := make(chan error)
	go func() { _, err := q.Next(context.Background()); done <- err }()
	time.Sleep(10 * time.Millisecond)
	q.Close()
	if err := <-done; !errors.Is(err, ErrClosed) {
		t.Fatalf("Next after Close: %v", err)
	}
	if _, err := q.Append(Event, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v", err)
	}
}

func TestAppendAllocs(t *testing.T) {
	q := open(t, t.TempDir(), Options{MaxBytes: 64 << 20, SegmentBytes: 4 << 20})
	data := make([]byte, 100)
	q.Append(Telemetry, data)
	allocs := testing.AllocsPerRun(1000, func() { q.Append(Telemetry, data) })
	if allocs > 0 {
		t.Fatalf("Append allocates %.1f times per record", allocs)
	}
}

// TestKillMidWrite kills a writer process with SIGKILL while it appends,
// then reopens: every record is intact and the sequence has no holes.
func TestKillMidWrite(t *testing.T) {
	dir := t.TempDir()
	for round := range 3 {
		cmd := selfCommand(t)
		cmd.Env = append(os.Environ(), "QUEUE_TEST_WRITER="+dir)
		var errOut bytes.Buffer
		cmd.Stderr = &errOut
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill only once the writer is appending: under qemu-user the
		// child takes a while to start.
		ready := make(chan error, 1)
		go func() {
			buf := make([]byte, 6)
			_, err := io.ReadFull(stdout, buf)
			ready <- err
		}()
		select {
		case err := <-ready:
			if err != nil {
				cmd.Process.Kill()
				cmd.Wait()
				t.Fatalf("round %d: writer did not start: %v: %s", round, err, errOut.String())
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			cmd.Wait()
			t.Fatalf("round %d: writer not ready in 60s: %s", round, errOut.String())
		}
		time.Sleep(time.Duration(50+100*round) * time.Millisecond)
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
		out := &errOut
		q, err := Open(dir, Options{MaxBytes: 256 << 20, SegmentBytes: 64 << 10})
		if err != nil {
			t.Fatal(err)
		}
		got := drain(t, q, false)
		if len(got) == 0 {
			t.Fatalf("round %d: writer wrote nothing: %s", round, out.String())
		}
		var last uint64
		for _, r := range got {
			if last != 0 && r.Seq != last+1 {
				t.Fatalf("round %d: hole after seq %d (next %d)", round, last, r.Seq)
			}
			last = r.Seq
			want := []byte(fmt.Sprintf("w-%d", r.Seq))
			if !bytes.Equal(r.Data[:len(want)], want) {
				t.Fatalf("round %d: seq %d holds %q", round, r.Seq, r.Data[:20])
			}
		}
		t.Logf("round %d: %d records intact after kill -9", round, len(got))
		q.Close()
	}
}

// selfCommand re-executes the test binary. Under qemu-user without
// binfmt_misc (GOARCH=arm go test -exec qemu-arm) the child needs qemu too.
func selfCommand(t *testing.T, args ...string) *exec.Cmd {
	t.Helper()
	qemu := map[string]string{"arm": "qemu-arm", "arm64": "qemu-aarch64", "mipsle": "qemu-mipsel", "mips": "qemu-mips"}[runtime.GOARCH]
	if qemu != "" {
		if p, err := exec.LookPath(qemu); err == nil {
			return exec.Command(p, append([]string{os.Args[0]}, args...)...)
		}
	}
	return exec.Command(os.Args[0], args...)
}

// TestMain turns the test binary into TestKillMidWrite's writer process
// when QUEUE_TEST_WRITER names a queue directory.
func TestMain(m *testing.M) {
	if dir := os.Getenv("QUEUE_TEST_WRITER"); dir != "" {
		writeForever(dir)
	}
	os.Exit(m.Run())
}

// writeForever appends until killed, saying "ready\n" after the first record.
func writeForever(dir string) {
	q, err := Open(dir, Options{MaxBytes: 256 << 20, SegmentBytes: 64 << 10})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	pad := bytes.Repeat([]byte("p"), 300)
	for i := 0; ; i++ {
		// The payload names its own sequence, so the parent can check it.
		q.mu.Lock()
		s := q.nextSeq
		q.mu.Unlock()
		if _, err := q.Append(Class(s%2), append([]byte(fmt.Sprintf("w-%d", s)), pad...)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		if i == 0 {
			os.Stdout.WriteString("ready\n")
		}
	}
}

func TestDropKeepsOrderWithReaderInside(t *testing.T) {
	q := open(t, t.TempDir(), Options{MaxBytes: 16 << 10, SegmentBytes: 1 << 10})
	for i := range 20 {
		q.Append(Telemetry, payload(i))
	}
	next(t, q) // reader is inside the first segment
	for i := 20; i < 2000; i++ {
		q.Append(Telemetry, payload(i))
	}
	got := drain(t, q, true)
	if !sort.SliceIsSorted(got, func(i, j int) bool { return got[i].Seq < got[j].Seq }) {
		t.Fatal("records out of order after drops")
	}
	if !bytes.Equal(got[len(got)-1].Data, payload(1999)) {
		t.Fatalf("last record %q", got[len(got)-1].Data)
	}
}

func TestLast(t *testing.T) {
	q := open(t, t.TempDir(), Options{SegmentBytes: 64})
	if _, ok, _ := q.Last(Event, nil); ok {
		t.Fatal("Last on an empty queue found a record")
	}
	for i := range 10 {
		q.Append(Event, payload(i))
		q.Append(Telemetry, []byte("t"))
	}
	b, ok, err := q.Last(Event, func(d []byte) bool { return !bytes.Equal(d, payload(9)) })
	if err != nil || !ok || !bytes.Equal(b, payload(8)) {
		t.Fatalf("Last = %q %v %v", b, ok, err)
	}
}
