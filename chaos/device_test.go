//go:build chaos

package chaos

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookbus/hookbus/pkg/events"
	"github.com/hookbus/hookbus/services/gateway"
)

// The device token secret and salt of the gateways the suite starts
// (HOOKBUS_DEVICE_TOKEN_SECRET, _SALT): the suite seals each device's
// first token with them, as a login would give it.
var (
	deviceSecret = []byte("chaos-device-token-secret-0123456789abcdef")
	deviceSalt   = []byte("chaos-device-token-salt")
)

// deviceEnv turns device sessions on in a gateway's environment.
func deviceEnv() []string {
	return []string{"HOOKBUS_DEVICE_TOKEN_SECRET=" + string(deviceSecret), "HOOKBUS_DEVICE_TOKEN_SALT=" + string(deviceSalt)}
}

// chaosDevices is how many devices send messages during a scenario, 25
// a second each.
const chaosDevices = 3

// deviceTraffic is what the devices sent over their WebSockets: every
// message numbered per device; acked holds those the gateway acknowledged.
type deviceTraffic struct {
	mu         sync.Mutex
	sent       map[string]int          // device -> messages sent (the last number)
	acked      map[string]map[int]bool // device -> numbers acknowledged
	reconnects int                     // connections with a token the gateway gave
	refused    map[string]int          // refused upgrades by status and code
	errs       []string
}

func newDeviceTraffic() *deviceTraffic {
	return &deviceTraffic{sent: map[string]int{}, acked: map[string]map[int]bool{}, refused: map[string]int{}}
}

// deviceLoop runs device id against the gateway at base (http://host:port)
// until stop: it sends message n until acknowledged, connecting again
// (with the last token the gateway gave it) whenever the socket breaks;
// after stop it keeps trying the unacknowledged message until giveUp.
func (dt *deviceTraffic) deviceLoop(stop, giveUp context.Context, base, id string) {
	sealer, err := gateway.NewDeviceSealer(deviceSecret, deviceSalt)
	if err != nil {
		dt.fail(err.Error())
		return
	}
	token, err := sealer.Seal(gateway.DeviceToken{DeviceID: id, IssuedAt: time.Now(), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		dt.fail(err.Error())
		return
	}
	url := "ws" + strings.TrimPrefix(base, "http") + "/devices/websocket"
	var conn *websocket.Conn
	defer func() {
		if conn != nil {
			_ = conn.CloseNow()
		}
	}()
	first := true
	n := 1
	for {
		// After stop only a message in flight is sent again.
		if stop.Err() != nil && !dt.pending(id, n) || giveUp.Err() != nil {
			return
		}
		if conn == nil {
			c, tok, err := dialChaosDevice(giveUp, url, id, token)
			if err != nil {
				dt.refusal(err)
				select {
				case <-giveUp.Done():
					return
				case <-time.After(100 * time.Millisecond):
				}
				continue
			}
			conn, token = c, tok
			if !first {
				dt.mu.Lock()
				dt.reconnects++
				dt.mu.Unlock()
			}
			first = false
		}
		dt.mu.Lock()
		if dt.sent[id] < n {
			dt.sent[id] = n
		}
		dt.mu.Unlock()
		data, _ := json.Marshal(map[string]any{"type": "message", "data": map[string]any{"device": id, "n": n}})
		ctx, cancel := context.WithTimeout(giveUp, attemptTimeout)
		acked, tok, err := sendUntilAck(ctx, conn, data)
		cancel()
		if tok != "" {
			token = tok
		}
		if err != nil {
			_ = conn.CloseNow()
			conn = nil
			continue // send n again on a new connection
		}
		if acked {
			dt.mu.Lock()
			if dt.acked[id] == nil {
				dt.acked[id] = map[int]bool{}
			}
			dt.acked[id][n] = true
			dt.mu.Unlock()
			n++
			// 25 messages a second, as the HTTP publishers.
			select {
			case <-stop.Done():
			case <-time.After(40 * time.Millisecond):
			}
		}
	}
}

// pending reports whether message n of id was sent and not acknowledged.
func (dt *deviceTraffic) pending(id string, n int) bool {
	dt.mu.Lock()
	defer dt.mu.Unlock()
	return dt.sent[id] >= n && !dt.acked[id][n]
}

func (dt *deviceTraffic) fail(msg string) {
	dt.mu.Lock()
	defer dt.mu.Unlock()
	dt.errs = append(dt.errs, msg)
}

// refusal counts a failed connection: an answered refusal by its status
// and code (a token the gateway gave must never be refused), else
// "no connection".
func (dt *deviceTraffic) refusal(err error) {
	dt.mu.Lock()
	defer dt.mu.Unlock()
	var r *deviceRefused
	if errors.As(err, &r) {
		dt.refused[r.Error()]++
		return
	}
	dt.refused["no connection"]++
}

// deviceRefused is an upgrade the gateway answered with a problem.
type deviceRefused struct {
	status int
	code   string
}

func (r *deviceRefused) Error() string { return fmt.Sprintf("%d %s", r.status, r.code) }

// dialChaosDevice connects device id with token and reads its token frame:
// the token to connect with next time.
func dialChaosDevice(ctx context.Context, url, id, token string) (*websocket.Conn, string, error) {
	ctx, cancel := context.WithTimeout(ctx, attemptTimeout)
	defer cancel()
	h, _ := json.Marshal(map[string]string{"device_id": id, "token": token})
	hdr := http.Header{}
	hdr.Set(gateway.HeaderDeviceAuth, base64.StdEncoding.EncodeToString(h))
	conn, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{HTTPHeader: hdr})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusServiceUnavailable && resp.StatusCode != http.StatusBadGateway {
			var p struct {
				Code string `json:"code"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&p)
			return nil, "", &deviceRefused{status: resp.StatusCode, code: p.Code}
		}
		return nil, "", err
	}
	_, b, err := conn.Read(ctx)
	var f struct{ Type, Token string }
	if err != nil || json.Unmarshal(b, &f) != nil || f.Type != "token" || f.Token == "" {
		_ = conn.CloseNow()
		return nil, "", fmt.Errorf("first frame %q: %v", b, err)
	}
	return conn, f.Token, nil
}

// sendUntilAck sends data and reads until its ack (frames of a
// connection are acknowledged in order, one in flight here), keeping
// any token frame.
func sendUntilAck(ctx context.Context, conn *websocket.Conn, data []byte) (acked bool, token string, err error) {
	if err := conn.Write(ctx, websocket.MessageText, data); err != nil {
		return false, "", err
	}
	for {
		_, b, err := conn.Read(ctx)
		if err != nil {
			return false, token, err
		}
		var f struct{ Type, Token string }
		if json.Unmarshal(b, &f) != nil {
			continue
		}
		switch f.Type {
		case "ack":
			return true, token, nil
		case "token":
			token = f.Token
		}
	}
}

// deviceVerdict compares what the devices had acknowledged with what
// HOOKBUS_DEVICES holds on hookbus.device.<id>.in.
type deviceVerdict struct {
	sent, acked, stored, lost, duplicated, reconnects int
	refused                                           map[string]int
	lostIDs                                           []string
	errs                                              []string
}

// checkDevices reads every device message stored and counts.
func (dt *deviceTraffic) check(ctx context.Context, js jetstream.JetStream) (deviceVerdict, error) {
	seen := map[string]int{} // "id n" -> times stored
	err := readStream(ctx, js, events.StreamDevices, "hookbus.device.*.in", func(m jetstream.Msg, _ *jetstream.MsgMetadata) {
		e, err := events.Codec{}.Decode(m.Headers(), m.Data())
		if err != nil {
			return
		}
		var d struct {
			Device string
			N      int
		}
		if json.Unmarshal(e.Data(), &d) == nil && d.Device != "" {
			seen[fmt.Sprintf("%s %d", d.Device, d.N)]++
		}
	})
	if err != nil {
		return deviceVerdict{}, err
	}
	dt.mu.Lock()
	defer dt.mu.Unlock()
	v := deviceVerdict{reconnects: dt.reconnects, refused: dt.refused, errs: dt.errs, stored: len(seen)}
	for id, n := range dt.sent {
		v.sent += n
		for k := range dt.acked[id] {
			v.acked++
			if seen[fmt.Sprintf("%s %d", id, k)] == 0 {
				v.lost++
				v.lostIDs = append(v.lostIDs, fmt.Sprintf("%s %d", id, k))
			}
		}
	}
	for _, times := range seen {
		if times > 1 {
			v.duplicated++
		}
	}
	return v, nil
}
