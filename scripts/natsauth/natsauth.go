// Package natsauth is NATS Server's authorization callout for a LinkGuard
// fleet: it binds an MQTT client id to the client certificate, which NATS
// Server does not (its MQTT sessions are per account and any client of the
// account may take any client id, disconnecting its holder and receiving
// the commands queued in its session). Every MQTT connection is put before
// Authorizer, which admits a device only under its own certificate's name,
// only while the fleet CA's registry lists it (its site map) and does not
// revoke it (its CRL: NATS Server reads no CRL), with the device's rights;
// an operator only with a certificate of the operator CA, named in the
// configuration, under a client id no device holds. Service answers the
// callout requests of the cluster's nodes over NATS.
//
// It imports firmware/provision (the registry's site map format) and the
// NATS libraries; nothing on a device imports it.
package natsauth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nkeys"

	"linkguard.dev/linkguard/firmware/provision"
)

// The subjects of the LinkGuard contract (agent/mqttlink/contract) as NATS
// maps MQTT topics: a/b/c is a.b.c.
const prefix = "linkguard.v1."

// mqttSub is where NATS Server delivers a QoS 1 subscription's messages
// (a JetStream consumer's deliver subject, subscribed as the client).
const mqttSub = "$MQTT.sub.>"

// DevicePermissions are a device's rights, those of scripts/mosquitto's
// devices.acl: it publishes its own state, telemetry, events, evidence and
// command results, and reads its own, its site's (site not "") and the
// fleet's commands and the fleet policy and roster.
func DevicePermissions(id, site string) jwt.Permissions {
	p := prefix + id + "."
	var perm jwt.Permissions
	perm.Pub.Allow.Add(p+"state", p+"telemetry", p+"events", p+"evidence", p+"cmd.result")
	perm.Sub.Allow.Add(p+"cmd", prefix+"all.cmd", prefix+"policy", prefix+"roster", mqttSub)
	if site != "" {
		perm.Sub.Allow.Add(prefix + "site." + site + ".cmd")
	}
	return perm
}

// Roles are the operator rights of scripts/mosquitto's operators.acl, by
// name: the console follows the fleet and relays commands and policies;
// lgctl also publishes rosters. Nobody but a device writes its topics.
var Roles = map[string]jwt.Permissions{
	"console": operatorRole(false),
	"lgctl":   operatorRole(true),
}

func operatorRole(roster bool) jwt.Permissions {
	var perm jwt.Permissions
	perm.Pub.Allow.Add(prefix+"*.cmd", prefix+"site.*.cmd", prefix+"policy")
	if roster {
		perm.Pub.Allow.Add(prefix + "roster")
	}
	// linkguard/v1/# is linkguard.v1.> and linkguard.v1 itself (# matches
	// the parent level too); NATS refuses the filter unless both may be.
	perm.Sub.Allow.Add(prefix+">", strings.TrimSuffix(prefix, "."), mqttSub)
	return perm
}

// Authorizer decides one connection from what the server says of it.
type Authorizer struct {
	// Issuer signs the user claims and responses; its public key is the
	// server's auth_callout.issuer.
	Issuer nkeys.KeyPair
	// Account is the account admitted clients are placed in (the one with
	// JetStream and the MQTT sessions).
	Account string
	// FleetCA signs devices' certificates, OperatorCA operators'; a chain
	// is judged by the root it was verified to. They may be the same
	// certificate (a test's single CA); then an operator is told from a
	// device by its name only.
	FleetCA, OperatorCA *x509.Certificate
	// Operators are the operators' certificate names and their rights.
	Operators map[string]jwt.Permissions
	// Sites and CRL are the fleet CA registry's site map and CRL
	// (provision.SiteMapFile, provision.CRLFile), read again when they
	// change. Both must exist: without them no device is admitted.
	Sites, CRL string
	// MaxAge bounds a session's credentials: at the end the server closes
	// the connection and the client connects again, judged afresh (a
	// revoked device is then refused). 0: until the certificate expires.
	MaxAge time.Duration

	mu    sync.Mutex
	cache registryView
}

// registryView is the site map and CRL as last read, with the files'
// modification times and sizes.
type registryView struct {
	sitesStamp, crlStamp string
	sites                provision.Sites
	revoked              map[string]bool // serials, hexadecimal
	err                  error
}

// Decision is what Authorize made of a request: the identity it names and
// either the user claims to admit it with or the reason it is refused.
type Decision struct {
	Name, ClientID, Kind string // Kind: "device" or "operator"
	User                 *jwt.UserClaims
	Refused              string
}

// Authorize judges one request.
func (a *Authorizer) Authorize(req *jwt.AuthorizationRequest, now time.Time) Decision {
	d := Decision{ClientID: req.ClientInformation.MQTT}
	refuse := func(format string, args ...any) Decision {
		d.Refused = fmt.Sprintf(format, args...)
		return d
	}
	if req.ClientInformation.Type != "mqtt" || d.ClientID == "" {
		return refuse("not an MQTT connection (type %q): LinkGuard clients speak MQTT", req.ClientInformation.Type)
	}
	if req.TLS == nil || len(req.TLS.VerifiedChains) == 0 || len(req.TLS.VerifiedChains[0]) == 0 {
		return refuse("no verified client certificate")
	}
	chain, err := parseChain(req.TLS.VerifiedChains[0])
	if err != nil {
		return refuse("client certificate: %v", err)
	}
	leaf, root := chain[0], chain[len(chain)-1]
	d.Name = leaf.Subject.CommonName
	if now.After(leaf.NotAfter) {
		return refuse("certificate %q expired at %s", d.Name, leaf.NotAfter.UTC().Format(time.RFC3339))
	}
	reg := a.registry()
	if reg.err != nil {
		return refuse("fleet CA registry unreadable: %v", reg.err)
	}
	expires := leaf.NotAfter
	if a.MaxAge > 0 && now.Add(a.MaxAge).Before(expires) {
		expires = now.Add(a.MaxAge)
	}
	var perm jwt.Permissions
	opPerm, isOp := a.Operators[d.Name]
	switch {
	case a.OperatorCA != nil && root.Equal(a.OperatorCA) && isOp:
		d.Kind, perm = "operator", opPerm
		if _, ok := reg.sites.Site[d.ClientID]; ok || reg.sites.Revoked[d.ClientID] {
			return refuse("operator %q asked for client id %q, a device's", d.Name, d.ClientID)
		}
	case a.FleetCA != nil && root.Equal(a.FleetCA):
		d.Kind = "device"
		if reg.revoked[leaf.SerialNumber.Text(16)] {
			return refuse("device %q: certificate %s is revoked (CRL)", d.Name, leaf.SerialNumber.Text(16))
		}
		if reg.sites.Revoked[d.Name] {
			return refuse("device %q is revoked (site map)", d.Name)
		}
		site, ok := reg.sites.Site[d.Name]
		if !ok {
			return refuse("device %q is not in the fleet CA's site map", d.Name)
		}
		if d.ClientID != d.Name {
			return refuse("device %q asked for client id %q: a device's client id is its certificate's name", d.Name, d.ClientID)
		}
		perm = DevicePermissions(d.Name, site)
	default:
		return refuse("certificate %q is neither a listed operator's nor a device's", d.Name)
	}
	uc := jwt.NewUserClaims(req.UserNkey)
	uc.Name = d.Name
	uc.Audience = a.Account
	uc.Expires = expires.Unix()
	uc.Permissions = perm
	uc.AllowedConnectionTypes.Add(jwt.ConnectionTypeMqtt)
	d.User = uc
	return d
}

// Respond is the signed answer to the request token (a JWT from a
// server), and the decision behind it.
func (a *Authorizer) Respond(token []byte, now time.Time) ([]byte, Decision, error) {
	rc, err := jwt.DecodeAuthorizationRequestClaims(string(token))
	if err != nil {
		return nil, Decision{}, fmt.Errorf("natsauth: request: %w", err)
	}
	if !nkeys.IsValidPublicUserKey(rc.UserNkey) {
		// The answer is addressed to this key; without one there is no
		// answer to give (and the claims library would return nil).
		return nil, Decision{}, fmt.Errorf("natsauth: request: user_nkey %q is not a user key", rc.UserNkey)
	}
	d := a.Authorize(&rc.AuthorizationRequest, now)
	resp := jwt.NewAuthorizationResponseClaims(rc.UserNkey)
	resp.Audience = rc.Server.ID
	if d.User != nil {
		if resp.Jwt, err = d.User.Encode(a.Issuer); err != nil {
			return nil, d, fmt.Errorf("natsauth: user claims: %w", err)
		}
	} else {
		resp.Error = d.Refused
	}
	out, err := resp.Encode(a.Issuer)
	if err != nil {
		return nil, d, fmt.Errorf("natsauth: response: %w", err)
	}
	return []byte(out), d, nil
}

func parseChain(pems []string) ([]*x509.Certificate, error) {
	var chain []*x509.Certificate
	for _, p := range pems {
		blk, _ := pem.Decode([]byte(p))
		if blk == nil {
			return nil, errors.New("not PEM")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, err
		}
		chain = append(chain, c)
	}
	return chain, nil
}

// registry is the site map and CRL, read again when either file changed.
// A file that cannot be read or parsed refuses every device until it is
// fixed: a CRL that does not verify is not an empty one.
func (a *Authorizer) registry() registryView {
	a.mu.Lock()
	defer a.mu.Unlock()
	ss, cs := stamp(a.Sites), stamp(a.CRL)
	if ss == a.cache.sitesStamp && cs == a.cache.crlStamp && a.cache.sitesStamp != "" {
		return a.cache
	}
	v := registryView{sitesStamp: ss, crlStamp: cs}
	v.sites, v.revoked, v.err = a.read()
	a.cache = v
	return v
}

func stamp(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	return fmt.Sprintf("%d/%d", fi.ModTime().UnixNano(), fi.Size())
}

func (a *Authorizer) read() (provision.Sites, map[string]bool, error) {
	f, err := os.Open(a.Sites)
	if err != nil {
		return provision.Sites{}, nil, err
	}
	defer f.Close()
	sites, err := provision.ParseSiteMap(f)
	if err != nil {
		return sites, nil, fmt.Errorf("%s: %w", a.Sites, err)
	}
	b, err := os.ReadFile(a.CRL)
	if err != nil {
		return sites, nil, err
	}
	revoked := map[string]bool{}
	for rest := bytes.TrimSpace(b); len(rest) > 0; rest = bytes.TrimSpace(rest) {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil || blk.Type != "X509 CRL" {
			return sites, nil, fmt.Errorf("%s: not a PEM CRL", a.CRL)
		}
		crl, err := x509.ParseRevocationList(blk.Bytes)
		if err != nil {
			return sites, nil, fmt.Errorf("%s: %w", a.CRL, err)
		}
		if a.FleetCA == nil || crl.CheckSignatureFrom(a.FleetCA) != nil {
			return sites, nil, fmt.Errorf("%s: CRL not signed by the fleet CA", a.CRL)
		}
		if time.Now().After(crl.NextUpdate) {
			return sites, nil, fmt.Errorf("%s: CRL expired at %s (lgctl ca crl writes a fresh one)", a.CRL, crl.NextUpdate.UTC().Format(time.RFC3339))
		}
		for _, e := range crl.RevokedCertificateEntries {
			revoked[e.SerialNumber.Text(16)] = true
		}
	}
	return sites, revoked, nil
}
