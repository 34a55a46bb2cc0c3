package scenario

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/slot"
)

// bundleServer serves firmware bundles on loopback, as a release server
// would: update.fetch downloads from it over HTTP.
type bundleServer struct {
	ln  net.Listener
	srv *http.Server
	mu  sync.Mutex
	b   map[string][]byte
}

func newBundleServer() (*bundleServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("scenario: bundle server: %w", err)
	}
	s := &bundleServer{ln: ln, b: map[string][]byte{}}
	s.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		b, ok := s.b[req.URL.Path]
		s.mu.Unlock()
		if !ok {
			http.NotFound(w, req)
			return
		}
		http.ServeContent(w, req, filepath.Base(req.URL.Path), time.Time{}, bytes.NewReader(b))
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *bundleServer) put(name string, b []byte) string {
	s.mu.Lock()
	s.b["/"+name] = b
	s.mu.Unlock()
	return "http://" + s.ln.Addr().String() + "/" + name
}

func (s *bundleServer) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s.srv.Shutdown(ctx)
}

// pushUpdate builds a bundle signed with the bench's release key (a tiny
// script standing in for the agent binary), optionally tampers with it
// after signing, serves it, and returns the update.fetch arguments. The
// sha256 is of the served bytes, so a tampered bundle passes the transport
// check and must be refused by its signature.
func (r *runner) pushUpdate(st Step) (map[string]any, error) {
	if r.bundles == nil {
		var err error
		if r.bundles, err = newBundleServer(); err != nil {
			return nil, err
		}
	}
	version := st.Version
	if version == "" {
		version = "1.0.0"
	}
	dir, err := os.MkdirTemp("", "linkguard-bundle-")
	if err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "linkguard")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\necho linkguard "+version+"\n"), 0o755); err != nil {
		return nil, fmt.Errorf("scenario: %w", err)
	}
	b, err := bundle.BuildBytes(bundle.Manifest{Version: version, Arch: runtime.GOARCH, Created: time.Now().UTC()},
		[]bundle.File{{Name: bundle.BinaryName, Path: bin, Mode: 0o755}}, r.b.Keys.Release)
	if err != nil {
		return nil, fmt.Errorf("scenario: build bundle: %w", err)
	}
	name := "linkguard-" + version + ".lgb"
	if st.Tampered {
		b[len(b)-len(b)/4] ^= 0x01 // in the payload, after the signed manifest
		name = "tampered-" + name
	}
	sum := sha256.Sum256(b)
	return map[string]any{"url": r.bundles.put(name, b), "sha256": hex.EncodeToString(sum[:])}, nil
}

// installed is the firmware version the slot state at root records.
func installed(root string) (string, error) {
	s, err := slot.New(root)
	if err != nil {
		return "", err
	}
	st, err := s.Load()
	if errors.Is(err, slot.ErrNoState) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	return st.Installed(), nil
}
