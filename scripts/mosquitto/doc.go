// Package mosquitto holds LinkGuard's production configuration for a
// mosquitto 2 broker — linkguard.conf, the device and operator ACLs and
// linkguard-acl, which adds each device's site rule — and, in its tests,
// the proof: the shipped files run in a real mosquitto with certificates
// the test makes. It has no Go code to import.
package mosquitto
