package k8s

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// securityDoc holds the permission table the suite checks.
var securityDoc = filepath.Join("..", "..", "docs", "security.md")

// permissionRow is one row of the table: an operation and, per identity
// (column order), whether it is allowed.
type permissionRow struct {
	line    int
	op      string // "pub" or "sub"
	subject string
	queue   string // sub only, may be empty
	allowed []bool // one per identity
}

func (r permissionRow) String() string {
	return strings.TrimSpace(r.op + " " + r.subject + " " + r.queue)
}

type permissionTable struct {
	identities []string
	rows       []permissionRow
}

// readPermissionTable parses the markdown table under "## Permission
// table": columns Operation, then one per identity; cells yes or no; the
// operation a code span `pub SUBJECT`, `sub SUBJECT` or `sub SUBJECT
// QUEUE`. Anything else in the table is an error.
func readPermissionTable(path string) (permissionTable, error) {
	var tbl permissionTable
	f, err := os.Open(path)
	if err != nil {
		return tbl, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	n, section, header, sep := 0, false, false, false
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "## ") {
			if section && header {
				break
			}
			section = line == "## Permission table"
			continue
		}
		if !section {
			continue
		}
		if !strings.HasPrefix(line, "|") {
			if header {
				break // the table ended
			}
			continue
		}
		cells := splitRow(line)
		switch {
		case !header:
			if len(cells) < 2 || cells[0] != "Operation" {
				return tbl, fmt.Errorf("%s:%d: the table's first column must be Operation: %s", path, n, line)
			}
			for _, id := range cells[1:] {
				if id == "" || strings.ContainsAny(id, " `") {
					return tbl, fmt.Errorf("%s:%d: identity column %q is not a user name", path, n, id)
				}
			}
			tbl.identities, header = cells[1:], true
		case !sep:
			for _, c := range cells {
				if strings.Trim(c, ":-") != "" || c == "" {
					return tbl, fmt.Errorf("%s:%d: want the header's separator row: %s", path, n, line)
				}
			}
			sep = true
		default:
			row, err := parseRow(cells, len(tbl.identities))
			if err != nil {
				return tbl, fmt.Errorf("%s:%d: %v: %s", path, n, err, line)
			}
			row.line = n
			tbl.rows = append(tbl.rows, row)
		}
	}
	if err := sc.Err(); err != nil {
		return tbl, err
	}
	if len(tbl.rows) == 0 {
		return tbl, fmt.Errorf("%s: no table with rows under \"## Permission table\"", path)
	}
	return tbl, nil
}

func splitRow(line string) []string {
	line = strings.TrimSuffix(strings.TrimPrefix(line, "|"), "|")
	cells := strings.Split(line, "|")
	for i := range cells {
		cells[i] = strings.TrimSpace(cells[i])
	}
	return cells
}

func parseRow(cells []string, identities int) (permissionRow, error) {
	var row permissionRow
	if len(cells) != identities+1 {
		return row, fmt.Errorf("%d cells, want %d", len(cells), identities+1)
	}
	op, open := strings.CutPrefix(cells[0], "`")
	op, closed := strings.CutSuffix(op, "`")
	if !open || !closed || strings.Contains(op, "`") {
		return row, fmt.Errorf("operation %q is not one code span", cells[0])
	}
	f := strings.Fields(op)
	switch {
	case len(f) == 2 && f[0] == "pub", len(f) == 2 && f[0] == "sub":
		row.op, row.subject = f[0], f[1]
	case len(f) == 3 && f[0] == "sub":
		row.op, row.subject, row.queue = f[0], f[1], f[2]
	default:
		return row, fmt.Errorf("operation %q: want `pub SUBJECT`, `sub SUBJECT` or `sub SUBJECT QUEUE`", op)
	}
	for _, c := range cells[1:] {
		switch c {
		case "yes":
			row.allowed = append(row.allowed, true)
		case "no":
			row.allowed = append(row.allowed, false)
		default:
			return row, fmt.Errorf("cell %q: want yes or no", c)
		}
	}
	return row, nil
}

// attackOverlays are the overlays whose NATS configuration the
// permission table is checked against, each with how to start its
// server in the test process.
var attackOverlays = []struct {
	name  string
	start func(t *testing.T) natsTarget
}{
	{name: "dev", start: startOverlayNATS("dev")},
	{name: "prod", start: startProdTableNATS},
}

// startOverlayNATS starts NATS from overlay's rendered configuration
// (runNATS), without Hookbus services and without streams: the table's
// operations need none (JetStream API requests for missing streams are
// harmless).
func startOverlayNATS(overlay string) func(t *testing.T) natsTarget {
	return func(t *testing.T) natsTarget {
		t.Helper()
		r, err := render(filepath.Join("overlays", overlay))
		if err != nil {
			t.Fatal(err)
		}
		srv, _ := runNATS(t, &checker{r: r})
		return targetOf(srv)
	}
}

// startProdTableNATS starts one server of the prod overlay's StatefulSet
// with tls_test.go's startProdServer (its ConfigMap, the mounted Secrets
// with throwaway test certificates, the passwords of the example/ Secrets
// prod does not ship), and clients connect over TLS, verifying it against
// the test CA. The other servers are not started: what a client may do
// does not depend on them, and the table needs no JetStream.
func startProdTableNATS(t *testing.T) natsTarget {
	t.Helper()
	r, err := render(filepath.Join("overlays", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	examples, err := render("example")
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{r: r, examples: examples, overlay: "prod"}
	sts := r.StatefulSets[0]
	// Routes to the other servers' ports, where nobody listens.
	routePorts := make([]int, replicas(sts.Spec.Replicas))
	for i := range routePorts {
		routePorts[i], _ = strconv.Atoi(port(t, freeAddr(t)))
	}
	pki := throwawayPKI()
	s, err := startProdServer(t, c, pki, sts.Name+"-0", routePorts, server.RANDOM_PORT, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s.opts.TLSConfig == nil {
		t.Fatal("prod: the NATS configuration has no client TLS")
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pki.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	tg := targetOf(natsServer{s.Server, s.opts})
	tg.url = "tls://" + s.Addr().String()
	tg.opts = []nats.Option{nats.RootCAs(caFile)}
	return tg
}

// TestAttackPermissionTable tries every cell of the permission table of
// docs/security.md as that user, on a fresh connection each, against a
// NATS server with each overlay's configuration: NATS must refuse every
// `no` (a permission violation naming the subject) and accept every `yes`.
func TestAttackPermissionTable(t *testing.T) {
	markAttackRan()
	attackStats.Lock()
	attackStats.tableTried = true
	attackStats.Unlock()
	tbl, err := readPermissionTable(securityDoc)
	if err != nil {
		t.Fatal(err)
	}
	for _, ov := range attackOverlays {
		t.Run(ov.name, func(t *testing.T) {
			recordTable(ov.name, tableCounts{notChecked: true})
			tg := ov.start(t)
			for _, id := range tbl.identities {
				if _, ok := tg.users[id]; !ok {
					users := make([]string, 0, len(tg.users))
					for u := range tg.users {
						users = append(users, u)
					}
					slices.Sort(users)
					t.Fatalf("%s: identity column %q is not a user of the NATS configuration (users: %s)", securityDoc, id, strings.Join(users, ", "))
				}
			}
			checkPermissionTable(t, ov.name, tbl, tg)
		})
	}
}

func checkPermissionTable(t *testing.T, overlay string, tbl permissionTable, tg natsTarget) {
	var forbidden, refused, allowed, permitted int
	var mismatches, failures []string
	for _, row := range tbl.rows {
		for i, id := range tbl.identities {
			var got bool
			var err error
			if row.op == "pub" {
				got, err = tg.tryPub(id, row.subject, nil)
			} else {
				got, err = tg.trySub(id, row.subject, row.queue)
			}
			if err != nil {
				failures = append(failures, fmt.Sprintf("%s: %s: %v", id, row, err))
				continue
			}
			want := !row.allowed[i]
			if want {
				forbidden++
			} else {
				allowed++
			}
			switch {
			case want && got:
				refused++
			case !want && !got:
				permitted++
			case want:
				mismatches = append(mismatches, fmt.Sprintf("%s: %s: want refused, got allowed", id, row))
			default:
				mismatches = append(mismatches, fmt.Sprintf("%s: %s: want allowed, got refused", id, row))
			}
		}
	}
	recordTable(overlay, tableCounts{forbidden: forbidden, refused: refused, allowed: allowed, permitted: permitted})

	t.Logf("%s: %d cells checked (%d rows x %d identities): forbidden refused %d/%d, allowed permitted %d/%d",
		overlay, forbidden+allowed, len(tbl.rows), len(tbl.identities), refused, forbidden, permitted, allowed)
	if len(failures) > 0 {
		t.Errorf("%s: %d cells could not be tried:\n%s", overlay, len(failures), strings.Join(failures, "\n"))
	}
	if len(mismatches) > 0 {
		t.Errorf("%s: %d cells disagree with %s:\n%s", overlay, len(mismatches), securityDoc, strings.Join(mismatches, "\n"))
	}
}
