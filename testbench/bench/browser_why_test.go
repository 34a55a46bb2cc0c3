package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/hal/envtest"
	"linkguard.dev/linkguard/policy/roster"
)

// TestWhyInChromium asks the console, in real headless Chromium at 1400 and
// at 420 px wide, why a link the routers cut is cut: the answer names the
// router that saw it, the verdict and the approval that lists the remote
// but not its service, with what to do; the border inventory lists a
// denied remote and exports it as CSV; the event search narrows to one
// address and folds the routers' summaries. Screenshots go to
// $LINKGUARD_SCREENSHOTS when set, else a temporary dir.
func TestWhyInChromium(t *testing.T) {
	chromium := envtest.Command(t, "chromium")
	shots := os.Getenv("LINKGUARD_SCREENSHOTS")
	if shots == "" {
		shots = t.TempDir()
	} else if err := os.MkdirAll(shots, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	b, err := Start(ctx, Options{Dir: t.TempDir(), TelemetryEvery: 500 * time.Millisecond, ConsoleAddr: "127.0.0.1:0",
		Routers: []Site{{ID: "router-a", Site: "vientiane-north"}, {ID: "router-b", Site: "luang-prabang"}}})
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
	br.waitFor(ctx, "key form", `!!document.querySelector('#make-key')`, 15*time.Second)
	if err := br.eval(`document.querySelector('#enrol-name').value = "vera", document.querySelector('#make-key').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "public key shown", `!!document.querySelector('#my-key')?.dataset.spki`, 15*time.Second)
	var spki string
	if err := br.eval(`document.querySelector('#my-key').dataset.spki`, &spki); err != nil {
		t.Fatal(err)
	}
	if err := b.Enrol(ctx, "vera", spki, roster.Viewer); err != nil { // a viewer may ask
		t.Fatal(err)
	}
	br.waitFor(ctx, "login button", `!!document.querySelector('#login-button')`, 10*time.Second)
	if err := br.eval(`document.querySelector('#login-button').click(), true`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "logged in", `document.querySelector('#login-state').dataset.operator === "vera"`, 10*time.Second)

	width := func(w int) {
		t.Helper()
		if err := br.call("Emulation.setDeviceMetricsOverride", map[string]any{"width": w, "height": 1000, "deviceScaleFactor": 1, "mobile": w < 600}, nil); err != nil {
			t.Fatal(err)
		}
	}
	ask := func(q string) {
		t.Helper()
		if err := br.eval(fmt.Sprintf(`document.querySelector('#why-q').value = %q, document.querySelector('#why-form').requestSubmit(), true`, q), nil); err != nil {
			t.Fatal(err)
		}
	}
	answer := `document.querySelector('#why-answer')`
	// Nothing of the why, inventory and event sections sticks out of the
	// window.
	fits := func(w int) {
		t.Helper()
		var over []string
		if err := br.eval(`["#why-section", "#inventory-section", "#events-section"].filter(s => { const e = document.querySelector(s);
			return e.getBoundingClientRect().right > window.innerWidth + 1 || e.scrollWidth > e.clientWidth + 1 })`, &over); err != nil {
			t.Fatal(err)
		}
		if len(over) > 0 {
			t.Errorf("at %d px %v stick out of the window", w, over)
		}
	}

	// 1400 px: the SSH flow to the approved partner is cut.
	width(1400)
	ask("103.1.20.5 203.0.113.10 tcp/22")
	br.waitFor(ctx, "why: router-a saw it, denied, LA-2026-0017", answer+`.dataset.devices?.split(" ").includes("router-a") && `+
		answer+`.dataset.verdicts?.split(" ").includes("denied") && `+answer+`.dataset.approvals?.split(" ").includes("LA-2026-0017")`, 30*time.Second)
	var advice string
	if err := br.eval(answer+`.querySelector('.why-verdict[data-site="vientiane-north"] .why-advice').textContent`, &advice); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(advice, "approval LA-2026-0017 (Example Telecom)") || !strings.Contains(advice, "does not allow tcp/22") {
		t.Errorf("advice %q does not say which approval lacks tcp/22", advice)
	}
	var text string
	if err := br.eval(answer+`.querySelector('.why-verdict[data-site="vientiane-north"] pre').textContent`, &text); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(text, "verdict:  DENIED") || !strings.Contains(text, "LA-2026-0017 (Example Telecom) lists 203.0.113.0/24: site ok, service NO, window ok") {
		t.Errorf("explain's text:\n%s", text)
	}
	fits(1400)
	br.screenshot(filepath.Join(shots, "why-1400-answer.png"))

	// The inventory of vientiane-north lists the unapproved VoIP remote
	// as denied, and exports it.
	if err := br.eval(`document.querySelector('#inv-site').value = "vientiane-north", document.querySelector('#inv-form').requestSubmit(), true`, nil); err != nil {
		t.Fatal(err)
	}
	denied := `document.querySelector('#inventory tr[data-verdict="denied"][data-prefix="192.0.2.0/24"][data-service="udp/5060"]')`
	br.waitFor(ctx, "inventory: 192.0.2.0/24 udp/5060 denied", `!!`+denied, 30*time.Second)
	br.waitFor(ctx, "inventory: approved traffic of LA-2026-0017", `!!document.querySelector('#inventory tr[data-verdict="approved"][data-prefix="203.0.113.0/24"]')`, 10*time.Second)
	var csv string
	if err := br.eval(`(async () => await (await fetch(document.querySelector('#inv-csv').href)).text())()`, &csv); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(csv, "vientiane-north,") || !strings.Contains(csv, ",denied,192.0.2.0/24,udp,5060,") {
		t.Errorf("inventory CSV:\n%s", csv)
	}
	fits(1400)
	br.screenshot(filepath.Join(shots, "why-1400-inventory.png"))

	// The event search: one address, every row about it; counts per type
	// and site; the routers' denied-traffic summaries folded.
	br.waitFor(ctx, "events counted per type and site", `!!document.querySelector('#ev-counts .count[data-type="link.denied"][data-site="vientiane-north"]')`, 15*time.Second)
	br.waitFor(ctx, "summaries folded", `!!document.querySelector('#events tr.folded')`, 30*time.Second)
	if err := br.eval(`(() => { const i = document.querySelector('#ev-q'); i.value = "192.0.2.200"; i.dispatchEvent(new Event('input', {bubbles: true})); return true })()`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "events of 192.0.2.200 only", `(() => { const rows = [...document.querySelectorAll('#events tbody tr')];
		return rows.length > 0 && rows.every(r => r.textContent.includes("192.0.2.200")) })()`, 15*time.Second)
	br.screenshot(filepath.Join(shots, "why-1400-events.png"))

	// 420 px: a remote no approval lists, and hostile input said as such.
	width(420)
	ask("192.0.2.200 site:vientiane-north")
	br.waitFor(ctx, "why at 420 px: no approval lists it", answer+`.dataset.devices?.split(" ").includes("router-a") && `+
		answer+`.textContent.includes("no approval covers remote 192.0.2.200")`, 30*time.Second)
	fits(420)
	br.screenshot(filepath.Join(shots, "why-420-answer.png"))
	ask("203.0.113.10/24")
	br.waitFor(ctx, "a prefix with host bits refused, saying why", answer+`.dataset.error?.includes("did you mean 203.0.113.0/24")`, 10*time.Second)
	if err := br.eval(`document.querySelector('#inventory-section').scrollIntoView(), true`, nil); err != nil {
		t.Fatal(err)
	}
	br.waitFor(ctx, "inventory at 420 px", `!!`+denied, 10*time.Second)
	fits(420)
	br.screenshot(filepath.Join(shots, "why-420-inventory.png"))
	t.Logf("screenshots in %s", shots)
}
