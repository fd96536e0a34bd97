//go:build chaos

package chaos

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"
)

// row is one scenario's line of the table.
type row struct {
	scenario                                 string
	sent, acked, stored, delivered, results  int
	lost, duplicated, deadLettered           int
	calls, unanswered                        int
	kills                                    map[string]int
	crashes                                  map[string]int
	recovery                                 time.Duration
	poisonResult, poisonNotify, poisonCounts string
	violations                               string // NATS permission violations logged; "" or "-": no NATS users
	// Events posted to the gateway (a part of sent, acked, lost and
	// duplicated), its requests by outcome, and the HTTP poison's line.
	httpSent, httpAcked, httpLost, httpDuplicated int
	httpOutcomes                                  map[string]int
	httpPoison                                    string
	// The webhook hook on notifyType: stored events it delivered, its
	// duplicate deliveries, valid events dead-lettered for it, stored
	// events neither; poison on its node and how much of it was
	// dead-lettered for it; its receiver's requests by answer.
	hookDelivered, hookDuplicates, hookDead, hookUndelivered int
	hookPoison, hookPoisonDead                               int
	hookAnswers                                              string
	// Device messages over WebSocket (nil: no gateway): sent, acked,
	// stored, lost (acked, not stored), stored twice or more, and
	// connections again with the token the gateway gave.
	devices *deviceVerdict
}

var (
	rowsMu sync.Mutex
	rows   []row
)

// report logs r to t and keeps it for the summary printed after all tests.
func report(t *testing.T, r row) {
	t.Helper()
	var b strings.Builder
	writeTable(&b, []row{r})
	t.Logf("\n%s", b.String())
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
}

func printSummary(w io.Writer) {
	rowsMu.Lock()
	defer rowsMu.Unlock()
	if len(rows) > 0 {
		fmt.Fprintln(w, "\nchaos summary:")
		writeTable(w, rows)
	}
}

func writeTable(w io.Writer, rs []row) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight|tabwriter.Debug)
	fmt.Fprintln(tw, "scenario\tsent\tacked\tstored\tdelivered\tresults\tlost\tduplicated\tdead-lettered\tcalls (unanswered)\thook delivered/dup/dead/missing\thook poison dead\tHTTP sent/202\tHTTP lost/dup\tHTTP no answer\tdevice sent/acked/stored\tdevice lost/dup\tdevice reconnects\tkills\tcrashes\trecovery\tpoison p50/p99 result\tnotify\tNATS violations\t")
	for _, r := range rs {
		httpSent, httpLost, httpNoAnswer := "-", "-", "-"
		if r.httpSent > 0 {
			httpSent = fmt.Sprintf("%d/%d", r.httpSent, r.httpAcked)
			httpLost = fmt.Sprintf("%d/%d", r.httpLost, r.httpDuplicated)
			httpNoAnswer = strconv.Itoa(r.httpOutcomes[outcomeNoAnswer])
		}
		devSent, devLost, devReconnects := "-", "-", "-"
		if dv := r.devices; dv != nil {
			devSent = fmt.Sprintf("%d/%d/%d", dv.sent, dv.acked, dv.stored)
			devLost = fmt.Sprintf("%d/%d", dv.lost, dv.duplicated)
			devReconnects = strconv.Itoa(dv.reconnects)
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d (%d)\t%d/%d/%d/%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
			r.scenario, r.sent, r.acked, r.stored, r.delivered, r.results, r.lost, r.duplicated, r.deadLettered,
			r.calls, r.unanswered, r.hookDelivered, r.hookDuplicates, r.hookDead, r.hookUndelivered, r.hookPoisonDead, r.hookPoison, httpSent, httpLost, httpNoAnswer,
			devSent, devLost, devReconnects,
			counts(r.kills), counts(r.crashes), dash(r.recovery), or(r.poisonResult), or(r.poisonNotify), or(r.violations))
	}
	_ = tw.Flush()
	for _, r := range rs {
		if r.httpSent > 0 {
			fmt.Fprintf(w, "%s HTTP requests by outcome: %s\n", r.scenario, counts(r.httpOutcomes))
		}
		if r.hookAnswers != "" {
			fmt.Fprintf(w, "%s webhook %s\n", r.scenario, r.hookAnswers)
		}
		if r.poisonCounts != "" {
			fmt.Fprintf(w, "%s poison: %s\n", r.scenario, r.poisonCounts)
		}
		if r.httpPoison != "" {
			fmt.Fprintf(w, "%s HTTP poison: %s\n", r.scenario, r.httpPoison)
		}
	}
}

// counts formats "a=1 b=2", or "-".
func counts(m map[string]int) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s=%d", k, m[k]))
	}
	return strings.Join(parts, " ")
}

func dash(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return d.Round(10 * time.Millisecond).String()
}

func or(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
