package gateway_test

import (
	"encoding/base64"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookbus/hookbus/services/gateway"
)

var (
	testSecret = []byte("ULO1b5eiGSPNcrnAvnIXGy7JhH0WorbLkVq/pT10V/0/Hq7Dw66A5XIbZT0X6zq4")
	testSalt   = []byte("b/BuhKLXOIqYM8sD53XnT51gwiBHmBpv+eM5I6HrvERTleoIq0EHYi76aNo+PP5E")
)

func newSealer(t *testing.T, secret, salt []byte) *gateway.DeviceSealer {
	t.Helper()
	s, err := gateway.NewDeviceSealer(secret, salt)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestDeviceTokenOpen(t *testing.T) {
	s := newSealer(t, testSecret, testSalt)
	now := time.Date(2026, 11, 28, 12, 0, 0, 0, time.UTC)
	good := gateway.DeviceToken{DeviceID: "dev-1", IssuedAt: now, Expires: now.Add(time.Hour), Generation: 3}
	seal := func(t *testing.T, s *gateway.DeviceSealer, tok gateway.DeviceToken) string {
		t.Helper()
		out, err := s.Seal(tok)
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	tampered := func(t *testing.T) string {
		raw, _ := base64.RawURLEncoding.DecodeString(seal(t, s, good))
		raw[len(raw)/2] ^= 1
		return base64.RawURLEncoding.EncodeToString(raw)
	}
	tests := []struct {
		name   string
		token  func(t *testing.T) string
		device string
		at     time.Time
		gen    uint64
		want   error
	}{
		{"valid", func(t *testing.T) string { return seal(t, s, good) }, "dev-1", now, 3, nil},
		{"valid, the device's generation older than the token's", func(t *testing.T) string { return seal(t, s, good) }, "dev-1", now, 0, nil},
		{"token of another device", func(t *testing.T) string { return seal(t, s, good) }, "dev-2", now, 3, gateway.ErrTokenInvalid},
		{"tampered", tampered, "dev-1", now, 3, gateway.ErrTokenInvalid},
		{"another secret", func(t *testing.T) string {
			return seal(t, newSealer(t, append([]byte("x"), testSecret...), testSalt), good)
		}, "dev-1", now, 3, gateway.ErrTokenInvalid},
		{"another salt", func(t *testing.T) string { return seal(t, newSealer(t, testSecret, []byte("pepper")), good) }, "dev-1", now, 3, gateway.ErrTokenInvalid},
		{"not base64", func(*testing.T) string { return "not a token!" }, "dev-1", now, 3, gateway.ErrTokenInvalid},
		{"empty", func(*testing.T) string { return "" }, "dev-1", now, 3, gateway.ErrTokenInvalid},
		{"expired", func(t *testing.T) string { return seal(t, s, good) }, "dev-1", now.Add(time.Hour), 3, gateway.ErrTokenExpired},
		{"revoked", func(t *testing.T) string { return seal(t, s, good) }, "dev-1", now, 4, gateway.ErrTokenRevoked},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Open(tt.token(t), tt.device, tt.at, tt.gen)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Open: %v, want %v", err, tt.want)
			}
			if err == nil && (got.DeviceID != good.DeviceID || !got.Expires.Equal(good.Expires) || got.Generation != good.Generation || !got.IssuedAt.Equal(good.IssuedAt)) {
				t.Fatalf("Open = %+v, want %+v", got, good)
			}
		})
	}
}

func TestDeviceTokenOpaque(t *testing.T) {
	s := newSealer(t, testSecret, testSalt)
	tok, err := s.Seal(gateway.DeviceToken{DeviceID: "secret-device-name", Expires: time.Now().Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := base64.RawURLEncoding.DecodeString(tok)
	if strings.Contains(string(raw), "secret-device-name") {
		t.Fatal("the token shows the device id in clear")
	}
	again, _ := s.Seal(gateway.DeviceToken{DeviceID: "secret-device-name", Expires: time.Now().Add(time.Hour)})
	if again == tok {
		t.Fatal("two seals gave the same token: nonce reused")
	}
}

func TestNewDeviceSealerRefuses(t *testing.T) {
	if _, err := gateway.NewDeviceSealer(testSecret[:31], testSalt); err == nil {
		t.Error("a 31-byte secret was accepted")
	}
	if _, err := gateway.NewDeviceSealer(testSecret, nil); err == nil {
		t.Error("an empty salt was accepted")
	}
}

func TestDeviceSealerFromEnv(t *testing.T) {
	dir := t.TempDir()
	secretFile := filepath.Join(dir, "secret")
	if err := os.WriteFile(secretFile, append(testSecret, '\n'), 0o600); err != nil {
		t.Fatal(err)
	}
	direct := newSealer(t, testSecret, testSalt)
	tok, _ := direct.Seal(gateway.DeviceToken{DeviceID: "d", Expires: time.Now().Add(time.Hour)})
	tests := []struct {
		name    string
		env     map[string]string
		wantErr string
	}{
		{"variables", map[string]string{"HOOKBUS_DEVICE_TOKEN_SECRET": string(testSecret), "HOOKBUS_DEVICE_TOKEN_SALT": string(testSalt)}, ""},
		{"secret from a file with a trailing newline", map[string]string{"HOOKBUS_DEVICE_TOKEN_SECRET_FILE": secretFile, "HOOKBUS_DEVICE_TOKEN_SALT": string(testSalt)}, ""},
		{"both the variable and its file", map[string]string{"HOOKBUS_DEVICE_TOKEN_SECRET": string(testSecret), "HOOKBUS_DEVICE_TOKEN_SECRET_FILE": secretFile, "HOOKBUS_DEVICE_TOKEN_SALT": "s"}, "not both"},
		{"no salt", map[string]string{"HOOKBUS_DEVICE_TOKEN_SECRET": string(testSecret)}, "not set"},
		{"missing file", map[string]string{"HOOKBUS_DEVICE_TOKEN_SECRET_FILE": filepath.Join(dir, "none"), "HOOKBUS_DEVICE_TOKEN_SALT": "s"}, "SECRET_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := gateway.DeviceSealerFromEnv(func(k string) string { return tt.env[k] })
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if _, err := s.Open(tok, "d", time.Now(), 0); err != nil {
				t.Fatalf("a token of the same secret and salt: %v", err)
			}
		})
	}
}
