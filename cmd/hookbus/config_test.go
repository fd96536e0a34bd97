package main

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

// TestReadmeTableIsConfig keeps the README's configuration table what
// `hookbus config` prints: the same rows in the same order, each with the
// same variable, flag, default and meaning. The README may only format
// them: code spans, and links around words the meaning already has.
func TestReadmeTableIsConfig(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, f := range configFields() {
		want = append(want, strings.Join([]string{f.Env, configFlag(f, "(none)"), f.Default, f.Desc}, " | "))
	}
	got := readmeConfigRows(t, string(readme))
	for i := range max(len(got), len(want)) {
		switch {
		case i >= len(got):
			t.Errorf("README configuration table lacks row %d: %s", i+1, want[i])
		case i >= len(want):
			t.Errorf("README configuration table has row %d, which hookbus config does not print: %s", i+1, got[i])
		case got[i] != want[i]:
			t.Errorf("README configuration table, row %d:\n README: %s\n config: %s", i+1, got[i], want[i])
		}
	}
}

// readmeConfigRows are the rows of the README's configuration table as
// plain text: cells joined by " | ", without code spans and links.
func readmeConfigRows(t *testing.T, readme string) []string {
	t.Helper()
	const header = "| Variable | Flag | Default | Meaning |\n|---|---|---|---|\n"
	_, table, ok := strings.Cut(readme, header)
	if !ok {
		t.Fatalf("README has no configuration table (%q)", header)
	}
	link := regexp.MustCompile(`\[([^]]*)\]\([^)]*\)`)
	var rows []string
	for line := range strings.Lines(table) {
		if !strings.HasPrefix(line, "|") {
			break
		}
		line = link.ReplaceAllString(strings.ReplaceAll(strings.TrimSpace(line), "`", ""), "$1")
		cells := strings.Split(strings.Trim(line, "|"), "|")
		for i := range cells {
			cells[i] = strings.TrimSpace(cells[i])
		}
		rows = append(rows, strings.Join(cells, " | "))
	}
	return rows
}

func TestFlagBeatsEnvironmentBeatsDefault(t *testing.T) {
	t.Setenv("HOOKBUS_OPS_ADDR", "127.0.0.1:9999")
	t.Setenv("HOOKBUS_STREAM_REPLICAS", "3")
	t.Setenv("HOOKBUS_EVENTS_MAX_AGE", "1h")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.bindFlags(fs, "ops-addr", "stream-replicas", "events-max-age", "log-level")
	if err := fs.Parse([]string{"--stream-replicas=5"}); err != nil {
		t.Fatal(err)
	}
	if cfg.OpsAddr != "127.0.0.1:9999" {
		t.Errorf("ops addr = %q, want the environment's", cfg.OpsAddr)
	}
	if cfg.StreamReplicas != 5 {
		t.Errorf("replicas = %d, want the flag's 5", cfg.StreamReplicas)
	}
	if cfg.EventsMaxAge != time.Hour {
		t.Errorf("events max age = %s, want the environment's 1h", cfg.EventsMaxAge)
	}
	if cfg.LogLevel != "info" {
		t.Errorf("log level = %q, want the default info", cfg.LogLevel)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"replicas not a number", map[string]string{"HOOKBUS_STREAM_REPLICAS": "three"}, "HOOKBUS_STREAM_REPLICAS"},
		{"bad duration", map[string]string{"HOOKBUS_EVENTS_MAX_AGE": "a week"}, "HOOKBUS_EVENTS_MAX_AGE"},
		{"bad log level", map[string]string{"HOOKBUS_LOG_LEVEL": "loud"}, `log level "loud"`},
		{"bad topology mode", map[string]string{"HOOKBUS_TOPOLOGY": "apply"}, `topology "apply": want ensure, create or check`},
		{"zero replicas", map[string]string{"HOOKBUS_STREAM_REPLICAS": "0"}, "replicas 0"},
		{"gateway anonymous off loopback", map[string]string{"HOOKBUS_GATEWAY_ANONYMOUS": "true", "HOOKBUS_GATEWAY_ADDR": "0.0.0.0:8080"}, "loopback"},
		{"gateway anonymous not a bool", map[string]string{"HOOKBUS_GATEWAY_ANONYMOUS": "maybe"}, "HOOKBUS_GATEWAY_ANONYMOUS"},
		{"gateway rate 0", map[string]string{"HOOKBUS_GATEWAY_RATE": "0"}, "gateway rate 0"},
		{"gateway max headers 0", map[string]string{"HOOKBUS_GATEWAY_MAX_HEADERS": "0"}, "gateway max headers 0"},
		{"gateway CORS origin with a path", map[string]string{"HOOKBUS_GATEWAY_CORS_ORIGINS": "https://a.example.com, https://b.example.com/app"}, "https://b.example.com/app"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			cfg, err := loadConfig()
			if err == nil {
				err = cfg.Validate()
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.want)
			}
		})
	}
}

func TestConfigStringMasksPassword(t *testing.T) {
	t.Setenv("HOOKBUS_NATS_PASSWORD", "s3cret-canary")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if s := cfg.String(); strings.Contains(s, "s3cret-canary") || !strings.Contains(s, "NATSPassword:***") {
		t.Errorf("Config.String() = %s, want the password masked", s)
	}
}

// TestNATSCA: HOOKBUS_NATS_CA reaches the NATS connection, and every
// command that takes --nats-url takes --nats-ca too (the flag wins).
func TestNATSCA(t *testing.T) {
	t.Setenv("HOOKBUS_NATS_CA", "/etc/hookbus/nats-ca/ca.crt")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.natsConn("test").CAFile; got != "/etc/hookbus/nats-ca/ca.crt" {
		t.Errorf("natsconn CAFile = %q, want the environment's", got)
	}
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	cfg.bindFlags(fs, "nats-url", "nats-user")
	if err := fs.Parse([]string{"--nats-ca=/tmp/ca.pem"}); err != nil {
		t.Fatal(err)
	}
	if got := cfg.natsConn("test").CAFile; got != "/tmp/ca.pem" {
		t.Errorf("natsconn CAFile = %q, want the flag's", got)
	}
	other := pflag.NewFlagSet("other", pflag.ContinueOnError)
	cfg.bindFlags(other, "ops-addr")
	if other.Lookup("nats-ca") != nil {
		t.Error("--nats-ca bound without --nats-url")
	}
}

func TestGatewayConfig(t *testing.T) {
	t.Setenv("HOOKBUS_GATEWAY_ADDR", "0.0.0.0:8080")
	t.Setenv("HOOKBUS_GATEWAY_ANONYMOUS", "false")
	t.Setenv("HOOKBUS_GATEWAY_RATE", "7")
	t.Setenv("HOOKBUS_GATEWAY_MAX_HEADERS", "9")
	t.Setenv("HOOKBUS_GATEWAY_CORS_ORIGINS", " https://a.example.com,,http://localhost:3000 ")
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatalf("Validate: %v (off loopback without anonymous use is fine)", err)
	}
	g, err := cfg.gateway()
	if err != nil {
		t.Fatal(err)
	}
	if g.Addr != "0.0.0.0:8080" || g.Anonymous == nil || *g.Anonymous || g.Rate != 7 || g.MaxHeaders != 9 ||
		strings.Join(g.CORSOrigins, " ") != "https://a.example.com http://localhost:3000" {
		t.Errorf("gateway config %+v", g)
	}
	t.Setenv("HOOKBUS_GATEWAY_ANONYMOUS", "")
	if cfg, _ = loadConfig(); cfg.Validate() != nil {
		t.Fatal(cfg.Validate())
	}
	if g, _ = cfg.gateway(); g.Anonymous != nil {
		t.Errorf("anonymous %v, want nil (the address decides) when unset", *g.Anonymous)
	}
}

func TestGatewayDeviceConfig(t *testing.T) {
	cfg, err := loadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if g, err := cfg.gateway(); err != nil || g.DeviceTokens != nil {
		t.Fatalf("no secret: sealer %v, %v; want device sessions off", g.DeviceTokens, err)
	}
	t.Setenv("HOOKBUS_DEVICE_TOKEN_SECRET", strings.Repeat("s", 32))
	t.Setenv("HOOKBUS_DEVICE_TOKEN_REFRESH", "1m")
	{
		cfg, _ = loadConfig()
		if _, err := cfg.gateway(); err == nil || !strings.Contains(err.Error(), "HOOKBUS_DEVICE_TOKEN_SALT") {
			t.Fatalf("a secret without salt: %v, want a refusal naming the salt", err)
		}
	}
	t.Setenv("HOOKBUS_DEVICE_TOKEN_SALT", "pepper")
	cfg, _ = loadConfig()
	g, err := cfg.gateway()
	if err != nil || g.DeviceTokens == nil || g.TokenRefresh != time.Minute || g.TokenExpiry != 672*time.Hour {
		t.Fatalf("gateway config: sealer %v, refresh %s, expiry %s, %v", g.DeviceTokens, g.TokenRefresh, g.TokenExpiry, err)
	}
	if s := fmt.Sprint(cfg.DeviceTokenSecret); s != "***" {
		t.Errorf("the secret prints as %q, want it masked", s)
	}
}
