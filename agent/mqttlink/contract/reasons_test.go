package contract_test

import (
	"encoding/json"
	"os"
	"slices"
	"testing"

	"linkguard.dev/linkguard/agent/command"
)

// TestResultReasonsAreTheVerifiers: the schema's reasons are exactly those
// a device's command verifier can give.
func TestResultReasonsAreTheVerifiers(t *testing.T) {
	var s struct {
		Properties struct {
			Reason struct {
				Enum []string `json:"enum"`
			} `json:"reason"`
		} `json:"properties"`
	}
	b, err := os.ReadFile("result.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, r := range command.Reasons() {
		want = append(want, string(r))
	}
	got := slices.Clone(s.Properties.Reason.Enum)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Fatalf("result.schema.json reasons %v, the verifier's %v", got, want)
	}
}
