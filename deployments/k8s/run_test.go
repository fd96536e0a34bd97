package k8s

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookbus/hookbus/internal/natstest"
	"github.com/hookbus/hookbus/pkg/events"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
)

// TestDevOverlayRuns runs the dev overlay as its manifests say, without a
// cluster: a NATS server with the overlay's own configuration (accounts,
// users, permissions, limits) and, for each Hookbus Deployment, the binary
// with the container's args, its environment from the ConfigMap and the
// Secrets, and its mounted Secret files. Every service must become ready
// and stop cleanly, the plugin worker and operator users must be able to
// do their jobs (through the CLI, and with pkg/client's chain and notify
// workers against the dispatcher: runPlugins), an event posted to the
// gateway over HTTP must be stored (postThroughGateway), the gateway's
// user must be able to follow its token bucket (watchTokensAsGateway), a
// plugin worker must be refused the auth store, and the server must log no
// other permission violation: the NATS permissions are exactly wide enough.
func TestDevOverlayRuns(t *testing.T) {
	r, err := render(filepath.Join("overlays", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{r: r}
	srv, logged := runNATS(t, c)
	users := map[string]string{}
	for _, u := range srv.opts.Users {
		users[u.Username] = u.Password
	}

	// The registry creates the streams and buckets; it starts first.
	deployments := slices.Clone(r.Deployments)
	slices.SortStableFunc(deployments, func(a, b *appsv1.Deployment) int {
		return cmp.Compare(topology(c, a), topology(c, b)) // "check" < "create"
	})
	slices.Reverse(deployments)
	var services []*service
	for _, d := range deployments {
		services = append(services, startService(t, c, d, srv.ClientURL()))
	}
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// What the server and the services said, to see why.
		for _, line := range logged() {
			t.Logf("NATS: %s", line)
		}
		for _, s := range services {
			t.Logf("%s:\n%s", s.name, s.out)
		}
	})

	cli := func(user string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.CommandContext(t.Context(), hookbusBin, args...)
		cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOOKBUS_NATS_URL=" + srv.ClientURL(),
			"HOOKBUS_NATS_USER=" + user, "HOOKBUS_NATS_PASSWORD=" + users[user]}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, step := range []struct {
		user string
		args []string
		want string
	}{
		{"plugin-example", []string{"plugin", "register", "--name", "example", "--event", "com.example.order.created", "--priority", "10"}, "registered"},
		{"plugin-example", []string{"plugin", "start", "example"}, "started"},
		{"plugin-example", []string{"plugin", "list"}, "example"},
		{"plugin-example", []string{"plugin", "get", "example"}, "started"},
		{"plugin-example", []string{"publish", "--type", "com.example.order.created", "--source", "/k8s-test", "--id", "1", "--data", `{"total":1}`}, "to HOOKBUS_EVENTS"},
		{"admin", []string{"auth", "keys", "set", "session", "a@b", "--value", "c2Vzc2lvbg=="}, "set session"},
		{"admin", []string{"auth", "keys", "get", "session", "a@b"}, "c2Vzc2lvbg=="},
		{"admin", []string{"auth", "rotate"}, "re-encrypted"},
	} {
		out, err := cli(step.user, step.args...)
		if err != nil || !strings.Contains(out, step.want) {
			t.Errorf("%s: hookbus %s: %v\n%s", step.user, strings.Join(step.args, " "), err, out)
		}
	}
	if out, err := cli("plugin-example", "auth", "creds", "get", "--timeout", "1s"); err == nil {
		t.Errorf("plugin-example read the auth store:\n%s", out)
	}
	runPlugins(t, srv.ClientURL(), users, cli)
	// The gateway takes no request without a token (its Deployment says
	// HOOKBUS_GATEWAY_ANONYMOUS=false): an operator makes one as admin.
	out, err := cli("admin", "gateway", "token", "create", "--name", "k8s-test", "--allow", "publish:com.example.>")
	if err != nil {
		t.Fatalf("gateway token create as admin: %v: %s", err, out)
	}
	// The token is the last line (stdout; the line before it is stderr's).
	lines := strings.Split(strings.TrimSpace(out), "\n")
	postThroughGateway(t, targetOf(srv), services, lines[len(lines)-1])
	watchTokensAsGateway(t, targetOf(srv))
	// The example workers (Go, Node.js) as processes with only plugin-example's credentials.
	runExamples(t, srv.ClientURL(), users, cli)

	for _, s := range services {
		s.stop(t)
	}
	refused := false
	for _, line := range logged() {
		if strings.Contains(line, "user:plugin-example") && strings.Contains(line, `Subject "hookbus.auth.creds.get"`) {
			refused = true
			continue
		}
		t.Errorf("NATS: %s", line)
	}
	if !refused {
		t.Error("NATS logged no violation for plugin-example's auth store request")
	}
}

func topology(c *checker, d *appsv1.Deployment) string {
	env := c.effectiveEnv(d.Name, d.Namespace, d.Spec.Template.Spec.Containers[0])
	return env[envTopology].Value
}

type natsServer struct {
	*server.Server
	opts *server.Options
}

// runNATS starts a NATS server in the test process with the dev overlay's
// configuration and the container's environment, on a random loopback
// port, and returns it with a function that lists the permission
// violations it logged.
func runNATS(t *testing.T, c *checker) (natsServer, func() []string) {
	t.Helper()
	if len(c.r.StatefulSets) != 1 {
		t.Fatalf("want one NATS StatefulSet, got %d", len(c.r.StatefulSets))
	}
	sts := c.r.StatefulSets[0]
	ctr := sts.Spec.Template.Spec.Containers[0]
	dir := t.TempDir()
	for _, v := range sts.Spec.Template.Spec.Volumes {
		if v.ConfigMap == nil {
			continue
		}
		cm := c.r.configMap(sts.Namespace, v.ConfigMap.Name)
		if cm == nil {
			t.Fatalf("ConfigMap %s missing", v.ConfigMap.Name)
		}
		for name, data := range cm.Data {
			if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, v := range c.effectiveEnv("nats", sts.Namespace, ctr) {
		if v.Field != nil {
			v.Value = sts.Name + "-0"
		}
		t.Setenv(name, v.Value)
	}
	if len(c.problems) > 0 {
		t.Fatal(strings.Join(c.problems, "\n"))
	}
	opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
	if err != nil {
		t.Fatal(err)
	}
	opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", -1, 0
	opts.StoreDir, opts.PidFile, opts.NoSigs = t.TempDir(), "", true
	srv, err := server.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	log := &violations{}
	srv.SetLoggerV2(log, false, false, false)
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(10 * time.Second) {
		t.Fatal("NATS did not start")
	}
	return natsServer{srv, opts}, log.lines
}

// violations is a NATS server logger that keeps the permission
// violations.
type violations struct {
	mu   sync.Mutex
	seen []string
}

func (v *violations) keep(format string, args ...any) {
	if line := fmt.Sprintf(format, args...); strings.Contains(line, "Violation") {
		v.mu.Lock()
		v.seen = append(v.seen, line)
		v.mu.Unlock()
	}
}

func (v *violations) lines() []string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return slices.Clone(v.seen)
}

func (v *violations) Noticef(format string, args ...any) { v.keep(format, args...) }
func (v *violations) Warnf(format string, args ...any)   { v.keep(format, args...) }
func (v *violations) Fatalf(format string, args ...any)  { v.keep(format, args...) }
func (v *violations) Errorf(format string, args ...any)  { v.keep(format, args...) }
func (v *violations) Debugf(format string, args ...any)  {}
func (v *violations) Tracef(format string, args ...any)  {}

// service is one Deployment's container running as a process.
type service struct {
	name   string
	cmd    *exec.Cmd
	out    *natstest.SyncBuffer
	exited chan struct{} // closed when the process has exited, err set
	err    error
	// gatewayAddr is where the gateway's HTTP server listens (a free
	// loopback port in place of the manifest's HOOKBUS_GATEWAY_ADDR), ""
	// for the other services.
	gatewayAddr string
}

// startService runs d's container as the kubelet would (args, environment
// from its ConfigMap and Secrets, Secret volumes as files), against the
// test's NATS and with its ops endpoint (and the gateway's HTTP listener)
// on a free loopback port, and waits until /readyz answers 200.
func startService(t *testing.T, c *checker, d *appsv1.Deployment, natsURL string) *service {
	t.Helper()
	spec := d.Spec.Template.Spec
	ctr := spec.Containers[0]
	env := c.effectiveEnv(d.Name, d.Namespace, ctr)
	if len(c.problems) > 0 {
		t.Fatal(strings.Join(c.problems, "\n"))
	}
	// Secret volumes become files; paths into them follow.
	for _, m := range ctr.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name && v.Secret != nil })
		if i < 0 {
			continue
		}
		vol := spec.Volumes[i].Secret
		dir := t.TempDir()
		for _, item := range vol.Items {
			v, ok := c.secretKey(d.Namespace, vol.SecretName, item.Key)
			if !ok {
				t.Fatalf("Secret %s has no key %s", vol.SecretName, item.Key)
			}
			if err := os.WriteFile(filepath.Join(dir, item.Path), []byte(v), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		for name, v := range env {
			if rest, ok := strings.CutPrefix(v.Value, m.MountPath+"/"); ok {
				v.Value = filepath.Join(dir, rest)
				env[name] = v
			}
		}
	}
	opsAddr := freeAddr(t)
	env[envNATSURL] = envVar{Value: natsURL}
	env[envOpsAddr] = envVar{Value: opsAddr}
	s := &service{name: d.Name, out: &natstest.SyncBuffer{}, exited: make(chan struct{})}
	if _, ok := env[envGatewayAddr]; ok {
		s.gatewayAddr = freeAddr(t)
		env[envGatewayAddr] = envVar{Value: s.gatewayAddr}
	}

	s.cmd = exec.Command(hookbusBin, ctr.Args...)
	s.cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	for name, v := range env {
		s.cmd.Env = append(s.cmd.Env, name+"="+v.Value)
	}
	s.cmd.Stdout, s.cmd.Stderr = s.out, s.out
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
	})

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+opsAddr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("%s exited: %v\n%s", d.Name, s.err, s.out)
		case <-ctx.Done():
			t.Fatalf("%s not ready after 30 s\n%s", d.Name, s.out)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// stop sends SIGTERM, as the kubelet does, and expects a clean exit within
// the pod's grace period.
func (s *service) stop(t *testing.T) {
	t.Helper()
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("%s: %v", s.name, err)
		return
	}
	select {
	case <-s.exited:
		if s.err != nil {
			t.Errorf("%s: stopped with %v\n%s", s.name, s.err, s.out)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("%s: still running 30 s after SIGTERM\n%s", s.name, s.out)
	}
}

func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// postThroughGateway posts one event to the running gateway as an HTTP
// client would (binary mode): refused (401) without a token, stored with
// token, as admin finds it where the gateway's 202 says.
func postThroughGateway(t *testing.T, tg natsTarget, services []*service, token string) {
	t.Helper()
	i := slices.IndexFunc(services, func(s *service) bool { return s.gatewayAddr != "" })
	if i < 0 {
		t.Error("no Deployment runs the gateway")
		return
	}
	post := func(token string) (int, []byte) {
		return postEvent(t, services[i].gatewayAddr, token, map[string]string{
			"ce-specversion": "1.0", "ce-id": "k8s-gateway-1", "ce-source": "/k8s-test", "ce-type": "com.example.order.created",
		}, `{"total":2}`)
	}
	if status, body := post(""); status != http.StatusUnauthorized {
		t.Errorf("POST /events through the gateway without a token: status %d, want 401; body %s", status, body)
	}
	// A new token reaches the gateway through its watch of the bucket:
	// 401 until then.
	status, body := post(token)
	for deadline := time.Now().Add(10 * time.Second); status == http.StatusUnauthorized && time.Now().Before(deadline); status, body = post(token) {
		time.Sleep(50 * time.Millisecond)
	}
	if status != http.StatusAccepted {
		t.Errorf("POST /events through the gateway: status %d, want 202; body %s", status, body)
		return
	}
	var ack struct {
		Stream string `json:"stream"`
		Seq    uint64 `json:"seq"`
	}
	if err := json.Unmarshal(body, &ack); err != nil || ack.Stream != events.StreamEvents || ack.Seq == 0 {
		t.Errorf("POST /events through the gateway: answer %s (%v), want stream %s and a sequence", body, err, events.StreamEvents)
		return
	}
	js, err := jetstream.New(tg.mustConnect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(t.Context(), ack.Stream)
	if err != nil {
		t.Fatal(err)
	}
	msg, err := stream.GetMsg(t.Context(), ack.Seq)
	if err != nil {
		t.Fatalf("admin: message %d of %s: %v", ack.Seq, ack.Stream, err)
	}
	e, err := events.Decode(msg.Header, msg.Data)
	if err != nil {
		t.Fatalf("message %d of %s: %v", ack.Seq, ack.Stream, err)
	}
	if e.ID() != "k8s-gateway-1" || e.Source() != "/k8s-test" || e.Type() != "com.example.order.created" || string(e.Data()) != `{"total":2}` {
		t.Errorf("stored event %s %s %s %s, want the posted one", e.ID(), e.Source(), e.Type(), e.Data())
	}
}

// postEvent POSTs a CloudEvent in binary mode (its attributes as ce-*
// headers, data as JSON) to the gateway at addr, with "Authorization:
// Bearer <token>" unless token is empty, and returns the status and body.
func postEvent(t *testing.T, addr, token string, headers map[string]string, data string) (int, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/events", strings.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("POST /events: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("POST /events: reading the answer: %v", err)
	}
	return resp.StatusCode, body
}

// watchTokensAsGateway reads bucket hookbus_gateway_tokens as NATS user
// gateway the way a gateway follows its tokens (a watch of every key, and
// a get), while admin writes one: the gateway's permissions must let it,
// and the server must log no violation.
func watchTokensAsGateway(t *testing.T, tg natsTarget) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	admin, err := jetstream.New(tg.mustConnect(t, "admin"))
	if err != nil {
		t.Fatal(err)
	}
	akv, err := admin.KeyValue(ctx, events.BucketGatewayTokens)
	if err != nil {
		t.Fatalf("admin: bucket %s: %v", events.BucketGatewayTokens, err)
	}
	js, err := jetstream.New(tg.mustConnect(t, "gateway"))
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(ctx, events.BucketGatewayTokens)
	if err != nil {
		t.Fatalf("gateway: bucket %s: %v", events.BucketGatewayTokens, err)
	}
	w, err := kv.WatchAll(ctx)
	if err != nil {
		t.Fatalf("gateway: watch %s: %v", events.BucketGatewayTokens, err)
	}
	defer func() {
		// A watch whose context ended has stopped already.
		if err := w.Stop(); err != nil && ctx.Err() == nil {
			t.Errorf("gateway: stop the watch: %v", err)
		}
	}()
	// A record as `hookbus gateway token create` stores one, of a token
	// whose SHA-256 is all zeros: no token has it, so it admits nobody.
	const key = "k8s-watch"
	const record = `{"name":"k8s-watch","sha256":"0000000000000000000000000000000000000000000000000000000000000000",` +
		`"allow":[{"action":"publish","pattern":"com.example.>"}],"rate":0,"created_at":"2026-01-01T00:00:00Z"}`
	if _, err := akv.Put(ctx, key, []byte(record)); err != nil {
		t.Fatalf("admin: put a token: %v", err)
	}
	for seen := false; !seen; {
		select {
		case e := <-w.Updates():
			seen = e != nil && e.Key() == key && string(e.Value()) == record
		case <-ctx.Done():
			t.Fatalf("gateway: the watch of %s did not see admin's token", events.BucketGatewayTokens)
		}
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("gateway: get token %s: %v", key, err)
	}
	if string(e.Value()) != record {
		t.Errorf("gateway: token %s is %s, want %s", key, e.Value(), record)
	}
	if err := akv.Delete(ctx, key); err != nil {
		t.Errorf("admin: delete token %s: %v", key, err)
	}
}
