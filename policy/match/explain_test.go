package match_test

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

const explainPolicy = `serial: 4
issued: 2026-12-01T00:00:00Z
expires: 2027-01-01T00:00:00Z
domestic: [103.1.0.0/16]
approvals:
  - {id: LA-1, holder: Example Telecom, remote: [203.0.113.0/24], services: [tcp/443], sites: [north], valid_until: 2026-12-05T00:00:00Z}
  - {id: LA-2, holder: Other Net, remote: [203.0.0.0/16], services: [udp/53]}
`

// Explain says why a flow is cut and what each approval naming its remote
// end lacks.
func ExampleExplain() {
	p, err := policy.Parse([]byte(explainPolicy))
	if err != nil {
		panic(err)
	}
	q := match.Query{Site: "north", Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr("203.0.113.9"),
		Proto: policy.ProtoTCP, DPort: 443, Now: time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)}
	fmt.Print(match.Explain(match.Compile(p), &q))
	// Output:
	// flow:     tcp 103.1.2.3 -> 203.0.113.9 port 443 at site "north", 2026-12-10T00:00:00Z
	// policy:   serial 4, default deny
	// verdict:  DENIED
	// reason:   the approval covering the remote address has lapsed
	// remote:   203.0.113.9
	//   LA-1 (Example Telecom) lists 203.0.113.0/24: site ok, service ok, window NO
	//       valid:    from always until 2026-12-05T00:00:00Z (lapsed 5 days ago)
	//   LA-2 (Other Net) lists 203.0.0.0/16: site ok, service NO, window ok
	//       services: udp/53
}

// TestExplainJSON: the typed result the console serves carries what String
// prints.
func TestExplainJSON(t *testing.T) {
	p, err := policy.Parse([]byte(explainPolicy))
	if err != nil {
		t.Fatal(err)
	}
	q := match.Query{Site: "north", Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr("203.0.113.9"),
		Proto: policy.ProtoTCP, DPort: 443, Now: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	e := match.Explain(match.Compile(p), &q)
	if e.Verdict != "approved" || e.Approval == nil || e.Approval.ID != "LA-1" || !e.Approval.Covers() {
		t.Fatalf("approved flow explained as %+v", e)
	}
	if !strings.Contains(e.String(), "approval: LA-1 (Example Telecom)") {
		t.Errorf("String lacks the approval:\n%s", e)
	}
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	json.Unmarshal(b, &back)
	if back["verdict"] != "approved" || back["remote"] != "203.0.113.9" || len(back["candidates"].([]any)) != 2 {
		t.Errorf("JSON: %s", b)
	}
	q.Dst = netip.MustParseAddr("103.1.9.9")
	if e := match.Explain(match.Compile(p), &q); e.Verdict != "domestic" || len(e.Candidates) != 0 || strings.Contains(e.String(), "remote:") {
		t.Errorf("domestic flow: %+v\n%s", e, e)
	}
}
