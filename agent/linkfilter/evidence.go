package linkfilter

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"linkguard.dev/linkguard/hal/capture/pcapfile"
)

// Evidence is a bounded ring of pcap files holding denied traffic: when the
// directory's evidence files pass MaxBytes, the oldest file is removed.
type Evidence struct {
	dir      string
	maxBytes int64
	fileMax  int64
	link     pcapfile.LinkType

	mu    sync.Mutex
	f     *os.File
	bw    *bufio.Writer
	w     *pcapfile.Writer
	size  int64 // bytes in the open file
	total int64 // bytes in all evidence files, the open one included
	seq   int
}

const evidencePrefix = "evidence-"

// OpenEvidence opens (creating) the evidence directory with a ring of at
// most maxBytes; frames are of the given link type.
func OpenEvidence(dir string, maxBytes int64, link pcapfile.LinkType) (*Evidence, error) {
	if maxBytes < 64<<10 {
		return nil, fmt.Errorf("linkfilter: evidence: max %d bytes is below 64 KiB", maxBytes)
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("linkfilter: evidence: %w", err)
	}
	e := &Evidence{dir: dir, maxBytes: maxBytes, fileMax: max(maxBytes/8, 32<<10), link: link}
	files, err := e.files()
	if err != nil {
		return nil, err
	}
	for _, fi := range files {
		e.total += fi.size
	}
	e.seq = len(files)
	return e, nil
}

type evFile struct {
	name string
	size int64
}

// files lists evidence files, oldest first (names sort by creation time).
func (e *Evidence) files() ([]evFile, error) {
	ents, err := os.ReadDir(e.dir)
	if err != nil {
		return nil, fmt.Errorf("linkfilter: evidence: %w", err)
	}
	var out []evFile
	for _, d := range ents {
		if !d.Type().IsRegular() || !strings.HasPrefix(d.Name(), evidencePrefix) || !strings.HasSuffix(d.Name(), ".pcap") {
			continue
		}
		info, err := d.Info()
		if err != nil {
			continue
		}
		out = append(out, evFile{d.Name(), info.Size()})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out, nil
}

// evidenceSnaplen is tcpdump's default: whole super-frames (64 KB plus
// headers) from ports that carry offloads fit.
const evidenceSnaplen = 262144

// Write appends one frame; wireLen is its length on the wire.
func (e *Evidence) Write(ts time.Time, frame []byte, wireLen int) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if len(frame) > evidenceSnaplen {
		frame = frame[:evidenceSnaplen]
	}
	rec := int64(16 + len(frame))
	if e.w == nil || e.size+rec > e.fileMax {
		if err := e.rotate(ts); err != nil {
			return err
		}
	}
	if err := e.w.WriteFrame(ts, frame, wireLen); err != nil {
		return fmt.Errorf("linkfilter: evidence: %w", err)
	}
	e.size += rec
	e.total += rec
	return nil
}

// rotate closes the open file, trims the ring to make room for a new one,
// and starts it.
func (e *Evidence) rotate(ts time.Time) error {
	if err := e.closeFile(); err != nil {
		return err
	}
	files, err := e.files()
	if err != nil {
		return err
	}
	e.total = 0
	for _, fi := range files {
		e.total += fi.size
	}
	for len(files) > 0 && e.total+e.fileMax > e.maxBytes {
		if err := os.Remove(filepath.Join(e.dir, files[0].name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("linkfilter: evidence: %w", err)
		}
		e.total -= files[0].size
		files = files[1:]
	}
	e.seq++
	name := filepath.Join(e.dir, fmt.Sprintf("%s%s-%06d.pcap", evidencePrefix, ts.UTC().Format("20060102T150405.000000000"), e.seq))
	f, err := os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
	if err != nil {
		return fmt.Errorf("linkfilter: evidence: %w", err)
	}
	e.f, e.bw = f, bufio.NewWriterSize(f, 64<<10)
	if e.w, err = pcapfile.NewWriter(e.bw, evidenceSnaplen, e.link); err != nil {
		return fmt.Errorf("linkfilter: evidence: %w", err)
	}
	e.size = 24
	e.total += 24
	return nil
}

func (e *Evidence) closeFile() error {
	if e.f == nil {
		return nil
	}
	err := e.bw.Flush()
	if cerr := e.f.Close(); err == nil {
		err = cerr
	}
	e.f, e.bw, e.w = nil, nil, nil
	if err != nil {
		return fmt.Errorf("linkfilter: evidence: %w", err)
	}
	return nil
}

// Flush writes buffered frames to the open file.
func (e *Evidence) Flush() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.bw == nil {
		return nil
	}
	return e.bw.Flush()
}

// Close flushes and closes the open file.
func (e *Evidence) Close() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.closeFile()
}

// Bytes is the ring's current size on disk (buffered bytes included).
func (e *Evidence) Bytes() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.total
}
