package events

import "encoding/json"

// Types of the built-in catalog (see Catalog). The 15 types with fields have
// a struct of the same name (TypeOnUserAuthorisation's data is an
// OnUserAuthorisation); the others are stubs whose data is any JSON object.
const (
	TypeOnAfterDependency                 = "on_after_dependency"
	TypeOnChangeDependency                = "on_change_dependency"
	TypeOnCheckAnswer                     = "on_check_answer"
	TypeOnContentAfterDelete              = "on_content_after_delete"
	TypeOnContentAfterDisplay             = "on_content_after_display"
	TypeOnContentAfterSave                = "on_content_after_save"
	TypeOnContentAfterTitle               = "on_content_after_title"
	TypeOnContentBeforeDelete             = "on_content_before_delete"
	TypeOnContentBeforeDisplay            = "on_content_before_display"
	TypeOnContentBeforeSave               = "on_content_before_save"
	TypeOnContentChangeState              = "on_content_change_state"
	TypeOnContentPrepare                  = "on_content_prepare"
	TypeOnContentPrepareData              = "on_content_prepare_data"
	TypeOnContentPrepareForm              = "on_content_prepare_form"
	TypeOnContentSearch                   = "on_content_search"
	TypeOnContentSearchAreas              = "on_content_search_areas"
	TypeOnDisplay                         = "on_display"
	TypeOnInit                            = "on_init"
	TypeOnPrivacyCollectAdminCapabilities = "on_privacy_collect_admin_capabilities"
	TypeOnRouter                          = "on_router"
	TypeOnUserAfterDelete                 = "on_user_after_delete"
	TypeOnUserAfterDeleteRole             = "on_user_after_delete_role"
	TypeOnUserAfterLogin                  = "on_user_after_login"
	TypeOnUserAfterLogout                 = "on_user_after_logout"
	TypeOnUserAfterSave                   = "on_user_after_save"
	TypeOnUserAfterSaveFailure            = "on_user_after_save_failure"
	TypeOnUserAfterSaveRole               = "on_user_after_save_role"
	TypeOnUserAuthorisation               = "on_user_authorisation"
	TypeOnUserAuthorisationFailure        = "on_user_authorisation_failure"
	TypeOnUserBeforeLogin                 = "on_user_before_login"
	TypeOnUserBeforeSave                  = "on_user_before_save"
	TypeOnUserLogin                       = "on_user_login"
	TypeOnUserLoginFailure                = "on_user_login_failure"
)

// The structs below are the data of the catalog types with fields, for Go
// publishers and plugins: json.Marshal of a filled struct passes
// ValidateCatalogData, and free-form fields are json.RawMessage so that they
// cross the wire untouched. The original's conn (a Plug connection or
// LiveView socket) cannot cross a wire and has no field. Each field's
// contract is in the type's CatalogEntry (LookupCatalog).

// OnUserAuthorisation is the data of TypeOnUserAuthorisation: a user asks
// for an operation that needs authorisation, and the caller takes the
// chain's final data as the answer of its access check.
type OnUserAuthorisation struct {
	UserID    string          `json:"user_id"`   // UUID
	IP        string          `json:"ip"`        // IPv4 or IPv6 as text
	Endpoint  string          `json:"endpoint"`  // "html" or "api"
	Module    string          `json:"module"`    // the caller
	Operation string          `json:"operation"` // what is to be authorised
	Extra     json.RawMessage `json:"extra,omitempty"`
}

// OnUserAuthorisationFailure is the data of TypeOnUserAuthorisationFailure:
// a user has been refused an operation.
type OnUserAuthorisationFailure struct {
	IP        string          `json:"ip"`
	Endpoint  string          `json:"endpoint"` // "html" or "api"
	Error     json.RawMessage `json:"error"`    // a JSON object or array
	Module    string          `json:"module"`
	Operation string          `json:"operation"`
	Extra     json.RawMessage `json:"extra,omitempty"`
}

// OnUserAfterLogin is the data of TypeOnUserAfterLogin: a user has logged
// in.
type OnUserAfterLogin struct {
	UserInfo json.RawMessage `json:"user_info"` // a JSON object
	IP       string          `json:"ip"`
	Endpoint string          `json:"endpoint"` // "html" or "api"
	Type     string          `json:"type"`     // "email" or "username"
	Extra    json.RawMessage `json:"extra,omitempty"`
}

// OnUserAfterLogout is the data of TypeOnUserAfterLogout: a user has logged
// out.
type OnUserAfterLogout struct {
	UserID   string          `json:"user_id"` // UUID
	IP       string          `json:"ip"`
	Endpoint string          `json:"endpoint"` // "html" or "api"
	Extra    json.RawMessage `json:"extra,omitempty"`
}

// OnUserAfterSave is the data of TypeOnUserAfterSave: a user account has
// been added or edited.
type OnUserAfterSave struct {
	UserInfo     json.RawMessage `json:"user_info"` // a JSON object
	IP           string          `json:"ip"`
	Endpoint     string          `json:"endpoint"`      // "html" or "api"
	Status       string          `json:"status"`        // "added" or "edited"
	ModifierUser string          `json:"modifier_user"` // UUID of the acting user, or "self"
	Extra        json.RawMessage `json:"extra,omitempty"`
}

// OnUserAfterSaveFailure is the data of TypeOnUserAfterSaveFailure: adding
// or editing a user account has failed. (The original described it with the
// success event's text, by mistake.)
type OnUserAfterSaveFailure struct {
	Error        json.RawMessage `json:"error"` // a JSON object or array
	IP           string          `json:"ip"`
	Endpoint     string          `json:"endpoint"`      // "html" or "api"
	Status       string          `json:"status"`        // "added" or "edited"
	ModifierUser string          `json:"modifier_user"` // UUID of the acting user, or "self"
	Extra        json.RawMessage `json:"extra,omitempty"`
}

// OnUserLoginFailure is the data of TypeOnUserLoginFailure: a login attempt
// has failed.
type OnUserLoginFailure struct {
	IP       string          `json:"ip"`
	Endpoint string          `json:"endpoint"` // "html" or "api"
	Error    json.RawMessage `json:"error"`    // a JSON object or array
	Extra    json.RawMessage `json:"extra,omitempty"`
}

// OnUserBeforeLogin is the data of TypeOnUserBeforeLogin: the login form is
// about to be rendered, and plugins add to it by setting Output.
type OnUserBeforeLogin struct {
	IP      string          `json:"ip"`
	Assigns json.RawMessage `json:"assigns"`          // a JSON object
	Output  *string         `json:"output,omitempty"` // nil: nothing added yet
	Input   json.RawMessage `json:"input"`            // a JSON object
}

// OnUserAfterSaveRole is the data of TypeOnUserAfterSaveRole: a role has
// been added or edited.
type OnUserAfterSaveRole struct {
	RoleID   string `json:"role_id"` // UUID
	IP       string `json:"ip"`
	Endpoint string `json:"endpoint"` // "html" or "api"
}

// OnUserAfterDeleteRole is the data of TypeOnUserAfterDeleteRole: a role has
// been deleted.
type OnUserAfterDeleteRole struct {
	RoleID   string `json:"role_id"` // UUID
	IP       string `json:"ip"`
	Endpoint string `json:"endpoint"` // "html" or "api"
}

// OnRouter is the data of TypeOnRouter: the host application builds its
// router, and plugins add routes.
type OnRouter struct {
	Action   string          `json:"action"`              // get, post, live, delete, put or forward
	Path     string          `json:"path"`                // e.g. "/events/:id"
	Endpoint string          `json:"endpoint"`            // the handling module, not "html"/"api"
	Type     string          `json:"type,omitempty"`      // "" means "public"
	PlugOpts json.RawMessage `json:"plug_opts,omitempty"` // a JSON array; nil means []
}

// OnContentAfterDelete is the data of TypeOnContentAfterDelete: a content
// item has been deleted. It expects no answer.
type OnContentAfterDelete struct {
	Section string          `json:"section"`
	Private ContentPrivate  `json:"private"` // read-only for plugins
	Extra   json.RawMessage `json:"extra,omitempty"`
}

// ContentPrivate is the private part of OnContentAfterDelete. Plugins may
// read it; whatever they change in it is restored from the caller's input.
type ContentPrivate struct {
	UserID  string          `json:"user_id"` // UUID of the user who deleted the content
	Content json.RawMessage `json:"content"` // the deleted content, a JSON object
	UserIP  string          `json:"user_ip"`
}

// OnCheckAnswer is the data of TypeOnCheckAnswer: a captcha answer is to be
// checked, by a single captcha plugin.
type OnCheckAnswer struct {
	Section string             `json:"section"`
	Private CheckAnswerPrivate `json:"private"` // read-only for plugins
}

// CheckAnswerPrivate is the private part of OnCheckAnswer. Plugins may read
// it; whatever they change in it is restored from the caller's input.
type CheckAnswerPrivate struct {
	IP string `json:"ip"`
}

// OnAfterDependency is the data of TypeOnAfterDependency: a plugin has been
// installed or updated.
type OnAfterDependency struct {
	App    string `json:"app"`
	Status string `json:"status"` // add, update or force_update
	Output string `json:"output"` // may be empty
}

// OnChangeDependency is the data of TypeOnChangeDependency: one line of
// output while a plugin is being installed or updated.
type OnChangeDependency struct {
	App    string `json:"app"`
	Status string `json:"status"` // add, update or force_update
	Output string `json:"output"` // may be empty
}
