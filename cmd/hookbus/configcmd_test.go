package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"slices"
	"strings"
	"testing"
)

func runConfigCmd(t *testing.T, args ...string) (string, error) {
	t.Helper()
	root := newRootCmd()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append([]string{"config"}, args...))
	err := root.ExecuteContext(t.Context())
	return out.String(), err
}

// TestConfigJSON checks what the Kubernetes manifests' checks read: every
// variable with its flag and default, in declaration order, and the
// services serve accepts.
func TestConfigJSON(t *testing.T) {
	out, err := runConfigCmd(t, "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var got configJSON
	dec := json.NewDecoder(strings.NewReader(out))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&got); err != nil {
		t.Fatalf("config -o json: %v\n%s", err, out)
	}
	fields := configFields()
	if len(got.Variables) != len(fields) {
		t.Fatalf("config -o json lists %d variables, the binary reads %d", len(got.Variables), len(fields))
	}
	for i, f := range fields {
		v := got.Variables[i]
		wantFlag := configFlag(f, "")
		if v.Name != f.Env || v.Flag != wantFlag || v.Default != f.Default || v.Description != f.Desc {
			t.Errorf("variable %d = %+v, want %s %q %q %q", i, v, f.Env, wantFlag, f.Default, f.Desc)
		}
	}
	for _, v := range got.Variables {
		switch v.Name {
		case "HOOKBUS_NATS_PASSWORD":
			if v.Flag != "" {
				t.Errorf("HOOKBUS_NATS_PASSWORD has flag %q, want none", v.Flag)
			}
		case "HOOKBUS_NATS_URL":
			if v.Flag != "--nats-url" {
				t.Errorf("HOOKBUS_NATS_URL has flag %q, want --nats-url", v.Flag)
			}
		}
	}
	if want := slices.Sorted(maps.Keys(serviceFactories)); !slices.Equal(got.Services, want) || !slices.Contains(got.Services, "registry") {
		t.Errorf("services = %v, want %v", got.Services, want)
	}
}

func TestConfigTableIsDefault(t *testing.T) {
	out, err := runConfigCmd(t)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(out, "VARIABLE") || !strings.Contains(out, "HOOKBUS_OPS_ADDR") || !strings.Contains(out, "--ops-addr") {
		t.Errorf("config without -o does not print the table:\n%s", out)
	}
}

func TestConfigUnknownOutput(t *testing.T) {
	_, err := runConfigCmd(t, "-o", "yaml")
	if err == nil || !strings.Contains(err.Error(), `invalid argument "yaml" for "-o, --output" flag: want text or json`) {
		t.Fatalf("config -o yaml = %v, want an error naming the formats", err)
	}
	if code := exitCode(err); code != exitInvalid {
		t.Errorf("exit code %d, want %d", code, exitInvalid)
	}
}
