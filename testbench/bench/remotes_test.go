package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"linkguard.dev/linkguard/agent/console"
	"linkguard.dev/linkguard/agent/mqttlink/contract"
	"linkguard.dev/linkguard/agent/mqttlink/contract/schema"
	"linkguard.dev/linkguard/testbench/sim"
)

// TestConsoleReadsTheRemotesRoutersSend runs a router (agent.Run on the
// testbench's wires) and the console: the router's telemetry carries the
// remotes section, valid under the contract, with every demo flow under
// the verdict the policy gives it; and the console's inventory, read from
// its store, is built from those messages. The console reads no remotes a
// real router does not send.
func TestConsoleReadsTheRemotesRoutersSend(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var mu sync.Mutex
	var sections []contract.Remotes
	observe := func(topic string, payload []byte, _ bool) {
		if contract.SchemaFor(topic) != contract.SchemaTelemetry {
			return
		}
		if err := schema.ValidateTopic(topic, payload); err != nil {
			t.Errorf("%s breaks the contract: %v", topic, err)
			return
		}
		var tel contract.Telemetry
		json.Unmarshal(payload, &tel)
		if r, err := tel.Remotes(); err != nil || r == nil {
			t.Errorf("router telemetry without a remotes section (%v)", err)
		} else {
			mu.Lock()
			sections = append(sections, *r)
			mu.Unlock()
		}
	}
	b, err := Start(ctx, Options{Dir: t.TempDir(), TelemetryEvery: 500 * time.Millisecond, Observe: observe,
		Routers: []Site{{ID: "router-a", Site: "vientiane-north"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WaitUp(ctx, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gen, stopGen := context.WithCancel(ctx)
	defer stopGen()
	go b.Routers["router-a"].Generate(gen, 1, 200*time.Millisecond)

	// What the router said, summed: every international demo flow, under
	// its verdict, with its approval.
	want := map[string]string{}
	for _, f := range sim.DemoFlows {
		if f.Approval == "" && f.Expect == "pass" {
			continue // domestic: not in the section
		}
		verdict := map[string]string{"pass": "approved", "deny": "denied"}[f.Expect]
		want[remoteKey(f.Dst, f.Proto, f.DPort, verdict)] = f.Approval
	}
	err = b.Poll(ctx, 30*time.Second, func() error {
		mu.Lock()
		defer mu.Unlock()
		got := map[string]string{}
		for _, s := range sections {
			for _, e := range s.Top {
				got[fmt.Sprint(e.Prefix, " ", e.Proto, "/", e.DPort, " ", e.Verdict)] = e.Approval
			}
		}
		for k, a := range want {
			if g, ok := got[k]; !ok || g != a {
				return fmt.Errorf("the router's remotes lack %s (approval %q); they have %v", k, a, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The console's inventory is those messages, stored.
	err = b.Poll(ctx, 20*time.Second, func() error {
		inv, err := b.Console.Inventory(ctx, console.InventoryQuery{Site: "vientiane-north", Since: time.Now().Add(-time.Hour)})
		if err != nil {
			return err
		}
		var got []string
		for _, rows := range [][]console.InventoryRow{inv.Approved, inv.Denied, inv.Monitored} {
			for _, r := range rows {
				got = append(got, fmt.Sprint(r.Prefix, " ", r.Proto, "/", r.DPort, " ", r.Verdict))
			}
		}
		for k := range want {
			if !slices.Contains(got, k) {
				return fmt.Errorf("the inventory lacks %s; it has %v", k, got)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// remoteKey names a flow's remote as the section reports it.
func remoteKey(dst, proto string, dport uint16, verdict string) string {
	a := netip.MustParseAddr(dst)
	bits := 48
	if a.Is4() {
		bits = 24
	}
	p, _ := a.Prefix(bits)
	return fmt.Sprint(p, " ", proto, "/", dport, " ", verdict)
}
