package gateway_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/services/gateway"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key
// into dir and returns the files and the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "hookbus gateway test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "tls.crt"), filepath.Join(dir, "tls.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

func TestTLS(t *testing.T) {
	s, _ := natstest.RunTopology(t)
	certFile, keyFile, cert := selfSigned(t, t.TempDir())
	cfg := gateway.DefaultConfig()
	cfg.Addr = "127.0.0.1:0"
	cfg.TLSCertFile, cfg.TLSKeyFile = certFile, keyFile
	svc, err := gateway.New(cfg, natstest.Connect(t, s), nil)
	if err != nil {
		t.Fatal(err)
	}
	natstest.RunService(t, svc)
	roots := x509.NewCertPool()
	roots.AddCert(cert)
	do := func(t *testing.T, tr *http.Transport, url string) (*http.Response, error) {
		t.Helper()
		defer tr.CloseIdleConnections()
		req, err := http.NewRequestWithContext(t.Context(), http.MethodPost, url, strings.NewReader(
			`{"specversion":"1.0","id":"tls-1","source":"/shop","type":"com.example.order.created"}`))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/cloudevents+json")
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}

	t.Run("HTTPS", func(t *testing.T) {
		resp, err := do(t, &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}, "https://"+svc.Addr()+"/events")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusAccepted || resp.TLS == nil {
			t.Errorf("status %d, TLS %v: want 202 over TLS", resp.StatusCode, resp.TLS != nil)
		}
	})
	t.Run("plain HTTP refused", func(t *testing.T) {
		resp, err := do(t, &http.Transport{}, "http://"+svc.Addr()+"/events")
		if err == nil && resp.StatusCode != http.StatusBadRequest {
			t.Errorf("plain HTTP answered %d, want refused", resp.StatusCode)
		}
	})
	t.Run("TLS 1.1 refused", func(t *testing.T) {
		tc := &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}
		if _, err := do(t, &http.Transport{TLSClientConfig: tc}, "https://"+svc.Addr()+"/events"); err == nil {
			t.Error("a TLS 1.1 client was served")
		}
	})
}

// A certificate that cannot be used is an error at start, not at the first
// request.
func TestTLSConfigRefused(t *testing.T) {
	s := natstest.RunServer(t)
	nc := natstest.Connect(t, s)
	dir := t.TempDir()
	certFile, keyFile, _ := selfSigned(t, dir)
	otherCert, _, _ := selfSigned(t, t.TempDir())
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key, want string
	}{
		{"cert without key", certFile, "", "set both or neither"},
		{"key without cert", "", keyFile, "set both or neither"},
		{"missing cert file", filepath.Join(dir, "missing.crt"), keyFile, "no such file"},
		{"not PEM", garbage, keyFile, "gateway TLS"},
		{"key of another certificate", otherCert, keyFile, "private key does not match public key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := gateway.DefaultConfig()
			cfg.TLSCertFile, cfg.TLSKeyFile = tt.cert, tt.key
			_, err := gateway.New(cfg, nc, nil)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("New = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
