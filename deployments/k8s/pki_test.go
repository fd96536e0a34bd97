package k8s

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"sync"
	"time"
)

// testPKI is a throwaway certificate authority and a server certificate it
// signed, in the layout of Secret nats-tls (what cert-manager writes).
type testPKI struct {
	ca    *x509.Certificate
	caKey *ecdsa.PrivateKey
	leaf  *x509.Certificate // the server certificate

	caPEM, certPEM, keyPEM []byte
}

// newTestPKI makes a CA and a server certificate for names and ips, valid
// for an hour.
func newTestPKI(names []string, ips []net.IP) (*testPKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "hookbus test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, err
	}
	ca, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	p := &testPKI{ca: ca, caKey: key, caPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
	return p.reissue(names, ips)
}

// reissue returns the same CA with a new server certificate (a new key and
// serial number): a renewal.
func (p *testPKI) reissue(names []string, ips []net.IP) (*testPKI, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "nats"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Server auth for clients and routes, client auth for the routes
		// a server opens to the others (they verify it too).
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    names,
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return &testPKI{
		ca: p.ca, caKey: p.caKey, caPEM: p.caPEM, leaf: leaf,
		certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		keyPEM:  pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}),
	}, nil
}

// files is the content of Secret nats-tls by key.
func (p *testPKI) files() map[string][]byte {
	return map[string][]byte{"tls.crt": p.certPEM, "tls.key": p.keyPEM, "ca.crt": p.caPEM}
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		panic(err)
	}
	return n
}

// throwawayPKI is what the checks parse the NATS configuration with: the
// parser loads the certificate files, and the template's are placeholders.
var throwawayPKI = sync.OnceValue(func() *testPKI {
	p, err := newTestPKI([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		panic(err)
	}
	return p
})
