package k8s

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/conf"
	"github.com/nats-io/nats-server/v2/server"
	corev1 "k8s.io/api/core/v1"
)

// natsVersion is the nats-server release whose parser these checks use
// (go.mod); the NATS image must be the same release, so that what is
// checked is what runs.
var natsVersion = sync.OnceValue(func() string {
	b, err := os.ReadFile("go.mod")
	if err != nil {
		return "unknown: " + err.Error()
	}
	m := regexp.MustCompile(`(?m)^\s*github\.com/nats-io/nats-server/v2 v(\S+)`).FindSubmatch(b)
	if m == nil {
		return "unknown: go.mod does not require nats-server"
	}
	return string(m[1])
})

// varRef finds the variable references of a NATS configuration: $NAME
// where a value goes (not inside a quoted string such as "$JS.API.INFO").
var varRef = regexp.MustCompile(`(?m)(?:[:=]|^)\s*\$([A-Za-z_][A-Za-z0-9_]*)\s*(?:[,}\]#\n]|$)`)

// checkNATS checks the NATS StatefulSet and its configuration, which it
// parses with nats-server's own parser, in the container's environment.
func (c *checker) checkNATS(w workload, rule overlayRule, haveRule bool) {
	spec := &w.Template.Spec
	i := slices.IndexFunc(spec.Containers, func(ctr corev1.Container) bool { return imageRepo(ctr.Image) == "nats" })
	ctr := spec.Containers[i]
	where := fmt.Sprintf("%s container %s", w, ctr.Name)
	sts := w.StatefulSet
	if sts == nil {
		c.addf("%s: NATS must run as a StatefulSet (stable names for its routes, a volume per server)", w)
		return
	}
	if haveRule && w.Replicas != rule.natsReplicas {
		c.addf("%s: %d replicas, overlay %s wants %d", w, w.Replicas, c.overlay, rule.natsReplicas)
	}
	if tag := imageTag(ctr.Image); tag != natsVersion() && !strings.HasPrefix(tag, natsVersion()+"-") {
		c.addf("%s: image %s is not nats-server %s, whose parser checks this configuration: change both together (deployments/k8s/go.mod)", where, ctr.Image, natsVersion())
	}
	for _, h := range c.hookbus {
		n, err := strconv.Atoi(c.effective(h, envStreamReplicas))
		if err != nil || int32(n) != w.Replicas {
			c.addf("%s: %s is %s, want %d: one replica of every stream and bucket per NATS server", h.w, envStreamReplicas, c.effective(h, envStreamReplicas), w.Replicas)
		}
	}

	// The configuration file and the ConfigMap it comes from.
	cmdline := append(slices.Clone(ctr.Command), ctr.Args...)
	cfgPath := ""
	for i, a := range cmdline {
		switch {
		case (a == "--config" || a == "-c") && i+1 < len(cmdline):
			cfgPath = cmdline[i+1]
		case strings.HasPrefix(a, "--config="):
			cfgPath = strings.TrimPrefix(a, "--config=")
		}
	}
	if cfgPath == "" {
		c.addf("%s: no --config in its command", where)
		return
	}
	var cm *corev1.ConfigMap
	for _, m := range ctr.VolumeMounts {
		if m.MountPath != filepath.Dir(cfgPath) {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && v.ConfigMap != nil {
				cm = c.r.configMap(w.Namespace, v.ConfigMap.Name)
			}
		}
	}
	if cm == nil {
		c.addf("%s: %s is not mounted from a ConfigMap of the overlay", where, cfgPath)
		return
	}
	dir := filepath.Join(c.tmp, w.Namespace+"-"+w.Name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		c.addf("%v", err)
		return
	}
	var text strings.Builder
	for name, data := range cm.Data {
		text.WriteString(data + "\n")
		if err := os.WriteFile(filepath.Join(dir, name), []byte(data), 0o644); err != nil {
			c.addf("%v", err)
			return
		}
	}
	file := filepath.Join(dir, filepath.Base(cfgPath))

	// The environment the server resolves $NAME from.
	env := c.effectiveEnv(where, w.Namespace, ctr)
	secretValues := map[string]string{} // value -> Secret key it comes from
	for name, v := range env {
		value := v.Value
		if v.Field != nil && v.Field.FieldPath == "metadata.name" {
			value = w.Name + "-0"
		}
		if v.Secret != nil {
			secretValues[value] = v.Source
		}
		c.setenv(name, value)
	}
	for _, m := range varRef.FindAllStringSubmatch(text.String(), -1) {
		if _, ok := env[m[1]]; !ok {
			c.addf("%s: ConfigMap %s refers to $%s, which the container's environment does not set", where, cm.Name, m[1])
		}
	}

	raw, err := conf.ParseFile(file)
	if err != nil {
		c.addf("%s: %s: %v", where, cfgPath, err)
		return
	}
	if js, _ := raw["jetstream"].(map[string]any); js == nil {
		c.addf("%s: %s has no jetstream block", where, cfgPath)
	} else if js["sync_interval"] != "always" {
		c.addf("%s: %s: jetstream sync_interval is %v, want always (fsync before every acknowledgement, DESIGN §4)", where, cfgPath, js["sync_interval"])
	}
	if _, ok := raw["max_payload"]; !ok {
		c.addf("%s: %s sets no max_payload", where, cfgPath)
	}
	c.checkNATSTLSFiles(where, w.Namespace, spec, ctr, raw)
	// The configuration names the pod's paths (/etc/nats-tls/tls.crt): the
	// mounted Secrets are written under dir and the paths rewritten, with a
	// throwaway certificate in place of the template's placeholders.
	if err := c.writeNATSFiles(dir, w.Namespace, spec, ctr, cm, throwawayPKI()); err != nil {
		c.addf("%s: %v", where, err)
		return
	}
	opts, err := server.ProcessConfigFile(file)
	if err != nil {
		c.addf("%s: %s: %v", where, cfgPath, err)
		return
	}
	if !opts.JetStream || !opts.SyncAlways {
		c.addf("%s: JetStream %t, sync always %t: want both", where, opts.JetStream, opts.SyncAlways)
	}
	maxEvent := 0
	for _, h := range c.hookbus {
		n, _ := strconv.Atoi(c.effective(h, envMaxEventSize))
		maxEvent = max(maxEvent, n)
	}
	if need := max(2<<20, maxEvent+64<<10); int(opts.MaxPayload) < need {
		c.addf("%s: max_payload %d is below %d: Hookbus streams take messages of up to that (docs/decisions.md, Topology)", where, opts.MaxPayload, need)
	}
	c.checkNATSClientTLS(where, opts, rule, haveRule)
	if opts.ServerName != w.Name+"-0" {
		c.addf("%s: server_name is %q, want the pod's name ($POD_NAME), unique per server", where, opts.ServerName)
	}

	// Ports and probes.
	if opts.Port != int(namedPort(ctr, "client")) {
		c.addf("%s: listens on %d, not the container port client (%d)", where, opts.Port, namedPort(ctr, "client"))
	}
	if opts.HTTPPort == 0 || opts.HTTPPort != int(namedPort(ctr, "monitor")) {
		c.addf("%s: monitoring port %d is not the container port monitor (%d)", where, opts.HTTPPort, namedPort(ctr, "monitor"))
	}
	for name, p := range map[string]*corev1.Probe{"startup": ctr.StartupProbe, "readiness": ctr.ReadinessProbe, "liveness": ctr.LivenessProbe} {
		if p != nil && (p.HTTPGet == nil || !strings.HasPrefix(p.HTTPGet.Path, "/healthz") || int(containerPort(ctr, p.HTTPGet.Port)) != opts.HTTPPort) {
			c.addf("%s: %s probe must be an HTTP GET of the server's /healthz on the monitoring port", where, name)
		}
	}

	// Volumes: the store, the pid file.
	mountOf := func(file string) (corev1.VolumeMount, bool) {
		var best corev1.VolumeMount
		for _, m := range ctr.VolumeMounts {
			if (file == m.MountPath || strings.HasPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")) && len(m.MountPath) > len(best.MountPath) {
				best = m
			}
		}
		return best, best.Name != ""
	}
	store, ok := mountOf(opts.StoreDir)
	switch {
	case !ok || store.ReadOnly:
		c.addf("%s: store_dir %s is not on a writable volume", where, opts.StoreDir)
	case haveRule && rule.persistentVolumes:
		i := slices.IndexFunc(sts.Spec.VolumeClaimTemplates, func(p corev1.PersistentVolumeClaim) bool { return p.Name == store.Name })
		if i < 0 {
			c.addf("%s: store_dir %s is on volume %s, not a PersistentVolumeClaim of the StatefulSet", where, opts.StoreDir, store.Name)
			break
		}
		size := sts.Spec.VolumeClaimTemplates[i].Spec.Resources.Requests[corev1.ResourceStorage]
		if opts.JetStreamMaxStore <= 0 || opts.JetStreamMaxStore >= size.Value() {
			c.addf("%s: max_file_store %d is not below the volume's %s: NATS must refuse writes before the disk is full", where, opts.JetStreamMaxStore, size.String())
		}
	case haveRule:
		if len(sts.Spec.VolumeClaimTemplates) > 0 {
			c.addf("%s: overlay %s wants no PersistentVolumeClaim", w, c.overlay)
		}
		if !slices.ContainsFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == store.Name && v.EmptyDir != nil }) {
			c.addf("%s: store_dir %s: overlay %s wants an emptyDir", where, opts.StoreDir, c.overlay)
		}
	}
	if m, ok := mountOf(filepath.Dir(opts.PidFile)); opts.PidFile == "" || !ok || m.ReadOnly {
		c.addf("%s: pid_file %q is not on a writable volume", where, opts.PidFile)
	}

	// Lame duck before the kubelet's SIGTERM, within the grace period.
	if ctr.Lifecycle == nil || ctr.Lifecycle.PreStop == nil || ctr.Lifecycle.PreStop.Exec == nil ||
		!strings.Contains(strings.Join(ctr.Lifecycle.PreStop.Exec.Command, " "), "ldm="+opts.PidFile) {
		c.addf("%s: no preStop hook putting the server in lame duck mode (nats-server --signal ldm=%s)", where, opts.PidFile)
	}
	grace := 30 * time.Second
	if spec.TerminationGracePeriodSeconds != nil {
		grace = time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	}
	if ldm := opts.LameDuckGracePeriod + opts.LameDuckDuration; ldm >= grace {
		c.addf("%s: lame duck takes %s (grace period plus duration), not less than terminationGracePeriodSeconds %s", where, ldm, grace)
	}

	// Cluster routes.
	if w.Replicas > 1 {
		if opts.Cluster.Name == "" || opts.Cluster.Port != int(namedPort(ctr, "cluster")) {
			c.addf("%s: cluster %q on port %d: want a name and the container port cluster (%d)", where, opts.Cluster.Name, opts.Cluster.Port, namedPort(ctr, "cluster"))
		}
		var got, want []string
		for _, u := range opts.Routes {
			got = append(got, u.Host)
		}
		for i := range w.Replicas {
			want = append(want, fmt.Sprintf("%s-%d.%s:%d", sts.Name, i, sts.Spec.ServiceName, opts.Cluster.Port))
		}
		slices.Sort(got)
		if !slices.Equal(got, want) {
			c.addf("%s: routes %v, want one per server: %v", where, got, want)
		}
		if svc := c.r.service(w.Namespace, sts.Spec.ServiceName); svc == nil || svc.Spec.ClusterIP != corev1.ClusterIPNone || !svc.Spec.PublishNotReadyAddresses {
			c.addf("%s: serviceName %s must be a headless Service publishing addresses before the pods are ready", w, sts.Spec.ServiceName)
		}
		c.checkRoutes(where, opts, secretValues, rule, haveRule)
	} else if len(opts.Routes) > 0 {
		c.addf("%s: one server with %d cluster routes", where, len(opts.Routes))
	}

	c.checkNATSUsers(where, opts, secretValues)
}

// checkNATSTLSFiles: every certificate, key and CA file of the tls and
// cluster tls blocks is in a Secret mounted in the container, and that key
// is one operators create (the overlay's Secrets or example/).
func (c *checker) checkNATSTLSFiles(where, namespace string, spec *corev1.PodSpec, ctr corev1.Container, raw map[string]any) {
	blocks := map[string]any{"tls": raw["tls"]}
	if cluster, ok := raw["cluster"].(map[string]any); ok {
		blocks["cluster tls"] = cluster["tls"]
	}
	for _, name := range slices.Sorted(maps.Keys(blocks)) {
		block, _ := blocks[name].(map[string]any)
		for _, k := range []string{"cert_file", "key_file", "ca_file"} {
			file, ok := block[k].(string)
			if !ok {
				continue
			}
			secret, key, mounted := c.mountedSecretFile(spec, ctr, file)
			if !mounted {
				c.addf("%s: %s %s %s is not in a mounted Secret", where, name, k, file)
			} else if _, found := c.secretKey(namespace, secret, key); !found {
				c.addf("%s: %s %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", where, name, k, secret, key)
			}
		}
	}
}

// writeNATSFiles writes what the NATS container reads into dir: the files
// of ConfigMap cm, and the items of each Secret mounted in the container
// under dir/secret-<volume>, with every such mount path in the ConfigMap's
// files rewritten to it (the configuration names the pod's absolute paths,
// which the test process does not have). Certificates and keys (tls.crt,
// tls.key, ca.crt) come from pki, other keys from the overlay's Secrets or
// the example/ template.
func (c *checker) writeNATSFiles(dir, namespace string, spec *corev1.PodSpec, ctr corev1.Container, cm *corev1.ConfigMap, pki *testPKI) error {
	var rewrite []string // mount path/, dir/
	for _, m := range ctr.VolumeMounts {
		i := slices.IndexFunc(spec.Volumes, func(v corev1.Volume) bool { return v.Name == m.Name && v.Secret != nil })
		if i < 0 {
			continue
		}
		vol := spec.Volumes[i].Secret
		to := filepath.Join(dir, "secret-"+m.Name)
		if err := os.MkdirAll(to, 0o755); err != nil {
			return err
		}
		items := vol.Items
		if len(items) == 0 {
			if s, _ := c.secretObject(namespace, vol.SecretName); s != nil {
				for k := range s.StringData {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
				for k := range s.Data {
					items = append(items, corev1.KeyToPath{Key: k, Path: k})
				}
			}
		}
		for _, item := range items {
			value, ok := pki.files()[item.Key]
			if !ok {
				v, found := c.secretKey(namespace, vol.SecretName, item.Key)
				if !found {
					return fmt.Errorf("volume %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", m.Name, vol.SecretName, item.Key)
				}
				value = []byte(v)
			}
			if err := os.WriteFile(filepath.Join(to, item.Path), value, 0o600); err != nil {
				return err
			}
		}
		rewrite = append(rewrite, strings.TrimSuffix(m.MountPath, "/")+"/", to+"/")
	}
	r := strings.NewReplacer(rewrite...)
	for name, data := range cm.Data {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(r.Replace(data)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// checkNATSClientTLS: where the overlay wants TLS, NATS serves clients over
// TLS only; where it serves no TLS, no Hookbus service connects with TLS.
func (c *checker) checkNATSClientTLS(where string, opts *server.Options, rule overlayRule, haveRule bool) {
	if haveRule && rule.tls {
		switch {
		case opts.TLSConfig == nil:
			c.addf("%s: clients connect over plain TCP: overlay %s wants a tls block (cert_file, key_file from a mounted Secret)", where, c.overlay)
		case opts.AllowNonTLS:
			c.addf("%s: allow_non_tls lets clients connect without TLS", where)
		}
	}
	if opts.TLSConfig == nil {
		for _, h := range c.hookbus {
			if h.tls {
				c.addf("%s: connects over TLS (a tls:// URL or %s), but NATS serves no TLS: it would never connect", h.w, envNATSCA)
			}
		}
	}
}

// checkRoutes: cluster routes are authenticated with a password from a
// Secret, which every route URL carries (a server logs in to the others
// with the credentials of its route URL); where the overlay wants TLS, they
// run over TLS and each server verifies the other's certificate against
// the configured CA.
func (c *checker) checkRoutes(where string, opts *server.Options, secretValues map[string]string, rule overlayRule, haveRule bool) {
	if opts.Cluster.Username == "" {
		c.addf("%s: cluster routes are not authenticated: whoever reaches port %d joins the cluster (want cluster { authorization { user, password } })", where, opts.Cluster.Port)
	} else {
		if _, ok := secretValues[opts.Cluster.Password]; !ok || opts.Cluster.Password == "" {
			c.addf("%s: the route password (cluster authorization) does not come from a Secret", where)
		}
		for _, u := range opts.Routes {
			pw, _ := u.User.Password()
			if u.User.Username() != opts.Cluster.Username || pw != opts.Cluster.Password {
				c.addf("%s: route %s does not carry the route credentials (user %s and its password): the other servers would refuse it", where, u.Host, opts.Cluster.Username)
			}
		}
	}
	if !haveRule || !rule.tls {
		return
	}
	switch tc := opts.Cluster.TLSConfig; {
	case tc == nil:
		c.addf("%s: cluster routes run over plain TCP: overlay %s wants cluster { tls { cert_file, key_file, ca_file, verify: true } }", where, c.overlay)
	case tc.InsecureSkipVerify:
		c.addf("%s: cluster tls is insecure: a server would not verify the certificate of the server it routes to", where)
	case tc.ClientCAs == nil:
		c.addf("%s: cluster tls has no ca_file: the servers would verify each other against the system's CAs", where)
	}
}

// checkNATSUsers: no anonymous access; every password comes from a
// Secret; every user but the operators' is limited to its own subjects;
// every Hookbus service connects as a user that exists, with the password
// the server has for it.
func (c *checker) checkNATSUsers(where string, opts *server.Options, secretValues map[string]string) {
	if opts.NoAuthUser != "" || len(opts.Users) == 0 && len(opts.Nkeys) == 0 {
		c.addf("%s: clients may connect without credentials", where)
	}
	users := map[string]*server.User{}
	for _, u := range opts.Users {
		users[u.Username] = u
		if _, ok := secretValues[u.Password]; !ok || u.Password == "" {
			c.addf("%s: the password of NATS user %s does not come from a Secret", where, u.Username)
		}
		if u.Account != nil && u.Account.Name == opts.SystemAccount || u.Username == "admin" {
			continue // the operators' users
		}
		p := u.Permissions
		if p == nil || p.Publish == nil || p.Subscribe == nil || len(p.Publish.Allow) == 0 || len(p.Subscribe.Allow) == 0 {
			c.addf("%s: NATS user %s has no publish and subscribe allow lists: it may use every subject", where, u.Username)
			continue
		}
		for _, s := range broadSubjects {
			if slices.Contains(p.Publish.Allow, s) {
				c.addf("%s: NATS user %s may publish to %s", where, u.Username, s)
			}
			if slices.Contains(p.Subscribe.Allow, s) {
				c.addf("%s: NATS user %s may subscribe to %s", where, u.Username, s)
			}
		}
	}
	for _, h := range c.hookbus {
		name := h.env[envNATSUser].Value
		if name == "" {
			continue
		}
		u, ok := users[name]
		switch {
		case !ok:
			c.addf("%s: connects as NATS user %s, which the NATS configuration does not have", h.w, name)
		case u.Password != h.env[envNATSPassword].Value:
			c.addf("%s: %s (%s) is not the password NATS has for user %s", h.w, envNATSPassword, h.env[envNATSPassword].Source, name)
		case u.Account == nil || u.Account.Name == opts.SystemAccount:
			c.addf("%s: NATS user %s is in the system account", h.w, name)
		}
	}
}
