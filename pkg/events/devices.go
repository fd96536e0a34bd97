package events

// Device sessions (docs/protocol.md, "Device sessions").
const (
	// StreamDevices stores what devices send, on DeviceInSubjects.
	StreamDevices = "HOOKBUS_DEVICES"
	// DeviceInSubjects are the subjects of device messages stored by the
	// gateway: hookbus.device.<id>.in.
	DeviceInSubjects = "hookbus.device.*.in"
	// EventTypeDeviceMessage is the type of a message a device sent.
	EventTypeDeviceMessage = "hookbus.device.message"
)

// DeviceInSubject is the subject of device id's messages (id one subject
// token, checked by the gateway).
func DeviceInSubject(id string) string { return "hookbus.device." + id + ".in" }

// DeviceOutSubject is the subject of pushes to device id.
func DeviceOutSubject(id string) string { return "hookbus.device." + id + ".out" }

// DeviceRevokedSubject is where a revoke of device id is announced (after
// its generation was bumped in BucketDevices), so that every gateway
// replica checks the generation again and closes the device's socket.
func DeviceRevokedSubject(id string) string { return "hookbus.device." + id + ".revoked" }
