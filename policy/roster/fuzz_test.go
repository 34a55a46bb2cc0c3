package roster_test

import (
	"errors"
	"testing"

	"linkguard.dev/linkguard/policy/roster"
)

// FuzzParse: whatever a roster payload holds, Parse either refuses it with
// ErrInvalid or returns a roster that keeps every promise of the type. The
// corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := roster.Parse(data)
		if err != nil {
			if !errors.Is(err, roster.ErrInvalid) || r != nil {
				t.Fatalf("refusal %v with roster %v", err, r)
			}
			return
		}
		if r.Serial == 0 || !r.Expires.After(r.Issued) || len(r.Operators) == 0 {
			t.Fatalf("accepted %+v", r)
		}
		if r.Thresholds.Protected < roster.MinProtected || r.Thresholds != r.Thresholds.AtLeast(roster.Thresholds{}) {
			t.Fatalf("thresholds %+v", r.Thresholds)
		}
		keys := map[string]bool{}
		for _, o := range r.Operators {
			if o.ID == "" || len(o.Roles) == 0 || len(o.Keys) == 0 || len(o.Keys) > roster.MaxKeys {
				t.Fatalf("operator %+v", o)
			}
			for _, k := range o.Keys {
				if keys[k.ID] || r.ByKey(k.ID).ID != o.ID {
					t.Fatalf("key %s listed twice", k.ID)
				}
				keys[k.ID] = true
			}
		}
	})
}
