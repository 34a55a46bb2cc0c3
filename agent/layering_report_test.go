package agent_test

import (
	"strings"
	"testing"
)

// TestReportingContractsStayMQTTFree keeps the packages components import to
// report and take commands (report, command, queue) free of MQTT, so the
// packet filter, feeds and firmware helpers never pull paho in through them.
func TestReportingContractsStayMQTTFree(t *testing.T) {
	light := map[string]bool{mod + "agent/report": true, mod + "agent/command": true, mod + "agent/queue": true}
	found := 0
	for _, p := range listPackages(t) {
		if !light[p.ImportPath] {
			continue
		}
		found++
		for _, d := range p.Deps {
			if strings.HasPrefix(d, "github.com/eclipse/paho") || strings.HasPrefix(d, "github.com/mochi-mqtt") ||
				strings.HasPrefix(d, mod+"agent/mqttlink") || strings.HasPrefix(d, mod+"testbench") {
				t.Errorf("%s imports %s", p.ImportPath, d)
			}
		}
	}
	if found != len(light) {
		t.Fatalf("found %d of %d packages", found, len(light))
	}
}
