package config

import (
	"os"
	"testing"
)

// FuzzParse: no document makes Parse panic, and what it accepts prints as
// an effective configuration that parses back to itself.
func FuzzParse(f *testing.F) {
	for _, p := range []string{"testdata/router.yaml", "testdata/relay.yaml", "../../scripts/linkguard.yaml"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("device: {id: r, site: s, kind: relay}\npolicy: {file: p, trust: [k]}\nfeeds: [{hysteresis: 2kW}]\n"))
	f.Add([]byte("a: &x {b: *x}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			return
		}
		again, err := Parse("effective", c.YAML())
		if err != nil {
			t.Fatalf("effective configuration does not parse: %v\n%s", err, c.YAML())
		}
		if string(again.YAML()) != string(c.YAML()) {
			t.Fatalf("effective configuration is not stable:\n%s\n---\n%s", c.YAML(), again.YAML())
		}
	})
}
