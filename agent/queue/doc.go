// Package queue is the agent's disk-backed store-and-forward log: records
// appended while the broker is away are kept under the state directory and
// handed out in order once it is back.
//
// Records live in two lanes of segment files, one for telemetry and one for
// events, and carry one sequence shared by both lanes, so Next hands them out
// in the order they were appended. Each record is checksummed (CRC-32C); a
// torn tail left by kill -9 or a power cut is cut off when the queue is
// opened. The log is bounded: over its limit, the oldest telemetry segment
// is dropped first and events only when no telemetry is left, and every
// dropped record is counted.
//
// Durability is group commit: Next fsyncs what was appended before handing it
// out, so a record is never published before it is on disk, and a record
// that was on disk is never lost; a power cut can lose only records that
// were not yet handed out and not yet synced (Sync bounds that window).
//
// It imports only the standard library: no MQTT, nothing of the agent.
package queue
