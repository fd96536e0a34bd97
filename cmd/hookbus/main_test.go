package main

import (
	"os"
	"testing"
)

// asMainEnv set to 1 makes the test binary run as hookbus (main), so a
// test can start `hookbus serve` as a process of its own.
const asMainEnv = "HOOKBUS_TEST_AS_MAIN"

func TestMain(m *testing.M) {
	if os.Getenv(asMainEnv) == "1" {
		main()
		os.Exit(0)
	}
	os.Exit(m.Run())
}
