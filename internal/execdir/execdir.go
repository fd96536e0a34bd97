// Package execdir decides which local programs an exec hook may run: only
// executable regular files inside the directory the operator allowed,
// checked after every symbolic link is resolved, so a link pointing out
// of the directory is refused like a path that leaves it.
package execdir

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/hookbus/hookbus/pkg/events"
)

// ErrRefused is matched by the error of a program that may not run.
var ErrRefused = errors.New("program refused")

// Program is a program an exec hook may run, with every link resolved.
type Program struct {
	// Path is the program's resolved absolute path.
	Path string
	// Dir is the resolved exec directory, where the program runs.
	Dir string
}

// ValidateDir reports whether dir can be an exec directory: empty (exec
// hooks off) or an absolute path.
func ValidateDir(dir string) error {
	if dir != "" && !filepath.IsAbs(dir) {
		return fmt.Errorf("exec directory %q: want an absolute path", dir)
	}
	return nil
}

// Resolve returns program (a path relative to dir, as
// events.ValidateExecPath accepts it) once resolved, when it is an
// executable regular file inside dir. Every error matches ErrRefused.
// What it checks can change after it returns: check again before each run.
func Resolve(dir, program string) (Program, error) {
	if dir == "" {
		return Program{}, fmt.Errorf("%w: exec hooks are off: the operator has not set HOOKBUS_HOOK_EXEC_DIR (hookbus serve --hook-exec-dir)", ErrRefused)
	}
	if err := ValidateDir(dir); err != nil {
		return Program{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	if err := events.ValidateExecPath(program); err != nil {
		return Program{}, fmt.Errorf("%w: %v", ErrRefused, err)
	}
	root, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return Program{}, fmt.Errorf("%w: exec directory: %v", ErrRefused, err)
	}
	path, err := filepath.EvalSymlinks(filepath.Join(root, filepath.FromSlash(program)))
	if errors.Is(err, fs.ErrNotExist) {
		return Program{}, fmt.Errorf("%w: program %q does not exist in the exec directory %s", ErrRefused, program, dir)
	}
	if err != nil {
		return Program{}, fmt.Errorf("%w: program %q: %v", ErrRefused, program, err)
	}
	if rel, err := filepath.Rel(root, path); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return Program{}, fmt.Errorf("%w: program %q resolves to %s, outside the exec directory %s", ErrRefused, program, path, root)
	}
	info, err := os.Stat(path)
	if err != nil {
		return Program{}, fmt.Errorf("%w: program %q: %v", ErrRefused, program, err)
	}
	switch {
	case !info.Mode().IsRegular():
		return Program{}, fmt.Errorf("%w: program %q is not a regular file (%s)", ErrRefused, program, info.Mode().Type())
	case info.Mode().Perm()&0o111 == 0:
		return Program{}, fmt.Errorf("%w: program %q is not executable (mode %s)", ErrRefused, program, info.Mode().Perm())
	}
	return Program{Path: path, Dir: root}, nil
}
