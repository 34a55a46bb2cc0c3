package mqttlink_test

import (
	"log/slog"
	"sync"
)

type slogLevelVar struct {
	once sync.Once
	lv   *slog.LevelVar
}

func (s *slogLevelVar) v() *slog.LevelVar {
	s.once.Do(func() { s.lv = new(slog.LevelVar) })
	return s.lv
}
