package dsse_test

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"

	"linkguard.dev/linkguard/policy/dsse"
)

// Sign a document with two committee keys and verify it with a threshold.
func Example() {
	_, a, _ := ed25519.GenerateKey(rand.Reader)
	_, b, _ := ed25519.GenerateKey(rand.Reader)
	ring := dsse.NewKeyring(a.Public().(ed25519.PublicKey), b.Public().(ed25519.PublicKey))
	const typ = "application/vnd.linkguard.policy+yaml"

	env, _ := dsse.Sign(typ, []byte("serial: 1\n"), a, b)
	v, err := ring.Verify(env, typ, 2)
	fmt.Println(string(v.Payload), len(v.Signers), err)

	env, _ = dsse.Sign(typ, []byte("serial: 1\n"), a)
	_, err = ring.Verify(env, typ, 2)
	fmt.Println(errors.Is(err, dsse.ErrThreshold))
	// Output:
	// serial: 1
	//  2 <nil>
	// true
}
