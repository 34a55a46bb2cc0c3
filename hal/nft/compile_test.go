package nft_test

import (
	"testing"

	"linkguard.dev/linkguard/hal/nft"
)

// BenchmarkCompile100k: compiling a national-size ruleset (no kernel).
func BenchmarkCompile100k(b *testing.B) {
	rs := synthetic(100_000, 1)
	b.ReportAllocs()
	for range b.N {
		if _, _, _, err := nft.Compiled(rs, nft.Options{Inside: "a", Outside: "b"}); err != nil {
			b.Fatal(err)
		}
	}
}
