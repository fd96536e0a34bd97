package gateway

import (
	"encoding/base64"
	"testing"

	"github.com/hookbus/hookbus/pkg/events"
)

// FuzzParseDeviceAuth: whatever the header, parseDeviceAuth refuses it or
// gives a valid device id, and never reads a header of 1 KiB or more.
func FuzzParseDeviceAuth(f *testing.F) {
	for _, s := range []string{`{"device_id":"d1","password":"x"}`, `{"device_id":"d1","token":"t"}`, `[]`, `{"device_id":7}`, `{`} {
		f.Add(base64.StdEncoding.EncodeToString([]byte(s)))
	}
	f.Fuzz(func(t *testing.T, h string) {
		a, err := parseDeviceAuth(h)
		if err != nil {
			return
		}
		if len(h) >= MaxDeviceAuthHeader || events.ValidateDeviceID(a.DeviceID) != nil || a.Credentials["device_id"] != a.DeviceID {
			t.Fatalf("header %q accepted as %+v", h, a)
		}
	})
}
