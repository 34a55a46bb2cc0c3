// Package layout names where a provisioned device keeps its files: one
// directory, /etc/linkguard, that lgctl provision writes, the shipped
// configuration and init scripts use, and the agent reads.
//
//	/etc/linkguard/linkguard.yaml               the configuration (run --config)
//	/etc/linkguard/identity.json                device id, site and broker
//	/etc/linkguard/provisioned.json             written when provisioning is done
//	/etc/linkguard/console-lock.json            the provisioning console's lock and
//	                                            the unlock tokens it has used (0600)
//	/etc/linkguard/tls/ca.crt                   the broker's CA
//	/etc/linkguard/tls/device.crt               the device's client certificate
//	/etc/linkguard/tls/device.key               its key, made on the device (0600)
//	/etc/linkguard/trust/policy/NAME.pub        policy committee keys
//	/etc/linkguard/trust/release/NAME.pub       firmware release keys
//	/etc/linkguard/operators/NAME.pub           operator (command) keys
//	/etc/linkguard/policy/policy.signed.json    the signed policy (the agent
//	                                            writes a fleet policy here)
//	/var/lib/linkguard                          the agent's state
//	/opt/linkguard                              firmware slots and lglaunch
//
// It imports only the standard library.
package layout
