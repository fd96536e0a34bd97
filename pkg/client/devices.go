package client

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// PushDevice stores data as a push to device id (hookbus.device.<id>.out,
// stream HOOKBUS_DEVICE_PUSHES) and returns JetStream's acknowledgement:
// the device gets it now if it is connected, else at its next connection
// within a day (the stream keeps the last 1000 pushes of each device). A
// push that is valid JSON reaches the device as a push text frame, any
// other bytes as a binary frame. An invalid id matches events.ErrInvalid;
// a push not stored before ctx ends (or the client's timeout when ctx has
// no deadline) matches ErrNotStored. Retries are stored once.
func (c *Client) PushDevice(ctx context.Context, id string, data []byte) (PublishAck, error) {
	if err := events.ValidateDeviceID(id); err != nil {
		return PublishAck{}, err
	}
	msg := &nats.Msg{Subject: events.DeviceOutSubject(id), Data: data, Header: nats.Header{}}
	msg.Header.Set(events.HeaderMsgID, newID())
	ack, err := c.send(ctx, msg, events.StreamDevicePushes)
	if err != nil {
		return PublishAck{}, fmt.Errorf("push to device %s: %w", id, err)
	}
	return PublishAck{Stream: ack.Stream, Sequence: ack.Sequence, Duplicate: ack.Duplicate}, nil
}

// StopDevice closes the socket of device id wherever a gateway replica
// holds it, with close status 4003 and reason (cut to 120 bytes), as a
// plugin's stop (Fedecks' {:stop, reason}); the device does not connect
// again by itself. It is a core NATS notice (hookbus.device.<id>.ctl.stop):
// a device that is not connected is not affected. An invalid id matches
// events.ErrInvalid.
func (c *Client) StopDevice(ctx context.Context, id, reason string) error {
	if err := events.ValidateDeviceID(id); err != nil {
		return err
	}
	if err := c.nc.Publish(events.DeviceCtlSubject(id, events.DeviceCtlStop), []byte(reason)); err != nil {
		return fmt.Errorf("stop device %s: %w", id, err)
	}
	ctx, cancel := c.withTimeout(ctx)
	defer cancel()
	if err := c.nc.FlushWithContext(ctx); err != nil {
		return fmt.Errorf("stop device %s: %w", id, err)
	}
	return nil
}
