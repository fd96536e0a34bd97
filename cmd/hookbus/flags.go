package main

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// defaultTimeout is --timeout's default on every command that talks to a
// running Hookbus (auth rotate, which re-encrypts the whole store, has
// rotateTimeout).
const (
	defaultTimeout = 30 * time.Second
	rotateTimeout  = 10 * time.Minute
)

// addTimeout binds --timeout: how long the command waits for what it asks.
// A duration that is not positive is a usage error (exit 2): it would end
// the command before it asked anything.
func addTimeout(fl *pflag.FlagSet, d *time.Duration, def time.Duration, what string) {
	*d = def
	fl.Var(timeoutValue{d}, "timeout", what)
}

// timeoutValue is the value of --timeout: a positive duration.
type timeoutValue struct{ d *time.Duration }

func (v timeoutValue) String() string { return v.d.String() }
func (v timeoutValue) Type() string   { return "duration" }

func (v timeoutValue) Set(s string) error {
	d, err := time.ParseDuration(s)
	if err != nil {
		return errors.New("want a duration such as 30s or 2m")
	}
	if d <= 0 {
		return errors.New("want a positive duration")
	}
	*v.d = d
	return nil
}

// addOutput binds -o/--output to *p, default formats[0]. The formats are
// named alike on every command: text (a table for lists), json, raw
// (bytes as stored); any other value is a usage error (exit 2).
func addOutput(fl *pflag.FlagSet, p *string, formats ...string) {
	*p = formats[0]
	fl.VarP(&outputFormat{p: p, formats: formats}, "output", "o", "output format: "+strings.Join(formats, ", "))
}

// outputFormat is the value of -o: one of formats.
type outputFormat struct {
	p       *string
	formats []string
}

func (o *outputFormat) String() string { return *o.p }
func (o *outputFormat) Type() string   { return "format" }

func (o *outputFormat) Set(s string) error {
	if !slices.Contains(o.formats, s) {
		want := o.formats[0]
		if n := len(o.formats); n > 1 {
			want = strings.Join(o.formats[:n-1], ", ") + " or " + o.formats[n-1]
		}
		return fmt.Errorf("want %s", want)
	}
	*o.p = s
	return nil
}
