package k8s

// The attack suite (docs/security.md): real NATS servers started from the
// rendered overlays' configurations, attacked with raw nats.go and
// jetstream calls by a client holding one identity's credentials.
//
//   - attack_table_test.go: every cell of the permission table, as that
//     user, against each overlay's NATS configuration;
//   - attack_escalation_test.go: multi-step escalations against the dev
//     overlay with the Hookbus services running as its manifests say, and
//     against the all-in-one `hookbus serve`.
//
// This file has what both share: connecting as a user (each with its own
// inbox prefix _INBOX.<user>), reading NATS' refusal of one operation,
// starting the dev stack, and the counts behind the one summary line that
// TestMain prints (printAttackSummary).

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"

	"github.com/hookbus/hookbus/pkg/client"
)

// natsTarget is a running NATS server and the passwords of the users its
// configuration defines.
type natsTarget struct {
	url   string
	users map[string]string // user -> password, from the parsed configuration
	opts  []nats.Option     // extra client options (TLS for an overlay that requires it)
}

// targetOf describes a server runNATS started.
func targetOf(srv natsServer) natsTarget {
	users := map[string]string{}
	for _, u := range srv.opts.Users {
		users[u.Username] = u.Password
	}
	return natsTarget{url: srv.ClientURL(), users: users}
}

// connect connects as user with the user's own inbox prefix,
// _INBOX.<user>, as every Hookbus client does (docs/security.md: private
// inboxes). Asynchronous errors are not printed: the attacks read them
// from LastError.
func (tg natsTarget) connect(user string) (*nats.Conn, error) {
	password, ok := tg.users[user]
	if !ok {
		return nil, fmt.Errorf("user %s is not in the NATS configuration", user)
	}
	opts := append([]nats.Option{
		nats.UserInfo(user, password),
		nats.CustomInboxPrefix(inboxOf(user)),
		nats.Name("attack suite as " + user),
		nats.NoReconnect(),
		nats.Timeout(5 * time.Second),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {}),
	}, tg.opts...)
	return nats.Connect(tg.url, opts...)
}

// mustConnect is connect, closed when the test ends.
func (tg natsTarget) mustConnect(t testing.TB, user string) *nats.Conn {
	t.Helper()
	nc, err := tg.connect(user)
	if err != nil {
		t.Fatalf("connect as %s: %v", user, err)
	}
	t.Cleanup(nc.Close)
	return nc
}

// inboxOf is user's inbox prefix.
func inboxOf(user string) string { return "_INBOX." + user }

// token is a random subject token (and name: [0-9a-f]{24}).
func token() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// refusal reports whether NATS refused what nc sent last on subject.
//
// Deterministic, without waiting: nats-server checks a PUB or SUB against
// the user's permissions as it reads it and queues the -ERR 'Permissions
// Violation for Publish to "S"' (or 'for Subscription to "S"', with
// 'using queue "Q"') on the connection right then (v2.15.2 client.go:
// processInboundClientMsg -> pubPermissionViolation, processSub ->
// subPermissionViolation, both c.sendErr); the PING that Flush sends next
// is read after it, so its PONG is queued after the -ERR. nats.go's reader
// goroutine handles the two in that order (v1.55.0 parser.go: -ERR ->
// processErr, PONG -> processPong): processErr -> processTransientError
// sets nc.err (what LastError returns) under nc.mu synchronously, before
// the parser reaches the PONG whose processPong releases Flush. So once
// Flush returns, LastError holds the refusal if there was one. nc.err is
// never cleared: use a fresh connection for each operation whose refusal
// is read.
func refusal(nc *nats.Conn, subject string) (bool, error) {
	if err := nc.FlushTimeout(5 * time.Second); err != nil {
		return false, fmt.Errorf("flush: %w", err)
	}
	last := nc.LastError()
	switch {
	case last == nil:
		return false, nil
	case errors.Is(last, nats.ErrPermissionViolation) && strings.Contains(last.Error(), " to "+strconv.Quote(subject)):
		return true, nil
	default:
		return false, fmt.Errorf("unexpected error from NATS: %w", last)
	}
}

// tryPub publishes data (no reply subject) on subject as user over a fresh
// connection and reports whether NATS refused it.
func (tg natsTarget) tryPub(user, subject string, data []byte) (bool, error) {
	nc, err := tg.connect(user)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	if err := nc.Publish(subject, data); err != nil {
		return false, err
	}
	return refusal(nc, subject)
}

// trySub subscribes to subject (in queue group queue if not empty) as user
// over a fresh connection and reports whether NATS refused it.
func (tg natsTarget) trySub(user, subject, queue string) (bool, error) {
	nc, err := tg.connect(user)
	if err != nil {
		return false, err
	}
	defer nc.Close()
	if queue == "" {
		_, err = nc.SubscribeSync(subject)
	} else {
		_, err = nc.QueueSubscribeSync(subject, queue)
	}
	if err != nil {
		return false, err
	}
	return refusal(nc, subject)
}

// attempt is the outcome of one request an attacker sent.
type attempt struct {
	Refused bool      // NATS refused the publish
	Reply   *nats.Msg // the answer, when not refused and one came
	Err     error     // anything else that went wrong (no answer in time included)
}

func (a attempt) String() string {
	switch {
	case a.Refused:
		return "refused by NATS"
	case a.Err != nil:
		return "not refused by NATS; " + a.Err.Error()
	case a.Reply != nil:
		return "not refused by NATS; reply " + string(a.Reply.Data)
	}
	return "not refused by NATS"
}

// request sends msg as user over a fresh connection with a reply subject
// in the user's own inbox, and waits up to wait for the answer unless
// NATS refused the publish.
func (tg natsTarget) request(user string, msg *nats.Msg, wait time.Duration) attempt {
	nc, err := tg.connect(user)
	if err != nil {
		return attempt{Err: err}
	}
	defer nc.Close()
	inbox := inboxOf(user) + "." + token()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return attempt{Err: err}
	}
	if refused, err := refusal(nc, inbox); refused || err != nil {
		return attempt{Err: fmt.Errorf("subscribing to its own inbox %s: refused %v, %v", inbox, refused, err)}
	}
	msg.Reply = inbox
	if err := nc.PublishMsg(msg); err != nil {
		return attempt{Err: err}
	}
	refused, err := refusal(nc, msg.Subject)
	if refused || err != nil {
		return attempt{Refused: refused, Err: err}
	}
	reply, err := sub.NextMsg(wait)
	if err != nil {
		return attempt{Err: fmt.Errorf("no answer in %s: %w", wait, err)}
	}
	return attempt{Reply: reply}
}

// jsAPIError is the error member of a JetStream API answer, nil when the
// answer has none.
func jsAPIError(m *nats.Msg) *jetstream.APIError {
	if m == nil {
		return nil
	}
	var resp struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return &jetstream.APIError{Description: "unreadable answer: " + string(m.Data)}
	}
	return resp.Error
}

// sniffer is an attacker's subscription kept open to see what arrives.
type sniffer struct {
	user, subject string
	nc            *nats.Conn
	sub           *nats.Subscription
	refused       bool
}

func (tg natsTarget) sniff(t *testing.T, user, subject string) *sniffer {
	t.Helper()
	nc := tg.mustConnect(t, user)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	refused, err := refusal(nc, subject)
	if err != nil {
		t.Fatalf("%s: sub %s: %v", user, subject, err)
	}
	return &sniffer{user: user, subject: subject, nc: nc, sub: sub, refused: refused}
}

// seen returns every message that reached the subscription so far: the
// flush makes sure whatever the server sent before it has been read.
func (s *sniffer) seen(t *testing.T) []*nats.Msg {
	t.Helper()
	if err := s.nc.FlushTimeout(5 * time.Second); err != nil {
		t.Fatalf("%s: flush: %v", s.user, err)
	}
	var out []*nats.Msg
	for {
		m, err := s.sub.NextMsg(0)
		if err != nil {
			return out
		}
		out = append(out, m)
	}
}

// attackStack is the dev overlay running as its manifests say: NATS with
// the overlay's configuration, and each Hookbus Deployment's container as
// a process of the built binary; admin is the operators' connection.
type attackStack struct {
	natsTarget
	admin *nats.Conn
	ajs   jetstream.JetStream
	ac    *client.Client
}

// startStack starts a fresh dev stack for one test (tests share no
// state). When no Deployment creates or updates the topology at start
// (HOOKBUS_TOPOLOGY or --topology "ensure"), an operator would have run
// `hookbus topology ensure` as admin first: so does this.
func startStack(t *testing.T) *attackStack {
	t.Helper()
	r, err := render(filepath.Join("overlays", "dev"))
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{r: r}
	srv, logged := runNATS(t, c)
	st := &attackStack{natsTarget: targetOf(srv)}

	deployments := slices.Clone(r.Deployments)
	ensured := false
	for _, d := range deployments {
		if topologyMode(c, d) == "ensure" {
			ensured = true
		}
	}
	if !ensured {
		st.topologyEnsure(t, c, deployments[0])
	}
	// Whoever creates streams and buckets starts first; the others check them.
	slices.SortStableFunc(deployments, func(a, b *appsv1.Deployment) int {
		return cmp.Compare(btoi(topologyMode(c, a) == "check"), btoi(topologyMode(c, b) == "check"))
	})
	var services []*service
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, line := range logged() {
			t.Logf("NATS: %s", line)
		}
		for _, s := range services {
			t.Logf("%s (last lines):\n%s", s.name, tail(s.out.String(), 25))
		}
	})
	for _, d := range deployments {
		services = append(services, startService(t, c, d, srv.ClientURL()))
	}

	st.admin = st.mustConnect(t, "admin")
	if st.ajs, err = jetstream.New(st.admin); err != nil {
		t.Fatal(err)
	}
	if st.ac, err = client.New(st.admin); err != nil {
		t.Fatal(err)
	}
	return st
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// topologyMode is what d's container does with the topology at start: the
// --topology flag in its args, else HOOKBUS_TOPOLOGY, else the binary's
// default.
func topologyMode(c *checker, d *appsv1.Deployment) string {
	ctr := d.Spec.Template.Spec.Containers[0]
	for i, a := range ctr.Args {
		if v, ok := strings.CutPrefix(a, "--topology="); ok {
			return v
		}
		if a == "--topology" && i+1 < len(ctr.Args) {
			return ctr.Args[i+1]
		}
	}
	if v := c.effectiveEnv(d.Name, d.Namespace, ctr)[envTopology].Value; v != "" {
		return v
	}
	def, _ := binary.variable(envTopology)
	return def
}

// topologyEnsure runs `hookbus topology ensure` as admin with the
// configuration (ConfigMap values) of Deployment d.
func (st *attackStack) topologyEnsure(t *testing.T, c *checker, d *appsv1.Deployment) {
	t.Helper()
	var env []string
	for name, v := range c.effectiveEnv(d.Name, d.Namespace, d.Spec.Template.Spec.Containers[0]) {
		if strings.HasPrefix(name, "HOOKBUS_") && strings.HasPrefix(v.Source, "configmap") &&
			!slices.Contains([]string{envTopology, envNATSURL, envNATSUser, envNATSPassword, envNATSCreds, envOpsAddr}, name) {
			env = append(env, name+"="+v.Value)
		}
	}
	env = append(env, "PATH="+os.Getenv("PATH"), envNATSURL+"="+st.url,
		envNATSUser+"=admin", envNATSPassword+"="+st.users["admin"])
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, hookbusBin, "topology", "ensure")
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("no Deployment ensures the topology, and `hookbus topology ensure` as admin failed: %v\n%s", err, out)
	}
}

func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// Credentials of the auth store, saved and read as admin through the
// persistence service.

// saveCreds saves value as context's credentials (none may exist yet).
func (st *attackStack) saveCreds(t *testing.T, ctx context.Context, authContext string, value []byte) {
	t.Helper()
	req, _ := json.Marshal(map[string]any{"context": authContext, "value": value, "expect_revision": 0})
	m, err := st.admin.RequestWithContext(ctx, "hookbus.auth.creds.save", req)
	if err != nil {
		t.Fatalf("admin: hookbus.auth.creds.save: %v", err)
	}
	var resp struct {
		Revision uint64          `json:"revision"`
		Error    json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil || resp.Error != nil || resp.Revision == 0 {
		t.Fatalf("admin: hookbus.auth.creds.save answered %s (%v)", m.Data, err)
	}
}

// getCreds reads context's credentials; found is false for not_found.
func (st *attackStack) getCreds(ctx context.Context, authContext string) (value []byte, found bool, err error) {
	req, _ := json.Marshal(map[string]any{"context": authContext})
	m, err := st.admin.RequestWithContext(ctx, "hookbus.auth.creds.get", req)
	if err != nil {
		return nil, false, fmt.Errorf("hookbus.auth.creds.get: %w", err)
	}
	var resp struct {
		Value []byte `json:"value"`
		Error *struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	if err := json.Unmarshal(m.Data, &resp); err != nil {
		return nil, false, fmt.Errorf("hookbus.auth.creds.get answered %s: %w", m.Data, err)
	}
	if resp.Error != nil {
		if resp.Error.Code == "not_found" {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("hookbus.auth.creds.get answered %s", m.Data)
	}
	return resp.Value, true, nil
}

// credsHeld fails the test unless context's credentials are value.
func (st *attackStack) credsHeld(t *testing.T, ctx context.Context, authContext string, value []byte, after string) bool {
	t.Helper()
	got, found, err := st.getCreds(ctx, authContext)
	switch {
	case err != nil:
		t.Errorf("%s: admin could not read the credentials of context %s: %v", after, authContext, err)
	case !found:
		t.Errorf("%s: the credentials of context %s are gone", after, authContext)
	case string(got) != string(value):
		t.Errorf("%s: the credentials of context %s are %q, want %q", after, authContext, got, value)
	default:
		return true
	}
	return false
}

// The counts behind the summary line.

const escalations = 12

var attackStats struct {
	sync.Mutex
	ran        bool
	tableTried bool                   // TestAttackPermissionTable ran
	table      map[string]tableCounts // overlay -> its permission table's counts (the last run's)
	escalation map[int]string         // escalation number -> blocked, failed or skipped
}

// tableCounts are one overlay's permission table results; notChecked
// while (or when) its cells could not all be tried: its server did not
// start, for one.
type tableCounts struct {
	notChecked         bool
	forbidden, refused int // `no` cells tried, and those NATS refused
	allowed, permitted int // `yes` cells tried, and those NATS accepted
}

func recordTable(overlay string, c tableCounts) {
	attackStats.Lock()
	defer attackStats.Unlock()
	if attackStats.table == nil {
		attackStats.table = map[string]tableCounts{}
	}
	attackStats.table[overlay] = c
}

func markAttackRan() {
	attackStats.Lock()
	attackStats.ran = true
	attackStats.Unlock()
}

// escalation records escalation n's outcome when its test ends: blocked
// when it passed, failed, or skipped (not run).
func escalation(t *testing.T, n int) {
	markAttackRan()
	t.Cleanup(func() {
		status := "blocked"
		switch {
		case t.Skipped():
			status = "skipped"
		case t.Failed():
			status = "failed"
		}
		attackStats.Lock()
		defer attackStats.Unlock()
		if attackStats.escalation == nil {
			attackStats.escalation = map[int]string{}
		}
		attackStats.escalation[n] = status
	})
}

// attackSummary is the suite's one-line result, "" when no attack test
// ran (go test -run selecting others).
func attackSummary() string {
	s := &attackStats
	s.Lock()
	defer s.Unlock()
	if !s.ran {
		return ""
	}
	blocked := 0
	var failed, notRun []string
	for n := 1; n <= escalations; n++ {
		switch s.escalation[n] {
		case "blocked":
			blocked++
		case "failed":
			failed = append(failed, strconv.Itoa(n))
		default:
			notRun = append(notRun, strconv.Itoa(n))
		}
	}
	var total tableCounts
	var checked, skipped []string
	for _, overlay := range slices.Sorted(maps.Keys(s.table)) {
		c := s.table[overlay]
		if c.notChecked {
			skipped = append(skipped, overlay)
			continue
		}
		checked = append(checked, overlay)
		total.forbidden += c.forbidden
		total.refused += c.refused
		total.allowed += c.allowed
		total.permitted += c.permitted
	}
	line := fmt.Sprintf("attack suite: forbidden operations refused: %d/%d, allowed operations permitted: %d/%d, escalations blocked: %d/%d",
		total.refused, total.forbidden, total.permitted, total.allowed, blocked, escalations)
	var notes []string
	if len(failed) > 0 {
		notes = append(notes, "not blocked: "+strings.Join(failed, ", "))
	}
	if len(notRun) > 0 {
		notes = append(notes, "not run: "+strings.Join(notRun, ", "))
	}
	if s.tableTried || len(s.table) > 0 {
		n := "permission table checked on " + cmp.Or(strings.Join(checked, ", "), "no overlay")
		if len(skipped) > 0 {
			n += ", not on " + strings.Join(skipped, ", ")
		}
		notes = append(notes, n)
	}
	if len(notes) > 0 {
		line += " (" + strings.Join(notes, "; ") + ")"
	}
	return line
}

// printAttackSummary prints the summary line; TestMain calls it after the
// tests ran.
func printAttackSummary() {
	if line := attackSummary(); line != "" {
		fmt.Println(line)
	}
}
