package device_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/hookbus/hookbus/pkg/device"
)

// A device that logs in once with its serial number and password, keeps
// its token in a file, sends a reading, asks a plugin a question and
// prints what it is pushed.
func Example() {
	c, err := device.New(device.Config{
		URL:         "wss://hookbus.example.com", // the gateway; /devices/websocket is added
		DeviceID:    "thermostat-42",
		Credentials: map[string]any{"password": "sesame"}, // for the hookbus.device.authenticate chain
		Tokens:      device.FileTokenStore{Path: "/var/lib/thermostat/token.json"},
		OnStatus: func(s device.Status, err error) {
			log.Printf("status %s (%v)", s, err)
		},
		OnPush: func(p device.Push) {
			fmt.Printf("pushed: %s\n", p.Data)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Returns once the gateway stored it (sent again after a reconnection
	// if need be).
	if err := c.Send(ctx, json.RawMessage(`{"temp":21.5}`)); err != nil {
		log.Fatal(err)
	}
	reply, err := c.Call(ctx, json.RawMessage(`{"question":"target"}`))
	switch {
	case errors.Is(err, device.ErrNoHandler):
		log.Print("no plugin answers calls")
	case err != nil:
		log.Fatal(err)
	default:
		fmt.Printf("target: %s\n", reply)
	}
	select {
	case <-c.Done(): // replaced, stopped, refused: final
		log.Print(c.Err())
	case <-ctx.Done():
	}
}
