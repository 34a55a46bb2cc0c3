package bench

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/roster"
)

// TestConsoleInChromium drives the console in real headless Chromium, two
// browser profiles for two committee members whose keys are made and kept
// in the browsers: the fleet loads; a viewer can see but not act; one
// member's revoke proposal is not enough (threshold 2), the second
// member's signature in the other browser publishes it and the routers cut
// the flow; a throttle signed in the browser brings the feed under its
// cap; an unsigned retained policy is shown unverified and a revoke on it
// refused; a killed agent goes offline. Screenshots go to
// $LINKGUARD_SCREENSHOTS when set, else a temporary dir.
func TestConsoleInChromium(t *testing.T) {
	chromium := envtest.Command(t, "chromium")
	shots := os.Getenv("LINKGUARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := Start(ctx, Options{Dir: t.TempDir(), TelemetryEvery: 500 * time.Millisecond, ConsoleAddr: "127.0.0.1:0", Threshold: 2,
		Routers: []Site{{ID: "router-a", Site: "vientiane-north"}, {ID: "router-b", Site: "luang-prabang"}},
		Feeds:   []Site{{ID: "relay-a", Site: "vientiane-north"}}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.WaitUp(ctx, 1, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	gen, stopGen := context.WithCancel(ctx)
	defer stopGen()
	for _, r := range b.Routers {
		go r.Generate(gen, 1, 200*time.Millisecond)
	}

	// Each member makes a key in their own browser and hands the public
	// key to the committee, which signs it into the roster.
	alice, bob := startBrowser(t, chromium), startBrowser(t, chromium)
	enrol := func(br *browser, name string) string {
		br.navigate(b.ConsoleURL)
		br.waitFor(ctx, name+": key form", `!!document.querySelector('#make-key')`, 15*time.Second)
		if err := br.eval(fmt.Sprintf(`document.querySelector('#enrol-name').value = %q, document.querySelector('#make-key').click(), true`, name), nil); err != nil {
			t.Fatal(err)
		}
		br.waitFor(ctx, name+": public key shown", `!!document.querySelector('#my-key')?.dataset.spki`, 15*time.Second)
		var spki string
		if err := br.eval(`document.querySelector('#my-key').dataset.spki`, &spki); err != nil {
			t.Fatal(err)
		}
		var extractable bool
		if err := br.eval(`(async () => { const db = await new Promise(r => { const q = indexedDB.open("linkguard-console", 1); q.onsuccess = () => r(q.result) });
			const k = await new Promise(r => { const g = db.transaction("keys").objectStore("keys").get("operator"); g.onsuccess = () => r(g.result) });
			return k.privateKey.extractable })()`, &extractable); err != nil || extractable {
			t.Fatalf("%s's private key extractable=%v (%v)", name, extractable, err)
		}
		return spki
	}
	login := func(br *browser, name string) {
		br.waitFor(ctx, name+": login button", `!!document.querySelector('#login-button')`, 10*time.Second)
		if err := br.eval(`document.querySelector('#login-button').click(), true`, nil); err != nil {
			t.Fatal(err)
		}
		br.waitFor(ctx, name+" logged in", fmt.Sprintf(`document.querySelector('#login-state').dataset.operator === %q`, name), 10*time.Second)
	}
	aliceKey, bobKey := enrol(alice, "alice"), enrol(bob, "bob")
	if err := b.Enrol(ctx, "alice", aliceKey, roster.Committee, roster.Grid); err != nil {
		t.Fatal(err)
	}
	if err := b.Enrol(ctx, "bob", bobKey, roster.Viewer); err != nil {
		t.Fatal(err)
	}
	login(alice, "alice")
	login(bob, "bob")
	row := func(dev string) string {
		return fmt.Sprintf(`document.querySelector('#fleet tr[data-device=%q]')`, dev)
	}

	// 1. Load: every device is listed online with policy serial 1.
	for _, dev := range []string{"router-a", "router-b", "relay-a"} {
		alice.waitFor(ctx, dev+" online", row(dev)+`?.dataset.online === "true" && `+row(dev)+`.dataset.serial === "1"`, 15*time.Second)
	}
	alice.waitFor(ctx, "denied counts shown", `Number(`+row("router-a")+`?.dataset.denied) > 0`, 10*time.Second)
	alice.waitFor(ctx, "feed chart", `document.querySelectorAll('.feed[data-device="relay-a"] canvas').length === 1`, 10*time.Second)
	alice.waitFor(ctx, "policy verified", `document.querySelector('#policy-status').dataset.verified === "true"`, 10*time.Second)
	// The site's traffic chart, drawn from the store's rollups, moves as
	// the routers' telemetry arrives.
	traffic := `document.querySelector('.traffic[data-site="vientiane-north"]')`
	alice.waitFor(ctx, "traffic chart of vientiane-north", traffic+`?.dataset.points > 0 && Number(`+traffic+`.dataset.deniedTotal) > 0`, 20*time.Second)
	var denied0 float64
	if err := alice.eval(`Number(`+traffic+`.dataset.deniedTotal)`, &denied0); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "traffic chart moves", fmt.Sprintf(`Number(%s.dataset.deniedTotal) > %v`, traffic, denied0), 20*time.Second)
	alice.screenshot(filepath.Join(shots, "1-fleet.png"))

	// 2. Bob, a viewer, sees the fleet but every action is off, and the
	// server refuses what the page would not offer.
	bob.waitFor(ctx, "viewer sees the fleet", row("router-a")+`?.dataset.online === "true"`, 15*time.Second)
	bob.waitFor(ctx, "viewer: revoke disabled", `document.querySelector('button[data-revoke="LA-2026-0017"]')?.disabled === true`, 5*time.Second)
	var code int
	forced := `(async () => { const s = await (await fetch("/api/session")).json();
		const r = await fetch("/api/proposals", {method: "POST", headers: {"Content-Type": "application/json", "X-CSRF-Token": s.csrf},
		body: JSON.stringify({action: "revoke", approval: "LA-2026-0017", reason: "forced from the page"})}); return r.status })()`
	if err := bob.eval(forced, &code); err != nil || code != http.StatusForbidden {
		t.Fatalf("a viewer's forced proposal: %d %v", code, err)
	}
	// Without the CSRF token the page's own session is refused too.
	if err := bob.eval(`(async () => (await fetch("/api/proposals", {method: "POST", headers: {"Content-Type": "application/json"},
		body: JSON.stringify({action: "revoke", approval: "LA-2026-0017", reason: "no token"})})).status)()`, &code); err != nil || code != http.StatusForbidden {
		t.Fatalf("a POST without the CSRF token: %d %v", code, err)
	}
	bob.screenshot(filepath.Join(shots, "2-viewer.png"))

	// 3. Alice proposes the revoke and signs it: one of two, nothing
	// published.
	var before float64
	if err := alice.eval(`Number(`+row("router-a")+`.dataset.denied)`, &before); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "revoke enabled", `document.querySelector('button[data-revoke="LA-2026-0017"]')?.disabled === false`, 5*time.Second)
	if err := alice.eval(`document.querySelector('button[data-revoke="LA-2026-0017"]').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "confirmation asked", `document.querySelector('#confirm').open`, 5*time.Second)
	if err := alice.eval(`document.querySelector('#confirm-reason').value = "scam call centre, case 2026-118", document.querySelector('#confirm-ok').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	pending := `document.querySelector('#pending li[data-action="revoke"][data-detail="LA-2026-0017"]')`
	alice.waitFor(ctx, "proposal with alice's signature", pending+`?.dataset.signatures === "1" && `+pending+`.dataset.state === "collecting"`, 10*time.Second)
	time.Sleep(2 * time.Second)
	for _, d := range b.Console.Devices() {
		if d.PolicySerial != 1 {
			t.Fatalf("%s enforces serial %d on one committee signature", d.ID, d.PolicySerial)
		}
	}
	alice.screenshot(filepath.Join(shots, "3-one-signature.png"))

	// 4. The committee makes Bob a member; he reviews and co-signs in his
	// own browser: published, the routers cut the flow.
	if err := b.Enrol(ctx, "bob-2", bobKey, roster.Committee); err == nil {
		t.Fatal("the bench enrolled one key twice")
	}
	b.promote("bob", roster.Committee)
	if err := b.republishRoster(ctx); err != nil {
		t.Fatal(err)
	}
	bob.waitFor(ctx, "bob's sign button", `!!document.querySelector('#pending button[data-sign]')`, 10*time.Second)
	if err := bob.eval(`document.querySelector('#pending button[data-sign]').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	bob.waitFor(ctx, "proposal published", pending+`?.dataset.state === "published"`, 10*time.Second)
	alice.waitFor(ctx, "router-a on serial 2", row("router-a")+`?.dataset.serial === "2"`, 15*time.Second)
	alice.waitFor(ctx, "approval shown revoked", `!!document.querySelector('#approvals tr.revoked[data-approval="LA-2026-0017"]')`, 5*time.Second)
	// Before the revocation 3 of 7 demo flows were denied per round; after
	// it 5 are, so the count must outgrow what the old rate gives.
	alice.waitFor(ctx, "denied count rises", fmt.Sprintf(`Number(%s.dataset.denied) > %v + 40`, row("router-a"), before), 20*time.Second)
	alice.screenshot(filepath.Join(shots, "4-revoked.png"))

	// 5. Alice (grid) sets a throttle from the feed panel: power falls
	// under the cap.
	feed := `document.querySelector('.feed[data-device="relay-a"]')`
	if err := alice.eval(feed+`.querySelector('.cap-input').value = "20", `+feed+`.querySelector('.throttle-set').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "confirmation asked", `document.querySelector('#confirm').open`, 5*time.Second)
	if err := alice.eval(`document.querySelector('#confirm-reason').value = "evening peak", document.querySelector('#confirm-ok').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "cap shown", `Number(`+feed+`.dataset.cap) === 20000`, 15*time.Second)
	alice.waitFor(ctx, "power under the cap", `Number(`+feed+`.dataset.power) <= 20000 && Number(`+feed+`.dataset.power) > 0`, 30*time.Second)
	alice.waitFor(ctx, "device result shown", `[...document.querySelectorAll('#actions li')].some(li => li.textContent.includes("throttle.set") && li.textContent.includes("relay-a: ok"))`, 10*time.Second)
	if got := b.Feeds["relay-a"].Power(); got > 20*physic.KiloWatt {
		t.Fatalf("true power %v over the 20 kW cap", got)
	}
	alice.screenshot(filepath.Join(shots, "5-throttled.png"))

	// 6. A device certificate publishes an unsigned retained policy with a
	// catch-all: shown unverified, revoke offered nowhere and refused.
	catchAll := fmt.Sprintf(`{"payloadType":"application/vnd.linkguard.policy+yaml","payload":%q,"signatures":[]}`,
		base64.StdEncoding.EncodeToString([]byte("serial: 99\nissued: 2026-12-01T00:00:00Z\nexpires: 2027-12-01T00:00:00Z\ndefault: deny\ndomestic: [103.1.0.0/16]\napprovals:\n  - {id: CATCH-ALL, holder: x, remote: [0.0.0.0/0, \"::/0\"]}\n")))
	if err := b.PublishPolicy([]byte(catchAll)); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "policy shown unverified", `document.querySelector('#policy-status').dataset.verified === "false"`, 10*time.Second)
	alice.waitFor(ctx, "revoke disabled", `[...document.querySelectorAll('button[data-revoke]')].every(b => b.disabled)`, 5*time.Second)
	forced = strings.Replace(forced, "LA-2026-0017", "LA-2026-0018", 1)
	if err := alice.eval(forced, &code); err != nil || code != http.StatusBadRequest {
		t.Fatalf("a revoke on the unverified policy: %d %v", code, err)
	}
	alice.screenshot(filepath.Join(shots, "6-unverified.png"))
	for _, d := range b.Console.Devices() {
		if d.PolicySerial > 2 {
			t.Fatalf("%s took the unsigned policy (serial %d)", d.ID, d.PolicySerial)
		}
	}

	// 7. Kill an agent: its row turns offline (the broker publishes its will).
	ra, _ := b.Agent("router-b")
	if err := ra.Kill(); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "router-b offline", row("router-b")+`?.dataset.online === "false" && `+row("router-b")+`.querySelector('.state').textContent === "offline"`, 15*time.Second)

	// 8. The event filter narrows the stream.
	if err := alice.eval(`(() => { const i = document.querySelector('#ev-type'); i.value = "relay"; i.dispatchEvent(new Event('input', {bubbles: true})); return true })()`, nil); err != nil {
		t.Fatal(err)
	}
	alice.waitFor(ctx, "filtered events", `(() => { const rows = [...document.querySelectorAll('#events tbody tr')]; return rows.length > 0 && rows.every(r => r.dataset.type.startsWith("relay")) })()`, 10*time.Second)
	alice.screenshot(filepath.Join(shots, "7-events-filtered.png"))

	// The audit names who did what.
	var audit string
	if err := alice.eval(`(async () => await (await fetch("/api/audit?format=csv")).text())()`, &audit); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"login,alice", "login,bob", "proposal,alice", "signature,alice", "signature,bob", "command,alice"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit export lacks %q", want)
		}
	}
	t.Logf("screenshots in %s", shots)
}
