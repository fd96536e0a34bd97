package events

import "testing"

// Decode skips the second parse of a structured body's source only where
// that parse would accept it.
func TestStructuredSourceAsSent(t *testing.T) {
	const head = `{"specversion":"1.0","id":"1","type":"com.example.t",`
	for _, tc := range []struct {
		name, body string
		fast       bool // decided without the second parse
	}{
		{"plain", head + `"source":"/shop"}`, true},
		{"plain with data", head + `"source":"/shop","data":{"a":1}}`, true},
		{"empty fragment", head + `"source":"/shop#"}`, false},
		{"query", head + `"source":"/shop?"}`, false},
		{"escaped slash", head + `"source":"\/shop"}`, false},
		{"escaped fragment", head + `"source":"/shop\u0023"}`, false},
		{"another member folding to source", head + `"source":"/shop","Source":"/a b"}`, false},
		{"source inside the data", head + `"source":"/shop","data":{"source":"x"}}`, false},
		{"a value ending in source", head + `"source":"/shop","subject":"opensource"}`, false},
		{"percent-encoded", head + `"source":"/sh%6Fp"}`, false},
		{"scheme in capitals", head + `"source":"HTTP://example.com/shop"}`, false},
		{"space", head + `"source":"/a b"}`, false},
		{"host", head + `"source":"//shop"}`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := []byte(tc.body)
			e, err := decodeStructured(body)
			if err != nil {
				return // refused before the source is looked at
			}
			ec, _ := v1Context(e)
			fast := sourceAsSent(&ec.Source.URL, body)
			if fast != tc.fast {
				t.Errorf("sourceAsSent = %v, want %v", fast, tc.fast)
			}
			if err := checkStructuredSource(body); fast && err != nil {
				t.Errorf("sourceAsSent accepted a source the full check refuses: %v", err)
			}
		})
	}
}

// FuzzStructuredSourceAsSent: what sourceAsSent accepts, the full check
// of the source as sent accepts too.
func FuzzStructuredSourceAsSent(f *testing.F) {
	for _, s := range []string{"/shop", "/shop#", "\\/shop", "//shop", "/sh%6Fp", "HTTP://x/", "/a b", "a:b", "/shop?"} {
		f.Add(`{"specversion":"1.0","id":"1","type":"com.example.t","source":"` + s + `","data":{"a":"source"}}`)
	}
	f.Fuzz(func(t *testing.T, body string) {
		e, err := decodeStructured([]byte(body))
		if err != nil {
			return
		}
		ec, ok := v1Context(e)
		if !ok || !sourceAsSent(&ec.Source.URL, []byte(body)) {
			return
		}
		if err := checkStructuredSource([]byte(body)); err != nil {
			t.Fatalf("sourceAsSent accepted %q, the full check refuses it: %v", body, err)
		}
	})
}
