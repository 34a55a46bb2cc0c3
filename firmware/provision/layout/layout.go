package layout

import "path"

// Dir is the device's configuration directory.
const Dir = "/etc/linkguard"

// Files and directories under Dir.
const (
	Config       = "linkguard.yaml"
	Identity     = "identity.json"
	Done         = "provisioned.json"
	Lock         = "console-lock.json"
	CA           = "tls/ca.crt"
	Cert         = "tls/device.crt"
	Key          = "tls/device.key"
	PolicyTrust  = "trust/policy"
	ReleaseTrust = "trust/release"
	Operators    = "operators"
	PolicyDir    = "policy"
	Policy       = PolicyDir + "/policy.signed.json"
)

// Outside Dir.
const (
	StateDir = "/var/lib/linkguard"
	SlotRoot = "/opt/linkguard"
	Launcher = SlotRoot + "/lglaunch"
)

// Path is the absolute path on the device of a name under Dir.
func Path(name string) string { return path.Join(Dir, name) }

// KeyPath is the absolute path of the key file name under a trust directory
// (PolicyTrust, ReleaseTrust or Operators).
func KeyPath(dir, name string) string { return path.Join(Dir, dir, name) }
