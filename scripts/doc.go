// Package scripts holds the device's init integration — the OpenWrt procd
// init script, the systemd unit, procd's capability file and the
// /usr/sbin/linkguard wrapper, all starting the A/B launcher with the
// configuration in the device layout (/etc/linkguard/linkguard.yaml) — the
// configuration bundles ship, and the technicians' helper scripts.
// SystemdCommand and ProcdCommand give the command lines the init files
// start, so tests start exactly those. It imports nothing of LinkGuard.
package scripts
