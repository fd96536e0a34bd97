//go:build chaos

package chaos

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// readyTimeout bounds a (re)start until the readiness probe passes; long,
// for a loaded 2-core machine replaying a store after a kill.
const readyTimeout = 90 * time.Second

// webhookAllow lets the dispatchers post to the webhook receiver in the
// test process, on loopback.
const webhookAllow = "HOOKBUS_WEBHOOK_ALLOW=127.0.0.0/8"

// deployment is the processes of one scenario and how to reach NATS.
type deployment struct {
	natsURL  string  // comma-separated client URLs
	services []*proc // Hookbus processes
	nats     []*proc // nats-server processes (split only)
	// Who the test connects as; zero values (the all-in-one): no
	// authentication.
	admin   natsUser            // the test's publishers, callers, state readers, checkers
	app     natsUser            // traffic as an application sends it
	workers map[string]natsUser // plugin workers, by kind (workerChain...)
	// gatewayURL is http://host:port of the HTTP gateway, the same
	// across restarts. gatewayToken is the bearer token its HTTP
	// publishers send; "" sends none (anonymous, on loopback: the
	// all-in-one).
	gatewayURL   string
	gatewayToken string
}

// startAllInOne runs `hookbus serve` with its embedded NATS server and every
// service, on free ports, its store in a temporary directory.
func startAllInOne(t *testing.T, ps *procs) deployment {
	t.Helper()
	natsAddr, opsAddr, gatewayAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	env := cleanEnv(
		"HOOKBUS_DATA_DIR="+ps.dir("hookbus"),
		"HOOKBUS_NATS_LISTEN="+natsAddr,
		"HOOKBUS_OPS_ADDR="+opsAddr,
		"HOOKBUS_GATEWAY_ADDR="+gatewayAddr,
		"HOOKBUS_NATS_SYNC_ALWAYS=true",
		webhookAllow,
		deviceEnv()[0], deviceEnv()[1],
	)
	p := ps.add("hookbus", "hookbus", hookbusBin, []string{"serve"}, env, httpReady("http://"+opsAddr+"/readyz"))
	startReady(t, p)
	return deployment{natsURL: "nats://" + natsAddr, services: []*proc{p}, gatewayURL: "http://" + gatewayAddr}
}

// startSplit runs a 3-node NATS cluster with the users and permissions of
// the Kubernetes manifests (accounts.conf) plus a user per kind of chaos
// worker and, against it, the registry, two dispatchers, the persistence
// service and the gateway, each a process of its own connected as its own
// user, with the manifests' topology modes: the registry creates what is
// missing, the others check. The gateway takes no anonymous request: the
// HTTP publishers send a token made by admin once the registry has created
// the token bucket.
func startSplit(t *testing.T, ps *procs) deployment {
	t.Helper()
	auth := newSplitAuth(t)
	d := deployment{admin: auth.services["admin"], app: auth.workers[workerInProcess], workers: auth.workers}
	d.nats, d.natsURL = startCluster(t, ps, 3, auth)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	gatewayAddr := freeAddr(t)
	d.gatewayURL = "http://" + gatewayAddr
	for _, svc := range []struct{ name, service, topology string }{
		{"registry", "registry", "create"},
		{"dispatcher-1", "dispatcher", "check"},
		{"dispatcher-2", "dispatcher", "check"},
		{"persistence", "persistence", "check"},
		{"gateway", "gateway", "check"},
	} {
		opsAddr := freeAddr(t)
		env := cleanEnv(append([]string{
			"HOOKBUS_NATS_URL=" + d.natsURL,
			"HOOKBUS_STREAM_REPLICAS=3",
			"HOOKBUS_TOPOLOGY=" + svc.topology,
			"HOOKBUS_OPS_ADDR=" + opsAddr,
			"HOOKBUS_PERSISTENCE_KEY=" + base64.StdEncoding.EncodeToString(key),
			"HOOKBUS_GATEWAY_ADDR=" + gatewayAddr,
			"HOOKBUS_GATEWAY_ANONYMOUS=false",
			webhookAllow,
		}, auth.services[svc.service].env()...)...)
		if svc.service == "gateway" {
			env = append(env, deviceEnv()...)
		}
		p := ps.add(svc.name, svc.service, hookbusBin, []string{"serve", svc.service}, env, httpReady("http://"+opsAddr+"/readyz"))
		if err := p.start(); err != nil {
			t.Fatal(err)
		}
		if len(d.services) == 0 {
			// The first creates the streams and buckets; the others
			// start together once they exist.
			if err := p.waitReady(t.Context(), readyTimeout); err != nil {
				t.Fatal(err)
			}
			token, err := gatewayToken(d.natsURL, d.admin)
			if err != nil {
				t.Fatal(err)
			}
			d.gatewayToken = token
		}
		d.services = append(d.services, p)
	}
	for _, p := range d.services {
		if err := p.waitReady(t.Context(), readyTimeout); err != nil {
			t.Fatal(err)
		}
	}
	return d
}

// startCluster runs n nats-server processes routed into one JetStream
// cluster, each with its own store, loading the users of auth (a copy of
// accounts.conf beside their configuration, the passwords in their
// environment), and waits until every one is healthy.
func startCluster(t *testing.T, ps *procs, n int, auth *splitAuth) ([]*proc, string) {
	t.Helper()
	client, cluster, monitor := make([]string, n), make([]string, n), make([]string, n)
	for i := range n {
		client[i], cluster[i], monitor[i] = freeAddr(t), freeAddr(t), freeAddr(t)
	}
	var routes, urls []string
	for i := range n {
		routes = append(routes, "nats-route://"+cluster[i])
		urls = append(urls, "nats://"+client[i])
	}
	dir := ps.dir("nats")
	auth.writeAccounts(t, dir)
	nodes := make([]*proc, n)
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(conf, []byte(natsConfig(name, client[i], cluster[i], monitor[i], filepath.Join(dir, name), routes)), 0o644); err != nil {
			t.Fatal(err)
		}
		// healthz checks JetStream too: the node is back in the cluster
		// with its streams current.
		nodes[i] = ps.add(name, "nats", natsBin, []string{"-c", conf}, cleanEnv(auth.env...), httpReady("http://"+monitor[i]+"/healthz"))
		if err := nodes[i].start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range nodes {
		if err := p.waitReady(t.Context(), readyTimeout); err != nil {
			t.Fatal(err)
		}
	}
	return nodes, strings.Join(urls, ",")
}

// natsConfig is one cluster node's configuration: JetStream with an fsync
// on every write, max_payload 2MiB and the accounts and users of
// accounts.conf (in the same directory), as in deployments/k8s; the routes
// between the nodes are not authenticated.
func natsConfig(name, client, cluster, monitor, store string, routes []string) string {
	return fmt.Sprintf(`server_name: %s
listen: %s
http: %s
max_payload: 2MiB
jetstream {
  store_dir: %q
  sync_interval: always
}
cluster {
  name: chaos
  listen: %s
  routes: [%s]
}
include ./accounts.conf
`, name, client, monitor, store, cluster, strings.Join(routes, ", "))
}

// startReady starts p and waits until it is ready.
func startReady(t *testing.T, p *proc) {
	t.Helper()
	if err := p.start(); err != nil {
		t.Fatal(err)
	}
	if err := p.waitReady(t.Context(), readyTimeout); err != nil {
		t.Fatal(err)
	}
}

// restart starts a killed process again and waits until it is ready.
func restart(ctx context.Context, p *proc) error {
	if err := p.start(); err != nil {
		return err
	}
	return p.waitReady(ctx, readyTimeout)
}
