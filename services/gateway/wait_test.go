package gateway

import (
	"net/http"
	"testing"
	"time"
)

func TestPreference(t *testing.T) {
	tests := []struct {
		name   string
		prefer []string
		value  string
		found  bool
	}{
		{"alone", []string{"wait=10"}, "10", true},
		{"among others, spaced, any case", []string{"respond-async, WAIT = 7 ;x=1"}, "7", true},
		{"quoted", []string{`wait="3"`}, "3", true},
		{"first of several headers counts", []string{"return=minimal", "wait=1", "wait=9"}, "1", true},
		{"no value", []string{"wait"}, "", true},
		{"absent", []string{"respond-async", "waiting=3"}, "", false},
		{"no header", nil, "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			for _, v := range tt.prefer {
				h.Add("Prefer", v)
			}
			v, ok := preference(h, "wait")
			if v != tt.value || ok != tt.found {
				t.Errorf("preference = %q, %v; want %q, %v", v, ok, tt.value, tt.found)
			}
		})
	}
}

func FuzzParseTimeout(f *testing.F) {
	for _, s := range []string{"1", "0.5", "1500ms", "2m", "0", "-1", "NaN", "Inf", "1e300", "5m0s", "1e-12", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, ok := parseTimeout(s)
		if ok && d <= 0 {
			t.Errorf("parseTimeout(%q) = %s, accepted", s, d)
		}
		if !ok && d != 0 {
			t.Errorf("parseTimeout(%q) = %s, refused", s, d)
		}
		if want, err := time.ParseDuration(s); err == nil && want > 0 && (!ok || d != want) {
			t.Errorf("parseTimeout(%q) = %s, %v; want the duration %s", s, d, ok, want)
		}
	})
}
