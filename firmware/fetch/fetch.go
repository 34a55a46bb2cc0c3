package fetch

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"linkguard.dev/linkguard/hal/atomicfile"
)

// Errors callers act on.
var (
	ErrTooLarge = errors.New("fetch: larger than the size cap")
	ErrDigest   = errors.New("fetch: sha256 mismatch")
	ErrStatus   = errors.New("fetch: unexpected HTTP status")
	ErrRequest  = errors.New("fetch: bad request")
)

// Request is one download.
type Request struct {
	URL     string // http or https
	SHA256  string // hex sha256 of the whole file, from the signed command
	MaxSize int64  // bytes; required
	Dest    string // final path; Dest+".part" holds a partial download between attempts
	Retries int    // resumptions after a broken transfer within one call; 0 means 3
}

func (r Request) check() ([]byte, error) {
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%w: url %q", ErrRequest, r.URL)
	}
	want, err := hex.DecodeString(strings.ToLower(r.SHA256))
	if err != nil || len(want) != sha256.Size {
		return nil, fmt.Errorf("%w: sha256 %q", ErrRequest, r.SHA256)
	}
	if r.MaxSize <= 0 || r.Dest == "" {
		return nil, fmt.Errorf("%w: size cap and destination are required", ErrRequest)
	}
	return want, nil
}

// Download fetches req.URL to req.Dest. A partial file left by an earlier
// call or a broken connection is resumed with a Range request; a server that
// ignores Range is read from the start. The file only appears at Dest once its
// sha256 matches; a mismatch or an oversize body deletes the partial file.
func Download(ctx context.Context, client *http.Client, req Request, log *slog.Logger) error {
	want, err := req.check()
	if err != nil {
		return err
	}
	if client == nil {
		client = http.DefaultClient
	}
	retries := req.Retries
	if retries <= 0 {
		retries = 3
	}
	part := req.Dest + ".part"
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	have, err := io.Copy(h, f)
	if err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if have > req.MaxSize {
		if have, err = restart(f, h); err != nil {
			return err
		}
	}
	for attempt := 0; ; attempt++ {
		done, err := transfer(ctx, client, req, f, h, &have)
		if err == nil && done {
			break
		}
		if errors.Is(err, ErrTooLarge) || errors.Is(err, ErrRequest) || errors.Is(err, ErrStatus) || ctx.Err() != nil || attempt >= retries {
			if errors.Is(err, ErrTooLarge) {
				f.Close()
				os.Remove(part)
			}
			return err
		}
		log.Warn("download interrupted, resuming", "url", req.URL, "have", have, "attempt", attempt+1, "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(attempt+1) * 200 * time.Millisecond):
		}
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if got := h.Sum(nil); hex.EncodeToString(got) != hex.EncodeToString(want) {
		f.Close()
		os.Remove(part)
		return fmt.Errorf("%w: got %x, want %x", ErrDigest, got, want)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	if err := os.Rename(part, req.Dest); err != nil {
		return fmt.Errorf("fetch: %w", err)
	}
	log.Info("downloaded", "url", req.URL, "bytes", have, "dest", req.Dest)
	return atomicfile.SyncDir(filepath.Dir(req.Dest))
}

func restart(f *os.File, h hash.Hash) (int64, error) {
	h.Reset()
	if err := f.Truncate(0); err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, fmt.Errorf("fetch: %w", err)
	}
	return 0, nil
}

// transfer makes one request from *have onwards and appends the body to f.
// done reports the server sent the whole file.
func transfer(ctx context.Context, client *http.Client, req Request, f *os.File, h hash.Hash, have *int64) (done bool, err error) {
	hr, err := http.NewRequestWithContext(ctx, http.MethodGet, req.URL, nil)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrRequest, err)
	}
	if *have > 0 {
		hr.Header.Set("Range", "bytes="+strconv.FormatInt(*have, 10)+"-")
	}
	resp, err := client.Do(hr)
	if err != nil {
		return false, fmt.Errorf("fetch: %w", err)
	}
	defer resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusOK:
		if *have > 0 {
			if *have, err = restart(f, h); err != nil {
				return false, err
			}
		}
	case http.StatusPartialContent:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != *have {
			return false, fmt.Errorf("%w: Content-Range %q for offset %d", ErrStatus, resp.Header.Get("Content-Range"), *have)
		}
		if total > req.MaxSize {
			return false, fmt.Errorf("%w: %d bytes, cap %d", ErrTooLarge, total, req.MaxSize)
		}
	case http.StatusRequestedRangeNotSatisfiable:
		// Everything is here already (or the file shrank: the digest decides).
		return true, nil
	default:
		return false, fmt.Errorf("%w: %s", ErrStatus, resp.Status)
	}
	if resp.ContentLength > 0 && *have+resp.ContentLength > req.MaxSize {
		return false, fmt.Errorf("%w: %d bytes, cap %d", ErrTooLarge, *have+resp.ContentLength, req.MaxSize)
	}
	if _, err := f.Seek(*have, io.SeekStart); err != nil {
		return false, fmt.Errorf("fetch: %w", err)
	}
	// One byte over the cap is enough to know it is too large.
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(resp.Body, req.MaxSize-*have+1))
	*have += n
	if *have > req.MaxSize {
		return false, fmt.Errorf("%w: more than %d bytes", ErrTooLarge, req.MaxSize)
	}
	if err != nil {
		return false, fmt.Errorf("fetch: body: %w", err)
	}
	return true, nil
}

// contentRange parses "bytes START-END/TOTAL" (TOTAL may be "*", then -1).
func contentRange(s string) (start, total int64, ok bool) {
	s, found := strings.CutPrefix(s, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(s, "/")
	if !found {
		return 0, 0, false
	}
	a, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(a, 10, 64)
	if err != nil || start < 0 {
		return 0, 0, false
	}
	if tot == "*" {
		return start, -1, true
	}
	total, err = strconv.ParseInt(tot, 10, 64)
	return start, total, err == nil && total >= 0
}
