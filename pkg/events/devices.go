package events

import (
	"regexp"
	"time"
)

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

// Control notices to the gateway replicas holding a device's socket
// (core NATS, hookbus.device.<id>.ctl.<what>): each session subscribes to
// DeviceControlSubject(id).
const (
	// DeviceCtlRevoked: the device was revoked (after its generation was
	// bumped in BucketDevices): every replica reads the generation again
	// and closes the device's socket (4001). Data: the new generation.
	DeviceCtlRevoked = "revoked"
	// DeviceCtlSession: a new session of the device started (data: its
	// session id); an older session closes (4002). Gateways only.
	DeviceCtlSession = "session"
	// DeviceCtlStop: a plugin stops the device (4003); data: the reason.
	DeviceCtlStop = "stop"
)

// DeviceStopSubjects are the stop notices to every device
// (hookbus.device.*.ctl.stop): what plugin workers may publish.
const DeviceStopSubjects = "hookbus.device.*.ctl.stop"

// DeviceControlSubject is the subscription of a session of device id to
// its control notices: hookbus.device.<id>.ctl.*.
func DeviceControlSubject(id string) string { return "hookbus.device." + id + ".ctl.*" }

// DeviceCtlSubject is the subject of control notice what (DeviceCtl*) to
// device id.
func DeviceCtlSubject(id, what string) string { return "hookbus.device." + id + ".ctl." + what }

// DeviceRevokedSubject is where a revoke of device id is announced:
// hookbus.device.<id>.ctl.revoked.
func DeviceRevokedSubject(id string) string { return DeviceCtlSubject(id, DeviceCtlRevoked) }

// EventTypeDeviceCall is the chain a device's call frame runs: its final
// state's "reply" is answered to the device, its "stop" closes the
// socket.
const EventTypeDeviceCall = "hookbus.device.call"

// Pushes to devices (docs/protocol.md, "Device sessions": pushes).
const (
	// StreamDevicePushes stores pushes to devices, on DeviceOutSubjects,
	// until the device is connected and acknowledges them (or they age
	// out): published again on DevicePushRepublish for the gateway
	// replica holding the device's socket.
	StreamDevicePushes = "HOOKBUS_DEVICE_PUSHES"
	// DeviceOutSubjects are the subjects of pushes to devices:
	// hookbus.device.<id>.out.
	DeviceOutSubjects = "hookbus.device.*.out"
	// DevicePushRepublish is where StreamDevicePushes publishes each
	// stored push again (core NATS, headers Nats-Sequence and
	// Nats-Last-Sequence): hookbus.device.<id>.push (DevicePushSubject).
	DevicePushRepublish = "hookbus.device.{{wildcard(1)}}.push"
)

// DevicePushSubject is where the stored pushes to device id are
// published again, live: what the gateway replica holding its socket
// subscribes to.
func DevicePushSubject(id string) string { return "hookbus.device." + id + ".push" }

// deviceIDPattern is what a device id may be: one subject token and a KV
// key, not starting with '_' or '-'.
var deviceIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$`)

// ValidateDeviceID checks a device id: 1 to 64 of [A-Za-z0-9_-], starting
// with a letter or a digit. The error matches ErrInvalid.
func ValidateDeviceID(id string) error {
	if !deviceIDPattern.MatchString(id) {
		return invalidIn("name", "device", "%q: want 1 to 64 of [A-Za-z0-9_-], starting with a letter or a digit", id)
	}
	return nil
}

// Presence of devices (docs/protocol.md, "Device sessions": presence).
const (
	// BucketDevicePresence holds one key per connected device (its id):
	// DevicePresence as JSON, written by the gateway replica holding the
	// device's socket, refreshed on each pong, deleted at disconnect.
	BucketDevicePresence = "hookbus_device_presence"
	// DevicePresenceTTL is the bucket's max age: the key of a device
	// whose gateway died expires within it.
	DevicePresenceTTL = 60 * time.Second
)

// DevicePresence is the value of a device's key in BucketDevicePresence.
type DevicePresence struct {
	Session        string    `json:"session"`
	Replica        string    `json:"replica"`
	Remote         string    `json:"remote"`
	ConnectedSince time.Time `json:"connected_since"`
	LastSeen       time.Time `json:"last_seen"`
}

// Lifecycle events of device sessions, on DeviceLifecycleSubject, stored
// by StreamLifecycle, source /gateway/<replica>.
const (
	// EventTypeDeviceConnected: a device's session started; data
	// {"session","replica","remote","login":"token"|"credentials"}.
	EventTypeDeviceConnected = "hookbus.device.connected"
	// EventTypeDeviceDisconnected: a device's session ended; data
	// {"session","replica","reason","code","duration_ms"}.
	EventTypeDeviceDisconnected = "hookbus.device.disconnected"
	// EventTypeDeviceSocketError: an upgrade was refused; data
	// {"reason","remote","detail"}.
	EventTypeDeviceSocketError = "hookbus.device.socket_error"
	// DeviceLifecycleUnknown stands for the device id in the subject of
	// a refusal whose header had no valid id.
	DeviceLifecycleUnknown = "_unknown"
)

// DeviceLifecycleSubject is the subject of lifecycle events about device
// id: hookbus.lifecycle.device.<id>, or hookbus.lifecycle.device._unknown
// when id is not a valid device id.
func DeviceLifecycleSubject(id string) string {
	if ValidateDeviceID(id) != nil {
		id = DeviceLifecycleUnknown
	}
	return "hookbus.lifecycle.device." + id
}
