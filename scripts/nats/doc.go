// Package nats holds LinkGuard's production configuration for a NATS
// Server cluster node (linkguard.conf: JetStream, the MQTT listener with
// client certificates, the authorization callout of scripts/natsauth) and,
// in its tests, the proof that the shipped file is one the server of
// go.mod accepts. It has no Go code to import.
package nats
