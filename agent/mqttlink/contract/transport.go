package contract

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/url"
	"os"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// BrokerOptions returns paho options for a broker URL (tcp:// mqtt://
// ssl:// mqtts:// ws:// wss://; the port defaults by scheme) with TLS from
// PEM files: ca verifies the server, cert+key are the client's identity
// (mutual TLS). URLs with credentials are refused: identities are
// certificates, and URLs end up in logs. Devices and the operator's tools
// reach the broker the same way.
func BrokerOptions(rawURL, ca, cert, key string) (*paho.ClientOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("contract: url: %w", err)
	}
	if u.User != nil {
		return nil, errors.New("contract: url must not carry credentials")
	}
	secure := false
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "tcp"
	case "ssl", "mqtts", "tls":
		u.Scheme, secure = "ssl", true
	case "ws":
	case "wss":
		secure = true
	default:
		return nil, fmt.Errorf("contract: url scheme %q is not one of tcp mqtt ssl mqtts ws wss", u.Scheme)
	}
	if u.Port() == "" {
		port := map[string]string{"tcp": "1883", "ssl": "8883", "ws": "80", "wss": "443"}[u.Scheme]
		u.Host += ":" + port
	}
	o := paho.NewClientOptions().AddBroker(u.String())
	if secure || ca != "" || cert != "" {
		tc, err := tlsConfig(u.Hostname(), ca, cert, key)
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(tc)
	}
	return o, nil
}

func tlsConfig(host, ca, cert, key string) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: host}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("contract: ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("contract: ca %s: no certificates", ca)
		}
		tc.RootCAs = pool
	}
	if cert != "" {
		if _, err := tls.LoadX509KeyPair(cert, key); err != nil {
			return nil, fmt.Errorf("contract: client certificate: %w", err)
		}
		// Loaded at each handshake, so a renewed certificate is picked up
		// on the next reconnect without a restart.
		tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c, err := tls.LoadX509KeyPair(cert, key)
			if err != nil {
				return nil, fmt.Errorf("contract: client certificate: %w", err)
			}
			return &c, nil
		}
	}
	return tc, nil
}
