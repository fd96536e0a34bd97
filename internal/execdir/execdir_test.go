package execdir_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/internal/execdir"
)

func TestResolve(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "exec")
	for _, d := range []string{dir, filepath.Join(dir, "sub"), filepath.Join(dir, "..data")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	write := func(path string, mode os.FileMode) {
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), mode); err != nil {
			t.Fatal(err)
		}
	}
	write(filepath.Join(dir, "run"), 0o755)
	write(filepath.Join(dir, "sub", "deep"), 0o700)
	write(filepath.Join(dir, "plain"), 0o644)
	write(filepath.Join(dir, "..data", "cm.sh"), 0o555)
	write(filepath.Join(base, "outside"), 0o755)
	links := map[string]string{
		filepath.Join(dir, "out"):       filepath.Join(base, "outside"),
		filepath.Join(dir, "in"):        "sub/deep",
		filepath.Join(dir, "up"):        "..",
		filepath.Join(dir, "sub", "up"): "../../outside",
		filepath.Join(base, "linked"):   dir,            // the exec directory itself through a link
		filepath.Join(dir, "cm.sh"):     "..data/cm.sh", // as a ConfigMap volume lays its files out
	}
	for link, target := range links {
		if err := os.Symlink(target, link); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name, dir, program, want string // want: "" for allowed, else a part of the error
	}{
		{"program", dir, "run", ""},
		{"nested", dir, "sub/deep", ""},
		{"link inside", dir, "in", ""},
		{"directory through a link", filepath.Join(base, "linked"), "run", ""},
		{"ConfigMap layout", dir, "cm.sh", ""},
		{"off", "", "run", "exec hooks are off"},
		{"relative directory", "exec", "run", "absolute"},
		{"link out", dir, "out", "outside the exec directory"},
		{"nested link out", dir, "sub/up", "outside the exec directory"},
		{"link to the parent", dir, "up/outside", "outside the exec directory"},
		{"parent", dir, "../outside", `".." element`},
		{"absolute", dir, filepath.Join(base, "outside"), "absolute"},
		{"missing", dir, "nope", "does not exist"},
		{"not executable", dir, "plain", "not executable"},
		{"directory", dir, "sub", "not a regular file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := execdir.Resolve(tc.dir, tc.program)
			switch {
			case tc.want == "" && err != nil:
				t.Fatalf("Resolve = %v, want allowed", err)
			case tc.want == "":
				if !strings.HasPrefix(p.Path, p.Dir+string(filepath.Separator)) || p.Dir != dir {
					t.Errorf("Resolve = %+v, want a path inside %s", p, dir)
				}
			case err == nil || !errors.Is(err, execdir.ErrRefused) || !strings.Contains(err.Error(), tc.want):
				t.Errorf("Resolve = %+v, %v; want refused, %q", p, err, tc.want)
			}
		})
	}
}
