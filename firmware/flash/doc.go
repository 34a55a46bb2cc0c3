// Package flash puts a signed bundle on a device and sees it through: the
// upload (SCP over SSH, or the serial console's protocol from
// firmware/provision), the install the device verifies, the restart into
// the candidate, and the wait until it commits itself or is rolled back,
// ending with a health report.
//
// OverSSH and OverSerial do the whole of it; Upload, Wait and Report are
// the parts. The device does the verifying: nothing here trusts or checks
// a bundle. It imports firmware/provision, firmware/slot and the SSH
// client only: never agent, MQTT or the testbench (lgctl flash holds the
// flags and calls it).
package flash
