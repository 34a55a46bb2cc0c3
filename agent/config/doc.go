// Package config is the agent's one typed configuration: strict YAML
// decoding whose errors name the file, the line and the key as written
// (with a suggestion for a near-miss key), closed sets of words as types
// that refuse anything else, sizes and powers as typed units, defaults and
// validation in one place, and a printable effective configuration for
// `linkguard run --check`. Check looks at what a configuration names on the
// machine (key files and their roles, certificates, policy, directories,
// interfaces, serial ports); LoadChecked is what `run` and `run --check`
// both call, so --check passes exactly what the agent starts with.
// Generate writes a device's configuration from its provisioning answers
// and the embedded template (template.yaml), in the device layout.
//
// Sections a device does not use are absent: a router has no feeds, a bench
// unit may have no mqtt. It imports the YAML library, policy/yamlpos,
// policy/dsse (to read keys), periph's physic units,
// firmware/provision/layout, and the components whose exported defaults it
// takes (linkfilter, firmware/update); never MQTT or the composition root.
package config
