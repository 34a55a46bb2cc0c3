package store_test

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"sync/atomic"
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

// TestTrustFrom: a policy signed by a committee member only the hook names
// is refused until the hook names them, then accepted (TrustChanged tries
// the refused one again); the hook raises the threshold but never lowers
// it, never drops an anchor, and two keys of one signer count once. A
// restart verifies the last-known-good against the same hook.
func TestTrustFrom(t *testing.T) {
	anchor, dora, dora2, erin := policytest.Key(t), policytest.Key(t), policytest.Key(t), policytest.Key(t)
	pub := func(k ed25519.PrivateKey) ed25519.PublicKey { return k.Public().(ed25519.PublicKey) }
	now := time.Date(2026, 12, 10, 0, 0, 0, 0, time.UTC)
	mk := func(serial uint64, keys ...ed25519.PrivateKey) []byte {
		p := policytest.Synthetic(5, serial)
		p.Serial = serial
		return policytest.Sign(t, policytest.YAML(p), keys...)
	}
	var hook atomic.Pointer[store.Trust]
	roster := func(threshold int, members ...ed25519.PrivateKey) {
		ring := policytest.Keyring(anchor)
		holder := map[string]string{}
		for _, m := range members {
			ring.Add(pub(m), "")
			holder[dsse.KeyID(pub(m))] = "dora"
			if m.Equal(erin) {
				holder[dsse.KeyID(pub(m))] = "erin"
			}
		}
		hook.Store(&store.Trust{Keys: ring, Threshold: threshold, Signer: func(id string) string {
			if h, ok := holder[id]; ok {
				return h
			}
			return id
		}})
	}
	var outcomes []store.Outcome
	state := t.TempDir()
	opts := store.Options{Trust: policytest.Keyring(anchor), Threshold: 1, StateDir: state, Now: func() time.Time { return now },
		TrustFrom: func() store.Trust {
			if p := hook.Load(); p != nil {
				return *p
			}
			return store.Trust{}
		},
		OnOutcome: func(o store.Outcome) { outcomes = append(outcomes, o) }}
	st, err := store.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.TrustChanged(); !errors.Is(err, store.ErrUnchanged) {
		t.Fatalf("TrustChanged with nothing refused: %v", err)
	}
	byDora := mk(5, dora)
	if _, err := st.Apply(byDora, "mqtt"); !errors.Is(err, dsse.ErrThreshold) || st.Current() != nil {
		t.Fatalf("policy by a key only a later roster names: %v", err)
	}
	roster(1, dora, dora2)
	c, err := st.TrustChanged()
	if err != nil || c.Serial() != 5 || c.Source != "mqtt" {
		t.Fatalf("TrustChanged after the roster named the signer: %v, %v", c.Serial(), err)
	}
	if len(outcomes) != 2 || outcomes[0].Applied || !outcomes[1].Applied {
		t.Fatalf("outcomes %+v, want refused then applied", outcomes)
	}

	// The roster raises the threshold to 2: one signer is too few, and so
	// are two keys of one signer; two signers (one of them an anchor) are
	// enough.
	roster(2, dora, dora2, erin)
	for _, tt := range []struct {
		name string
		env  []byte
		want error
	}{
		{"one roster signer", mk(6, dora), dsse.ErrThreshold},
		{"one anchor", mk(6, anchor), dsse.ErrThreshold},
		{"two keys of one signer", mk(6, dora, dora2), dsse.ErrThreshold},
	} {
		if _, err := st.Apply(tt.env, "test"); !errors.Is(err, tt.want) || st.Current().Serial() != 5 {
			t.Errorf("%s: %v, want %v (serial %d)", tt.name, err, tt.want, st.Current().Serial())
		}
	}
	n := len(outcomes)
	if _, err := st.TrustChanged(); !errors.Is(err, dsse.ErrThreshold) || len(outcomes) != n {
		t.Fatalf("TrustChanged with the same trust: %v, %d new outcomes (a second refusal is not reported)", err, len(outcomes)-n)
	}
	if _, err := st.Apply(mk(6, dora, anchor), "test"); err != nil {
		t.Fatalf("a roster signer and an anchor: %v", err)
	}
	if _, err := st.Apply(mk(7, dora, erin), "test"); err != nil {
		t.Fatalf("two roster signers: %v", err)
	}

	// A hook that lowers the threshold under the configured one, or leaves
	// out an anchor, does not get its way.
	low := opts
	low.Threshold = 2
	low.StateDir = ""
	roster(1, dora, erin)
	st2, _ := store.New(low)
	if _, err := st2.Apply(mk(8, dora), "test"); !errors.Is(err, dsse.ErrThreshold) {
		t.Fatalf("hook threshold 1 under a configured 2: %v", err)
	}
	hook.Store(&store.Trust{Keys: policytest.Keyring(dora), Threshold: 1})
	if tr := st.Trust(); tr.Keys.Len() != 1 || tr.Keys.IDs()[0] != dsse.KeyID(pub(anchor)) {
		t.Fatalf("a hook without the anchor: trust %v, want the anchor alone", tr.Keys.IDs())
	}
	if _, err := st.Apply(mk(8, dora), "test"); err == nil {
		t.Fatal("a hook that drops the anchor made its own key the only trust")
	}

	// A restart: the last good policy (serial 7, by dora and erin) comes
	// back under the roster, not under the anchors alone — and a restore
	// refused for its signers is tried again when the roster arrives.
	hook.Store(nil)
	st3, _ := store.New(opts)
	if _, err := st3.Restore(); !errors.Is(err, dsse.ErrThreshold) {
		t.Fatalf("Restore without the roster: %v", err)
	}
	roster(2, dora, erin)
	if c, err := st3.TrustChanged(); err != nil || c.Serial() != 7 {
		t.Fatalf("TrustChanged after a refused restore: %v, %v", c.Serial(), err)
	}
	st4, _ := store.New(opts)
	if c, err := st4.Restore(); err != nil || c.Serial() != 7 {
		t.Fatalf("Restore under the roster: %v, %v", c.Serial(), err)
	}
}
