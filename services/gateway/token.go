package gateway

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/hookbus/hookbus/pkg/events"
)

// TokenPrefix starts every gateway token: hbgw.<name>.<secret>.
const TokenPrefix = "hbgw"

// tokenSecretBytes is how many random bytes a token's secret holds.
const tokenSecretBytes = 32

// Actions a token may be allowed.
const (
	ActionPublish = "publish" // POST /events, POST /events/{type}
	ActionCall    = "call"    // POST /calls/{type}
)

// Permission allows Action on the event types Pattern matches, as NATS
// matches subjects: "*" is one dot-separated token, a trailing ">" the
// rest.
type Permission struct {
	Action  string `json:"action"`
	Pattern string `json:"pattern"`
}

// String returns "action:pattern", the form of --allow.
func (p Permission) String() string { return p.Action + ":" + p.Pattern }

// Token is what bucket hookbus_gateway_tokens holds under the token's
// name: never the token, only the SHA-256 of it (hex).
type Token struct {
	Name   string       `json:"name"`
	SHA256 string       `json:"sha256"`
	Allow  []Permission `json:"allow"`
	// Rate is the token's requests per second; 0: Config.Rate.
	Rate      int       `json:"rate"`
	CreatedAt time.Time `json:"created_at"`
}

// NewToken makes a token for name: it returns the token, to be shown
// once, and the record to store. The error is an *events.ValidationError
// (errors.Is events.ErrInvalid) for a bad name, permission or rate.
func NewToken(name string, allow []Permission, rate int, now time.Time) (string, Token, error) {
	b := make([]byte, tokenSecretBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	token := TokenPrefix + "." + name + "." + base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(token))
	t := Token{Name: name, SHA256: hex.EncodeToString(sum[:]), Allow: allow, Rate: rate, CreatedAt: now.UTC()}
	if err := t.Validate(); err != nil {
		return "", Token{}, err
	}
	return token, t, nil
}

// Validate checks a stored record: a valid name, a SHA-256, at least one
// valid permission, a rate not below 0.
func (t Token) Validate() error {
	if err := ValidateTokenName(t.Name); err != nil {
		return err
	}
	if b, err := hex.DecodeString(t.SHA256); err != nil || len(b) != sha256.Size {
		return &events.ValidationError{Of: "gateway token", Field: "sha256", Reason: "want the hex of a SHA-256"}
	}
	if len(t.Allow) == 0 {
		return &events.ValidationError{Of: "gateway token", Field: "allow", Reason: "required: at least one action:pattern"}
	}
	for _, p := range t.Allow {
		if err := p.Validate(); err != nil {
			return err
		}
	}
	if t.Rate < 0 {
		return &events.ValidationError{Of: "gateway token", Field: "rate", Reason: fmt.Sprintf("%d: want 0 (the gateway's default) or more", t.Rate)}
	}
	return nil
}

// ValidateTokenName checks a token name: a plugin name's rules,
// [A-Za-z0-9_-]{1,64}, but neither "anonymous" (the principal of requests
// without a token) nor "-" (the token label of refused requests).
func ValidateTokenName(name string) error {
	if name == anonymousName || name == unauthenticatedLabel {
		return &events.ValidationError{Of: "gateway token", Field: "name", Reason: fmt.Sprintf("%q is the gateway's own: choose another name", name)}
	}
	return events.ValidateName("gateway token", name)
}

// ParsePermission reads "action:pattern" (--allow).
func ParsePermission(s string) (Permission, error) {
	action, pattern, ok := strings.Cut(s, ":")
	p := Permission{Action: action, Pattern: pattern}
	if !ok {
		return p, &events.ValidationError{Of: "gateway token", Field: "allow", Reason: fmt.Sprintf("%q: want action:pattern, e.g. publish:com.example.>", s)}
	}
	return p, p.Validate()
}

// Validate checks the action (publish or call) and the pattern: tokens of
// an event type, "*" for any one token, ">" as the last token for the
// rest.
func (p Permission) Validate() error {
	if p.Action != ActionPublish && p.Action != ActionCall {
		return &events.ValidationError{Of: "gateway token", Field: "allow", Reason: fmt.Sprintf("action %q: want %s or %s", p.Action, ActionPublish, ActionCall)}
	}
	bad := func(why string) error {
		return &events.ValidationError{Of: "gateway token", Field: "allow", Reason: fmt.Sprintf("pattern %q: %s", p.Pattern, why)}
	}
	if p.Pattern == "" {
		return bad("required")
	}
	toks := strings.Split(p.Pattern, ".")
	for i, tok := range toks {
		switch {
		case tok == ">" && i < len(toks)-1:
			return bad("> must be the last token")
		case tok == ">", tok == "*":
		default:
			if err := events.ValidateType(tok); err != nil {
				return bad(fmt.Sprintf("token %d %q is neither * nor > nor letters, digits, '_' and '-'", i+1, tok))
			}
		}
	}
	if len(p.Pattern) > 200 {
		return bad("longer than an event type may be")
	}
	return nil
}

// Matches reports whether the event type typ is one p's pattern matches.
func (p Permission) Matches(typ string) bool {
	pat := p.Pattern
	for {
		ptok, prest, pmore := strings.Cut(pat, ".")
		if ptok == ">" {
			return typ != ""
		}
		ttok, trest, tmore := strings.Cut(typ, ".")
		if ttok == "" || ptok != "*" && ptok != ttok {
			return false
		}
		if !pmore || !tmore {
			return pmore == tmore
		}
		pat, typ = prest, trest
	}
}

// tokenName returns the name inside a token of the form
// hbgw.<name>.<secret>, or false when it has another form.
func tokenName(token string) (string, bool) {
	prefix, rest, ok := strings.Cut(token, ".")
	if !ok || prefix != TokenPrefix {
		return "", false
	}
	name, secret, ok := strings.Cut(rest, ".")
	if !ok || ValidateTokenName(name) != nil || len(secret) != base64.RawURLEncoding.EncodedLen(tokenSecretBytes) {
		return "", false
	}
	return name, true
}
