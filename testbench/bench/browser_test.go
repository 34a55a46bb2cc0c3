package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"periph.io/x/conn/v3/physic"

	"linkguard.dev/linkguard/hal/envtest"
)

// TestConsoleInChromium drives the console in real headless Chromium: the
// fleet loads, a killed agent goes offline, revoking an approval makes the
// denied count rise, a throttle brings the feed's power under the cap.
// Screenshots go to $LINKGUARD_SCREENSHOTS when set, else a temporary dir.
func TestConsoleInChromium(t *testing.T) {
	chromium := envtest.Command(t, "chromium")
	shots := os.Getenv("LINKGUARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Start(ctx, Options{Dir: t.TempDir(), TelemetryEvery: 500 * time.Millisecond, ConsoleAddr: "127.0.0.1:0",
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

	br := startBrowser(t, chromium)
	br.navigate(b.ConsoleURL)
	row := func(dev string) string {
		return fmt.Sprintf(`document.querySelector('#fleet tr[data-device=%q]')`, dev)
	}

	// 1. Load: every device is listed online with policy serial 1.
	for _, dev := range []string{"router-a", "router-b", "relay-a"} {
		br.waitFor(ctx, dev+" online", row(dev)+`?.dataset.online === "true" && `+row(dev)+`.dataset.serial === "1"`, 15*time.Second)
	}
	br.waitFor(ctx, "denied counts shown", `Number(`+row("router-a")+`?.dataset.denied) > 0`, 10*time.Second)
	br.waitFor(ctx, "feed chart", `document.querySelectorAll('.feed[data-device="relay-a"] canvas').length === 1`, 10*time.Second)
	br.screenshot(filepath.Join(shots, "1-fleet.png"))

	// 2. Kill an agent: its row turns offline (the broker publishes its will).
	ra, _ := b.Agent("router-b")
	if err := ra.Kill(); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "router-b offline", row("router-b")+`?.dataset.online === "false" && `+row("router-b")+`.querySelector('.state').textContent === "offline"`, 15*time.Second)
	br.screenshot(filepath.Join(shots, "2-agent-killed.png"))

	// 3. Revoke an approval by clicking its button: serial 2 reaches the
	// router and its denied count rises faster than before.
	var before float64
	time.Sleep(time.Second)
	if err := br.eval(`Number(`+row("router-a")+`.dataset.denied)`, &before); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "revoke button", `!!document.querySelector('button[data-revoke="LA-2026-0017"]')`, 5*time.Second)
	if err := br.eval(`document.querySelector('button[data-revoke="LA-2026-0017"]').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "router-a on serial 2", row("router-a")+`?.dataset.serial === "2"`, 15*time.Second)
	br.waitFor(ctx, "approval shown revoked", `!!document.querySelector('#approvals tr.revoked[data-approval="LA-2026-0017"]')`, 5*time.Second)
	// Before the revocation 3 of 7 demo flows were denied per round; after
	// it 5 are, so the count must outgrow what the old rate gives.
	br.waitFor(ctx, "denied count rises", fmt.Sprintf(`Number(%s.dataset.denied) > %v + 40`, row("router-a"), before), 20*time.Second)
	br.screenshot(filepath.Join(shots, "3-revoked.png"))

	// 4. Set a throttle from the feed panel: power falls under the cap.
	feed := `document.querySelector('.feed[data-device="relay-a"]')`
	if err := br.eval(feed+`.querySelector('.cap-input').value = "20", `+feed+`.querySelector('.throttle-set').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "cap shown", `Number(`+feed+`.dataset.cap) === 20000`, 15*time.Second)
	br.waitFor(ctx, "power under the cap", `Number(`+feed+`.dataset.power) <= 20000 && Number(`+feed+`.dataset.power) > 0`, 30*time.Second)
	br.waitFor(ctx, "device result shown", `[...document.querySelectorAll('#actions li')].some(li => li.textContent.includes("throttle.set") && li.textContent.includes("relay-a: ok"))`, 10*time.Second)
	if got := b.Feeds["relay-a"].Power(); got > 20*physic.KiloWatt {
		t.Fatalf("true power %v over the 20 kW cap", got)
	}
	time.Sleep(2 * time.Second) // a few more chart points under the cap
	br.screenshot(filepath.Join(shots, "4-throttled.png"))

	// 5. The event filter narrows the stream.
	if err := br.eval(`(() => { const i = document.querySelector('#ev-type'); i.value = "relay"; i.dispatchEvent(new Event('input', {bubbles: true})); return true })()`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "filtered events", `(() => { const rows = [...document.querySelectorAll('#events tbody tr')]; return rows.length > 0 && rows.every(r => r.dataset.type.startsWith("relay")) })()`, 10*time.Second)
	br.screenshot(filepath.Join(shots, "5-events-filtered.png"))
	t.Logf("screenshots in %s", shots)
}
