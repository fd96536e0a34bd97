package lifecycle_test

import (
	"testing"

	"github.com/hookbus/hookbus/internal/lifecycle"
)

func TestID(t *testing.T) {
	id := lifecycle.ID(42, "acl-2")
	if id != "42-acl-2" {
		t.Fatalf("ID = %q, want 42-acl-2", id)
	}
	if seq, ok := lifecycle.Seq(id); !ok || seq != 42 {
		t.Errorf("Seq(%q) = %d, %v; want 42, true", id, seq, ok)
	}
	for _, bad := range []string{"", "acl", "x-acl", "-acl", "42"} {
		if seq, ok := lifecycle.Seq(bad); ok {
			t.Errorf("Seq(%q) = %d, true; want false", bad, seq)
		}
	}
}
