package embedded

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

// TestQuietDisconnects: mochi's message-less warning (a client connection
// ending) drops to debug; other warnings pass.
func TestQuietDisconnects(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(quietDisconnects{slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo})}).With("part", "broker")
	log.Warn("", "listener", "tcp", "error", "read connection: EOF")
	log.Warn("error processing packet", "error", "malformed")
	if out := buf.String(); strings.Contains(out, "EOF") || !strings.Contains(out, "error processing packet") || !strings.Contains(out, "part=broker") {
		t.Errorf("log: %q", out)
	}
}
