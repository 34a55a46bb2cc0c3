package nft_test

import (
	"context"
	"log"
	"net/netip"
	"time"

	"linkguard.dev/linkguard/hal/nft"
)

// An agent's use: open, install the first ruleset, bridge the ports, keep
// the ruleset asserted; later rulesets replace it with Apply.
func ExampleEnforcer() {
	e, err := nft.Open(nft.Options{Inside: "eth0", Outside: "eth1", StrictIngress: true})
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close() // the ruleset stays in force
	rs := &nft.Ruleset{
		Serial:   7,
		Domestic: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Approvals: []nft.Approval{{
			ID:       "LA-1",
			Remote:   []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
			Services: []nft.Service{{Proto: nft.ProtoTCP, PortLo: 443, PortHi: 443}},
			Until:    time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
		}},
	}
	if err := e.Apply(rs); err != nil {
		log.Fatal(err) // nothing changed in the kernel
	}
	if err := e.Attach(); err != nil {
		log.Fatal(err)
	}
	go e.Run(context.Background(), time.Second, func(r nft.Reassertion) {
		log.Printf("ruleset changed by someone else (%v); installed again in %v", r.Differences, r.Took)
	})
}
