package gateway

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/internal/natstest"
)

func TestOpenAPIIsServedAndInSync(t *testing.T) {
	docs, err := os.ReadFile("../../docs/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(docs, openAPI) {
		t.Fatal("docs/openapi.json differs from services/gateway/openapi.json, which the gateway serves: " +
			"refresh the copy with `cp services/gateway/openapi.json docs/openapi.json`")
	}

	svc, err := New(DefaultConfig(), natstest.Connect(t, natstest.RunServer(t)), nil)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(svc.Handler())
	t.Cleanup(hs.Close)
	resp, err := http.Get(hs.URL + "/openapi.json")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	served, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" || !bytes.Equal(served, openAPI) {
		t.Errorf("GET /openapi.json: %d, %s, %d bytes: want 200, application/json and the document", resp.StatusCode, resp.Header.Get("Content-Type"), len(served))
	}
}

func TestOpenAPIDescribesTheGateway(t *testing.T) {
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]struct{ Type, Scheme string } `json:"securitySchemes"`
			Schemas         map[string]struct {
				Properties map[string]json.RawMessage `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(openAPI, &doc); err != nil {
		t.Fatalf("openapi.json: %v", err)
	}
	if doc.OpenAPI != "3.1.0" {
		t.Errorf("openapi %q, want 3.1.0", doc.OpenAPI)
	}
	described := func(pattern string) bool {
		method, path, _ := strings.Cut(pattern, " ")
		_, ok := doc.Paths[path][strings.ToLower(method)]
		return ok
	}
	var patterns []string
	for _, rt := range (&Service{}).routes() {
		patterns = append(patterns, rt.pattern)
	}
	for _, p := range append(patterns, "POST /events", "POST /events/{type}", "POST /calls/{type}", "GET /openapi.json") {
		if !described(p) {
			t.Errorf("openapi.json does not describe %s", p)
		}
	}

	statuses := map[string]bool{}
	for _, ops := range doc.Paths {
		for _, raw := range ops {
			var op struct{ Responses map[string]json.RawMessage }
			if err := json.Unmarshal(raw, &op); err != nil {
				t.Fatal(err)
			}
			for s := range op.Responses {
				statuses[s] = true
			}
		}
	}
	for _, s := range []string{"200", "202", "207", "400", "401", "403", "413", "415", "429", "431", "502", "503", "504"} {
		if !statuses[s] {
			t.Errorf("openapi.json has no response %s", s)
		}
	}
	for schema, props := range map[string][]string{
		"Problem":     {"type", "title", "status", "detail", "code", "field", "reason"},
		"ChainResult": {"state", "halted", "halted_by", "trace", "error"},
		"Stored":      {"stream", "seq", "duplicate"},
		"BatchAnswer": {"results"},
		"CloudEvent":  {"specversion", "id", "source", "type", "data", "data_base64"},
	} {
		for _, p := range props {
			if _, ok := doc.Components.Schemas[schema].Properties[p]; !ok {
				t.Errorf("schema %s has no property %s", schema, p)
			}
		}
	}
	if b := doc.Components.SecuritySchemes["bearer"]; b.Type != "http" || b.Scheme != "bearer" {
		t.Errorf("security scheme bearer %+v, want http bearer", b)
	}

	// Every $ref points into the document.
	var tree any
	if err := json.Unmarshal(openAPI, &tree); err != nil {
		t.Fatal(err)
	}
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case map[string]any:
			if ref, ok := v["$ref"].(string); ok && resolve(tree, ref) == nil {
				t.Errorf("$ref %q points nowhere", ref)
			}
			for _, c := range v {
				walk(c)
			}
		case []any:
			for _, c := range v {
				walk(c)
			}
		}
	}
	walk(tree)
}

// resolve returns what a local JSON pointer reference (#/a/b) names in
// tree, nil if nothing.
func resolve(tree any, ref string) any {
	path, ok := strings.CutPrefix(ref, "#/")
	if !ok {
		return nil
	}
	for key := range strings.SplitSeq(path, "/") {
		m, ok := tree.(map[string]any)
		if !ok {
			return nil
		}
		tree = m[strings.ReplaceAll(strings.ReplaceAll(key, "~1", "/"), "~0", "~")]
	}
	return tree
}
