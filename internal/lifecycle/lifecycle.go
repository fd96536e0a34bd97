// Package lifecycle holds the id of a lifecycle event (hookbus.plugin.*),
// built by the registry and read by the SDK's workers, which order a
// plugin's lifecycle events by the command sequence it carries
// (docs/protocol.md, "Lifecycle events").
package lifecycle

import (
	"strconv"
	"strings"
)

// ID is the id of the lifecycle event that command seq of plugin name
// caused: "<seq>-<name>".
func ID(seq uint64, name string) string { return strconv.FormatUint(seq, 10) + "-" + name }

// Seq returns the command sequence of an ID, or false.
func Seq(id string) (uint64, bool) {
	head, _, found := strings.Cut(id, "-")
	seq, err := strconv.ParseUint(head, 10, 64)
	return seq, found && err == nil
}
