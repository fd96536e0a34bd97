package persistence

import (
	"encoding/base64"
	"fmt"
	"strings"
)

// How credentials and keys map to KV keys of bucket hookbus_auth (one KV
// key per credential and per key; docs/decisions.md):
//
//	ctx.<context>.creds                  a context's credentials
//	ctx.<context>.key.<type>.<id>        one key
//	meta.keycheck.<key id>               the key-check record of one key
//
// <context> and <id> are unpadded base64url of the UTF-8 name, so any
// character is safe in a KV key and no name can reach into another's
// prefix; <type> is a valid name as it is.
const (
	contextRoot  = "ctx."
	keyCheckRoot = "meta.keycheck."
)

// token encodes a context or id for a KV key.
var token = base64.RawURLEncoding.Strict()

func contextPrefix(name string) string {
	return contextRoot + token.EncodeToString([]byte(name)) + "."
}

func credsKey(name string) string { return contextPrefix(name) + "creds" }

func keyKey(name, typ, id string) string {
	return contextPrefix(name) + "key." + typ + "." + token.EncodeToString([]byte(id))
}

// typeFilter matches every key of one type in a context.
func typeFilter(name, typ string) string { return contextPrefix(name) + "key." + typ + ".*" }

// contextFilter matches everything stored for a context.
func contextFilter(name string) string { return contextPrefix(name) + ">" }

// dataFilter matches every credential and key of every context.
const dataFilter = contextRoot + ">"

func keyCheckKey(id string) string { return keyCheckRoot + id }

// keyCheckFilter matches every key-check record.
const keyCheckFilter = keyCheckRoot + "*"

// idFromKey returns the id encoded in the last token of a key's KV key.
func idFromKey(kvKey string) (string, error) {
	i := strings.LastIndexByte(kvKey, '.')
	b, err := token.DecodeString(kvKey[i+1:])
	if err != nil {
		return "", fmt.Errorf("stored key %q does not end in an encoded id: %w", kvKey, err)
	}
	return string(b), nil
}
