package device_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/device"
)

// A stored push bigger than the client's MaxFrameSize must not wedge the
// device: it is skipped (and acknowledged), and the pushes after it
// arrive. Before, the client dropped the socket on reading it, connected
// again (its backoff reset by the token frame), got the same push again,
// and so on forever: no later push ever arrived.
func TestPushOverMaxFrameSizeIsSkipped(t *testing.T) {
	b := newBus(t, nil)
	big := `"` + strings.Repeat("x", 4096) + `"`
	b.publishPush(t, "d1", big)
	b.publishPush(t, "d1", `"small"`)
	store := &device.MemoryTokenStore{}
	_, w := b.start(t, device.Config{DeviceID: "d1", Credentials: sesame, Tokens: store, MaxFrameSize: 1024})
	natstest.Eventually(t, wait, func() error {
		for _, p := range w.got() {
			if jsonEq(p.Data, []byte(`"small"`)) {
				return nil
			}
		}
		return fmt.Errorf("the push after the big one has not arrived; %d connections so far", w.count(device.StatusConnected))
	})
	if n := w.count(device.StatusConnected); n > 1 {
		t.Fatalf("%d connections, want 1: the big push broke the connection", n)
	}
	for _, p := range w.got() {
		if len(p.Data) > 1024 {
			t.Fatalf("a push of %d bytes was delivered over MaxFrameSize", len(p.Data))
		}
	}
}
