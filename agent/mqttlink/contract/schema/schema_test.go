package schema_test

import (
	"bufio"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
)

func TestSchemasCompileAndJudge(t *testing.T) {
	tests := []struct {
		schema, msg string
		ok          bool
	}{
		{contract.SchemaState, `{"online":false,"device":"d1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, true},
		{contract.SchemaState, `{"online":true,"device":"d1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, false},
		{contract.SchemaState, `{"online":false,"device":"d/1","boot_id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z"}`, false},
		{contract.SchemaResult, `{"cmd_id":"c","ok":false,"device":"d1","ts":"2026-11-30T12:00:00Z"}`, false},
		{contract.SchemaResult, `{"cmd_id":"c","ok":false,"error":"x","reason":"replay","device":"d1","ts":"2026-11-30T12:00:00Z"}`, true},
		{contract.SchemaCommand, `{"id":"c","target":"site:tachileik","issued":"2026-11-30T12:00:00Z","expires":"2026-11-30T12:05:00Z","type":"ping"}`, true},
		{contract.SchemaCommand, `{"id":"c","target":"site:tachileik","issued":"yesterday","expires":"2026-11-30T12:05:00Z","type":"ping"}`, false},
		// Sections are closed: only the contract's names, only their fields.
		{contract.SchemaTelemetry, telemetry(`"links":` + links), true},
		{contract.SchemaTelemetry, telemetry(`"feeds":` + feeds), true},
		{contract.SchemaTelemetry, telemetry(`"linkfilter":` + links), false},
		{contract.SchemaTelemetry, telemetry(`"links":` + strings.Replace(links, `"denied":1`, `"denied":1,"blocked":1`, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"links":` + strings.Replace(links, `"denied":1,`, ``, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"feeds":` + strings.Replace(feeds, `"cap_kw":null`, `"cap_kw":null,"cap_w":null`, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"feeds":` + strings.Replace(feeds, `"mode":"auto"`, `"mode":"manual"`, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"remotes":` + remotes), true},
		{contract.SchemaTelemetry, telemetry(`"remotes":` + strings.Replace(remotes, `"verdict":"denied"`, `"verdict":"blocked"`, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"remotes":` + strings.Replace(remotes, `"flows":2,`, `"flows":2,"site":"s",`, 1)), false},
		{contract.SchemaTelemetry, telemetry(`"remotes":` + strings.Replace(remotes, `"prefix":"203.0.113.0/24",`, ``, 1)), false},
		// link.denied carries the filter's words and no others.
		{contract.SchemaEvent, event(`"site":"s","mode":"inline","action":"dropped","verdict":"denied","reason":"no-approval","technique":"tunnel","at":"2026-11-30T12:00:00Z","src":"10.0.0.1","dst":"192.0.2.1","proto":"udp","sport":1,"dport":4789,"layer":1,"via":"vxlan"`), true},
		{contract.SchemaEvent, event(`"site":"s","mode":"inline","action":"dropped","verdict":"denied","reason":"malformed","problem":"truncated","ethertype":"0x88cc","link_protocol":"lldp","at":"2026-11-30T12:00:00Z"`), true},
		{contract.SchemaEvent, event(`"site":"s","summary":true,"interval_s":10,"packets":3,"bytes":300,"flows":1,"events_suppressed":0`), true},
		{contract.SchemaEvent, event(`"site":"s","summary":true,"interval_s":10`), false},
		{contract.SchemaEvent, event(`"site":"s","mode":"inline","action":"dropped","verdict":"denied","reason":"r","at":"2026-11-30T12:00:00Z","source":"10.0.0.1"`), false},
	}
	for i, tt := range tests {
		err := schema.Validate(tt.schema, []byte(tt.msg))
		if (err == nil) != tt.ok {
			t.Errorf("%d %s: err = %v, want ok=%v", i, tt.schema, err, tt.ok)
		}
	}
	if contract.SchemaFor("linkguard/v1/d1/cmd/result") != contract.SchemaResult || contract.SchemaFor("linkguard/v1/all/cmd") != contract.SchemaEnvelope {
		t.Fatal("SchemaFor")
	}
	if err := schema.Validate("nope", []byte("{}")); err == nil || !strings.Contains(err.Error(), "no schema") {
		t.Fatal(err)
	}
}

const (
	links = `{"mode":"inline","policy_serial":1,"passed":2,"passed_bytes":3,"denied":1,"denied_bytes":4,"denied_flows":1,` +
		`"domestic":0,"link_control":0,"other":0,"malformed":0,"truncated":0,"super_frames":0,"fragments_unknown":0,` +
		`"tunnelled":0,"fragments":0,"fragment_overlaps":0,"spoofed":0,"tcp_no_syn":0,"link_control_limited":0,` +
		`"techniques":{"tunnel":1},"new_flows":1,"flows":1,"flow_cap":1024,"flows_evicted":0,"flows_expired":0,"events":1,` +
		`"events_suppressed":0,"evidence_frames":0,"resets":0,"policy_swaps":1,` +
		`"approvals":[{"id":"LA-1","packets":2,"bytes":3}],"ports":[{"name":"eth0","received":3,"ring_dropped":0}],` +
		`"write_errors":0,"offload_mismatches":0,"checksums_completed":0}`
	remotes = `{"interval_s":5,"top":[{"prefix":"203.0.113.0/24","proto":"tcp","dport":22,"verdict":"denied","flows":2,"packets":4,"bytes":240},` +
		`{"prefix":"2001:db8:1::/48","proto":"icmpv6","verdict":"approved","approval":"LA-1","flows":1,"packets":1,"bytes":64}],` +
		`"other":{"flows":0,"packets":0,"bytes":0}}`
	feeds = `[{"feed":"f1","time":"2026-11-30T12:00:00Z","power_kw":21.5,"cap_kw":null,` +
		`"circuits":[{"id":"c1","on":true,"mode":"auto","ops_last_hour":0}]}]`
)

func telemetry(sections string) string {
	return `{"device":"d1","boot_id":"0123456789abcdef0123456789abcdef","seq":1,"ts":"2026-11-30T12:00:00Z",` +
		`"agent":{"rss_bytes":1,"goroutines":1,"uptime_s":1,"queue":{"depth":0,"bytes":0,"dropped":{"telemetry":0,"events":0}}},` +
		`"sections":{` + sections + `}}`
}

func event(fields string) string {
	return `{"id":"0123456789abcdef0123456789abcdef","ts":"2026-11-30T12:00:00Z","seq":1,"device":"d1",` +
		`"boot_id":"0123456789abcdef0123456789abcdef","severity":"warning","type":"link.denied","prev":"` + contract.Genesis + `",` +
		`"fields":{` + fields + `}}`
}

// TestPublishedMessages validates messages real devices published (the
// contract's testdata): one of
// each kind (state, telemetry with each section, every event type seen,
// results), recorded from agent.Run on the testbench by
// `go test ./testbench/bench -run TestConsoleShowsWhatDevicesPublish -record`.
// A schema made stricter than what devices send fails here.
func TestPublishedMessages(t *testing.T) {
	f, err := os.Open("../testdata/published.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	n := 0
	for sc.Scan() {
		var r contract.WatchRecord
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %d: %v", n+1, err)
		}
		n++
		if err := schema.ValidateTopic(r.Topic, r.Payload); err != nil {
			t.Errorf("%s: %v\n%s", r.Topic, err, contract.Pretty(r.Payload))
		}
	}
	if err := sc.Err(); err != nil || n < 5 {
		t.Fatalf("%d messages read: %v", n, err)
	}
}
