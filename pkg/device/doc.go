// Package device is a device's client of the Hookbus gateway's device
// sessions (docs/protocol.md, "Device sessions"): Fedecks' client for Go.
//
// A Client keeps one WebSocket on GET /devices/websocket up until Close
// or a final status. It logs in with its credentials the first time (the
// gateway runs the chain of hookbus.device.authenticate), stores every
// token frame in its TokenStore (FileTokenStore writes it atomically,
// mode 0600) and connects with the token afterwards. When the gateway
// answers a token with 401 (expired or revoked), 403 invalid_token or 400,
// or closes the socket with 4001 (revoked), the token is deleted and never
// tried again: the client logs in with its credentials, or stops with
// ErrNeedsLogin when it has none. A refused login (403
// authentication_failed, or 400 to the credentials) or a gateway without
// device sessions (404) stops it with a *RefusedError. Other failures are
// retried after a random wait (full jitter) between 0 and MinBackoff
// doubled at each attempt, at most MaxBackoff.
//
// Send and SendRaw return once the gateway acknowledged their frame
// (stored on hookbus.device.<id>.in); frames written but not acknowledged
// when a connection is lost are written again, in order, on the next one
// (at least once). Call asks the gateway's hookbus.device.call chain and
// returns its reply. Pushes reach Config.OnPush; the client acknowledges
// them (push_ack, cumulative) after OnPush returned, and drops a push
// whose stream sequence it has already delivered.
//
// Statuses (Config.OnStatus, Client.Status): connecting, connected,
// disconnected (waiting to connect again), and the final ones:
// unregistered (no usable token, no credentials), failed (login refused),
// replaced (close 4002: a newer connection of the device; the client does
// not connect again), stopped (close 4003: a plugin stopped the device)
// and closed (Close).
package device
