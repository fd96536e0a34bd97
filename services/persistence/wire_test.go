package persistence_test

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/persistence"
)

var update = flag.Bool("update", false, "rewrite testdata/wire.golden")

// TestWireFormat sends the persistence API's requests as raw JSON, the way
// a client in another language would, and pins every reply, headers
// included, in testdata/wire.golden (the examples of docs/protocol.md come
// from there). Run with -update after a deliberate change.
func TestWireFormat(t *testing.T) {
	// A fixed key, so the key ids in the replies are too.
	key, err := persistence.ParseKey("AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=")
	if err != nil {
		t.Fatal(err)
	}
	srv := newBus(t, "")
	startService(t, srv, key)
	nc := natstest.Connect(t, srv)

	exchanges := []struct{ subject, body string }{
		{events.AuthCredsGetSubject, `{"context":"acme"}`},
		{events.AuthCredsSaveSubject, `{"context":"acme","value":"eyJtZSI6eyJpZCI6IjU1MTE5OTk5OTk5OTlAcy53aGF0c2FwcC5uZXQifX0=","expect_revision":0}`},
		{events.AuthCredsGetSubject, `{"context":"acme"}`},
		{events.AuthCredsSaveSubject, `{"context":"acme","value":"e30=","expect_revision":1}`},
		{events.AuthCredsSaveSubject, `{"context":"acme","value":"e30=","expect_revision":2}`},
		{events.AuthKeysSetSubject, `{"context":"acme","keys":{"pre-key":{"1":"AQID","2":"BAUG"},"session":{"5511999999999:12@s.whatsapp.net":"c2Vzc2lvbg=="}}}`},
		{events.AuthKeysGetSubject, `{"context":"acme","type":"pre-key","ids":["1","2","3"]}`},
		{events.AuthKeysSetSubject, `{"context":"acme","keys":{"pre-key":{"1":null}}}`},
		{events.AuthKeysListSubject, `{"context":"acme","type":"pre-key"}`},
		{events.AuthKeysDeleteSubject, `{"context":"acme","type":"pre-key","ids":["2"]}`},
		{events.AuthKeysGetSubject, `{"type":"session","ids":["5511999999999:12@s.whatsapp.net"]}`},
		{events.AuthKeysGetSubject, `{"context":"acme","type":"pre key","ids":["1"]}`},
		{events.AuthKeysGetSubject, `{"context":"acme","type":"session","id":"x"}`},
		{events.AuthContextClearSubject, `{"context":"acme"}`},
		{events.AuthRotateSubject, ``},
	}
	var out strings.Builder
	for _, ex := range exchanges {
		m, err := nc.Request(ex.subject, []byte(ex.body), 5*time.Second)
		if err != nil {
			t.Fatalf("%s %s: %v", ex.subject, ex.body, err)
		}
		fmt.Fprintf(&out, "> %s\n%s\n< ", ex.subject, ex.body)
		if code := m.Header.Get(micro.ErrorCodeHeader); code != "" {
			fmt.Fprintf(&out, "%s: %s\n%s: %s\n", micro.ErrorCodeHeader, code, micro.ErrorHeader, m.Header.Get(micro.ErrorHeader))
		}
		fmt.Fprintf(&out, "%s\n\n", m.Data)
	}
	compareGolden(t, "testdata/wire.golden", out.String())
}

func compareGolden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("wire format differs from %s (run with -update after a deliberate change):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// TestDiscoverable checks that the service answers $SRV.PING and
// $SRV.INFO with its name and every endpoint.
func TestDiscoverable(t *testing.T) {
	srv := newBus(t, "")
	key := persistence.NewKey()
	startService(t, srv, key)
	nc := natstest.Connect(t, srv)

	m, err := nc.Request("$SRV.PING."+events.AuthServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.PING: %v", err)
	}
	var ping micro.Ping
	if err := json.Unmarshal(m.Data, &ping); err != nil || ping.Name != events.AuthServiceName {
		t.Fatalf("$SRV.PING answered %s (%v), want name %s", m.Data, err, events.AuthServiceName)
	}

	m, err = nc.Request("$SRV.INFO."+events.AuthServiceName, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("$SRV.INFO: %v", err)
	}
	var info micro.Info
	if err := json.Unmarshal(m.Data, &info); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, ep := range info.Endpoints {
		subjects = append(subjects, ep.Subject)
		if ep.QueueGroup != events.AuthServiceName {
			t.Errorf("endpoint %s in queue group %q, want %q", ep.Name, ep.QueueGroup, events.AuthServiceName)
		}
	}
	slices.Sort(subjects)
	want := []string{
		events.AuthContextClearSubject, events.AuthCredsGetSubject, events.AuthCredsSaveSubject,
		events.AuthKeysDeleteSubject, events.AuthKeysGetSubject, events.AuthKeysListSubject,
		events.AuthKeysSetSubject, events.AuthRotateSubject,
	}
	if !slices.Equal(subjects, want) {
		t.Errorf("$SRV.INFO endpoints %q, want %q", subjects, want)
	}
	if info.Metadata["key_id"] != key.ID() || info.Metadata["bucket"] != events.BucketAuth {
		t.Errorf("$SRV.INFO metadata %v, want key_id %s and bucket %s", info.Metadata, key.ID(), events.BucketAuth)
	}
	if _, err := nc.Request("hookbus.auth.nothing", nil, time.Second); err != nats.ErrNoResponders {
		t.Errorf("request to an unserved subject: %v, want no responders", err)
	}
}

// An error answer is a micro error: counted in $SRV.STATS, with the code
// and message in the headers and in the body.
func TestErrorsAreMicroErrors(t *testing.T) {
	srv := newBus(t, "")
	startService(t, srv, persistence.NewKey())
	nc := natstest.Connect(t, srv)
	m, err := nc.Request(events.AuthKeysGetSubject, []byte(`{"context":"acme","type":"pre key","ids":["1"]}`), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply events.ErrorReply
	if err := json.Unmarshal(m.Data, &reply); err != nil || reply.Error == nil {
		t.Fatalf("body %s (%v), want {\"error\": ...}", m.Data, err)
	}
	if code := m.Header.Get(micro.ErrorCodeHeader); code != "invalid" || reply.Error.Code != events.CodeInvalid ||
		m.Header.Get(micro.ErrorHeader) != reply.Error.Message {
		t.Errorf("headers %v, body %s; want code invalid and the message in both", m.Header, m.Data)
	}
	if n := natstest.EndpointErrors(t, nc, "hookbus-persistence", "keys-get"); n != 1 {
		t.Errorf("$SRV.STATS counts %d errors of keys-get, want 1", n)
	}
}
