package mqttlink

import (
	"strings"
	"testing"
)

func TestBrokerNameHidesCredentials(t *testing.T) {
	l := &Link{opt: Options{URL: "mqtts://user:secret@h:8883/?token=x"}}
	if n := l.brokerName(); strings.Contains(n, "secret") || strings.Contains(n, "token") {
		t.Fatalf("brokerName leaks credentials: %s", n)
	}
}
