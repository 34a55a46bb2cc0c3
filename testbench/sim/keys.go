package sim

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"linkguard.dev/linkguard/agent/mqttlink/contract/contracttest"
	"linkguard.dev/linkguard/policy/dsse"
)

// Keys are a throwaway committee key (signs policies), operator key (signs
// commands) and release key (signs firmware bundles), with their key files.
type Keys struct {
	Dir                          string
	Committee, Operator, Release ed25519.PrivateKey
	CommitteeKey, CommitteePub   string // file paths
	OperatorKey, OperatorPub     string
	ReleaseKey, ReleasePub       string
	// More committee anchors beside Committee, for a threshold above one
	// (AddAnchors); devices trust them all and need Threshold of them.
	Anchors    []ed25519.PrivateKey
	AnchorPubs []string
	Threshold  int // 0: 1
	// Fleet is the simulated fleet CA, FleetCA its certificate file: each
	// device gets a key and certificate from it (Identity), as
	// provisioning gives them, and signs its reports with them.
	Fleet   *contracttest.CA
	FleetCA string
}

// Identity writes device's key and fleet certificate into the key
// directory (once) and returns their files.
func (k *Keys) Identity(device string) (certFile, keyFile string, err error) {
	certFile, keyFile = filepath.Join(k.Dir, device+".crt"), filepath.Join(k.Dir, device+".key")
	if _, err := os.Stat(keyFile); err == nil {
		return certFile, keyFile, nil
	}
	id, err := k.Fleet.Issue(device, time.Time{}, time.Time{})
	if err != nil {
		return "", "", fmt.Errorf("sim: %w", err)
	}
	return id.WriteFiles(k.Dir)
}

// AddAnchors makes committee keys until there are n anchors in all, and
// sets the devices' threshold to n.
func (k *Keys) AddAnchors(n int) error {
	for i := len(k.Anchors) + 2; i <= n; i++ {
		key, pub, err := dsse.GenerateKeyFiles(k.Dir, fmt.Sprintf("committee-%d", i))
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		priv, err := dsse.LoadPrivateKey(key)
		if err != nil {
			return fmt.Errorf("sim: %w", err)
		}
		k.Anchors, k.AnchorPubs = append(k.Anchors, priv), append(k.AnchorPubs, pub)
	}
	k.Threshold = max(n, 1)
	return nil
}

// AllAnchors are the committee keys the devices trust.
func (k *Keys) AllAnchors() []ed25519.PrivateKey {
	return append([]ed25519.PrivateKey{k.Committee}, k.Anchors...)
}

// TrustFiles are the public key files of AllAnchors.
func (k *Keys) TrustFiles() []string { return append([]string{k.CommitteePub}, k.AnchorPubs...) }

// NewKeys makes the key files in dir.
func NewKeys(dir string) (*Keys, error) {
	k := &Keys{Dir: dir}
	var err error
	if k.CommitteeKey, k.CommitteePub, err = dsse.GenerateKeyFiles(dir, "committee"); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.OperatorKey, k.OperatorPub, err = dsse.GenerateKeyFiles(dir, "operator"); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.ReleaseKey, k.ReleasePub, err = dsse.GenerateKeyFiles(dir, "release"); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.Release, err = dsse.LoadPrivateKey(k.ReleaseKey); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.Committee, err = dsse.LoadPrivateKey(k.CommitteeKey); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.Operator, err = dsse.LoadPrivateKey(k.OperatorKey); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.Fleet, err = contracttest.NewCA("linkguard testbench fleet CA"); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	if k.FleetCA, err = k.Fleet.WriteCA(dir); err != nil {
		return nil, fmt.Errorf("sim: %w", err)
	}
	return k, nil
}

// KeyPath names a key file in the key directory.
func (k *Keys) KeyPath(name string) string { return filepath.Join(k.Dir, name) }
