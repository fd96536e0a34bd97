//go:build chaos

package chaos

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/hookbus/hookbus/pkg/events"
)

// accountsConf is the users and permissions of the Kubernetes manifests,
// which the split scenario's NATS cluster loads (with the chaos workers'
// users added).
const accountsConf = "../deployments/k8s/base/nats/accounts.conf"

// probeSubject is the subject of the suite's one deliberate permission
// violation (probeViolation): a worker subscribing to admin's inbox. Its
// log lines are the only violations a run may have, and at least one must
// be found, which shows the logs are read.
const probeSubject = "_INBOX.admin.chaos-probe"

// natsUser is a NATS user and its password; the zero value is no
// authentication (the all-in-one on loopback).
type natsUser struct{ name, password string }

// options are the nats.go options that connect as u: its user and password,
// and its own inbox prefix _INBOX.<user>, the only part of _INBOX its
// permissions let it subscribe to.
func (u natsUser) options() []nats.Option {
	if u.name == "" {
		return nil
	}
	return []nats.Option{nats.UserInfo(u.name, u.password), nats.CustomInboxPrefix(events.InboxPrefix(u.name))}
}

// env is u as HOOKBUS_NATS_USER and HOOKBUS_NATS_PASSWORD, for a Hookbus
// process (which sets the inbox prefix from the user).
func (u natsUser) env() []string {
	if u.name == "" {
		return nil
	}
	return []string{"HOOKBUS_NATS_USER=" + u.name, "HOOKBUS_NATS_PASSWORD=" + u.password}
}

// Kinds of plugin worker, each with a NATS user of its own in the split
// scenario, made by `hookbus plugin credentials` for its plugin only.
const (
	workerChain     = "chain"     // child processes serving chainB
	workerNotify    = "notify"    // child processes serving notify
	workerInProcess = "inprocess" // chainA in the test process
)

// workerPlugins is the plugin each kind of worker serves.
var workerPlugins = map[string]string{workerChain: chainB, workerNotify: notify, workerInProcess: chainA}

// splitAuth is who connects as whom in the split scenario: the password of
// every user of accounts.conf (the nats-server processes' environment), and
// the users of the chaos workers with the configuration blocks printed for
// them by `hookbus plugin credentials`.
type splitAuth struct {
	env      []string            // NATS_*_PASSWORD=... for nats-server
	services map[string]natsUser // by user: admin, registry, dispatcher, persistence, gateway
	workers  map[string]natsUser // by kind of worker
	blocks   []string            // the workers' user blocks, to add to account HOOKBUS
}

// newSplitAuth makes random passwords for the users of accounts.conf and a
// user per kind of chaos worker with the hookbus binary.
func newSplitAuth(t *testing.T) *splitAuth {
	t.Helper()
	a := &splitAuth{services: map[string]natsUser{}, workers: map[string]natsUser{}}
	for _, user := range []string{"admin", "registry", "dispatcher", "persistence", "gateway", "sys", "plugin-example"} {
		pw := hexPassword()
		a.env = append(a.env, "NATS_"+strings.ToUpper(strings.ReplaceAll(user, "-", "_"))+"_PASSWORD="+pw)
		a.services[user] = natsUser{user, pw}
	}
	for _, kind := range []string{workerChain, workerNotify, workerInProcess} {
		u, block, err := pluginCredentials("chaos-worker-"+kind, workerPlugins[kind])
		if err != nil {
			t.Fatal(err)
		}
		a.workers[kind] = u
		a.blocks = append(a.blocks, block)
	}
	return a
}

// hexPassword is 32 random bytes in hex, starting with a letter: NATS reads
// an environment value as a configuration value, and one that starts with
// digits may lex as a number (accounts.conf's header).
func hexPassword() string {
	for {
		var b [32]byte
		_, _ = rand.Read(b[:])
		if s := hex.EncodeToString(b[:]); s[0] >= 'a' {
			return s
		}
	}
}

// pluginCredentials runs `hookbus plugin credentials PLUGIN --user USER --event chaos.>`
// and returns the user with the password it printed, and the user block
// (with the password's bcrypt hash) to add to account HOOKBUS.
func pluginCredentials(user, plugin string) (natsUser, string, error) {
	// The workers register their plugins themselves, on chaos.* events.
	cmd := exec.Command(hookbusBin, "plugin", "credentials", plugin, "--user", user, "--event", "chaos.>")
	cmd.Env = cleanEnv()
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		return natsUser{}, "", fmt.Errorf("hookbus plugin credentials %s --user %s: %w", plugin, user, err)
	}
	u, block, err := parseCredentials(string(out))
	if err != nil {
		return natsUser{}, "", fmt.Errorf("hookbus plugin credentials %s --user %s: %w in\n%s", plugin, user, err, out)
	}
	if u.name != user {
		return natsUser{}, "", fmt.Errorf("hookbus plugin credentials %s --user %s printed user %q", plugin, user, u.name)
	}
	return u, block, nil
}

// parseCredentials reads the output of `hookbus plugin credentials`: the
// block from a line "{" to the next line "}", and the user and password of
// its HOOKBUS_NATS_USER= and HOOKBUS_NATS_PASSWORD= lines.
func parseCredentials(out string) (u natsUser, block string, err error) {
	var lines []string
	in, closed := false, false
	for line := range strings.Lines(out) {
		switch trimmed := strings.TrimRight(line, "\n"); {
		case !in && !closed && trimmed == "{":
			in = true
			lines = append(lines, line)
		case in:
			lines = append(lines, line)
			if trimmed == "}" {
				in, closed = false, true
			}
		default:
			if v, ok := strings.CutPrefix(trimmed, "HOOKBUS_NATS_USER="); ok {
				u.name = v
			}
			if v, ok := strings.CutPrefix(trimmed, "HOOKBUS_NATS_PASSWORD="); ok {
				u.password = v
			}
		}
	}
	switch {
	case !closed:
		return natsUser{}, "", errors.New("no user block")
	case u.name == "" || u.password == "":
		return natsUser{}, "", errors.New("no HOOKBUS_NATS_USER or HOOKBUS_NATS_PASSWORD line")
	}
	return u, strings.Join(lines, ""), nil
}

// accounts returns accounts.conf with blocks added at the end of the users
// of account HOOKBUS.
func accounts(conf string, blocks []string) (string, error) {
	at, err := hookbusUsersEnd(conf)
	if err != nil {
		return "", fmt.Errorf("%s: %w", accountsConf, err)
	}
	var b strings.Builder
	b.WriteString(conf[:at])
	b.WriteString("\n      # The chaos suite's plugin workers (`hookbus plugin credentials NAME --user USER`).\n")
	for _, block := range blocks {
		for line := range strings.Lines(block) {
			b.WriteString("      " + line)
		}
	}
	b.WriteString(conf[at:])
	return b.String(), nil
}

// hookbusUsersEnd returns the offset of the "]" that closes the users list
// of account HOOKBUS in conf, skipping comments and quoted strings.
func hookbusUsersEnd(conf string) (int, error) {
	account := strings.Index(conf, "HOOKBUS {")
	if account < 0 {
		return 0, errors.New(`no "HOOKBUS {"`)
	}
	users := strings.Index(conf[account:], "users: [")
	if users < 0 {
		return 0, errors.New(`no "users: [" in account HOOKBUS`)
	}
	depth := 0
	for i := account + users + len("users: "); i < len(conf); i++ {
		switch conf[i] {
		case '#':
			for i < len(conf) && conf[i] != '\n' {
				i++
			}
		case '"':
			for i++; i < len(conf) && conf[i] != '"'; i++ {
				if conf[i] == '\\' {
					i++
				}
			}
		case '[':
			depth++
		case ']':
			if depth--; depth == 0 {
				// The start of the line of the closing bracket, so the
				// blocks go in before its indentation.
				return strings.LastIndex(conf[:i], "\n") + 1, nil
			}
		}
	}
	return 0, errors.New("users of account HOOKBUS not closed")
}

// writeAccounts writes the copy of accounts.conf the cluster loads into
// dir, the directory of the nodes' configuration files.
func (a *splitAuth) writeAccounts(t *testing.T, dir string) {
	t.Helper()
	conf, err := os.ReadFile(accountsConf)
	if err != nil {
		t.Fatal(err)
	}
	out, err := accounts(string(conf), a.blocks)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "accounts.conf"), []byte(out), 0o600); err != nil {
		t.Fatal(err)
	}
}

// probeViolation subscribes, as the in-process worker's user, to probeSubject
// in admin's inbox, which NATS must refuse, and waits for the refusal: the
// one violation the suite makes on purpose.
func probeViolation(t *testing.T, d deployment) {
	t.Helper()
	refused := make(chan error, 1)
	opts := append(d.workers[workerInProcess].options(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
		if errors.Is(err, nats.ErrPermissionViolation) {
			select {
			case refused <- err:
			default:
			}
		}
	}))
	nc, err := nats.Connect(d.natsURL, append(opts, nats.Name("chaos-probe"))...)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	defer nc.Close()
	if _, err := nc.SubscribeSync(probeSubject); err != nil {
		t.Fatalf("probe: subscribe %s: %v", probeSubject, err)
	}
	select {
	case err := <-refused:
		t.Logf("probe: subscription to %s refused as it should be: %v", probeSubject, err)
	case <-time.After(10 * time.Second):
		t.Fatalf("probe: NATS did not refuse %s to %s: the cluster does not apply the permissions", probeSubject, d.workers[workerInProcess].name)
	}
}

// violations returns every line of the NATS nodes' logs that tells of a
// refused operation or login, but for the probe's, and how many of the
// probe's there were.
func violations(d deployment) (lines []string, probes int, err error) {
	for _, p := range d.nats {
		f, err := os.Open(p.log.Name())
		if err != nil {
			return nil, 0, err
		}
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 0, 64<<10), 4<<20)
		for sc.Scan() {
			line := sc.Text()
			if !strings.Contains(line, "Violation") && !strings.Contains(line, "authentication error") && !strings.Contains(line, "not authorized") {
				continue
			}
			if strings.Contains(line, `"`+probeSubject+`"`) {
				probes++
				continue
			}
			lines = append(lines, p.name+": "+line)
		}
		err = sc.Err()
		_ = f.Close()
		if err != nil {
			return nil, 0, fmt.Errorf("read %s: %w", p.log.Name(), err)
		}
	}
	return lines, probes, nil
}

// checkViolations fails t listing every permission violation the NATS nodes
// logged (the probe's excepted), and when the probe's is missing; it
// returns the count for the report ("-" without authentication).
func checkViolations(t *testing.T, d deployment) string {
	t.Helper()
	if d.admin.name == "" {
		return "-"
	}
	lines, probes, err := violations(d)
	if err != nil {
		t.Errorf("read the NATS logs: %v", err)
		return "?"
	}
	if probes == 0 {
		t.Errorf("the probe's violation (%s) is not in the NATS logs: violations are not seen", probeSubject)
	}
	if len(lines) > 0 {
		t.Errorf("NATS refused %d operations of Hookbus processes or workers (the probe's %d excepted):\n%s", len(lines), probes, strings.Join(lines, "\n"))
	}
	return fmt.Sprint(len(lines))
}

// gatewayToken creates, as admin (an operator), the token the split
// scenario's HTTP publishers send, allowed to publish the chaos events,
// with `hookbus gateway token create`, and returns it.
func gatewayToken(natsURL string, admin natsUser) (string, error) {
	cmd := exec.Command(hookbusBin, "gateway", "token", "create", "--name", "chaos", "--allow", "publish:chaos.>", "--rate", "100000")
	cmd.Env = cleanEnv(append([]string{"HOOKBUS_NATS_URL=" + natsURL}, admin.env()...)...)
	out, err := cmd.Output()
	if err != nil {
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			err = fmt.Errorf("%w: %s", err, exit.Stderr)
		}
		return "", fmt.Errorf("hookbus gateway token create: %w", err)
	}
	return strings.TrimSpace(string(out)), nil
}
