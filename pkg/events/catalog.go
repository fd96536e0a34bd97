package events

import (
	"bytes"
	"cmp"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/santhosh-tekuri/jsonschema/v6/kind"
)

// CatalogField describes one field of a catalog event's data.
//
// A field of a nested object is named by its dot path ("private.user_id")
// and listed right after its parent; Required then means required inside
// the parent.
type CatalogField struct {
	// Name is the JSON name, e.g. "user_id".
	Name string
	// Type is a short human type: "uuid", "uuid|self", "string" (not empty
	// unless Description says it may be), "object", "array",
	// "object|array", "string|null" or "enum(html,api)".
	Type string
	// Required says whether the data is refused without the field.
	Required bool
	// Description says what the field holds and which values are accepted.
	Description string
}

// CatalogEntry describes one built-in event type: the events of
// MishkaInstaller's reference catalog, carried as CloudEvents data.
type CatalogEntry struct {
	// Type is the event type, e.g. "on_user_authorisation".
	Type string
	// Description says in one sentence when the event is published and
	// what plugins do with it.
	Description string
	// Fields lists the fields of the data in schema order; empty for stubs.
	Fields []CatalogField
	// Stub is true for the original's empty stubs: their data may be any
	// JSON object.
	Stub bool
	// Schema is the JSON Schema (draft 2020-12) the data is validated
	// against. Entries with Fields refuse fields they do not list (free data
	// belongs in "extra").
	Schema json.RawMessage
}

// The uuid patterns of the schema files, named so that errors can say
// "uuid" instead of printing a regular expression. TestCatalogSchemas checks
// that the files use exactly these.
const (
	catalogUUIDPattern       = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
	catalogUUIDOrSelfPattern = "^(self|[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12})$"
)

// catalogSchemaURL is where the schemas are registered with the compiler; it
// never leaves the process and nothing is fetched from it.
const catalogSchemaURL = "https://github.com/hookbus/hookbus/raw/main/pkg/events/schemas/"

//go:embed schemas/*.json
var catalogSchemaFiles embed.FS

// catalogEntries is sorted by Type (LookupCatalog searches it) and holds no
// Schema: that is read from catalogSchemaFiles, schemas/<type>.json.
var catalogEntries = []CatalogEntry{
	{
		Type:        TypeOnAfterDependency,
		Description: "Published after a plugin has been installed or updated, so plugins can react to the new dependency.",
		Fields: []CatalogField{
			{Name: "app", Type: "string", Required: true, Description: "Name of the application being installed or updated (an atom in the original)."},
			{Name: "status", Type: "enum(add,update,force_update)", Required: true, Description: "What was done: add, update or force_update."},
			{Name: "output", Type: "string", Required: true, Description: "Output of the install or update as text; may be empty."},
		},
	},
	{
		Type:        TypeOnChangeDependency,
		Description: "Published for each line of output while a plugin is being installed or updated, so plugins can follow the progress.",
		Fields: []CatalogField{
			{Name: "app", Type: "string", Required: true, Description: "Name of the application being installed or updated (an atom in the original)."},
			{Name: "status", Type: "enum(add,update,force_update)", Required: true, Description: "What is being done: add, update or force_update (the values of on_after_dependency)."},
			{Name: "output", Type: "string", Required: true, Description: "One line of the install's output; may be empty."},
		},
	},
	{
		Type:        TypeOnCheckAnswer,
		Description: "Published to check a captcha answer; only one captcha plugin should answer it, and private is read-only.",
		Fields: []CatalogField{
			{Name: "section", Type: "string", Required: true, Description: "Where the captcha is shown, e.g. \"login\" (an atom in the original)."},
			{Name: "private", Type: "object", Required: true, Description: "Facts about the client; read-only: whatever a plugin changes here is restored from the caller's input."},
			{Name: "private.ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6; any non-empty string is accepted, its format is not checked."},
		},
	},
	{
		Type:        TypeOnContentAfterDelete,
		Description: "Published after a content item has been deleted, so plugins can clean up what they keep about it; it expects no answer, and private is read-only.",
		Fields: []CatalogField{
			{Name: "section", Type: "string", Required: true, Description: "Where the content lived, e.g. \"blog_post\" (an atom in the original)."},
			{Name: "private", Type: "object", Required: true, Description: "Facts about the deletion; read-only: whatever a plugin changes here is restored from the caller's input."},
			{Name: "private.user_id", Type: "uuid", Required: true, Description: "ID of the user who deleted the content: a UUID, 36 characters (8-4-4-4-12 hex digits)."},
			{Name: "private.content", Type: "object", Required: true, Description: "The deleted content, a JSON object."},
			{Name: "private.user_ip", Type: "string", Required: true, Description: "IP address of that user as text, IPv4 or IPv6; any non-empty string is accepted, its format is not checked."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnContentAfterDisplay,
		Description: "Published after a content item has been displayed; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentAfterSave,
		Description: "Published after a content item has been saved; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentAfterTitle,
		Description: "Published after a content item's title has been rendered, so plugins can add below it; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentBeforeDelete,
		Description: "Published before a content item is deleted; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentBeforeDisplay,
		Description: "Published before a content item is displayed; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentBeforeSave,
		Description: "Published before a content item is saved; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentChangeState,
		Description: "Published when a content item's state (published, archived, ...) changes; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentPrepare,
		Description: "Published while a content item is prepared for display; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentPrepareData,
		Description: "Published while the data of a content form is prepared; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentPrepareForm,
		Description: "Published while a content form is prepared; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentSearch,
		Description: "Published when content is searched, so plugins can add results; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnContentSearchAreas,
		Description: "Published when the areas a content search covers are collected; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnDisplay,
		Description: "Published when a page is displayed; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnInit,
		Description: "Published when the host application starts; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnPrivacyCollectAdminCapabilities,
		Description: "Published when the privacy capabilities shown to admins are collected; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnRouter,
		Description: "Published when the host application builds its router, so plugins can add routes (an action, a path and the module that handles it).",
		Fields: []CatalogField{
			{Name: "action", Type: "enum(get,post,live,delete,put,forward)", Required: true, Description: "Router macro the route is declared with: get, post, live, delete, put or forward."},
			{Name: "path", Type: "string", Required: true, Description: "Route path, e.g. \"/events/:id\"."},
			{Name: "endpoint", Type: "string", Required: true, Description: "Module that handles the route (a controller, LiveView or plug), e.g. \"MyAppWeb.EventController\"; here, unlike other events, not html or api."},
			{Name: "type", Type: "string", Required: false, Description: "Kind of route, e.g. \"public\"; optional, absent means \"public\" (the original's default)."},
			{Name: "plug_opts", Type: "array", Required: false, Description: "Options passed to the handling module, a JSON array; optional, absent means []."},
		},
	},
	{
		Type:        TypeOnUserAfterDelete,
		Description: "Published after a user account has been deleted; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnUserAfterDeleteRole,
		Description: "Published after a role has been deleted, so plugins can drop what they keep about it.",
		Fields: []CatalogField{
			{Name: "role_id", Type: "uuid", Required: true, Description: "ID of the role: a UUID, 36 characters (8-4-4-4-12 hex digits)."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
		},
	},
	{
		Type:        TypeOnUserAfterLogin,
		Description: "Published after a user has logged in, so plugins can record or react to the login.",
		Fields: []CatalogField{
			{Name: "user_info", Type: "object", Required: true, Description: "The user's data, a JSON object; its content is free."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "type", Type: "enum(email,username)", Required: true, Description: "What the user logged in with: email or username."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserAfterLogout,
		Description: "Published after a user has logged out, so plugins can clean up what they keep for the session.",
		Fields: []CatalogField{
			{Name: "user_id", Type: "uuid", Required: true, Description: "ID of the user: a UUID, 36 characters (8-4-4-4-12 hex digits)."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserAfterSave,
		Description: "Published after a user account has been added or edited, so plugins can react to the change.",
		Fields: []CatalogField{
			{Name: "user_info", Type: "object", Required: true, Description: "The user's data, a JSON object; its content is free."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "status", Type: "enum(added,edited)", Required: true, Description: "added for a new account, edited for a changed one."},
			{Name: "modifier_user", Type: "uuid|self", Required: true, Description: "Who made the change: the UUID of the acting user, or \"self\" when users changed their own account."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserAfterSaveFailure,
		Description: "Published when adding or editing a user account has failed, so plugins can log or react to the failure.",
		Fields: []CatalogField{
			{Name: "error", Type: "object|array", Required: true, Description: "What went wrong, a JSON object or array (a map or tuple in the original); its content is free."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "status", Type: "enum(added,edited)", Required: true, Description: "added for a new account, edited for a changed one."},
			{Name: "modifier_user", Type: "uuid|self", Required: true, Description: "Who made the change: the UUID of the acting user, or \"self\" when users changed their own account."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserAfterSaveRole,
		Description: "Published after a role has been added or edited, so plugins can react to the change.",
		Fields: []CatalogField{
			{Name: "role_id", Type: "uuid", Required: true, Description: "ID of the role: a UUID, 36 characters (8-4-4-4-12 hex digits)."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
		},
	},
	{
		Type:        TypeOnUserAuthorisation,
		Description: "Published when a user asks for an operation that needs authorisation; the caller takes the chain's final data as the answer of its access check, so plugins may change it or halt the chain.",
		Fields: []CatalogField{
			{Name: "user_id", Type: "uuid", Required: true, Description: "ID of the user: a UUID, 36 characters (8-4-4-4-12 hex digits)."},
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "module", Type: "string", Required: true, Description: "Name of the module (the caller) asking for the check, e.g. \"MyAppWeb.PostController\"."},
			{Name: "operation", Type: "string", Required: true, Description: "Operation to authorise, e.g. \"edit_post\" (an atom in the original)."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserAuthorisationFailure,
		Description: "Published when a user has been refused an operation, so plugins can log or react to the refusal.",
		Fields: []CatalogField{
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "error", Type: "object|array", Required: true, Description: "What went wrong, a JSON object or array (a map or tuple in the original); its content is free."},
			{Name: "module", Type: "string", Required: true, Description: "Name of the module (the caller) asking for the check, e.g. \"MyAppWeb.PostController\"."},
			{Name: "operation", Type: "string", Required: true, Description: "Operation to authorise, e.g. \"edit_post\" (an atom in the original)."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
	{
		Type:        TypeOnUserBeforeLogin,
		Description: "Published before the login form is rendered, so plugins can add to the form by setting output.",
		Fields: []CatalogField{
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "assigns", Type: "object", Required: true, Description: "Template assigns of the login page (LiveView assigns in the original), a JSON object."},
			{Name: "output", Type: "string|null", Required: false, Description: "Markup plugins add to the login form; optional and may be null: absent or null means nothing has been added."},
			{Name: "input", Type: "object", Required: true, Description: "Parameters of the login request, a JSON object."},
		},
	},
	{
		Type:        TypeOnUserBeforeSave,
		Description: "Published before a user account is saved; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnUserLogin,
		Description: "Published while a user is being logged in; a stub without defined fields, so any JSON object is accepted.",
		Stub:        true,
	},
	{
		Type:        TypeOnUserLoginFailure,
		Description: "Published when a login attempt has failed, so plugins can log it or slow the client down.",
		Fields: []CatalogField{
			{Name: "ip", Type: "string", Required: true, Description: "Client IP address as text, IPv4 or IPv6 (the original's tuple form becomes a string); any non-empty string is accepted, its format is not checked."},
			{Name: "endpoint", Type: "enum(html,api)", Required: true, Description: "Side the request came from: html (browser pages) or api."},
			{Name: "error", Type: "object|array", Required: true, Description: "What went wrong, a JSON object or array (a map or tuple in the original); its content is free."},
			{Name: "extra", Type: "object|array", Required: false, Description: "Free data for plugins, a JSON object or array; optional. Data the catalog does not list belongs here, since unknown fields are refused."},
		},
	},
}

// Catalog returns every built-in event type, sorted by Type. The slice, its
// Fields and Schemas are a fresh copy on each call: changing them changes
// nothing in the package.
func Catalog() []CatalogEntry {
	out := make([]CatalogEntry, len(catalogEntries))
	for i, e := range catalogEntries {
		out[i] = catalogEntryCopy(e)
	}
	return out
}

// LookupCatalog returns the catalog entry of the event type typ (a fresh
// copy), or false if typ is not a built-in type.
func LookupCatalog(typ string) (CatalogEntry, bool) {
	i, ok := catalogIndex(typ)
	if !ok {
		return CatalogEntry{}, false
	}
	return catalogEntryCopy(catalogEntries[i]), true
}

// ValidateCatalogData checks an event's data against the schema of catalog
// type typ. Types not in the catalog return nil (they pass as they are).
//
// dataContentType is the event's datacontenttype: empty, application/json or
// any type ending in +json, parameters allowed. Otherwise the error is for
// Field "datacontenttype". Missing or invalid JSON data is refused with
// Field "data", and data the schema refuses with Field "data" (the data as a
// whole, e.g. an array where an object is needed) or "data.<path>" (e.g.
// "data.user_id", "data.private.user_id"), with a Reason such as "required",
// "unknown field" or `value "web" not one of html, api`.
//
// Only one problem is reported: the one of the first field in catalog order
// (the data itself first, unknown fields last), so the same data always gives
// the same error. Every such error is a *ValidationError and matches
// ErrInvalid.
func ValidateCatalogData(typ, dataContentType string, data []byte) error {
	i, ok := catalogIndex(typ)
	if !ok {
		return nil
	}
	if !catalogIsJSON(dataContentType) {
		return invalid("datacontenttype", "%q is not JSON: catalog type %s needs application/json data", dataContentType, typ)
	}
	if len(bytes.TrimSpace(data)) == 0 {
		return invalid("data", "required for catalog type %s", typ)
	}
	var v any
	if err := json.Unmarshal(data, &v); err != nil {
		return invalid("data", "invalid JSON: %v", err)
	}
	if key, ok := duplicateKey(data); ok {
		// The schema sees the last value, a reader may take the first.
		return invalid("data", "the key %q is given twice in one object", key)
	}
	schemas, err := catalogSchemas()
	if err != nil {
		return err
	}
	err = schemas[typ].Validate(v)
	if err == nil {
		return nil
	}
	var verr *jsonschema.ValidationError
	if !errors.As(err, &verr) {
		return fmt.Errorf("validate data of %s: %w", typ, err)
	}
	return catalogValidationError(catalogEntries[i].Fields, verr)
}

func catalogIndex(typ string) (int, bool) {
	return slices.BinarySearchFunc(catalogEntries, typ, func(e CatalogEntry, t string) int {
		return strings.Compare(e.Type, t)
	})
}

func catalogEntryCopy(e CatalogEntry) CatalogEntry {
	e.Fields = slices.Clone(e.Fields)
	// ReadFile returns a new slice on each call. Every entry has its file
	// (TestCatalogSchemas), so the error cannot happen.
	e.Schema, _ = catalogSchemaFiles.ReadFile("schemas/" + e.Type + ".json")
	return e
}

// catalogIsJSON reports whether the datacontenttype ct announces JSON. Only
// the media type matters: a malformed parameter does not make JSON data
// something else.
func catalogIsJSON(ct string) bool {
	if strings.TrimSpace(ct) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(ct)
	if err != nil && !errors.Is(err, mime.ErrInvalidMediaParameter) {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}

// catalogSchemas compiles every schema of the catalog on first use. A schema
// that does not compile is a bug of this package (TestCatalogSchemas), so
// its error is returned as it is rather than as an ErrInvalid.
var catalogSchemas = sync.OnceValues(func() (map[string]*jsonschema.Schema, error) {
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	out := make(map[string]*jsonschema.Schema, len(catalogEntries))
	for _, e := range catalogEntries {
		name := "schemas/" + e.Type + ".json"
		raw, err := catalogSchemaFiles.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("read catalog schema: %w", err)
		}
		doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
		if err != nil {
			return nil, fmt.Errorf("parse catalog schema %s: %w", name, err)
		}
		url := catalogSchemaURL + e.Type + ".json"
		if err := c.AddResource(url, doc); err != nil {
			return nil, fmt.Errorf("add catalog schema %s: %w", name, err)
		}
		sch, err := c.Compile(url)
		if err != nil {
			return nil, fmt.Errorf("compile catalog schema %s: %w", name, err)
		}
		out[e.Type] = sch
	}
	return out, nil
})

// catalogProblem is one thing the schema refused, in the terms of a
// ValidationError.
type catalogProblem struct {
	path   []string // inside the data; empty for the data itself
	reason string
	order  int // -1 for the data itself, else the index in Fields; unknown fields come last
	rank   int // which kind of problem to report first on the same field
}

// catalogValidationError turns the schema's error tree into one
// *ValidationError. The tree's order depends on map iteration, so every leaf
// is collected and the first in (field order, kind, path, reason) is chosen.
func catalogValidationError(fields []CatalogField, verr *jsonschema.ValidationError) *ValidationError {
	var problems []catalogProblem
	var walk func(e *jsonschema.ValidationError)
	walk = func(e *jsonschema.ValidationError) {
		if len(e.Causes) == 0 {
			problems = append(problems, catalogProblems(e)...)
			return
		}
		for _, c := range e.Causes {
			walk(c)
		}
	}
	walk(verr)
	if len(problems) == 0 {
		// Not reached with the catalog's schemas: every failure has a leaf.
		return invalid("data", "%v", verr)
	}
	for i := range problems {
		p := &problems[i]
		name := strings.Join(p.path, ".")
		switch j := slices.IndexFunc(fields, func(f CatalogField) bool { return f.Name == name }); {
		case len(p.path) == 0:
			p.order = -1
		case j >= 0:
			p.order = j
		default:
			p.order = len(fields)
		}
	}
	first := slices.MinFunc(problems, func(a, b catalogProblem) int {
		return cmp.Or(
			cmp.Compare(a.order, b.order),
			cmp.Compare(a.rank, b.rank),
			slices.Compare(a.path, b.path),
			strings.Compare(a.reason, b.reason),
		)
	})
	return invalid(strings.Join(append([]string{"data"}, first.path...), "."), "%s", first.reason)
}

// catalogProblems describes one leaf of the schema's error tree. Required and
// unknown fields become one problem per field, at the field's own path.
func catalogProblems(e *jsonschema.ValidationError) []catalogProblem {
	at := func(name string) []string { return append(slices.Clone(e.InstanceLocation), name) }
	one := func(rank int, format string, args ...any) []catalogProblem {
		return []catalogProblem{{path: e.InstanceLocation, reason: fmt.Sprintf(format, args...), rank: rank}}
	}
	switch k := e.ErrorKind.(type) {
	case *kind.Type:
		// The library sorts the wanted types; "string or null" reads better.
		want := slices.Clone(k.Want)
		if i := slices.Index(want, "null"); i >= 0 {
			want = append(slices.Delete(want, i, i+1), "null")
		}
		return one(0, "must be %s, got %s", strings.Join(want, " or "), k.Got)
	case *kind.Required:
		var out []catalogProblem
		for _, name := range k.Missing {
			out = append(out, catalogProblem{path: at(name), reason: "required", rank: 1})
		}
		return out
	case *kind.AdditionalProperties:
		var out []catalogProblem
		for _, name := range k.Properties {
			out = append(out, catalogProblem{path: at(name), reason: "unknown field", rank: 2})
		}
		return out
	case *kind.Enum:
		want := make([]string, len(k.Want))
		for i, w := range k.Want {
			want[i] = fmt.Sprint(w)
		}
		return one(3, "value %s not one of %s", catalogShow(k.Got), strings.Join(want, ", "))
	case *kind.Pattern:
		return one(4, "value %s must match %s", catalogShow(k.Got), catalogPatternName(k.Want))
	case *kind.MinLength:
		if k.Got == 0 {
			return one(5, "must not be empty")
		}
		return one(5, "must be at least %d characters long, got %d", k.Want, k.Got)
	case *kind.MaxLength:
		return one(5, "must be at most %d characters long, got %d", k.Want, k.Got)
	default:
		// Not used by the catalog's schemas today; name the keyword at least.
		return one(6, "fails the schema keyword %q", strings.Join(e.ErrorKind.KeywordPath(), "/"))
	}
}

func catalogPatternName(pattern string) string {
	switch pattern {
	case catalogUUIDPattern:
		return "the uuid pattern (8-4-4-4-12 hex digits)"
	case catalogUUIDOrSelfPattern:
		return `the uuid pattern (8-4-4-4-12 hex digits) or be "self"`
	default:
		return "the pattern " + pattern
	}
}

// catalogShow prints a refused value in an error, cut short so that a long
// value does not flood a log line.
func catalogShow(v any) string {
	const maxRunes = 40
	switch v := v.(type) {
	case string:
		if r := []rune(v); len(r) > maxRunes {
			return strconv.Quote(string(r[:maxRunes])) + "..."
		}
		return strconv.Quote(v)
	case nil:
		return "null"
	case map[string]any:
		return "an object"
	case []any:
		return "an array"
	default:
		return fmt.Sprint(v)
	}
}

// duplicateKey returns the first key that appears twice in one object of
// data, which must be valid JSON.
func duplicateKey(data []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// One set of keys per open object; nil for an open array.
	var open []map[string]bool
	expectKey := func() bool { return len(open) > 0 && open[len(open)-1] != nil }
	afterKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{':
				open = append(open, map[string]bool{})
			case '[':
				open = append(open, nil)
			default:
				open = open[:len(open)-1]
			}
			afterKey = false
			continue
		case string:
			if expectKey() && !afterKey {
				keys := open[len(open)-1]
				if keys[t] {
					return t, true
				}
				keys[t] = true
				afterKey = true
				continue
			}
		}
		afterKey = false
	}
}
