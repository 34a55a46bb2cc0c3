package sim

import (
	"crypto/ed25519"
	"fmt"
	"path/filepath"

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
}

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
	return k, nil
}

// KeyPath names a key file in the key directory.
func (k *Keys) KeyPath(name string) string { return filepath.Join(k.Dir, name) }
