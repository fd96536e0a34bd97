package gateway

import (
	_ "embed"
	"net/http"
	"strconv"
)

// openAPI is the OpenAPI 3.1 description of the gateway, served at GET
// /openapi.json; docs/openapi.json is a copy of it.
//
//go:embed openapi.json
var openAPI []byte

var openAPILength = strconv.Itoa(len(openAPI))

// getOpenAPI is GET /openapi.json, open to anyone: it describes the
// routes, nothing about the bus behind them.
func getOpenAPI(w http.ResponseWriter, _ *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", openAPILength)
	_, _ = w.Write(openAPI)
}
