package match_test

import (
	"fmt"
	"net/netip"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/match"
)

// Compile a policy once, then judge flows against it.
func Example() {
	p, err := policy.Parse([]byte(`serial: 1
issued: 2026-12-01T00:00:00Z
expires: 2027-01-01T00:00:00Z
domestic: [103.1.0.0/16]
approvals:
  - {id: LA-1, holder: Example Telecom, remote: [203.0.113.0/24], services: [tcp/443]}
`))
	if err != nil {
		panic(err)
	}
	m := match.Compile(p)
	for _, dst := range []string{"203.0.113.9", "198.51.100.1", "103.1.9.9"} {
		q := match.Query{Site: "vientiane-north", Src: netip.MustParseAddr("103.1.2.3"), Dst: netip.MustParseAddr(dst),
			Proto: policy.ProtoTCP, DPort: 443, Now: time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)}
		d := m.Decide(&q)
		fmt.Printf("%s: %s (%s)\n", dst, d.Verdict, d.Reason)
	}
	// Output:
	// 203.0.113.9: approved (covered by an approval)
	// 198.51.100.1: denied (no approval covers the remote address)
	// 103.1.9.9: domestic (both ends are domestic)
}
