package main

import (
	"cmp"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// table prints rows that a person and awk both read: columns aligned, one
// word in every cell but the last (whitespace inside becomes "_", an empty
// cell "-", which awk would otherwise lose), the last cell the rest of the
// line (perhaps empty).
type table struct{ tw *tabwriter.Writer }

// newTable starts a table on w with its header row.
func newTable(w io.Writer, header ...any) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

// row adds a row; cells are printed with fmt.Sprint.
func (t *table) row(cells ...any) {
	s := make([]string, len(cells))
	for i, c := range cells {
		s[i] = oneLine(fmt.Sprint(c))
		if i < len(cells)-1 {
			s[i] = cmp.Or(strings.ReplaceAll(s[i], " ", "_"), "-")
		}
	}
	fmt.Fprintln(t.tw, strings.Join(s, "\t"))
}

// flush writes the table out.
func (t *table) flush() error { return t.tw.Flush() }

// oneLine keeps a cell on one line: runs of whitespace become one space.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
