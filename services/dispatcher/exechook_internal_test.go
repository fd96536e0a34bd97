package dispatcher

import (
	"strings"
	"testing"
)

// The output buffer keeps the last bytes of any sequence of writes, and
// never refuses one.
func TestTailBuffer(t *testing.T) {
	cases := []struct {
		name   string
		writes []string
		want   string
	}{
		{"under", []string{"ab", "cd"}, "abcd"},
		{"exactly", []string{"abcdefgh"}, "abcdefgh"},
		{"one long write", []string{"0123456789"}, "23456789"},
		{"long after short", []string{"ab", "0123456789"}, "23456789"},
		{"spilling", []string{"abcdef", "ghij"}, "cdefghij"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := &tailBuffer{max: 8}
			for _, w := range tc.writes {
				if n, err := b.Write([]byte(w)); n != len(w) || err != nil {
					t.Fatalf("Write(%q) = %d, %v", w, n, err)
				}
			}
			if string(b.buf) != tc.want {
				t.Errorf("kept %q, want %q", b.buf, tc.want)
			}
		})
	}
	b := &tailBuffer{max: execOutputMax}
	_, _ = b.Write([]byte(strings.Repeat("x", 1000) + "\n\tlast  line"))
	if got := b.tail(); got != `output: "...`+strings.Repeat("x", execTailMax-len(" last line"))+` last line"` {
		t.Errorf("tail %q: want the last %d bytes on one line", got, execTailMax)
	}
}
