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

func TestBrokerListOptions(t *testing.T) {
	o, err := BrokerListOptions([]string{"mqtts://n1.example", "ssl://n2.example:8884", "mqtt://n3.example"}, "", "", "")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range o.Servers {
		got = append(got, s.String())
	}
	if strings.Join(got, " ") != "ssl://n1.example:8883 ssl://n2.example:8884 tcp://n3.example:1883" {
		t.Errorf("servers %q, want them in the order given", got)
	}
	if o.TLSConfig == nil || o.TLSConfig.ServerName != "n1.example" || o.OnConnectAttempt == nil {
		t.Fatalf("tls %+v", o.TLSConfig)
	}
	// Each node is verified under its own name.
	if tc := o.OnConnectAttempt(o.Servers[1], o.TLSConfig); tc.ServerName != "n2.example" || o.TLSConfig.ServerName != "n1.example" {
		t.Errorf("server name for n2: %q (shared config now %q)", tc.ServerName, o.TLSConfig.ServerName)
	}
	if o.ProtocolVersion != 4 {
		t.Errorf("protocol version %d, want 4 (3.1.1) only", o.ProtocolVersion)
	}
	for _, bad := range [][]string{nil, {"mqtts://n1", "http://n2"}, {"mqtts://n1", "mqtts://u:secret@n2"}} {
		if _, err := BrokerListOptions(bad, "", "", ""); err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: err = %v", bad, err)
		}
	}
}
