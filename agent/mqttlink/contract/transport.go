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
	return BrokerListOptions([]string{rawURL}, ca, cert, key)
}

// BrokerListOptions is BrokerOptions for several brokers, the nodes of a
// cluster: paho tries them in the order given at every connect, so the
// first that answers is used. Each is verified under its own host name.
func BrokerListOptions(rawURLs []string, ca, cert, key string) (*paho.ClientOptions, error) {
	if len(rawURLs) == 0 {
		return nil, errors.New("contract: no broker url")
	}
	o := paho.NewClientOptions()
	secure := false
	for _, raw := range rawURLs {
		u, sec, err := parseBrokerURL(raw)
		if err != nil {
			return nil, err
		}
		o.AddBroker(u.String())
		secure = secure || sec
	}
	if secure || ca != "" || cert != "" {
		tc, err := tlsConfig(o.Servers[0].Hostname(), ca, cert, key)
		if err != nil {
			return nil, err
		}
		o.SetTLSConfig(tc)
		if len(o.Servers) > 1 {
			o.SetConnectionAttemptHandler(func(broker *url.URL, tc *tls.Config) *tls.Config {
				if tc == nil {
					return nil
				}
				tc = tc.Clone()
				tc.ServerName = broker.Hostname()
				return tc
			})
		}
	}
	// Sent as 3.1.1 only: paho would otherwise retry a refused CONNECT as
	// MQTT 3.1, which no broker of the fleet needs (NATS speaks 3.1.1 only).
	o.SetProtocolVersion(4)
	return o, nil
}

// parseBrokerURL parses a broker URL for BrokerListOptions: the scheme
// folded to paho's (tcp, ssl, ws, wss), the port defaulted by scheme, and
// whether it is secure. URLs with credentials are refused.
func parseBrokerURL(rawURL string) (u *url.URL, secure bool, err error) {
	u, err = url.Parse(rawURL)
	if err != nil {
		return nil, false, fmt.Errorf("contract: url: %w", err)
	}
	if u.User != nil {
		return nil, false, errors.New("contract: url must not carry credentials")
	}
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "tcp"
	case "ssl", "mqtts", "tls":
		u.Scheme, secure = "ssl", true
	case "ws":
	case "wss":
		secure = true
	default:
		return nil, false, fmt.Errorf("contract: url scheme %q is not one of tcp mqtt ssl mqtts ws wss", u.Scheme)
	}
	if u.Port() == "" {
		port := map[string]string{"tcp": "1883", "ssl": "8883", "ws": "80", "wss": "443"}[u.Scheme]
		u.Host += ":" + port
	}
	return u, secure, nil
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
