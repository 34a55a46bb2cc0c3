package agent

import (
	"io"
	"log/slog"

	"linkguard.dev/linkguard/agent/config"
)

// NewLogger builds the agent's logger from its configuration, with a
// LevelVar so that the log.level command can change it at run time.
func NewLogger(c config.Log, w io.Writer) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	var l slog.Level
	if err := l.UnmarshalText([]byte(c.Level)); err == nil {
		lv.Set(l)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if c.Format == "text" {
		return slog.New(slog.NewTextHandler(w, opts)), lv
	}
	return slog.New(slog.NewJSONHandler(w, opts)), lv
}
