package events

// Names the tests of package events_test reach that are not part of the
// package's API.
const (
	MaxTypeLen = maxTypeLen
	MaxNameLen = maxNameLen
)

var ValidatePublishSubject = checkPublishSubject
