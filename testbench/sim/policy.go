package sim

import (
	"fmt"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
)

// Approval ids of the demo policy.
const (
	ApprovalTelecom = "LA-2026-0017"
	ApprovalTransit = "LA-2026-0018"
)

// PolicyYAML renders the demo policy, issued at now and valid for a month.
// It covers every site (the telecom approval only sites, when given).
func PolicyYAML(serial uint64, now time.Time, sites ...string) []byte {
	scope := ""
	if len(sites) > 0 {
		scope = "\n    sites: ["
		for i, s := range sites {
			if i > 0 {
				scope += ", "
			}
			scope += s
		}
		scope += "]"
	}
	return fmt.Appendf(nil, `serial: %d
issued: %s
expires: %s
default: deny
domestic: [103.1.0.0/16, 2001:db8:100::/40]
approvals:
  - id: %s
    holder: Example Telecom%s
    remote: [203.0.113.0/24, 2001:db8:feed::/48]
    services: [tcp/443, udp/5060-5061, icmp]
  - id: %s
    holder: Mekong Transit
    remote: [198.51.100.0/24]
`, serial, now.UTC().Add(-time.Minute).Format(time.RFC3339), now.AddDate(0, 1, 0).UTC().Format(time.RFC3339),
		ApprovalTelecom, scope, ApprovalTransit)
}

// SignPolicy signs a policy document with the committee key.
func (k *Keys) SignPolicy(doc []byte) ([]byte, error) {
	env, err := dsse.Sign(policy.PayloadType, doc, k.AllAnchors()...)
	if err != nil {
		return nil, fmt.Errorf("sim: sign policy: %w", err)
	}
	return env, nil
}
