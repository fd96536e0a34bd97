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

// deployment is the processes of one scenario and how to reach NATS.
type deployment struct {
	natsURL  string  // comma-separated client URLs
	services []*proc // Hookbus processes
	nats     []*proc // nats-server processes (split only)
}

// startAllInOne runs `hookbus serve` with its embedded NATS server and every
// service, on free ports, its store in a temporary directory.
func startAllInOne(t *testing.T, ps *procs) deployment {
	t.Helper()
	natsAddr, opsAddr := freeAddr(t), freeAddr(t)
	env := cleanEnv(
		"HOOKBUS_DATA_DIR="+ps.dir("hookbus"),
		"HOOKBUS_NATS_LISTEN="+natsAddr,
		"HOOKBUS_OPS_ADDR="+opsAddr,
		"HOOKBUS_NATS_SYNC_ALWAYS=true",
	)
	p := ps.add("hookbus", "hookbus", hookbusBin, []string{"serve"}, env, httpReady("http://"+opsAddr+"/readyz"))
	startReady(t, p)
	return deployment{natsURL: "nats://" + natsAddr, services: []*proc{p}}
}

// startSplit runs a 3-node NATS cluster and, against it, the registry, two
// dispatchers and the persistence service, each a process of its own.
func startSplit(t *testing.T, ps *procs) deployment {
	t.Helper()
	d := deployment{}
	d.nats, d.natsURL = startCluster(t, ps, 3)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	for _, svc := range []struct{ name, service string }{
		{"registry", "registry"},
		{"dispatcher-1", "dispatcher"},
		{"dispatcher-2", "dispatcher"},
		{"persistence", "persistence"},
	} {
		opsAddr := freeAddr(t)
		env := cleanEnv(
			"HOOKBUS_NATS_URL="+d.natsURL,
			"HOOKBUS_STREAM_REPLICAS=3",
			"HOOKBUS_OPS_ADDR="+opsAddr,
			"HOOKBUS_PERSISTENCE_KEY="+base64.StdEncoding.EncodeToString(key),
		)
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
// cluster, each with its own store, and waits until every one is healthy.
func startCluster(t *testing.T, ps *procs, n int) ([]*proc, string) {
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
	nodes := make([]*proc, n)
	for i := range n {
		name := fmt.Sprintf("nats-%d", i+1)
		conf := filepath.Join(dir, name+".conf")
		if err := os.WriteFile(conf, []byte(natsConfig(name, client[i], cluster[i], monitor[i], filepath.Join(dir, name), routes)), 0o644); err != nil {
			t.Fatal(err)
		}
		// healthz checks JetStream too: the node is back in the cluster
		// with its streams current.
		nodes[i] = ps.add(name, "nats", natsBin, []string{"-c", conf}, cleanEnv(), httpReady("http://"+monitor[i]+"/healthz"))
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
// on every write and max_payload 2MiB, as in deployments/k8s.
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
