package gateway_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/cloudevents/sdk-go/v2/event"
)

// wireClient is the benchmarks' lean load generator: one keep-alive
// HTTP/1.1 connection on which it writes requests built by hand and reads
// the status line, the headers and a Content-Length body, as load
// generators such as wrk do. The benchmarks run their clients in the
// gateway's own process on a 2-core machine, where Go's net/http client
// took about 30 % of the CPU (docs/performance.md): with this one, the
// figures are the gateway's, not the client's. Each benchmark keeps a
// net/http row too.
type wireClient struct {
	conn net.Conn
	r    *bufio.Reader
	host string
	req  []byte
	body []byte
}

// dialWire opens a wireClient to base ("http://host:port").
func dialWire(b *testing.B, base string) *wireClient {
	b.Helper()
	host := base[len("http://"):]
	conn, err := net.DialTimeout("tcp", host, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = conn.Close() })
	return &wireClient{conn: conn, r: bufio.NewReaderSize(conn, 4096), host: host}
}

// postBinary POSTs the benchmark event with id in binary mode to path and
// returns the answer's status and body (valid until the next call).
func (w *wireClient) postBinary(path, id string) (int, []byte, error) {
	req := w.req[:0]
	req = append(req, "POST "...)
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, w.host...)
	req = append(req, "\r\nContent-Type: "+event.ApplicationJSON+
		"\r\nCe-Specversion: "+event.CloudEventsVersionV1+
		"\r\nCe-Source: /bench\r\nCe-Type: "+benchType+"\r\nCe-Id: "...)
	req = append(req, id...)
	req = append(req, "\r\nContent-Length: "...)
	req = strconv.AppendInt(req, int64(len(benchData)), 10)
	req = append(req, "\r\n\r\n"...)
	req = append(req, benchData...)
	w.req = req
	if _, err := w.conn.Write(req); err != nil {
		return 0, nil, err
	}
	return w.readAnswer()
}

// readAnswer reads one answer: the status line, the headers, and a body
// of Content-Length bytes (the gateway always sends one for its answers).
func (w *wireClient) readAnswer() (int, []byte, error) {
	line, err := w.r.ReadSlice('\n')
	if err != nil {
		return 0, nil, err
	}
	// "HTTP/1.1 202 Accepted\r\n"
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	status, err := strconv.Atoi(string(line[9:12]))
	if err != nil {
		return 0, nil, fmt.Errorf("status line %q", line)
	}
	length := -1
	for {
		line, err = w.r.ReadSlice('\n')
		if err != nil {
			return 0, nil, err
		}
		if len(line) <= 2 { // "\r\n": the end of the headers
			break
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(value))); err != nil {
				return 0, nil, fmt.Errorf("header %q", line)
			}
		}
	}
	if length < 0 {
		return 0, nil, fmt.Errorf("answer %d without Content-Length", status)
	}
	if cap(w.body) < length {
		w.body = make([]byte, length)
	}
	w.body = w.body[:length]
	if _, err := io.ReadFull(w.r, w.body); err != nil {
		return 0, nil, err
	}
	return status, w.body, nil
}
