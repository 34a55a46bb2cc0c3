// Package brokertest starts real MQTT brokers for tests: mosquitto as a
// subprocess and mochi-mqtt embedded (package embedded, which the
// testbench's demo runs too), both on a loopback port with TLS and
// client-certificate authentication, with certificates it generates. A
// broker can be stopped and started again on the same port, keeping its
// sessions and retained messages, to test outages.
//
// It is imported only by tests (agent/mqttlink's and the testbench's);
// production code never imports it.
package brokertest
