package contract

import (
	"strings"
	"testing"
)

func TestBrokerOptions(t *testing.T) {
	tests := []struct {
		url, want string
		tls       bool
	}{
		{"mqtt://h", "tcp://h:1883", false},
		{"tcp://h:1999", "tcp://h:1999", false},
		{"mqtts://h", "ssl://h:8883", true},
		{"ssl://h:8884", "ssl://h:8884", true},
		{"ws://h/mqtt", "ws://h:80/mqtt", false},
		{"wss://h/mqtt", "wss://h:443/mqtt", true},
	}
	for _, tt := range tests {
		o, err := BrokerOptions(tt.url, "", "", "")
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if got := o.Servers[0].String(); got != tt.want || (o.TLSConfig != nil) != tt.tls {
			t.Errorf("%s -> %s tls=%v, want %s tls=%v", tt.url, got, o.TLSConfig != nil, tt.want, tt.tls)
		}
	}
	for _, bad := range []string{"mqtts://user:secret@h", "http://h", "::"} {
		if _, err := BrokerOptions(bad, "", "", ""); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: err = %v", bad, err)
		}
	}
}
