package natsconn

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookbus/hookbus/internal/natstest"
)

// testCA is a throwaway certificate authority.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pem  []byte
}

func newTestCA(t *testing.T) testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "natsconn test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return testCA{cert: cert, key: key, pem: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}
}

// serverCert issues a certificate for 127.0.0.1 and localhost.
func (ca testCA) serverCert(t *testing.T) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "nats"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

func (ca testCA) file(t *testing.T) string {
	t.Helper()
	f := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(f, ca.pem, 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// runTLSServer starts a NATS server that takes clients over TLS only, with
// a certificate ca signed.
func runTLSServer(t *testing.T, ca testCA) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		NoSigs:     true,
		NoLog:      true,
		TLSConfig:  &tls.Config{Certificates: []tls.Certificate{ca.serverCert(t)}, MinVersion: tls.VersionTLS12},
		TLSTimeout: 5,
	})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	return s
}

func tlsURL(s *server.Server) string {
	return "tls://" + s.Addr().String()
}

func TestConnectVerifiesTheServerWithTheCA(t *testing.T) {
	ca := newTestCA(t)
	s := runTLSServer(t, ca)
	caFile := ca.file(t)
	// A nats:// URL is upgraded as well: the CA requires TLS.
	for _, url := range []string{tlsURL(s), "nats://" + s.Addr().String()} {
		cfg := DefaultConfig()
		cfg.URL, cfg.CAFile = url, caFile
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		nc, err := Connect(ctx, cfg, nil)
		cancel()
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		st, err := nc.TLSConnectionState()
		if err != nil || len(st.VerifiedChains) == 0 || !st.VerifiedChains[0][len(st.VerifiedChains[0])-1].Equal(ca.cert) {
			t.Errorf("%s: connection state %v, %v: want a chain verified up to the test CA", url, st.VerifiedChains, err)
		}
		nc.Close()
	}
}

// connectFails connects with a short deadline and returns the error.
func connectFails(t *testing.T, cfg Config) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
	defer cancel()
	nc, err := Connect(ctx, cfg, nil)
	if err == nil {
		nc.Close()
		t.Fatalf("%v: connected", cfg)
	}
	return err
}

func TestConnectRefusesAServerItCannotVerify(t *testing.T) {
	ca := newTestCA(t)
	s := runTLSServer(t, ca)

	other := DefaultConfig()
	other.URL, other.CAFile = tlsURL(s), newTestCA(t).file(t)
	if err := connectFails(t, other); !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("CA that did not sign the server's certificate: %v", err)
	}

	system := DefaultConfig() // the system's CAs
	system.URL = tlsURL(s)
	if err := connectFails(t, system); !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Errorf("no CA file: %v", err)
	}

	plain := DefaultConfig() // a server without TLS
	plain.URL, plain.CAFile = natstest.RunServer(t).ClientURL(), ca.file(t)
	if err := connectFails(t, plain); !strings.Contains(err.Error(), "secure connection not available") {
		t.Errorf("server without TLS: %v", err)
	}
}

func TestConnectFailsAtOnceOnABadCAFile(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(garbage, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, file := range []string{filepath.Join(t.TempDir(), "missing.crt"), garbage} {
		cfg := DefaultConfig()
		cfg.URL, cfg.CAFile = "tls://127.0.0.1:1", file
		start := time.Now()
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second) // a connection error would be retried
		_, err := Connect(ctx, cfg, nil)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "nats ca") {
			t.Errorf("%s: got %v, want a CA error", file, err)
		}
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Errorf("%s: failed after %s, want at once", file, d)
		}
	}
}

func TestConfigStringShowsTheCAFile(t *testing.T) {
	cfg := DefaultConfig()
	cfg.CAFile, cfg.Password = "/etc/hookbus/nats-ca/ca.crt", "s3cret-canary"
	if s := cfg.String(); !strings.Contains(s, "CAFile:/etc/hookbus/nats-ca/ca.crt") || strings.Contains(s, "s3cret-canary") {
		t.Errorf("String() = %s", s)
	}
}
