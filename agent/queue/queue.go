package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// Class decides what is dropped first when the queue is full.
type Class uint8

// Classes, dropped in this order when over the limit.
const (
	Telemetry Class = iota
	Event
	numClasses
)

var classPrefix = [numClasses]string{"t", "e"}

func (c Class) String() string {
	switch c {
	case Telemetry:
		return "telemetry"
	case Event:
		return "event"
	}
	return "class(" + strconv.Itoa(int(c)) + ")"
}

// Sentinel errors.
var (
	ErrClosed   = errors.New("queue: closed")
	ErrTooLarge = errors.New("queue: record too large")
	ErrClass    = errors.New("queue: unknown class")
)

// Options bound the queue. Zero values take the defaults.
type Options struct {
	// MaxBytes bounds the bytes on disk (default 32 MiB).
	MaxBytes int64
	// SegmentBytes is the size at which a lane starts a new segment file
	// (default MaxBytes/16, within 64 KiB..4 MiB). Drops happen a segment at
	// a time.
	SegmentBytes int64
	// MaxRecord bounds one record's payload (default 1 MiB, at most
	// MaxBytes/4).
	MaxRecord int
}

// DefaultMaxBytes is the default of Options.MaxBytes.
const DefaultMaxBytes = 32 << 20

func (o *Options) fill() {
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	if o.SegmentBytes <= 0 {
		o.SegmentBytes = min(max(o.MaxBytes/16, 64<<10), 4<<20)
	}
	if o.MaxRecord <= 0 {
		o.MaxRecord = 1 << 20
	}
	o.MaxRecord = int(min(int64(o.MaxRecord), o.MaxBytes/4))
}

// Record is one queued message.
type Record struct {
	Seq   uint64
	Class Class
	Data  []byte
}

// Stats describe the queue for telemetry.
type Stats struct {
	Depth    int64              // records appended and not yet acknowledged
	Bytes    int64              // bytes on disk
	Dropped  [numClasses]uint64 // records dropped to stay under MaxBytes, since Open
	Appended uint64             // records appended since Open
	Torn     int64              // bytes of torn or corrupt tails cut off at Open
}

// DroppedOf returns the drop count of one class.
func (s Stats) DroppedOf(c Class) uint64 { return s.Dropped[c] }

type segment struct {
	path        string
	first, last uint64
	count       int
	size        int64
}

type lane struct {
	class Class
	segs  []*segment // oldest first; the last one takes appends
	w     *os.File   // writer of segs[len-1], opened lazily

	// reader
	rseg   *segment
	rf     *os.File
	roff   int64
	buf    []byte
	bufOff int64
	peek   *Record
}

// Queue is a disk-backed, bounded, ordered log. Append and Next/Ack may be
// called from different goroutines.
type Queue struct {
	dir string
	opt Options

	syncMu sync.Mutex // one fsync round at a time

	mu         sync.Mutex
	closed     bool
	lanes      [numClasses]*lane
	nextSeq    uint64
	durableSeq uint64 // every record up to here is fsynced
	handed     uint64 // highest sequence Next returned
	acked      uint64 // highest sequence acknowledged
	unread     int64  // records with seq > handed
	inflight   int64  // records handed out and not yet acknowledged
	stats      Stats
	notify     chan struct{}
	waiting    bool
	wbuf       []byte
	cursorAt   time.Time
	cursorDone uint64
}

const cursorName = "cursor"

// Open opens or creates the queue in dir, cutting off torn tails.
func Open(dir string, opt Options) (*Queue, error) {
	opt.fill()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	q := &Queue{dir: dir, opt: opt, notify: make(chan struct{})}
	q.acked = readCursor(filepath.Join(dir, cursorName))
	q.cursorDone = q.acked
	for c := range numClasses {
		q.lanes[c] = &lane{class: c}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("queue: %w", err)
	}
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".seg") || len(name) < 6 || name[1] != '-' {
			continue
		}
		c := Class(numClasses)
		for i, p := range classPrefix {
			if name[:1] == p {
				c = Class(i)
			}
		}
		if c == numClasses {
			continue
		}
		if _, err := strconv.ParseUint(strings.TrimSuffix(name[2:], ".seg"), 16, 64); err != nil {
			continue
		}
		q.lanes[c].segs = append(q.lanes[c].segs, &segment{path: filepath.Join(dir, name)})
	}
	maxSeq := q.acked
	for _, l := range q.lanes {
		sort.Slice(l.segs, func(i, j int) bool { return l.segs[i].path < l.segs[j].path })
		kept := l.segs[:0]
		for _, s := range l.segs {
			if err := q.scan(s); err != nil {
				return nil, err
			}
			if s.count == 0 || s.last <= q.acked {
				if err := os.Remove(s.path); err != nil {
					return nil, fmt.Errorf("queue: %w", err)
				}
				continue
			}
			kept = append(kept, s)
			q.stats.Bytes += s.size
			maxSeq = max(maxSeq, s.last)
		}
		l.segs = kept
		if n := len(l.segs); n > 0 {
			// What a killed process wrote is in the page cache: make it
			// durable before anything of it is handed out.
			if err := syncPath(l.segs[n-1].path); err != nil {
				return nil, err
			}
		}
	}
	q.nextSeq = maxSeq + 1
	q.durableSeq = maxSeq
	q.handed = q.acked
	return q, nil
}

// scan validates a segment, truncating it at the first bad record, and
// counts the records above the acknowledged cursor.
func (q *Queue) scan(s *segment) error {
	b, err := os.ReadFile(s.path)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	off := 0
	var prev uint64
	for off < len(b) {
		seq, _, n, err := decodeRecord(b[off:], q.opt.MaxRecord)
		if err != nil || seq <= prev {
			break
		}
		if s.count == 0 {
			s.first = seq
		}
		s.last, prev = seq, seq
		s.count++
		if seq > q.acked {
			q.unread++
		}
		off += n
	}
	s.size = int64(off)
	if off < len(b) {
		q.stats.Torn += int64(len(b) - off)
		if err := os.Truncate(s.path, int64(off)); err != nil {
			return fmt.Errorf("queue: cut torn tail: %w", err)
		}
	}
	return nil
}

// Append adds a record of class c. It returns once the record is written
// (it survives kill -9); Next makes it durable against power loss before
// handing it out.
func (q *Queue) Append(c Class, data []byte) (uint64, error) {
	if c >= numClasses {
		return 0, ErrClass
	}
	if len(data) > q.opt.MaxRecord {
		return 0, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(data), q.opt.MaxRecord)
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return 0, ErrClosed
	}
	n := int64(headerSize + len(data))
	if err := q.makeRoom(n); err != nil {
		return 0, err
	}
	l := q.lanes[c]
	seq := q.nextSeq
	if err := q.writer(l, seq); err != nil {
		return 0, err
	}
	s := l.segs[len(l.segs)-1]
	q.wbuf = appendRecord(q.wbuf[:0], seq, data)
	if _, err := l.w.Write(q.wbuf); err != nil {
		// Leave no partial record behind; Open would cut it anyway.
		_ = l.w.Truncate(s.size)
		return 0, fmt.Errorf("queue: append: %w", err)
	}
	q.nextSeq++
	if s.count == 0 {
		s.first = seq
	}
	s.last = seq
	s.count++
	s.size += n
	q.stats.Bytes += n
	q.stats.Appended++
	q.unread++
	if q.waiting {
		q.wake()
	}
	return seq, nil
}

// writer makes sure the lane has an open segment with room.
func (q *Queue) writer(l *lane, seq uint64) error {
	if n := len(l.segs); n > 0 && l.segs[n-1].size < q.opt.SegmentBytes {
		if l.w != nil {
			return nil
		}
		f, err := os.OpenFile(l.segs[n-1].path, os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		l.w = f
		return nil
	}
	if l.w != nil {
		// A full segment is synced when it is closed: only the active
		// segments are left for Sync.
		err := l.w.Sync()
		l.w.Close()
		l.w = nil
		if err != nil {
			return fmt.Errorf("queue: sync segment: %w", err)
		}
	}
	path := filepath.Join(q.dir, fmt.Sprintf("%s-%016x.seg", classPrefix[l.class], seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	if err := syncPath(q.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	l.w = f
	l.segs = append(l.segs, &segment{path: path})
	return nil
}

// makeRoom drops whole segments, oldest telemetry first, until n more
// bytes fit.
func (q *Queue) makeRoom(n int64) error {
	for q.stats.Bytes+n > q.opt.MaxBytes {
		var victim *lane
		for _, l := range q.lanes { // Telemetry comes first
			if len(l.segs) > 0 {
				victim = l
				break
			}
		}
		if victim == nil {
			return fmt.Errorf("%w: %d bytes do not fit in %d", ErrTooLarge, n, q.opt.MaxBytes)
		}
		if err := q.drop(victim); err != nil {
			return err
		}
	}
	return nil
}

// drop removes the oldest segment of l, counting the records in it that
// were never handed out.
func (q *Queue) drop(l *lane) error {
	s := l.segs[0]
	lost := 0
	if s.last > q.handed {
		b, err := os.ReadFile(s.path)
		if err != nil {
			return fmt.Errorf("queue: drop: %w", err)
		}
		for off := 0; off < len(b); {
			seq, _, n, err := decodeRecord(b[off:], q.opt.MaxRecord)
			if err != nil {
				break
			}
			if seq > q.handed {
				lost++
			}
			off += n
		}
	}
	if len(l.segs) == 1 && l.w != nil {
		l.w.Close()
		l.w = nil
	}
	if err := os.Remove(s.path); err != nil {
		return fmt.Errorf("queue: drop: %w", err)
	}
	l.segs = l.segs[1:]
	q.stats.Bytes -= s.size
	q.stats.Dropped[l.class] += uint64(lost)
	q.unread -= int64(lost)
	if l.rseg == s {
		l.closeReader()
	}
	if l.peek != nil && l.peek.Seq >= s.first && l.peek.Seq <= s.last {
		l.peek = nil
	}
	return nil
}

func (l *lane) closeReader() {
	if l.rf != nil {
		l.rf.Close()
	}
	l.rf, l.rseg, l.roff, l.buf, l.bufOff = nil, nil, 0, l.buf[:0], 0
}

// wake releases goroutines waiting in Next.
func (q *Queue) wake() {
	close(q.notify)
	q.notify = make(chan struct{})
	q.waiting = false
}

// Sync makes every record appended so far durable.
func (q *Queue) Sync() error {
	q.syncMu.Lock()
	defer q.syncMu.Unlock()
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return ErrClosed
	}
	target := q.nextSeq - 1
	if target <= q.durableSeq {
		q.mu.Unlock()
		return nil
	}
	var files []*os.File
	for _, l := range q.lanes {
		if l.w != nil {
			files = append(files, l.w)
		}
	}
	q.mu.Unlock()
	for _, f := range files {
		// A segment closed meanwhile was synced (rotation) or dropped.
		if err := f.Sync(); err != nil && !errors.Is(err, os.ErrClosed) {
			return fmt.Errorf("queue: sync: %w", err)
		}
	}
	q.mu.Lock()
	if target > q.durableSeq {
		q.durableSeq = target
	}
	q.wake()
	q.mu.Unlock()
	return nil
}

// Next returns the oldest record not yet handed out, syncing it to disk
// first, and blocks until there is one or ctx ends. Records come out in
// Append order across classes.
func (q *Queue) Next(ctx context.Context) (Record, error) {
	for {
		q.mu.Lock()
		if q.closed {
			q.mu.Unlock()
			return Record{}, ErrClosed
		}
		r, err := q.pick()
		if err != nil || r != nil {
			q.mu.Unlock()
			if r == nil {
				return Record{}, err
			}
			return *r, nil
		}
		dirty := q.durableSeq < q.nextSeq-1
		if !dirty {
			q.waiting = true
		}
		ch := q.notify
		q.mu.Unlock()
		if dirty {
			if err := q.Sync(); err != nil {
				return Record{}, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return Record{}, ctx.Err()
		case <-ch:
		}
	}
}

// pick hands out the lowest durable record across lanes, if any.
func (q *Queue) pick() (*Record, error) {
	var best *lane
	for _, l := range q.lanes {
		if err := q.peek(l); err != nil {
			return nil, err
		}
		if l.peek != nil && l.peek.Seq <= q.durableSeq && (best == nil || l.peek.Seq < best.peek.Seq) {
			best = l
		}
	}
	if best == nil {
		return nil, nil
	}
	r := best.peek
	best.peek = nil
	q.handed = r.Seq
	q.unread--
	q.inflight++
	return r, nil
}

// peek reads the lane's next record above q.handed into l.peek.
func (q *Queue) peek(l *lane) error {
	for l.peek == nil {
		if l.rseg == nil {
			if len(l.segs) == 0 {
				return nil
			}
			l.rseg = l.segs[0]
			f, err := os.Open(l.rseg.path)
			if err != nil {
				return fmt.Errorf("queue: read: %w", err)
			}
			l.rf, l.roff, l.buf, l.bufOff = f, 0, l.buf[:0], 0
		}
		s := l.rseg
		if l.roff >= s.size {
			i := indexOf(l.segs, s)
			if i < 0 || i == len(l.segs)-1 {
				if i < 0 {
					l.closeReader()
					continue
				}
				return nil // at the end of the active segment
			}
			next := l.segs[i+1]
			l.closeReader()
			f, err := os.Open(next.path)
			if err != nil {
				return fmt.Errorf("queue: read: %w", err)
			}
			l.rseg, l.rf = next, f
			continue
		}
		b, err := l.fill(headerSize, s.size)
		if err == nil {
			need := headerSize + int(binary.LittleEndian.Uint32(b[0:4]))
			if need <= headerSize+q.opt.MaxRecord {
				b, err = l.fill(need, s.size)
			}
		}
		if err != nil {
			return fmt.Errorf("queue: read %s: %w", filepath.Base(s.path), err)
		}
		seq, data, n, derr := decodeRecord(b, q.opt.MaxRecord)
		if derr != nil {
			// Corrupted under us (disk error): skip the rest of the segment.
			l.roff = s.size
			continue
		}
		l.roff += int64(n)
		if seq <= q.handed {
			continue
		}
		l.peek = &Record{Seq: seq, Class: l.class, Data: append([]byte(nil), data...)}
	}
	return nil
}

// fill returns at least n buffered bytes at l.roff (fewer only at end).
func (l *lane) fill(n int, end int64) ([]byte, error) {
	start := l.roff - l.bufOff
	if l.roff >= l.bufOff && start+int64(n) <= int64(len(l.buf)) {
		return l.buf[start:], nil
	}
	want := int64(max(n, 64<<10))
	want = min(want, end-l.roff)
	if int64(cap(l.buf)) < want {
		l.buf = make([]byte, want)
	}
	l.buf = l.buf[:want]
	m, err := l.rf.ReadAt(l.buf, l.roff)
	if err != nil && !(errors.Is(err, io.EOF) && int64(m) == want) {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, err
	}
	l.buf, l.bufOff = l.buf[:m], l.roff
	return l.buf, nil
}

func indexOf(segs []*segment, s *segment) int {
	for i, x := range segs {
		if x == s {
			return i
		}
	}
	return -1
}

// Ack acknowledges the record seq and everything before it: they were
// delivered and need not be kept.
func (q *Queue) Ack(seq uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return ErrClosed
	}
	if seq <= q.acked || seq > q.handed {
		return nil
	}
	q.acked = seq
	q.inflight = max(q.inflight-1, 0)
	for _, l := range q.lanes {
		for len(l.segs) > 1 && l.segs[0].last <= seq {
			s := l.segs[0]
			if l.rseg == s {
				l.closeReader()
			}
			if err := os.Remove(s.path); err != nil {
				return fmt.Errorf("queue: %w", err)
			}
			l.segs = l.segs[1:]
			q.stats.Bytes -= s.size
		}
	}
	if time.Since(q.cursorAt) > 100*time.Millisecond {
		return q.saveCursor()
	}
	return nil
}

// saveCursor records the acknowledged position. It is not fsynced: losing
// it only means records are delivered again (at least once), never lost.
func (q *Queue) saveCursor() error {
	if q.cursorDone == q.acked {
		return nil
	}
	var b [12]byte
	binary.LittleEndian.PutUint64(b[:8], q.acked)
	binary.LittleEndian.PutUint32(b[8:], crc32.Checksum(b[:8], castagnoli))
	if err := atomicfile.Replace(filepath.Join(q.dir, cursorName), b[:], 0o600); err != nil {
		return fmt.Errorf("queue: cursor: %w", err)
	}
	q.cursorAt, q.cursorDone = time.Now(), q.acked
	return nil
}

func readCursor(path string) uint64 {
	b, err := os.ReadFile(path)
	if err != nil || len(b) != 12 || crc32.Checksum(b[:8], castagnoli) != binary.LittleEndian.Uint32(b[8:]) {
		return 0
	}
	return binary.LittleEndian.Uint64(b[:8])
}

// Rewind hands out again every record not yet acknowledged, e.g. after
// the publisher lost what it had in flight.
func (q *Queue) Rewind() {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.unread += q.inflight
	q.inflight = 0
	q.handed = q.acked
	for _, l := range q.lanes {
		l.closeReader()
		l.peek = nil
	}
}

// Stats returns current figures.
func (q *Queue) Stats() Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	s := q.stats
	s.Depth = q.unread + q.inflight
	return s
}

// Close syncs and closes the queue; pending Next calls return ErrClosed.
func (q *Queue) Close() error {
	err := q.Sync()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if cerr := q.saveCursor(); err == nil {
		err = cerr
	}
	q.closed = true
	for _, l := range q.lanes {
		if l.w != nil {
			l.w.Close()
			l.w = nil
		}
		l.closeReader()
	}
	q.wake()
	return err
}

func syncPath(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("queue: sync %s: %w", path, err)
	}
	return nil
}

// Last returns the newest record of class c still on disk for which keep
// returns true (nil keep: any). Used at start-up to recover state that is
// written after the queue, such as an event chain head.
func (q *Queue) Last(c Class, keep func([]byte) bool) ([]byte, bool, error) {
	if c >= numClasses {
		return nil, false, ErrClass
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	l := q.lanes[c]
	for i := len(l.segs) - 1; i >= 0; i-- {
		b, err := os.ReadFile(l.segs[i].path)
		if err != nil {
			return nil, false, fmt.Errorf("queue: %w", err)
		}
		var found []byte
		for off := 0; off < len(b); {
			_, data, n, err := decodeRecord(b[off:], q.opt.MaxRecord)
			if err != nil {
				break
			}
			if keep == nil || keep(data) {
				found = data
			}
			off += n
		}
		if found != nil {
			return append([]byte(nil), found...), true, nil
		}
	}
	return nil, false, nil
}
