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
