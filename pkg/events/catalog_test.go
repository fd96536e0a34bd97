package events

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
)

const (
	testUUID  = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
	testUUID2 = "9B2E4A7C-1D3F-4E5A-8B6C-7D8E9F0A1B2C"
)

// catalogExamples returns valid data for every catalog type with fields,
// built from the Go structs as a publisher would.
func catalogExamples() map[string]any {
	return map[string]any{
		TypeOnUserAuthorisation: OnUserAuthorisation{
			UserID: testUUID, IP: "192.0.2.1", Endpoint: "html",
			Module: "MyAppWeb.PostController", Operation: "edit_post",
			Extra: json.RawMessage(`{"post_id":"42"}`),
		},
		TypeOnUserAuthorisationFailure: OnUserAuthorisationFailure{
			IP: "2001:db8::1", Endpoint: "api", Error: json.RawMessage(`{"reason":"forbidden"}`),
			Module: "MyAppWeb.PostController", Operation: "delete_post",
		},
		TypeOnUserAfterLogin: OnUserAfterLogin{
			UserInfo: json.RawMessage(`{"id":"` + testUUID + `","name":"Ada"}`),
			IP:       "192.0.2.1", Endpoint: "html", Type: "email",
		},
		TypeOnUserAfterLogout: OnUserAfterLogout{
			UserID: testUUID, IP: "192.0.2.1", Endpoint: "api",
			Extra: json.RawMessage(`["a",1]`),
		},
		TypeOnUserAfterSave: OnUserAfterSave{
			UserInfo: json.RawMessage(`{"name":"Ada"}`), IP: "192.0.2.1", Endpoint: "html",
			Status: "added", ModifierUser: testUUID2,
		},
		TypeOnUserAfterSaveFailure: OnUserAfterSaveFailure{
			Error: json.RawMessage(`["error","email taken"]`), IP: "192.0.2.1", Endpoint: "api",
			Status: "edited", ModifierUser: "self",
		},
		TypeOnUserLoginFailure: OnUserLoginFailure{
			IP: "192.0.2.1", Endpoint: "html", Error: json.RawMessage(`{"reason":"bad password"}`),
		},
		TypeOnUserBeforeLogin: OnUserBeforeLogin{
			IP: "192.0.2.1", Assigns: json.RawMessage(`{"page":"login"}`), Input: json.RawMessage(`{}`),
		},
		TypeOnUserAfterSaveRole: OnUserAfterSaveRole{
			RoleID: testUUID, IP: "192.0.2.1", Endpoint: "html",
		},
		TypeOnUserAfterDeleteRole: OnUserAfterDeleteRole{
			RoleID: testUUID, IP: "192.0.2.1", Endpoint: "api",
		},
		TypeOnRouter: OnRouter{
			Action: "get", Path: "/events/:id", Endpoint: "MyAppWeb.EventController",
			Type: "admin", PlugOpts: json.RawMessage(`["show"]`),
		},
		TypeOnContentAfterDelete: OnContentAfterDelete{
			Section: "blog_post",
			Private: ContentPrivate{UserID: testUUID, Content: json.RawMessage(`{"title":"Hello"}`), UserIP: "192.0.2.1"},
		},
		TypeOnCheckAnswer: OnCheckAnswer{
			Section: "login", Private: CheckAnswerPrivate{IP: "192.0.2.1"},
		},
		TypeOnAfterDependency: OnAfterDependency{
			App: "mishka_social", Status: "force_update", Output: "",
		},
		TypeOnChangeDependency: OnChangeDependency{
			App: "mishka_social", Status: "add", Output: "* Getting mishka_social",
		},
	}
}

var allCatalogTypes = []string{
	TypeOnAfterDependency, TypeOnChangeDependency, TypeOnCheckAnswer, TypeOnContentAfterDelete,
	TypeOnContentAfterDisplay, TypeOnContentAfterSave, TypeOnContentAfterTitle,
	TypeOnContentBeforeDelete, TypeOnContentBeforeDisplay, TypeOnContentBeforeSave,
	TypeOnContentChangeState, TypeOnContentPrepare, TypeOnContentPrepareData,
	TypeOnContentPrepareForm, TypeOnContentSearch, TypeOnContentSearchAreas, TypeOnDisplay,
	TypeOnInit, TypeOnPrivacyCollectAdminCapabilities, TypeOnRouter, TypeOnUserAfterDelete,
	TypeOnUserAfterDeleteRole, TypeOnUserAfterLogin, TypeOnUserAfterLogout, TypeOnUserAfterSave,
	TypeOnUserAfterSaveFailure, TypeOnUserAfterSaveRole, TypeOnUserAuthorisation,
	TypeOnUserAuthorisationFailure, TypeOnUserBeforeLogin, TypeOnUserBeforeSave, TypeOnUserLogin,
	TypeOnUserLoginFailure,
}

// exampleData returns the valid example of typ as JSON after edit has
// changed it.
func exampleData(t *testing.T, typ string, edit func(m map[string]any)) []byte {
	t.Helper()
	ex, ok := catalogExamples()[typ]
	if !ok {
		t.Fatalf("no example for %s", typ)
	}
	b, err := json.Marshal(ex)
	if err != nil {
		t.Fatal(err)
	}
	if edit == nil {
		return b
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	if b, err = json.Marshal(m); err != nil {
		t.Fatal(err)
	}
	return b
}

// deleteField is the value setField takes to delete a field.
var deleteField = new(int)

// setField sets or deletes the field at a dot path ("private.user_id").
func setField(m map[string]any, path string, v any) {
	parent, name, nested := strings.Cut(path, ".")
	if nested {
		setField(m[parent].(map[string]any), name, v)
		return
	}
	if v == deleteField {
		delete(m, parent)
		return
	}
	m[parent] = v
}

func set(path string, v any) func(map[string]any) {
	return func(m map[string]any) { setField(m, path, v) }
}

func checkInvalid(t *testing.T, err error, wantField, wantReason string, prefix bool) {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError for %s", err, wantField)
	}
	if !errors.Is(err, ErrInvalid) {
		t.Errorf("errors.Is(%v, ErrInvalid) = false", err)
	}
	if verr.Field != wantField {
		t.Errorf("Field = %q, want %q (err: %v)", verr.Field, wantField, err)
	}
	if prefix && !strings.HasPrefix(verr.Reason, wantReason) || !prefix && verr.Reason != wantReason {
		t.Errorf("Reason = %q, want %q", verr.Reason, wantReason)
	}
}

func TestCatalogEntries(t *testing.T) {
	entries := Catalog()
	if len(entries) != 33 {
		t.Fatalf("len(Catalog()) = %d, want 33", len(entries))
	}
	var types []string
	withFields, stubs := 0, 0
	for _, e := range entries {
		types = append(types, e.Type)
		switch {
		case e.Stub && len(e.Fields) == 0:
			stubs++
		case !e.Stub && len(e.Fields) > 0:
			withFields++
		default:
			t.Errorf("%s: Stub = %v with %d fields", e.Type, e.Stub, len(e.Fields))
		}
		if !strings.HasPrefix(e.Description, "Published ") || !strings.HasSuffix(e.Description, ".") {
			t.Errorf("%s: description %q is not one sentence saying when it is published", e.Type, e.Description)
		}
		if !json.Valid(e.Schema) {
			t.Errorf("%s: Schema is not JSON: %q", e.Type, e.Schema)
		}
		got, ok := LookupCatalog(e.Type)
		if !ok || got.Type != e.Type || len(got.Fields) != len(e.Fields) || string(got.Schema) != string(e.Schema) {
			t.Errorf("LookupCatalog(%q) = %+v, %v; want the Catalog() entry", e.Type, got, ok)
		}
	}
	if withFields != 15 || stubs != 18 {
		t.Errorf("%d entries with fields and %d stubs, want 15 and 18", withFields, stubs)
	}
	if !slices.IsSorted(types) {
		t.Errorf("Catalog() is not sorted by Type: %q", types)
	}
	if want := slices.Sorted(slices.Values(allCatalogTypes)); !slices.Equal(types, want) {
		t.Errorf("catalog types = %q, want the Type constants %q", types, want)
	}
	for typ := range catalogExamples() {
		if e, _ := LookupCatalog(typ); len(e.Fields) == 0 {
			t.Errorf("%s has a Go struct but no fields in the catalog", typ)
		}
	}
	for _, typ := range []string{"", "on_unknown", "ON_USER_LOGIN", "on_user_login.x"} {
		if e, ok := LookupCatalog(typ); ok {
			t.Errorf("LookupCatalog(%q) = %+v, true; want false", typ, e)
		}
	}
}

func TestCatalogReturnsCopies(t *testing.T) {
	a := Catalog()
	a[0].Fields[0].Name = "changed"
	a[0].Schema[0] = 'X'
	a[1] = CatalogEntry{}
	b := Catalog()
	if b[0].Fields[0].Name == "changed" || b[0].Schema[0] == 'X' || b[1].Type == "" {
		t.Error("changing Catalog()'s result changed the catalog")
	}
	e, _ := LookupCatalog(TypeOnUserAuthorisation)
	e.Fields[0].Name = "changed"
	e.Schema[0] = 'X'
	if e, _ = LookupCatalog(TypeOnUserAuthorisation); e.Fields[0].Name == "changed" || e.Schema[0] == 'X' {
		t.Error("changing LookupCatalog's result changed the catalog")
	}
}

// testSchema is the part of a catalog schema file the tests look at.
type testSchema struct {
	Title                string                `json:"title"`
	Description          string                `json:"description"`
	Type                 any                   `json:"type"`
	Properties           map[string]testSchema `json:"properties"`
	Required             []string              `json:"required"`
	AdditionalProperties *bool                 `json:"additionalProperties"`
	Enum                 []string              `json:"enum"`
	Pattern              string                `json:"pattern"`
	MinLength            *int                  `json:"minLength"`
}

// humanType is the CatalogField.Type a property schema should be described
// with.
func (s testSchema) humanType() string {
	switch {
	case s.Pattern == catalogUUIDPattern:
		return "uuid"
	case s.Pattern == catalogUUIDOrSelfPattern:
		return "uuid|self"
	case s.Pattern != "":
		return "pattern " + s.Pattern
	case s.Enum != nil:
		return "enum(" + strings.Join(s.Enum, ",") + ")"
	}
	switch typ := s.Type.(type) {
	case string:
		return typ
	case []any:
		var parts []string
		for _, p := range typ {
			parts = append(parts, fmt.Sprint(p))
		}
		return strings.Join(parts, "|")
	}
	return fmt.Sprintf("%v", s.Type)
}

// TestCatalogSchemas checks that every schema compiles and says what the
// catalog entry says, so that the Go table and the files cannot drift apart.
func TestCatalogSchemas(t *testing.T) {
	compiled, err := catalogSchemas()
	if err != nil {
		t.Fatalf("compile: %v", err)
	}
	if len(compiled) != len(catalogEntries) {
		t.Errorf("%d compiled schemas, want %d", len(compiled), len(catalogEntries))
	}
	files, err := catalogSchemaFiles.ReadDir("schemas")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != len(catalogEntries) {
		t.Errorf("%d schema files, want one per entry (%d)", len(files), len(catalogEntries))
	}
	for _, e := range Catalog() {
		t.Run(e.Type, func(t *testing.T) {
			if compiled[e.Type] == nil {
				t.Error("no compiled schema")
			}
			var s testSchema
			if err := json.Unmarshal(e.Schema, &s); err != nil {
				t.Fatal(err)
			}
			if s.Title != e.Type || s.Description != e.Description || s.Type != "object" {
				t.Errorf("title, description, type = %q, %q, %v; want %q, the entry's description, object", s.Title, s.Description, s.Type, e.Type)
			}
			if e.Stub {
				if s.Properties != nil || s.Required != nil || s.AdditionalProperties != nil {
					t.Errorf("stub schema constrains its object: %s", e.Schema)
				}
				return
			}
			want := map[string]CatalogField{}
			for _, f := range e.Fields {
				want[f.Name] = f
			}
			got := map[string]CatalogField{}
			var walk func(prefix string, s testSchema)
			walk = func(prefix string, s testSchema) {
				if s.AdditionalProperties == nil || *s.AdditionalProperties {
					t.Errorf("%q: additionalProperties is not false", prefix)
				}
				for name, p := range s.Properties {
					got[prefix+name] = CatalogField{
						Name: prefix + name, Type: p.humanType(),
						Required: slices.Contains(s.Required, name), Description: p.Description,
					}
					if p.humanType() == "string" && !strings.Contains(p.Description, "may be empty") && (p.MinLength == nil || *p.MinLength != 1) {
						t.Errorf("%s%s: a string that may not be empty needs minLength 1", prefix, name)
					}
					if p.Properties != nil {
						walk(prefix+name+".", p)
					}
				}
			}
			walk("", s)
			for _, name := range slices.Sorted(maps.Keys(want)) {
				if got[name] != want[name] {
					t.Errorf("field %s:\nschema:  %+v\ncatalog: %+v", name, got[name], want[name])
				}
			}
			for name := range got {
				if _, ok := want[name]; !ok {
					t.Errorf("schema property %s is not in the catalog", name)
				}
			}
		})
	}
}

func TestValidateCatalogDataValid(t *testing.T) {
	examples := catalogExamples()
	for _, e := range Catalog() {
		if e.Stub {
			continue
		}
		t.Run(e.Type, func(t *testing.T) {
			if _, ok := examples[e.Type]; !ok {
				t.Fatalf("no example for %s", e.Type)
			}
			if err := ValidateCatalogData(e.Type, "application/json", exampleData(t, e.Type, nil)); err != nil {
				t.Errorf("valid example refused: %v", err)
			}
		})
	}

	tests := []struct {
		name string
		typ  string
		ct   string
		data []byte
	}{
		{"empty content type", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, nil)},
		{"json with charset", TypeOnUserAuthorisation, "Application/JSON; charset=utf-8", exampleData(t, TypeOnUserAuthorisation, nil)},
		{"+json type", TypeOnUserAuthorisation, "application/vnd.hookbus+json", exampleData(t, TypeOnUserAuthorisation, nil)},
		{"upper-case uuid", TypeOnUserAfterLogout, "", exampleData(t, TypeOnUserAfterLogout, set("user_id", testUUID2))},
		{"extra as array", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("extra", []any{1, "two"}))},
		{"extra absent", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("extra", deleteField))},
		{"ipv6", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("ip", "::ffff:192.0.2.1"))},
		{"modifier uuid", TypeOnUserAfterSaveFailure, "", exampleData(t, TypeOnUserAfterSaveFailure, set("modifier_user", testUUID))},
		{"modifier self", TypeOnUserAfterSave, "", exampleData(t, TypeOnUserAfterSave, set("modifier_user", "self"))},
		{"error as object", TypeOnUserAfterSaveFailure, "", exampleData(t, TypeOnUserAfterSaveFailure, set("error", map[string]any{"email": "taken"}))},
		{"output absent", TypeOnUserBeforeLogin, "", exampleData(t, TypeOnUserBeforeLogin, nil)},
		{"output null", TypeOnUserBeforeLogin, "", exampleData(t, TypeOnUserBeforeLogin, set("output", nil))},
		{"output string", TypeOnUserBeforeLogin, "", mustMarshal(t, OnUserBeforeLogin{
			IP: "192.0.2.1", Assigns: json.RawMessage(`{}`), Input: json.RawMessage(`{"a":1}`), Output: ptr("<div>captcha</div>"),
		})},
		{"router defaults", TypeOnRouter, "", mustMarshal(t, OnRouter{Action: "live", Path: "/", Endpoint: "MyAppWeb.Live.Home"})},
		{"router endpoint is any module name", TypeOnRouter, "", exampleData(t, TypeOnRouter, set("endpoint", "html"))},
		{"dependency output may be empty", TypeOnChangeDependency, "", exampleData(t, TypeOnChangeDependency, set("output", ""))},
		{"content is free", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private.content", map[string]any{"anything": []any{1}}))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateCatalogData(tt.typ, tt.ct, tt.data); err != nil {
				t.Errorf("ValidateCatalogData(%s, %q, %s) = %v, want nil", tt.typ, tt.ct, tt.data, err)
			}
		})
	}
}

func mustMarshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ptr[T any](v T) *T { return &v }

func TestValidateCatalogDataInvalid(t *testing.T) {
	const uuidReason = "must match the uuid pattern (8-4-4-4-12 hex digits)"
	tests := []struct {
		name   string
		typ    string
		ct     string
		data   []byte
		field  string
		reason string
		prefix bool // reason is a prefix of the expected Reason
	}{
		{"missing user_id", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("user_id", deleteField)),
			"data.user_id", "required", false},
		{"wrong endpoint", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("endpoint", "web")),
			"data.endpoint", `value "web" not one of html, api`, false},
		{"bad uuid", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("user_id", "1234")),
			"data.user_id", `value "1234" ` + uuidReason, false},
		{"uuid too long", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("user_id", testUUID+"0")),
			"data.user_id", `value "` + testUUID + `0" ` + uuidReason, false},
		{"uuid not a string", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("user_id", 5)),
			"data.user_id", "must be string, got number", false},
		{"unknown field", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("usre_id", testUUID)),
			"data.usre_id", "unknown field", false},
		{"empty ip", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("ip", "")),
			"data.ip", "must not be empty", false},
		{"extra a string", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("extra", "x")),
			"data.extra", "must be array or object, got string", false},
		{"long value cut short", TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("endpoint", strings.Repeat("x", 100))),
			"data.endpoint", `value "` + strings.Repeat("x", 40) + `"... not one of html, api`, false},
		{"modifier neither uuid nor self", TypeOnUserAfterSave, "", exampleData(t, TypeOnUserAfterSave, set("modifier_user", "admin")),
			"data.modifier_user", `value "admin" ` + uuidReason + ` or be "self"`, false},
		{"save status", TypeOnUserAfterSaveFailure, "", exampleData(t, TypeOnUserAfterSaveFailure, set("status", "deleted")),
			"data.status", `value "deleted" not one of added, edited`, false},
		{"error a string", TypeOnUserLoginFailure, "", exampleData(t, TypeOnUserLoginFailure, set("error", "bad password")),
			"data.error", "must be array or object, got string", false},
		{"login type", TypeOnUserAfterLogin, "", exampleData(t, TypeOnUserAfterLogin, set("type", "phone")),
			"data.type", `value "phone" not one of email, username`, false},
		{"user_info an array", TypeOnUserAfterLogin, "", exampleData(t, TypeOnUserAfterLogin, set("user_info", []any{})),
			"data.user_info", "must be object, got array", false},
		{"role_id missing", TypeOnUserAfterDeleteRole, "", exampleData(t, TypeOnUserAfterDeleteRole, set("role_id", deleteField)),
			"data.role_id", "required", false},
		{"router action", TypeOnRouter, "", exampleData(t, TypeOnRouter, set("action", "patch")),
			"data.action", `value "patch" not one of get, post, live, delete, put, forward`, false},
		{"router empty type", TypeOnRouter, "", exampleData(t, TypeOnRouter, set("type", "")),
			"data.type", "must not be empty", false},
		{"router plug_opts an object", TypeOnRouter, "", exampleData(t, TypeOnRouter, set("plug_opts", map[string]any{})),
			"data.plug_opts", "must be array, got object", false},
		{"before login output a number", TypeOnUserBeforeLogin, "", exampleData(t, TypeOnUserBeforeLogin, set("output", 5)),
			"data.output", "must be string or null, got number", false},
		{"before login assigns missing", TypeOnUserBeforeLogin, "", exampleData(t, TypeOnUserBeforeLogin, set("assigns", deleteField)),
			"data.assigns", "required", false},
		{"private bad uuid", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private.user_id", "x")),
			"data.private.user_id", `value "x" ` + uuidReason, false},
		{"private missing content", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private.content", deleteField)),
			"data.private.content", "required", false},
		{"private unknown field", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private.note", "x")),
			"data.private.note", "unknown field", false},
		{"private a string", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private", "x")),
			"data.private", "must be object, got string", false},
		{"private missing", TypeOnContentAfterDelete, "", exampleData(t, TypeOnContentAfterDelete, set("private", deleteField)),
			"data.private", "required", false},
		{"captcha private empty", TypeOnCheckAnswer, "", exampleData(t, TypeOnCheckAnswer, set("private", map[string]any{})),
			"data.private.ip", "required", false},
		{"dependency status", TypeOnAfterDependency, "", exampleData(t, TypeOnAfterDependency, set("status", "remove")),
			"data.status", `value "remove" not one of add, update, force_update`, false},
		{"dependency output missing", TypeOnChangeDependency, "", exampleData(t, TypeOnChangeDependency, set("output", deleteField)),
			"data.output", "required", false},

		{"nil data", TypeOnUserAuthorisation, "", nil, "data", "required for catalog type on_user_authorisation", false},
		{"blank data", TypeOnUserAuthorisation, "application/json", []byte(" \n"), "data", "required for catalog type on_user_authorisation", false},
		{"blank stub data", TypeOnInit, "", []byte{}, "data", "required for catalog type on_init", false},
		{"truncated JSON", TypeOnUserAuthorisation, "", []byte(`{"user_id":`), "data", "invalid JSON: ", true},
		{"two JSON values", TypeOnUserAuthorisation, "", []byte(`{} {}`), "data", "invalid JSON: ", true},
		// The schema checks the last value of a key, a reader may take the
		// first: the forwarded bytes would carry what was never checked.
		{"key given twice", TypeOnUserAuthorisation, "", []byte(`{"user_id":"x","user_id":"123e4567-e89b-12d3-a456-426614174000"}`),
			"data", `the key "user_id" is given twice in one object`, false},
		{"key given twice in a nested object", TypeOnCheckAnswer, "", []byte(`{"section":"login","private":{"ip":"","ip":"10.0.0.1"}}`),
			"data", `the key "ip" is given twice in one object`, false},
		{"null data", TypeOnUserAuthorisation, "", []byte(`null`), "data", "must be object, got null", false},
		{"array data", TypeOnUserAuthorisation, "", []byte(`[]`), "data", "must be object, got array", false},
		{"text content type", TypeOnUserAuthorisation, "text/plain", exampleData(t, TypeOnUserAuthorisation, nil),
			"datacontenttype", `"text/plain" is not JSON: catalog type on_user_authorisation needs application/json data`, false},
		{"xml content type", TypeOnInit, "application/xml; charset=utf-8", []byte(`{}`),
			"datacontenttype", `"application/xml; charset=utf-8" is not JSON: catalog type on_init needs application/json data`, false},
		{"malformed content type", TypeOnInit, "/json", []byte(`{}`),
			"datacontenttype", `"/json" is not JSON: catalog type on_init needs application/json data`, false},
		{"content type checked before data", TypeOnInit, "text/plain", nil,
			"datacontenttype", `"text/plain" is not JSON: catalog type on_init needs application/json data`, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := ValidateCatalogData(tt.typ, tt.ct, tt.data)
			checkInvalid(t, err, tt.field, tt.reason, tt.prefix)
		})
	}
}

// TestValidateCatalogDataEveryField breaks every field of every catalog type
// in the ways its catalog Type allows, and checks the error names that field.
func TestValidateCatalogDataEveryField(t *testing.T) {
	for _, e := range Catalog() {
		if e.Stub {
			continue
		}
		t.Run(e.Type+"/unknown field", func(t *testing.T) {
			err := ValidateCatalogData(e.Type, "", exampleData(t, e.Type, set("not_in_catalog", 1)))
			checkInvalid(t, err, "data.not_in_catalog", "unknown field", false)
		})
		for _, f := range e.Fields {
			if f.Required {
				t.Run(e.Type+"/missing "+f.Name, func(t *testing.T) {
					err := ValidateCatalogData(e.Type, "", exampleData(t, e.Type, set(f.Name, deleteField)))
					checkInvalid(t, err, "data."+f.Name, "required", false)
				})
			}
			switch {
			case strings.HasPrefix(f.Type, "enum("):
				t.Run(e.Type+"/wrong enum "+f.Name, func(t *testing.T) {
					err := ValidateCatalogData(e.Type, "", exampleData(t, e.Type, set(f.Name, "web")))
					values := strings.ReplaceAll(strings.TrimSuffix(strings.TrimPrefix(f.Type, "enum("), ")"), ",", ", ")
					checkInvalid(t, err, "data."+f.Name, `value "web" not one of `+values, false)
				})
			case strings.HasPrefix(f.Type, "uuid"):
				t.Run(e.Type+"/bad uuid "+f.Name, func(t *testing.T) {
					bad := strings.Replace(testUUID, "-", "", 1) + "0" // 36 characters, no uuid
					err := ValidateCatalogData(e.Type, "", exampleData(t, e.Type, set(f.Name, bad)))
					checkInvalid(t, err, "data."+f.Name, fmt.Sprintf("value %q must match the uuid pattern", bad), true)
				})
			}
			t.Run(e.Type+"/wrong JSON type "+f.Name, func(t *testing.T) {
				err := ValidateCatalogData(e.Type, "", exampleData(t, e.Type, set(f.Name, true)))
				checkInvalid(t, err, "data."+f.Name, "must be ", true)
			})
		}
	}
}

func TestValidateCatalogDataStubs(t *testing.T) {
	tests := []struct {
		name   string
		data   string
		reason string // "" if the data is accepted
	}{
		{"empty object", `{}`, ""},
		{"any object", `{"anything":[1,{"b":null}],"user_id":"not checked"}`, ""},
		{"array", `[]`, "must be object, got array"},
		{"string", `"x"`, "must be object, got string"},
		{"number", `1`, "must be object, got number"},
		{"null", `null`, "must be object, got null"},
	}
	for _, e := range Catalog() {
		if !e.Stub {
			continue
		}
		for _, tt := range tests {
			t.Run(e.Type+"/"+tt.name, func(t *testing.T) {
				err := ValidateCatalogData(e.Type, "application/json", []byte(tt.data))
				if tt.reason == "" {
					if err != nil {
						t.Errorf("refused: %v", err)
					}
					return
				}
				checkInvalid(t, err, "data", tt.reason, false)
			})
		}
	}
}

func TestValidateCatalogDataNotInCatalog(t *testing.T) {
	tests := []struct {
		name string
		typ  string
		ct   string
		data string
	}{
		{"own type, JSON", "com.example.order_created", "application/json", `[1,2]`},
		{"own type, text", "com.example.order_created", "text/plain", `hello`},
		{"own type, invalid JSON", "billing.invoice_paid", "", `{"a":`},
		{"own type, no data", "billing.invoice_paid", "", ``},
		{"case differs", "ON_USER_AUTHORISATION", "", `{"endpoint":"web"}`},
		{"empty type", "", "", `x`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := ValidateCatalogData(tt.typ, tt.ct, []byte(tt.data)); err != nil {
				t.Errorf("ValidateCatalogData(%q, %q, %q) = %v, want nil", tt.typ, tt.ct, tt.data, err)
			}
		})
	}
}

// TestValidateCatalogDataDeterministic checks that data with several
// problems always gives the same one: the first field in catalog order.
func TestValidateCatalogDataDeterministic(t *testing.T) {
	tests := []struct {
		name   string
		typ    string
		data   []byte
		field  string
		reason string
	}{
		{"empty object", TypeOnUserAuthorisation, []byte(`{}`), "data.user_id", "required"},
		{"missing before unknown", TypeOnUserAuthorisation, []byte(`{"usre_id":"x","endpoint":"web","ip":""}`), "data.user_id", "required"},
		{"several bad values", TypeOnUserAuthorisation, exampleData(t, TypeOnUserAuthorisation, func(m map[string]any) {
			m["user_id"], m["ip"], m["endpoint"], m["zzz"] = "bad", "", "web", 1
		}), "data.user_id", `value "bad" must match the uuid pattern (8-4-4-4-12 hex digits)`},
		{"later field", TypeOnUserAuthorisation, exampleData(t, TypeOnUserAuthorisation, func(m map[string]any) {
			m["operation"], m["endpoint"], m["extra"] = "", "web", 1
		}), "data.endpoint", `value "web" not one of html, api`},
		{"unknown fields by name", TypeOnUserAuthorisation, exampleData(t, TypeOnUserAuthorisation, func(m map[string]any) {
			for _, k := range []string{"zz", "mm", "aa", "qq", "bb"} {
				m[k] = 1
			}
		}), "data.aa", "unknown field"},
		{"top level before private", TypeOnContentAfterDelete, exampleData(t, TypeOnContentAfterDelete, func(m map[string]any) {
			delete(m, "section")
			m["private"] = map[string]any{"x": 1}
		}), "data.section", "required"},
		{"private in field order", TypeOnContentAfterDelete, exampleData(t, TypeOnContentAfterDelete, func(m map[string]any) {
			m["private"] = map[string]any{"user_ip": "", "content": 1, "x": 1}
		}), "data.private.user_id", "required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for range 50 {
				err := ValidateCatalogData(tt.typ, "", tt.data)
				checkInvalid(t, err, tt.field, tt.reason, false)
				if t.Failed() {
					return
				}
			}
		})
	}
}

func TestValidateCatalogDataErrorText(t *testing.T) {
	err := ValidateCatalogData(TypeOnUserAuthorisation, "", exampleData(t, TypeOnUserAuthorisation, set("endpoint", "web")))
	if got, want := fmt.Sprint(err), `invalid event: data.endpoint: value "web" not one of html, api`; got != want {
		t.Errorf("err = %q, want %q", got, want)
	}
}

// TestValidateCatalogDataConcurrent runs first uses side by side, for the
// race detector: the schemas are compiled once, lazily.
func TestValidateCatalogDataConcurrent(t *testing.T) {
	valid := exampleData(t, TypeOnUserAuthorisation, nil)
	invalidData := exampleData(t, TypeOnUserAuthorisation, set("endpoint", "web"))
	for i := range 8 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			if err := ValidateCatalogData(TypeOnUserAuthorisation, "", valid); err != nil {
				t.Errorf("valid data refused: %v", err)
			}
			checkInvalid(t, ValidateCatalogData(TypeOnUserAuthorisation, "", invalidData), "data.endpoint", `value "web" not one of html, api`, false)
		})
	}
}
