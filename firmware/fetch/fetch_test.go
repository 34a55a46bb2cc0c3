package fetch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

var quiet = slog.New(slog.DiscardHandler)

type server struct {
	*httptest.Server
	mu       sync.Mutex
	ranges   []string
	cutFirst int  // abort the first response after this many body bytes
	noRange  bool // ignore Range, always 200
	chunked  bool // no Content-Length
}

func newServer(t *testing.T, content []byte, s *server) *server {
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.ranges = append(s.ranges, r.Header.Get("Range"))
		first := len(s.ranges) == 1
		s.mu.Unlock()
		if r.URL.Path != "/fw.lgb" {
			http.NotFound(w, r)
			return
		}
		if s.chunked {
			w.WriteHeader(http.StatusOK)
			w.Write(content)
			return
		}
		if s.noRange {
			r.Header.Del("Range")
		}
		if first && s.cutFirst > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(len(content)))
			w.WriteHeader(http.StatusOK)
			w.Write(content[:s.cutFirst])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		}
		http.ServeContent(w, r, "fw.lgb", time.Time{}, bytes.NewReader(content))
	}))
	t.Cleanup(s.Close)
	return s
}

func data(n int) ([]byte, string) {
	b := bytes.Repeat([]byte("linkguard firmware "), n/19+1)[:n]
	sum := sha256.Sum256(b)
	return b, hex.EncodeToString(sum[:])
}

func TestResumeAfterBrokenConnection(t *testing.T) {
	content, sum := data(100_000)
	s := newServer(t, content, &server{cutFirst: 30_000})
	dest := filepath.Join(t.TempDir(), "fw.lgb")
	if err := Download(context.Background(), s.Client(), Request{URL: s.URL + "/fw.lgb", SHA256: sum, MaxSize: 1 << 20, Dest: dest}, quiet); err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dest)
	if !bytes.Equal(got, content) {
		t.Fatal("content differs")
	}
	if len(s.ranges) != 2 || s.ranges[0] != "" || s.ranges[1] != "bytes=30000-" {
		t.Fatalf("requests' Range headers = %q", s.ranges)
	}
	if _, err := os.Stat(dest + ".part"); !os.IsNotExist(err) {
		t.Fatalf("partial file left: %v", err)
	}
}

func TestResumeAcrossCalls(t *testing.T) {
	content, sum := data(50_000)
	for _, noRange := range []bool{false, true} {
		s := newServer(t, content, &server{noRange: noRange})
		dest := filepath.Join(t.TempDir(), "fw.lgb")
		os.WriteFile(dest+".part", content[:20_000], 0o600)
		if err := Download(context.Background(), s.Client(), Request{URL: s.URL + "/fw.lgb", SHA256: sum, MaxSize: 1 << 20, Dest: dest}, quiet); err != nil {
			t.Fatalf("noRange=%v: %v", noRange, err)
		}
		if got, _ := os.ReadFile(dest); !bytes.Equal(got, content) {
			t.Fatalf("noRange=%v: content differs", noRange)
		}
		if s.ranges[0] != "bytes=20000-" {
			t.Fatalf("Range = %q", s.ranges)
		}
	}
}

func TestRefusals(t *testing.T) {
	content, sum := data(10_000)
	tests := []struct {
		name string
		srv  func() *server
		req  func(*Request)
		want error
	}{
		{"over cap with length", func() *server { return &server{} }, func(r *Request) { r.MaxSize = 9_999 }, ErrTooLarge},
		{"over cap chunked", func() *server { return &server{chunked: true} }, func(r *Request) { r.MaxSize = 5_000 }, ErrTooLarge},
		{"digest", func() *server { return &server{} }, func(r *Request) { r.SHA256 = strings.Repeat("ab", 32) }, ErrDigest},
		{"not found", func() *server { return &server{} }, func(r *Request) { r.URL += ".missing" }, ErrStatus},
		{"scheme", func() *server { return &server{} }, func(r *Request) { r.URL = "file:///etc/passwd" }, ErrRequest},
		{"bad sha", func() *server { return &server{} }, func(r *Request) { r.SHA256 = "xyz" }, ErrRequest},
		{"no cap", func() *server { return &server{} }, func(r *Request) { r.MaxSize = 0 }, ErrRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newServer(t, content, tt.srv())
			dest := filepath.Join(t.TempDir(), "fw.lgb")
			req := Request{URL: s.URL + "/fw.lgb", SHA256: sum, MaxSize: 1 << 20, Dest: dest}
			tt.req(&req)
			err := Download(context.Background(), s.Client(), req, quiet)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Download = %v, want %v", err, tt.want)
			}
			if _, err := os.Stat(dest); !os.IsNotExist(err) {
				t.Fatal("destination written after a refusal")
			}
			if tt.want == ErrTooLarge || tt.want == ErrDigest {
				if _, err := os.Stat(dest + ".part"); !os.IsNotExist(err) {
					t.Fatal("partial file kept after a refusal")
				}
			}
		})
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-9/10", "bytes 5-9/*", "bytes -1-2/3", "bytes 1/2", "", "bytes 9223372036854775807-1/1", "bytes 0-1/-5"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		start, total, ok := contentRange(s)
		if ok && (start < 0 || total < -1) {
			t.Fatalf("%q -> %d %d", s, start, total)
		}
	})
}
