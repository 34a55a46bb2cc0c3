package store_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	"linkguard.dev/linkguard/policy"
	"linkguard.dev/linkguard/policy/dsse"
	"linkguard.dev/linkguard/policy/policytest"
	"linkguard.dev/linkguard/policy/store"
)

func TestStore(t *testing.T) {
	a, b := policytest.Key(t), policytest.Key(t)
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	state := t.TempDir()
	mk := func(serial uint64) []byte {
		p := policytest.Synthetic(5, 1)
		p.Serial = serial
		return policytest.YAML(p) // issued 2026-12-01, expires 2027-12-01
	}
	st, err := store.New(store.Options{Trust: policytest.Keyring(a, b), Threshold: 2, StateDir: state, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	var swaps []uint64
	st.Subscribe(func(c *store.Current) { swaps = append(swaps, c.Serial()) })
	if _, err := st.Restore(); err == nil {
		t.Fatal("Restore with an empty state dir succeeded")
	}
	if _, err := st.Apply(policytest.Sign(t, mk(5), a), "test"); err == nil {
		t.Fatal("one signature accepted with threshold 2")
	}
	if st.Current() != nil {
		t.Fatal("a refused policy was installed")
	}
	env := policytest.Sign(t, mk(5), a, b)
	if _, err := st.Apply(env, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(env, "test"); !errors.Is(err, store.ErrUnchanged) {
		t.Fatalf("same envelope again: %v, want ErrUnchanged", err)
	}
	if _, err := st.Apply(policytest.Sign(t, mk(5), b, a), "test"); !errors.Is(err, store.ErrUnchanged) {
		t.Fatalf("re-signed copy of the same policy: %v, want ErrUnchanged", err)
	}
	other := policytest.Synthetic(6, 2)
	other.Serial = 5
	if _, err := st.Apply(policytest.Sign(t, policytest.YAML(other), a, b), "test"); !errors.Is(err, store.ErrReplay) {
		t.Fatalf("different policy with the same serial: %v, want ErrReplay", err)
	}
	future := policytest.Synthetic(5, 1)
	future.Serial, future.Issued = 6, now.Add(time.Hour)
	if _, err := st.Apply(policytest.Sign(t, policytest.YAML(future), a, b), "test"); !errors.Is(err, store.ErrIssued) {
		t.Fatalf("policy issued an hour ahead: %v, want ErrIssued", err)
	}
	if len(swaps) != 1 || swaps[0] != 5 {
		t.Fatalf("subscriber saw %v, want [5]", swaps)
	}

	// After expiry a restart still enforces the last good policy.
	now = time.Date(2028, 1, 1, 0, 0, 0, 0, time.UTC)
	st2, _ := store.New(store.Options{Trust: policytest.Keyring(a, b), Threshold: 2, StateDir: state, Now: clock})
	c, err := st2.Restore()
	if err != nil || c.Serial() != 5 {
		t.Fatalf("Restore of an expired last-good policy = %v, %v", c.Serial(), err)
	}
	// But a key removed from the trust list no longer vouches for it.
	st3, _ := store.New(store.Options{Trust: policytest.Keyring(a), Threshold: 1, StateDir: state, Now: clock})
	if _, err := st3.Restore(); err != nil {
		t.Fatalf("Restore with one of two signers still trusted: %v", err)
	}
	st4, _ := store.New(store.Options{Trust: policytest.Keyring(policytest.Key(t)), StateDir: state, Now: clock})
	if _, err := st4.Restore(); err == nil {
		t.Fatal("Restore accepted a last-good policy no trusted key signed")
	}
}

func BenchmarkApply(b *testing.B) {
	k := policytest.Key(b)
	p := policytest.Synthetic(100_000, 1)
	st, _ := store.New(store.Options{Trust: policytest.Keyring(k), Now: func() time.Time { return p.Issued.Add(time.Hour) }})
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		p.Serial = uint64(i + 1)
		env := policytest.Sign(b, policytest.YAML(p), k)
		if _, err := st.Apply(env, "bench"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestNationalPolicyFitsTheCap: a 100,000-prefix policy signed by three
// committee keys verifies with at least 2x headroom under the size cap, and
// an envelope over the cap is refused, reported, and leaves the enforced
// policy alone.
func TestNationalPolicyFitsTheCap(t *testing.T) {
	a, b, c := policytest.Key(t), policytest.Key(t), policytest.Key(t)
	ring := policytest.Keyring(a, b, c)
	p := policytest.Synthetic(100_000, 1)
	env := policytest.Sign(t, policytest.YAML(p), a, b, c)
	if 2*len(env) > dsse.MaxEnvelopeSize {
		t.Errorf("a 100,000-prefix policy is %d bytes: less than 2x headroom under dsse.MaxEnvelopeSize %d", len(env), dsse.MaxEnvelopeSize)
	}
	// dsse alone: compiling 100,000 prefixes is BenchmarkApply's job.
	if _, err := ring.Verify(env, policy.PayloadType, 3); err != nil {
		t.Fatalf("national policy: %v", err)
	}

	var outcomes []store.Outcome
	small := policytest.Synthetic(5, 1)
	st, err := store.New(store.Options{Trust: ring, Threshold: 2,
		Now: func() time.Time { return small.Issued.Add(time.Hour) }, OnOutcome: func(o store.Outcome) { outcomes = append(outcomes, o) }})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Apply(policytest.Sign(t, policytest.YAML(small), a, b), "test"); err != nil {
		t.Fatal(err)
	}
	small.Serial = 2
	small.Approvals[0].Holder = strings.Repeat("h", dsse.MaxEnvelopeSize)
	_, err = st.Apply(policytest.Sign(t, policytest.YAML(small), a, b), "test")
	if !errors.Is(err, dsse.ErrTooLarge) {
		t.Fatalf("oversized policy: %v, want dsse.ErrTooLarge", err)
	}
	if st.Current().Serial() != 1 || len(outcomes) != 2 || outcomes[1].Applied || !errors.Is(outcomes[1].Err, dsse.ErrTooLarge) {
		t.Fatalf("after the oversized policy: serial %d, outcomes %+v", st.Current().Serial(), outcomes)
	}
}
