// Package config is the agent's one typed configuration: strict YAML
// decoding (unknown keys and wrong types are errors naming file and line),
// defaults and validation in one place, and a printable effective
// configuration for `linkguard run --check`.
//
// Sections a device does not use are absent: a router has no feeds, a bench
// unit may have no mqtt. It imports the YAML library and policy/yamlpos only.
package config
