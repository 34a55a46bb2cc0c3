package report

import (
	"os"
	"strconv"
	"strings"
)

// RSS is the process's resident set size in bytes, for health telemetry
// and memory benchmarks; 0 where /proc is not there.
func RSS() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}
