package update

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"

	"linkguard.dev/linkguard/firmware/bundle"
	"linkguard.dev/linkguard/firmware/fetch"
	"linkguard.dev/linkguard/firmware/slot"
)

// DefaultMaxFetch caps a download when the configuration names no cap.
const DefaultMaxFetch = 64 << 20

// Installer verifies and installs bundles on this device.
type Installer struct {
	Slots *slot.Store
	Keys  bundle.Keyring // release keys
	// Threshold is how many distinct release keys must sign a bundle, and a
	// downgrade ticket; 0 means 1, what the configuration gives today.
	Threshold int
	Arch      string // "" means runtime.GOARCH
	Hardware  int    // hardware revision
	// Device and Site are this device's id and site: a downgrade ticket must
	// name one of them.
	Device, Site string
	MaxFetch     int64        // download cap; 0 means DefaultMaxFetch
	Client       *http.Client // nil means http.DefaultClient
	Logger       *slog.Logger

	// AfterStep is handed to slot.Install (tests inject power loss).
	AfterStep func(slot.Step)
}

// Result says what was installed.
type Result struct {
	Manifest bundle.Manifest
	Slot     slot.Name
	// Candidate is true when the slot must now prove itself: restart the
	// service to try it. False on a first install, active at once.
	Candidate bool
}

// Options are what one installation adds to the Installer's view.
type Options struct {
	// Ticket is a signed downgrade ticket (bundle.TicketPayloadType): an
	// older version than the installed one is refused unless it names this
	// device and the bundle's exact version, is unexpired, and is signed by
	// Threshold release keys.
	Ticket []byte
}

func (in *Installer) policy(o Options) (bundle.Policy, error) {
	st, err := in.Slots.Load()
	if err != nil && !errors.Is(err, slot.ErrNoState) {
		return bundle.Policy{}, err
	}
	arch := in.Arch
	if arch == "" {
		arch = runtime.GOARCH
	}
	return bundle.Policy{
		Keys: in.Keys, Threshold: in.Threshold, Arch: arch, Hardware: in.Hardware,
		Installed: st.Installed(), Device: in.Device, Site: in.Site, Ticket: o.Ticket,
	}, nil
}

// InstallFile is Install without a ticket, for callers that have not moved
// to Install: allowDowngrade alone permits nothing, since a downgrade needs
// a ticket.
//
// Deprecated: use Install.
func (in *Installer) InstallFile(path string, allowDowngrade bool) (Result, error) {
	return in.Install(path, Options{})
}

// Install verifies the bundle at path completely, then installs it. A
// bundle that fails verification changes nothing on the device.
func (in *Installer) Install(path string, o Options) (Result, error) {
	pol, err := in.policy(o)
	if err != nil {
		return Result{}, err
	}
	f, err := os.Open(path)
	if err != nil {
		return Result{}, fmt.Errorf("update: %w", err)
	}
	defer f.Close()
	m, err := bundle.Verify(f, pol)
	if err != nil {
		return Result{}, fmt.Errorf("update: %s: %w", filepath.Base(path), err)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return Result{}, fmt.Errorf("update: %w", err)
	}
	// Read again and hash again while writing: the file may have changed.
	r, err := bundle.NewReader(f, pol)
	if err != nil {
		return Result{}, fmt.Errorf("update: %s: %w", filepath.Base(path), err)
	}
	if r.Manifest().Version != m.Version {
		return Result{}, fmt.Errorf("update: %s changed during install", path)
	}
	got, err := in.Slots.Install(r, slot.InstallOptions{AfterStep: in.AfterStep})
	if err != nil {
		return Result{}, fmt.Errorf("update: %w", err)
	}
	in.log().Info("bundle installed", "version", m.Version, "slot", got.Slot, "candidate", got.Candidate, "downgrade_ticket", o.Ticket != nil)
	return Result{Manifest: m, Slot: got.Slot, Candidate: got.Candidate}, nil
}

// FetchArgs are the typed arguments of the signed update.fetch command.
type FetchArgs struct {
	URL            string `json:"url"`
	SHA256         string `json:"sha256"`
	Size           int64  `json:"size,omitempty"` // expected size, optional; tightens the cap
	AllowDowngrade bool   `json:"allow_downgrade,omitempty"`
	// Ticket is the signed downgrade ticket (its envelope, inline), the only
	// thing that lets an older version in; allow_downgrade without it
	// permits nothing.
	Ticket json.RawMessage `json:"ticket,omitempty"`
}

// Fetch downloads the bundle the command names (resuming a partial download
// from an earlier attempt), checks its sha256, and installs it like
// InstallFile. The download is kept under the slot root until it installs.
func (in *Installer) Fetch(ctx context.Context, a FetchArgs) (Result, error) {
	limit := in.MaxFetch
	if limit <= 0 {
		limit = DefaultMaxFetch
	}
	if a.Size > 0 && a.Size < limit {
		limit = a.Size
	}
	dir := filepath.Join(in.Slots.Root(), "download")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return Result{}, fmt.Errorf("update: %w", err)
	}
	if len(a.SHA256) != 64 {
		return Result{}, fmt.Errorf("update: %w: sha256 %q", fetch.ErrRequest, a.SHA256)
	}
	dest := filepath.Join(dir, a.SHA256+".lgb")
	if _, err := os.Stat(dest); err != nil {
		err := fetch.Download(ctx, in.Client, fetch.Request{URL: a.URL, SHA256: a.SHA256, MaxSize: limit, Dest: dest}, in.log())
		if err != nil {
			return Result{}, fmt.Errorf("update: %w", err)
		}
	}
	res, err := in.Install(dest, Options{Ticket: a.Ticket})
	if err == nil || errors.Is(err, bundle.ErrSignature) || errors.Is(err, bundle.ErrFormat) {
		os.Remove(dest) // installed, or never will be
	}
	return res, err
}

func (in *Installer) log() *slog.Logger {
	if in.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return in.Logger
}
