package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"linkguard.dev/linkguard/hal/envtest"
)

// maxStripped is the most a stripped linkguard may weigh (issue 15): two
// slots and a bundle on a router's flash. BENCHMARKS.md ("Firmware
// bundles") has the figures per architecture.
const maxStripped = 12 << 20

// TestStrippedSize builds linkguard for mips as `make cross` does (big
// endian, softfloat, -trimpath -s -w, the -X version strings at their
// usual lengths) and fails above maxStripped. mips is the largest of the
// shipped architectures (mipsle weighs the same, arm and arm64 less). One
// cross build: seconds with a warm build cache, a minute and a half cold.
func TestStrippedSize(t *testing.T) {
	if !envtest.InCI() {
		t.Skip("skipping outside CI: a cross build for linux/mips (CI=true runs it)")
	}
	out := filepath.Join(t.TempDir(), "linkguard")
	const pkg = "linkguard.dev/linkguard/agent/version"
	ldflags := "-s -w -X " + pkg + ".Version=0.1.0-dev -X " + pkg + ".Commit=0123456 -X " + pkg + ".Date=2026-01-01T00:00:00Z"
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", out, ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mips", "GOMIPS=softfloat")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fi, err := os.Stat(out)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("stripped linux/mips linkguard: %d bytes (at most %d)", fi.Size(), maxStripped)
	if fi.Size() > maxStripped {
		t.Errorf("stripped linux/mips linkguard is %d bytes, over the %d (12 MiB) a router's flash holds twice: "+
			"`go tool nm -size -sort size` on an unstripped build shows what grew", fi.Size(), maxStripped)
	}
}

// TestDeviceLinksNoOperatorLibraries: what was cut from the device binary
// stays cut, whatever the size test's margin. Each of these is a library
// the device does not need (its tests and the operator's tools may).
func TestDeviceLinksNoOperatorLibraries(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", ".")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=mips", "GOMIPS=softfloat")
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	banned := map[string]string{
		"github.com/gopacket/gopacket":                      "its layers' init tables are 2 MB; capture files are hal/capture/pcapfile's",
		"github.com/santhosh-tekuri/jsonschema":             "0.8 MB; messages are judged by agent/mqttlink/contract/schema, in tests",
		"github.com/secure-systems-lab/go-securesystemslib": "it links golang.org/x/crypto/ssh; policy/dsse has the envelope",
		"golang.org/x/crypto/ssh":                           "130 KB nothing on the device uses",
		"golang.org/x/text/message":                         "the JSON Schema library's error catalogue",
	}
	for _, d := range strings.Fields(string(b)) {
		for prefix, why := range banned {
			if d == prefix || strings.HasPrefix(d, prefix+"/") {
				t.Errorf("linkguard links %s: %s", d, why)
			}
		}
	}
}
