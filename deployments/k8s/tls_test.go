package k8s

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

// operationsDoc is the deployment guide; its TLS section has the
// cert-manager Certificate and the openssl commands that make Secret
// nats-tls.
const operationsDoc = "../../docs/operations.md"

// docsTLS is what the guide's TLS section says the server certificate is.
type docsTLS struct {
	namespace, secretName string
	dnsNames              []string
	ips                   []net.IP
	usages                []string
	opensslSANs           []string // "DNS:nats", "IP:127.0.0.1", from the openssl commands
}

// readDocsTLS reads the cert-manager Certificate (the one that is not a
// CA) from the guide's yaml blocks, and the subjectAltName of its openssl
// commands.
func readDocsTLS(t *testing.T) docsTLS {
	t.Helper()
	b, err := os.ReadFile(operationsDoc)
	if err != nil {
		t.Fatal(err)
	}
	var d docsTLS
	found := 0
	for _, block := range regexp.MustCompile("(?s)```yaml\n(.*?)```").FindAllStringSubmatch(string(b), -1) {
		for _, doc := range strings.Split(block[1], "\n---\n") {
			var obj struct {
				Kind     string `json:"kind"`
				Metadata struct {
					Namespace string `json:"namespace"`
				} `json:"metadata"`
				Spec struct {
					IsCA        bool     `json:"isCA"`
					SecretName  string   `json:"secretName"`
					DNSNames    []string `json:"dnsNames"`
					IPAddresses []string `json:"ipAddresses"`
					Usages      []string `json:"usages"`
				} `json:"spec"`
			}
			if err := yaml.Unmarshal([]byte(doc), &obj); err != nil || obj.Kind != "Certificate" || obj.Spec.IsCA {
				continue
			}
			found++
			d.namespace, d.secretName, d.dnsNames, d.usages = obj.Metadata.Namespace, obj.Spec.SecretName, obj.Spec.DNSNames, obj.Spec.Usages
			for _, s := range obj.Spec.IPAddresses {
				ip := net.ParseIP(s)
				if ip == nil {
					t.Fatalf("%s: Certificate ipAddresses: %q is not an IP address", operationsDoc, s)
				}
				d.ips = append(d.ips, ip)
			}
		}
	}
	if found != 1 {
		t.Fatalf("%s: want one cert-manager Certificate (not a CA) in a yaml block, found %d", operationsDoc, found)
	}
	m := regexp.MustCompile(`subjectAltName\s*=\s*([^\s'"]+)`).FindAllStringSubmatch(string(b), -1)
	if len(m) != 1 {
		t.Fatalf("%s: want one subjectAltName in the openssl commands, found %d", operationsDoc, len(m))
	}
	d.opensslSANs = strings.Split(m[0][1], ",")
	return d
}

// TestDocsCertificate checks the guide's certificate against the prod
// overlay: issued into the Secret the NATS servers mount, in their
// namespace, valid for every name the services and the routes use (and the
// Service's namespaced names, for plugin workers in other namespaces), for
// server and client authentication (a server presents it on the routes it
// opens too), and the same names in the openssl commands.
func TestDocsCertificate(t *testing.T) {
	doc := readDocsTLS(t)
	r, err := render(filepath.Join("overlays", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	examples, err := render("example")
	if err != nil {
		t.Fatal(err)
	}
	sts := r.StatefulSets[0]
	if doc.namespace != sts.Namespace {
		t.Errorf("Certificate in namespace %q, the prod overlay's is %q", doc.namespace, sts.Namespace)
	}
	if !slices.ContainsFunc(sts.Spec.Template.Spec.Volumes, func(v corev1.Volume) bool {
		return v.Secret != nil && v.Secret.SecretName == doc.secretName
	}) {
		t.Errorf("Certificate writes Secret %q, which the NATS pods do not mount", doc.secretName)
	}
	for _, u := range []string{"server auth", "client auth"} {
		if !slices.Contains(doc.usages, u) {
			t.Errorf("Certificate usages %v lack %q", doc.usages, u)
		}
	}
	cert := &x509.Certificate{DNSNames: doc.dnsNames, IPAddresses: doc.ips}
	for _, name := range prodNames(t, &checker{r: r, examples: examples}) {
		if err := cert.VerifyHostname(name); err != nil {
			t.Errorf("Certificate dnsNames %v: %v", doc.dnsNames, err)
		}
	}
	var sans []string
	for _, n := range doc.dnsNames {
		sans = append(sans, "DNS:"+n)
	}
	for _, ip := range doc.ips {
		sans = append(sans, "IP:"+ip.String())
	}
	if !slices.Equal(slices.Sorted(slices.Values(sans)), slices.Sorted(slices.Values(doc.opensslSANs))) {
		t.Errorf("the openssl subjectAltName %v is not the Certificate's names %v", doc.opensslSANs, sans)
	}
}

// prodNames are the host names the prod overlay's clients and routes
// connect to: the host of every Hookbus service's HOOKBUS_NATS_URL with its
// namespaced forms, and the host of every route URL of the NATS
// configuration (the server's environment, as the kubelet expands it).
func prodNames(t *testing.T, c *checker) []string {
	t.Helper()
	r := c.r
	var names []string
	for _, d := range r.Deployments {
		env := c.effectiveEnv(d.Name, d.Namespace, d.Spec.Template.Spec.Containers[0])
		for _, raw := range strings.Split(env[envNATSURL].Value, ",") {
			u, err := url.Parse(strings.TrimSpace(raw))
			if err != nil {
				t.Fatal(err)
			}
			h := u.Hostname()
			names = append(names, h, h+"."+d.Namespace, h+"."+d.Namespace+".svc", h+"."+d.Namespace+".svc.cluster.local")
		}
	}
	sts := r.StatefulSets[0]
	for _, v := range c.effectiveEnv("nats", sts.Namespace, sts.Spec.Template.Spec.Containers[0]) {
		if u, err := url.Parse(v.Value); err == nil && u.Scheme == "nats" && u.Port() == "6222" {
			names = append(names, u.Hostname())
		}
	}
	if len(c.problems) > 0 || len(names) < 4+int(replicas(sts.Spec.Replicas)) {
		t.Fatalf("names %v (problems %v): want the services' NATS host and one route per server", names, c.problems)
	}
	slices.Sort(names)
	return slices.Compact(names)
}

// TestProdOverlayTLS runs the prod overlay's NATS configuration in the test
// process: three servers as the StatefulSet's pods (ConfigMap files written
// to a temporary directory, the container's environment set, the Secret
// nats-tls written there too, holding a CA and a server certificate this
// test makes for the names of the guide's Certificate; the configuration's
// absolute paths /etc/nats-tls/... are rewritten to that directory, and the
// ports and route host names to free loopback ports). Then the overlay's
// Hookbus services run against them with their environment and mounted CA,
// and the test checks that a client with the CA connects over TLS by every
// service name, that plain TCP, a client that does not trust the CA, a
// server without the route password, a server with a certificate of
// another CA and a plain TCP route are refused, and that a reload serves a
// renewed certificate.
func TestProdOverlayTLS(t *testing.T) {
	r, err := render(filepath.Join("overlays", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	examples, err := render("example")
	if err != nil {
		t.Fatal(err)
	}
	c := &checker{r: r, examples: examples, overlay: "prod"}
	doc := readDocsTLS(t)
	pki, err := newTestPKI(doc.dnsNames, doc.ips)
	if err != nil {
		t.Fatal(err)
	}
	// The services mount ca.crt of the template's Secret: this test's CA.
	for _, s := range examples.Secrets {
		if s.Name == doc.secretName {
			if s.StringData == nil {
				s.StringData = map[string]string{}
			}
			for k, v := range pki.files() {
				s.StringData[k] = string(v)
				delete(s.Data, k)
			}
		}
	}
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pki.caPEM, 0o600); err != nil {
		t.Fatal(err)
	}

	cluster := startProdCluster(t, c, pki)
	nats0 := cluster[0]
	users := map[string]string{}
	for _, u := range nats0.opts.Users {
		users[u.Username] = u.Password
	}
	clientAddr := nats0.Addr().String()
	t.Cleanup(func() {
		if t.Failed() {
			for _, s := range cluster {
				t.Logf("%s:\n%s", s.Name(), s.log)
			}
		}
	})

	t.Run("services connect with the CA", func(t *testing.T) {
		deployments := slices.Clone(r.Deployments)
		slices.SortStableFunc(deployments, func(a, b *appsv1.Deployment) int { // the one that makes the streams first
			return btoiTLS(topology(c, a) == "check") - btoiTLS(topology(c, b) == "check")
		})
		for _, d := range deployments {
			env := c.effectiveEnv(d.Name, d.Namespace, d.Spec.Template.Spec.Containers[0])
			s := startService(t, c, d, retarget(t, env[envNATSURL].Value, clientAddr))
			s.stop(t)
		}
	})

	t.Run("a client with the CA connects by every service name", func(t *testing.T) {
		var hosts []string
		for _, name := range prodNames(t, c) {
			if !strings.HasPrefix(name, r.StatefulSets[0].Name+"-") {
				hosts = append(hosts, name)
			}
		}
		for _, host := range hosts {
			// Whatever the name, the connection goes to nats-0; TLS
			// verifies the certificate for the name.
			nc, err := nats.Connect("tls://"+net.JoinHostPort(host, "4222"), nats.RootCAs(caFile), nats.UserInfo("admin", users["admin"]),
				nats.SetCustomDialer(redirectDialer(clientAddr)), nats.NoReconnect())
			if err != nil {
				t.Errorf("%s: %v", host, err)
				continue
			}
			st, err := nc.TLSConnectionState()
			if err != nil || len(st.VerifiedChains) == 0 || !st.VerifiedChains[0][len(st.VerifiedChains[0])-1].Equal(pki.ca) {
				t.Errorf("%s: TLS state %v: want a chain verified up to the test CA", host, err)
			}
			nc.Close()
		}
	})

	t.Run("plain TCP clients are refused", func(t *testing.T) {
		conn, info := rawConnect(t, clientAddr)
		if !strings.Contains(info, `"tls_required":true`) {
			t.Errorf("INFO does not require TLS: %s", info)
		}
		got := rawExchange(t, conn, fmt.Sprintf(`CONNECT {"user":"admin","pass":%q,"verbose":false,"tls_required":false}`+"\r\nPING\r\n", users["admin"]))
		if strings.Contains(got, "PONG") {
			t.Errorf("plain TCP client with the admin password: server answered %q", got)
		}
		// NATS logs a client's failed handshake at debug level only; its
		// closed connections say why.
		port := conn.LocalAddr().(*net.TCPAddr).Port
		deadline := time.Now().Add(10 * time.Second)
		for {
			cz, err := nats0.Connz(&server.ConnzOptions{State: server.ConnClosed, Limit: 10000})
			if err != nil {
				t.Fatal(err)
			}
			i := slices.IndexFunc(cz.Conns, func(ci *server.ConnInfo) bool { return ci.Port == port })
			if i >= 0 {
				if r := cz.Conns[i].Reason; r != server.TLSHandshakeError.String() {
					t.Errorf("the plain TCP client's connection was closed for %q, want %q", r, server.TLSHandshakeError)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nats-0 has no closed connection from port %d", port)
			}
			time.Sleep(20 * time.Millisecond)
		}
	})

	t.Run("clients that do not trust the CA are refused", func(t *testing.T) {
		other, err := newTestPKI([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		otherCA := filepath.Join(t.TempDir(), "other-ca.crt")
		if err := os.WriteFile(otherCA, other.caPEM, 0o600); err != nil {
			t.Fatal(err)
		}
		for name, opts := range map[string][]nats.Option{
			"another CA":          {nats.RootCAs(otherCA)},
			"the system's CAs":    {nats.Secure()},
			"nats:// without TLS": nil, // nats.go switches to TLS when the server requires it
		} {
			u := "tls://" + clientAddr
			if opts == nil {
				u = "nats://" + clientAddr
			}
			nc, err := nats.Connect(u, append(opts, nats.UserInfo("admin", users["admin"]), nats.NoReconnect())...)
			if err == nil {
				nc.Close()
				t.Errorf("%s: connected", name)
			} else if !strings.Contains(err.Error(), "certificate signed by unknown authority") {
				t.Errorf("%s: %v, want an unknown authority", name, err)
			}
		}
	})

	t.Run("a server without the route password never joins", func(t *testing.T) {
		intruder := startIntruder(t, c, pki, cluster, func(o *server.Options) {
			o.Cluster.Password = "not-the-route-password"
			for _, u := range o.Routes {
				u.User = url.UserPassword(o.Cluster.Username, o.Cluster.Password)
			}
		})
		neverJoins(t, cluster, intruder, "authentication error")
	})

	t.Run("a server with a certificate of another CA never joins", func(t *testing.T) {
		other, err := newTestPKI(doc.dnsNames, doc.ips)
		if err != nil {
			t.Fatal(err)
		}
		neverJoins(t, cluster, startIntruder(t, c, other, cluster, nil), "TLS")
	})

	t.Run("raw route connections without TLS, a certificate or the credentials are refused", func(t *testing.T) {
		routeAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(nats0.opts.Cluster.Port))
		connect := func(user, pass string) string {
			return fmt.Sprintf(`CONNECT {"echo":true,"verbose":false,"pedantic":false,"user":%q,"pass":%q,"tls_required":true,"name":"intruder","cluster":%q}`+"\r\nPING\r\n",
				user, pass, nats0.opts.Cluster.Name)
		}
		dial := func() net.Conn {
			conn, err := net.DialTimeout("tcp", routeAddr, 5*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			return conn
		}

		// Plain TCP, with the route password: the server expects a TLS
		// handshake first.
		conn := dial()
		if got := rawExchange(t, conn, connect("route", nats0.opts.Cluster.Password)); strings.Contains(got, "PONG") || strings.Contains(got, "INFO") {
			t.Errorf("plain TCP route: server answered %q", got)
		}
		nats0.waitLog(t, conn.LocalAddr().String(), "TLS route handshake error")

		// TLS trusting the CA, without a client certificate.
		roots := x509.NewCertPool()
		roots.AddCert(pki.ca)
		conn = dial()
		tc := tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err == nil {
			if _, err = bufio.NewReader(tc).ReadString('\n'); err == nil {
				t.Error("route TLS without a client certificate: the server sent INFO")
			}
		}
		nats0.waitLog(t, conn.LocalAddr().String(), "TLS route handshake error")

		// TLS with the servers' own certificate, without the credentials.
		cert, err := tls.X509KeyPair(pki.certPEM, pki.keyPEM)
		if err != nil {
			t.Fatal(err)
		}
		conn = dial()
		tc = tls.Client(conn, &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			t.Fatalf("route TLS with the servers' certificate: %v", err)
		}
		info, err := bufio.NewReader(tc).ReadString('\n')
		if err != nil || !strings.Contains(info, `"auth_required":true`) {
			t.Errorf("route INFO %q (%v): want auth_required", info, err)
		}
		if got := rawExchange(t, tc, connect("", "")); strings.Contains(got, "PONG") || !strings.Contains(got, "Authorization Violation") {
			t.Errorf("route without credentials: server answered %q, want an Authorization Violation and no PONG", got)
		}
		if n := nats0.NumRemotes(); n != len(cluster)-1 {
			t.Errorf("nats-0 has %d remotes, want %d", n, len(cluster)-1)
		}
	})

	t.Run("a reload serves a renewed certificate", func(t *testing.T) {
		open, err := nats.Connect("tls://"+clientAddr, nats.RootCAs(caFile), nats.UserInfo("admin", users["admin"]), nats.NoReconnect())
		if err != nil {
			t.Fatal(err)
		}
		defer open.Close()
		renewed, err := pki.reissue(doc.dnsNames, doc.ips)
		if err != nil {
			t.Fatal(err)
		}
		// What the kubelet does when cert-manager updates the Secret.
		if err := nats0.writeFiles(renewed); err != nil {
			t.Fatal(err)
		}
		serial := func() string {
			nc, err := nats.Connect("tls://"+clientAddr, nats.RootCAs(caFile), nats.UserInfo("admin", users["admin"]), nats.NoReconnect())
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			st, err := nc.TLSConnectionState()
			if err != nil {
				t.Fatal(err)
			}
			return st.PeerCertificates[0].SerialNumber.String()
		}
		if got := serial(); got != pki.leaf.SerialNumber.String() {
			t.Errorf("before the reload: certificate %s, want the first one %s (NATS does not watch its files)", got, pki.leaf.SerialNumber)
		}
		// What SIGHUP (nats-server --signal reload) does.
		opts, err := nats0.load()
		if err != nil {
			t.Fatal(err)
		}
		if err := nats0.ReloadOptions(opts); err != nil {
			t.Fatal(err)
		}
		if got := serial(); got != renewed.leaf.SerialNumber.String() {
			t.Errorf("after the reload: certificate %s, want the renewed one %s", got, renewed.leaf.SerialNumber)
		}
		if err := open.Flush(); err != nil || !open.IsConnected() {
			t.Errorf("a connection opened before the reload: %v, connected %t", err, open.IsConnected())
		}
		if n := nats0.NumRemotes(); n != len(cluster)-1 {
			t.Errorf("after the reload nats-0 has %d remotes, want %d", n, len(cluster)-1)
		}
	})
}

func btoiTLS(b bool) int {
	if b {
		return 1
	}
	return 0
}

// retarget points every URL of urls at addr, keeping its scheme.
func retarget(t *testing.T, urls, addr string) string {
	t.Helper()
	var out []string
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil {
			t.Fatal(err)
		}
		u.Host = addr
		out = append(out, u.String())
	}
	return strings.Join(out, ",")
}

// redirectDialer dials addr whatever the address asked for.
type redirectDialer string

func (d redirectDialer) Dial(network, _ string) (net.Conn, error) {
	return net.DialTimeout(network, string(d), 5*time.Second)
}

// waitLog waits up to 10 s for a log line of s that names the remote
// address addr (a connection of the test) and says what.
func (s *prodServer) waitLog(t *testing.T, addr, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for s.log.count(func(line string) bool { return strings.Contains(line, addr+" - ") && strings.Contains(line, what) }) == 0 {
		if time.Now().After(deadline) {
			t.Errorf("%s logged nothing saying %q for %s:\n%s", s.Name(), what, addr, s.log)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rawConnect opens a TCP connection and reads the server's INFO line.
func rawConnect(t *testing.T, addr string) (net.Conn, string) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	info, err := bufio.NewReader(conn).ReadString('\n')
	if err != nil {
		t.Fatalf("%s: reading INFO: %v", addr, err)
	}
	return conn, info
}

// rawExchange sends msg and returns what the server sends until it closes
// the connection (or 5 s pass).
func rawExchange(t *testing.T, conn net.Conn, msg string) string {
	t.Helper()
	if _, err := io.WriteString(conn, msg); err != nil {
		return "write: " + err.Error()
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(conn)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the server kept the connection open for 5 s after %q", msg)
	}
	return string(b)
}

// prodServer is one NATS server of the prod overlay running in the test
// process.
type prodServer struct {
	*server.Server
	opts       *server.Options
	log        *natsLog
	load       func() (*server.Options, error) // the configuration as the server reads it again (a reload)
	writeFiles func(*testPKI) error            // write the mounted Secret anew, with another certificate
}

// startProdCluster starts the StatefulSet's servers from the prod
// configuration with pki's certificate and waits for JetStream. The
// cluster ports are picked free and then bound by the servers, so another
// process may take one in between: a cluster that does not come up is
// started again on other ports, up to three times.
func startProdCluster(t *testing.T, c *checker, pki *testPKI) []*prodServer {
	t.Helper()
	sts := c.r.StatefulSets[0]
	n := int(replicas(sts.Spec.Replicas))
	for attempt := 1; ; attempt++ {
		ports := make([]int, n)
		for i := range ports {
			_, p, _ := net.SplitHostPort(freeAddr(t))
			ports[i], _ = strconv.Atoi(p)
		}
		var servers []*prodServer
		var err error
		for i := range n {
			var s *prodServer
			if s, err = startProdServer(t, c, pki, fmt.Sprintf("%s-%d", sts.Name, i), ports, ports[i], nil); err != nil {
				break
			}
			servers = append(servers, s)
		}
		if err == nil {
			err = waitJetStream(t, servers[0], pki)
		}
		if err == nil {
			return servers
		}
		for _, s := range servers {
			s.Shutdown()
			s.WaitForShutdown()
		}
		if attempt == 3 {
			t.Fatal(err)
		}
		t.Logf("cluster attempt %d: %v; trying other ports", attempt, err)
	}
}

// startProdServer starts the server pod named podName from the prod
// overlay's configuration: its ConfigMap and mounted Secrets (pki's
// certificate) written to a temporary directory, its environment set, its
// route URLs (nats-<i>.<headless service>) pointed at 127.0.0.1:routePorts[i]
// and its own cluster port at clusterPort (-1: any). edit changes the
// parsed options last.
func startProdServer(t *testing.T, c *checker, pki *testPKI, podName string, routePorts []int, clusterPort int, edit func(*server.Options)) (*prodServer, error) {
	t.Helper()
	sts := c.r.StatefulSets[0]
	spec := &sts.Spec.Template.Spec
	ctr := spec.Containers[slices.IndexFunc(spec.Containers, func(ctr corev1.Container) bool { return imageRepo(ctr.Image) == "nats" })]
	var cm *corev1.ConfigMap
	for _, v := range spec.Volumes {
		if v.ConfigMap != nil {
			cm = c.r.configMap(sts.Namespace, v.ConfigMap.Name)
		}
	}
	if cm == nil {
		t.Fatal("the NATS pods mount no ConfigMap of the overlay")
	}
	env := c.effectiveEnv("nats", sts.Namespace, ctr)
	if len(c.problems) > 0 {
		t.Fatal(strings.Join(c.problems, "\n"))
	}
	dir := t.TempDir()
	writeFiles := func(p *testPKI) error { return c.writeNATSFiles(dir, sts.Namespace, spec, ctr, cm, p) }
	if err := writeFiles(pki); err != nil {
		t.Fatal(err)
	}
	storeDir := t.TempDir()
	load := func() (*server.Options, error) {
		for name, v := range env {
			if v.Field != nil {
				v.Value = podName // the downward API: metadata.name
			}
			t.Setenv(name, v.Value)
		}
		opts, err := server.ProcessConfigFile(filepath.Join(dir, "nats.conf"))
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port, opts.HTTPPort = "127.0.0.1", server.RANDOM_PORT, 0
		opts.StoreDir, opts.PidFile, opts.NoSigs = storeDir, "", true
		opts.Cluster.Host, opts.Cluster.Port = "127.0.0.1", clusterPort
		for _, u := range opts.Routes {
			pod, _, _ := strings.Cut(u.Hostname(), ".")
			i, err := strconv.Atoi(strings.TrimPrefix(pod, sts.Name+"-"))
			if err != nil || i >= len(routePorts) {
				return nil, fmt.Errorf("route %s: not a pod of StatefulSet %s", u.Host, sts.Name)
			}
			u.Host = net.JoinHostPort("127.0.0.1", strconv.Itoa(routePorts[i]))
		}
		if edit != nil {
			edit(opts)
		}
		return opts, nil
	}
	opts, err := load()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, err
	}
	log := &natsLog{}
	srv.SetLoggerV2(log, false, false, false)
	go srv.Start()
	t.Cleanup(func() {
		srv.Shutdown()
		srv.WaitForShutdown()
	})
	if !srv.ReadyForConnections(20 * time.Second) {
		srv.Shutdown()
		return nil, fmt.Errorf("%s did not start:\n%s", podName, log)
	}
	return &prodServer{Server: srv, opts: opts, log: log, load: load, writeFiles: writeFiles}, nil
}

// waitJetStream waits until JetStream answers through s: the servers have
// routed to each other and elected a meta leader.
func waitJetStream(t *testing.T, s *prodServer, pki *testPKI) error {
	t.Helper()
	caFile := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(caFile, pki.caPEM, 0o600); err != nil {
		return err
	}
	var admin string
	for _, u := range s.opts.Users {
		if u.Username == "admin" {
			admin = u.Password
		}
	}
	nc, err := nats.Connect("tls://"+s.Addr().String(), nats.RootCAs(caFile), nats.UserInfo("admin", admin))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		_, err := js.AccountInfo(ctx)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("JetStream not available after 30 s: %v\n%s", err, s.log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startIntruder starts one more server of the same configuration, named
// after a pod the StatefulSet does not have, with pki's certificate and
// edit applied, routing to the cluster's servers, with JetStream and its
// monitoring port (for /healthz).
func startIntruder(t *testing.T, c *checker, pki *testPKI, cluster []*prodServer, edit func(*server.Options)) *prodServer {
	t.Helper()
	var ports []int
	for _, s := range cluster {
		ports = append(ports, s.opts.Cluster.Port)
	}
	s, err := startProdServer(t, c, pki, fmt.Sprintf("%s-%d", c.r.StatefulSets[0].Name, len(cluster)), ports, server.RANDOM_PORT,
		func(o *server.Options) {
			o.HTTPHost, o.HTTPPort = "127.0.0.1", server.RANDOM_PORT
			if edit != nil {
				edit(o)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// neverJoins waits at least 3 s and until every server of the cluster has
// refused the intruder's routes twice (a log line with refusal; the
// intruder retries every second), and checks meanwhile that no server of
// the cluster counts the intruder among its routes (each keeps exactly its
// own), and the intruder's /healthz never passes (a pod in its place would
// never become ready).
func neverJoins(t *testing.T, cluster []*prodServer, intruder *prodServer, refusal string) {
	t.Helper()
	refused := func(s *prodServer) int {
		return s.log.count(func(line string) bool { return strings.Contains(line, "rid:") && strings.Contains(line, refusal) })
	}
	healthz := "http://" + intruder.MonitorAddr().String() + "/healthz"
	// At least 3 s, so that the intruder retries (every second) are seen
	// refused too, not only its first connections.
	start := time.Now()
	deadline := start.Add(20 * time.Second)
	for {
		// The intruder's own count is not checked: it may list a server
		// for the moment between that server's INFO and its refusal of the
		// intruder's CONNECT. A route exists only once a server of the
		// cluster has accepted it, which its own count shows.
		for _, s := range cluster {
			if n := s.NumRemotes(); n != len(cluster)-1 {
				t.Fatalf("%s has %d remotes, want %d", s.Name(), n, len(cluster)-1)
			}
		}
		if resp, err := http.Get(healthz); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				t.Fatal("the intruder's /healthz passed")
			}
		}
		done := time.Since(start) > 3*time.Second
		for _, s := range cluster {
			done = done && refused(s) >= 2
		}
		if done {
			return
		}
		if time.Now().After(deadline) {
			for _, s := range cluster {
				t.Logf("%s refused %d routes:\n%s", s.Name(), refused(s), s.log)
			}
			t.Fatalf("not every server logged two refusals (%q) of the intruder's routes within 20 s", refusal)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// natsLog keeps what a NATS server logs.
type natsLog struct {
	mu    sync.Mutex
	lines []string
}

func (l *natsLog) add(level, format string, args ...any) {
	l.mu.Lock()
	l.lines = append(l.lines, level+" "+fmt.Sprintf(format, args...))
	l.mu.Unlock()
}

func (l *natsLog) count(match func(string) bool) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, line := range l.lines {
		if match(line) {
			n++
		}
	}
	return n
}

func (l *natsLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *natsLog) Noticef(format string, args ...any) { l.add("[INF]", format, args...) }
func (l *natsLog) Warnf(format string, args ...any)   { l.add("[WRN]", format, args...) }
func (l *natsLog) Fatalf(format string, args ...any)  { l.add("[FTL]", format, args...) }
func (l *natsLog) Errorf(format string, args ...any)  { l.add("[ERR]", format, args...) }
func (l *natsLog) Debugf(format string, args ...any)  {}
func (l *natsLog) Tracef(format string, args ...any)  {}
