// Package scripts holds the device's init integration — the OpenWrt procd
// init script, the systemd unit, procd's capability file and the
// /usr/sbin/linkguard wrapper, all starting the A/B launcher — and the
// technicians' helper scripts. Its Go test checks their syntax and what they
// start; it imports nothing of LinkGuard.
package scripts
