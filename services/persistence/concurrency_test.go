package persistence_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"

	"golang.org/x/sync/errgroup"

	"github.com/hookbus/hookbus/pkg/client"
	"github.com/hookbus/hookbus/services/persistence"
)

// TestConcurrentWritersLoseNoUpdate has writers on separate connections
// increment a counter kept in one context's credentials, each by a
// read-modify-write with the revision it read, retrying on a conflict.
// With two service replicas sharing the work, no increment may be lost.
func TestConcurrentWritersLoseNoUpdate(t *testing.T) {
	const writers, increments = 8, 10
	srv := newBus(t, "")
	key := persistence.NewKey()
	startService(t, srv, key)
	startService(t, srv, key) // a second replica in the same queue group

	mustSaveCreds(t, newClient(t, srv).AuthStore("counter"), []byte("0"))
	var g errgroup.Group
	conflicts := make([]int, writers)
	for w := range writers {
		store := newClient(t, srv).AuthStore("counter")
		g.Go(func() error {
			for range increments {
				for {
					n, err := increment(t.Context(), store)
					if errors.Is(err, client.ErrConflict) {
						conflicts[w]++
						continue
					}
					if err != nil {
						return fmt.Errorf("writer %d after %d: %w", w, n, err)
					}
					break
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	got := mustLoadCreds(t, newClient(t, srv).AuthStore("counter"))
	total := 0
	for _, n := range conflicts {
		total += n
	}
	t.Logf("%d writers, %d increments each, %d conflicts retried", writers, increments, total)
	if want := strconv.Itoa(writers * increments); string(got.Value) != want {
		t.Fatalf("counter = %s, want %s: an update was lost", got.Value, want)
	}
	if total == 0 {
		t.Log("no conflict happened: the writers did not overlap this time")
	}
}

// increment adds one to the counter in the credentials, on condition of
// the revision it read.
func increment(ctx context.Context, store *client.AuthStore) (int, error) {
	cr, err := store.LoadCredentials(ctx)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(string(cr.Value))
	if err != nil {
		return 0, err
	}
	_, err = store.SaveCredentialsIf(ctx, []byte(strconv.Itoa(n+1)), cr.Revision)
	return n + 1, err
}
