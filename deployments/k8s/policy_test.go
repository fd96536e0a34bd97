package k8s

import (
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"path"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"

	"github.com/hookbus/hookbus/internal/netguard"
)

// overlayRule is what an overlay must deploy; every directory under
// overlays/ needs one.
type overlayRule struct {
	natsReplicas      int32
	persistentVolumes bool // NATS data on PersistentVolumeClaims (else emptyDir)
	// tls: NATS serves clients and routes over TLS, and every Hookbus
	// service connects with tls:// URLs, verifying the server against a CA
	// from a mounted Secret (HOOKBUS_NATS_CA).
	tls bool
}

var overlayRules = map[string]overlayRule{
	"dev":  {natsReplicas: 1, persistentVolumes: false},
	"prod": {natsReplicas: 3, persistentVolumes: true, tls: true},
}

// servicesNotDeployedYet are services the binary may offer that have no
// Deployment yet, with the reason. Any other service of the binary must
// have one.
var servicesNotDeployedYet = map[string]string{}

// goRuntimeEnv are the variables other than HOOKBUS_* a hookbus container
// may set: the binary reads no other.
var goRuntimeEnv = map[string]bool{"GOMEMLIMIT": true, "GOMAXPROCS": true, "GOGC": true, "GODEBUG": true, "TZ": true}

// broadSubjects are subjects no service or plugin worker user may be
// allowed: each would reach every other part's subjects.
var broadSubjects = []string{">", "*.>", "$JS.>", "$JS.API.>", "$KV.>", "hookbus.>"}

// Variables the checks require (they must also be variables the binary
// reads: TestCheckerNamesOnlyVariablesTheBinaryReads).
const (
	envNATSURL        = "HOOKBUS_NATS_URL"
	envNATSUser       = "HOOKBUS_NATS_USER"
	envNATSPassword   = "HOOKBUS_NATS_PASSWORD"
	envNATSCreds      = "HOOKBUS_NATS_CREDS"
	envNATSCA         = "HOOKBUS_NATS_CA"
	envOpsAddr        = "HOOKBUS_OPS_ADDR"
	envGatewayAddr    = "HOOKBUS_GATEWAY_ADDR"
	envTopology       = "HOOKBUS_TOPOLOGY"
	envStreamReplicas = "HOOKBUS_STREAM_REPLICAS"
	envMaxEventSize   = "HOOKBUS_MAX_EVENT_SIZE"
	envPersistenceKey = "HOOKBUS_PERSISTENCE_KEY"
	envPersistenceKF  = "HOOKBUS_PERSISTENCE_KEY_FILE"
	envDeviceSecret   = "HOOKBUS_DEVICE_TOKEN_SECRET"
	envDeviceSecretF  = "HOOKBUS_DEVICE_TOKEN_SECRET_FILE"
	envDeviceSalt     = "HOOKBUS_DEVICE_TOKEN_SALT"
	envDeviceSaltF    = "HOOKBUS_DEVICE_TOKEN_SALT_FILE"
)

var checkedVariables = []string{envNATSURL, envNATSUser, envNATSPassword, envNATSCreds, envNATSCA, envOpsAddr, envGatewayAddr, envTopology,
	envStreamReplicas, envMaxEventSize, envPersistenceKey, envPersistenceKF, envDeviceSecret, envDeviceSecretF, envDeviceSalt, envDeviceSaltF}

// checker collects the problems of one rendered overlay.
type checker struct {
	r        *rendered
	overlay  string
	rule     overlayRule // what the overlay must deploy (haveRule: overlayRules has one)
	haveRule bool
	examples *rendered // example/: the Secrets operators create, with placeholder values
	tmp      string    // where the NATS configuration is written to be parsed
	setenv   func(key, value string)
	problems []string

	// What the Hookbus containers say, for the checks across objects.
	hookbus []hookbusContainer
}

// hookbusContainer is one `hookbus serve` container and its effective
// configuration.
type hookbusContainer struct {
	w       workload
	service string
	env     map[string]envVar // effective HOOKBUS_* values (flags in args included)
	tls     bool              // connects over TLS: a tls:// URL or HOOKBUS_NATS_CA
}

func (c *checker) addf(format string, args ...any) {
	c.problems = append(c.problems, fmt.Sprintf(format, args...))
}

// checkPolicy returns every way r breaks the deployment policy.
func checkPolicy(r *rendered, overlay string, examples *rendered, tmp string, setenv func(key, value string)) []string {
	c := &checker{r: r, overlay: overlay, examples: examples, tmp: tmp, setenv: setenv}
	rule, ok := overlayRules[overlay]
	c.rule, c.haveRule = rule, ok
	if !ok {
		c.addf("overlay %s: no rule in overlayRules says what it must deploy", overlay)
	}
	c.checkNamespaces()
	for _, w := range r.workloads() {
		c.checkWorkload(w)
	}
	c.checkPDBs()
	c.checkNetworkPolicies()
	for _, w := range r.workloads() {
		for _, ctr := range w.Template.Spec.Containers {
			if imageRepo(ctr.Image) == "hookbus" {
				c.checkHookbus(w, ctr)
			}
		}
	}
	c.checkServices()
	var nats []workload
	for _, w := range r.workloads() {
		if slices.ContainsFunc(w.Template.Spec.Containers, func(ctr corev1.Container) bool { return imageRepo(ctr.Image) == "nats" }) {
			nats = append(nats, w)
		}
	}
	if len(nats) != 1 {
		c.addf("want one NATS StatefulSet, found %d", len(nats))
	}
	for _, w := range nats {
		c.checkNATS(w, rule, ok)
	}
	return c.problems
}

func (c *checker) checkNamespaces() {
	if len(c.r.Namespaces) != 1 {
		c.addf("want the overlay to create one Namespace, found %d", len(c.r.Namespaces))
		return
	}
	ns := c.r.Namespaces[0]
	if ns.Labels["pod-security.kubernetes.io/enforce"] != "restricted" {
		c.addf("Namespace %s: label pod-security.kubernetes.io/enforce is %q, want restricted", ns.Name, ns.Labels["pod-security.kubernetes.io/enforce"])
	}
	check := func(kind, name, namespace string) {
		if namespace != ns.Name {
			c.addf("%s %s is in namespace %q, not the overlay's %q", kind, name, namespace, ns.Name)
		}
	}
	for _, o := range c.r.ConfigMaps {
		check("ConfigMap", o.Name, o.Namespace)
	}
	for _, o := range c.r.Secrets {
		check("Secret", o.Name, o.Namespace)
	}
	for _, o := range c.r.Services {
		check("Service", o.Name, o.Namespace)
	}
	for _, w := range c.r.workloads() {
		check(w.Kind, w.Name, w.Namespace)
	}
	for _, o := range c.r.PDBs {
		check("PodDisruptionBudget", o.Name, o.Namespace)
	}
	for _, o := range c.r.NetworkPolicies {
		check("NetworkPolicy", o.Name, o.Namespace)
	}
}

// checkWorkload checks what every pod must have: probes, resources, the
// restricted Pod Security profile, pinned images, spreading.
func (c *checker) checkWorkload(w workload) {
	spec := &w.Template.Spec
	sel, err := metav1.LabelSelectorAsSelector(w.Selector)
	if err != nil || sel.Empty() || !sel.Matches(labels.Set(w.Template.Labels)) {
		c.addf("%s: selector %v does not select its own pods (labels %v)", w, metav1.FormatLabelSelector(w.Selector), w.Template.Labels)
	}
	if spec.HostNetwork || spec.HostPID || spec.HostIPC {
		c.addf("%s: uses the host's network, PID or IPC namespace", w)
	}
	if spec.AutomountServiceAccountToken == nil || *spec.AutomountServiceAccountToken {
		c.addf("%s: automountServiceAccountToken is not false (the pods never call the Kubernetes API)", w)
	}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			c.addf("%s: volume %s is a hostPath", w, v.Name)
		}
	}
	for _, key := range []string{"kubernetes.io/hostname", "topology.kubernetes.io/zone"} {
		i := slices.IndexFunc(spec.TopologySpreadConstraints, func(t corev1.TopologySpreadConstraint) bool { return t.TopologyKey == key })
		if i < 0 {
			c.addf("%s: no topologySpreadConstraint over %s", w, key)
			continue
		}
		ts, err := metav1.LabelSelectorAsSelector(spec.TopologySpreadConstraints[i].LabelSelector)
		if err != nil || ts.Empty() || !ts.Matches(labels.Set(w.Template.Labels)) {
			c.addf("%s: topologySpreadConstraint over %s does not select its own pods", w, key)
		}
	}
	for _, ctr := range spec.InitContainers {
		c.checkContainer(w, ctr, false)
	}
	for _, ctr := range spec.Containers {
		c.checkContainer(w, ctr, true)
	}
}

func (c *checker) checkContainer(w workload, ctr corev1.Container, probes bool) {
	where := fmt.Sprintf("%s container %s", w, ctr.Name)
	if err := checkImage(ctr.Image); err != nil {
		c.addf("%s: %v", where, err)
	}
	if probes {
		for _, p := range []struct {
			name  string
			probe *corev1.Probe
		}{{"startup", ctr.StartupProbe}, {"readiness", ctr.ReadinessProbe}, {"liveness", ctr.LivenessProbe}} {
			if p.probe == nil {
				c.addf("%s: no %s probe", where, p.name)
				continue
			}
			switch h := p.probe.ProbeHandler; {
			case h.HTTPGet != nil:
				if containerPort(ctr, h.HTTPGet.Port) == 0 {
					c.addf("%s: %s probe port %s is not a port of the container", where, p.name, h.HTTPGet.Port.String())
				}
			case h.TCPSocket != nil:
				if containerPort(ctr, h.TCPSocket.Port) == 0 {
					c.addf("%s: %s probe port %s is not a port of the container", where, p.name, h.TCPSocket.Port.String())
				}
			case h.Exec == nil && h.GRPC == nil:
				c.addf("%s: %s probe has no handler", where, p.name)
			}
		}
	}
	for _, res := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, hasReq := ctr.Resources.Requests[res]
		limit, hasLimit := ctr.Resources.Limits[res]
		switch {
		case !hasReq || req.IsZero():
			c.addf("%s: no %s request", where, res)
		case !hasLimit || limit.IsZero():
			c.addf("%s: no %s limit", where, res)
		case req.Cmp(limit) > 0:
			c.addf("%s: %s request %s is above the limit %s", where, res, req.String(), limit.String())
		}
	}
	for _, p := range ctr.Ports {
		if p.HostPort != 0 {
			c.addf("%s: port %d is a hostPort", where, p.ContainerPort)
		}
	}
	c.checkSecurity(where, w.Template.Spec.SecurityContext, ctr.SecurityContext)
}

// checkSecurity checks the restricted Pod Security Standard, pod and
// container settings together, plus a read-only root filesystem.
func (c *checker) checkSecurity(where string, pod *corev1.PodSecurityContext, sc *corev1.SecurityContext) {
	if pod == nil {
		pod = &corev1.PodSecurityContext{}
	}
	if sc == nil {
		c.addf("%s: no securityContext", where)
		sc = &corev1.SecurityContext{}
	}
	nonRoot := sc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = pod.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		c.addf("%s: runAsNonRoot is not true", where)
	}
	user := sc.RunAsUser
	if user == nil {
		user = pod.RunAsUser
	}
	if user != nil && *user == 0 {
		c.addf("%s: runs as user 0", where)
	}
	if sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
		c.addf("%s: allowPrivilegeEscalation is not false", where)
	}
	if sc.Privileged != nil && *sc.Privileged {
		c.addf("%s: privileged", where)
	}
	if sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem {
		c.addf("%s: readOnlyRootFilesystem is not true", where)
	}
	if sc.Capabilities == nil || !slices.Contains(sc.Capabilities.Drop, "ALL") {
		c.addf("%s: capabilities do not drop ALL", where)
	} else if len(sc.Capabilities.Add) > 0 {
		c.addf("%s: adds capabilities %v", where, sc.Capabilities.Add)
	}
	seccomp := sc.SeccompProfile
	if seccomp == nil {
		seccomp = pod.SeccompProfile
	}
	if seccomp == nil || (seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault && seccomp.Type != corev1.SeccompProfileTypeLocalhost) {
		c.addf("%s: seccompProfile is not RuntimeDefault", where)
	}
}

// checkImage refuses an image without a tag or digest, and :latest.
func checkImage(image string) error {
	name, digest, hasDigest := strings.Cut(image, "@")
	tag := ""
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		tag = name[i+1:]
	}
	switch {
	case image == "":
		return fmt.Errorf("no image")
	case tag == "latest":
		return fmt.Errorf("image %s: the tag latest is not a version", image)
	case tag == "" && !hasDigest:
		return fmt.Errorf("image %s has neither a tag nor a digest", image)
	case hasDigest && !strings.HasPrefix(digest, "sha256:"):
		return fmt.Errorf("image %s: digest is not sha256", image)
	}
	return nil
}

// imageRepo returns the last path element of an image's name: "nats" for
// nats:2.15.2-alpine, "hookbus" for registry.example.com/hookbus/hookbus@sha256:...
func imageRepo(image string) string {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		name = name[:i]
	}
	return path.Base(name)
}

func imageTag(image string) string {
	name, _, _ := strings.Cut(image, "@")
	if i := strings.LastIndexByte(name, ':'); i > strings.LastIndexByte(name, '/') {
		return name[i+1:]
	}
	return ""
}

// containerPort resolves a probe's or a policy's port against the
// container's ports; 0 if it is not one of them.
func containerPort(ctr corev1.Container, port intstr.IntOrString) int32 {
	for _, p := range ctr.Ports {
		if (port.Type == intstr.String && p.Name == port.StrVal) || (port.Type == intstr.Int && p.ContainerPort == port.IntVal) {
			return p.ContainerPort
		}
	}
	return 0
}

func namedPort(ctr corev1.Container, name string) int32 {
	return containerPort(ctr, intstr.FromString(name))
}

// checkPDBs: every workload has exactly one budget, allowing one pod
// down; every budget selects pods.
func (c *checker) checkPDBs() {
	for _, pdb := range c.r.PDBs {
		sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
		if err != nil || sel.Empty() {
			c.addf("PodDisruptionBudget %s: empty or invalid selector", pdb.Name)
			continue
		}
		if !slices.ContainsFunc(c.r.workloads(), func(w workload) bool {
			return w.Namespace == pdb.Namespace && sel.Matches(labels.Set(w.Template.Labels))
		}) {
			c.addf("PodDisruptionBudget %s: selector %s selects no pods", pdb.Name, sel)
		}
		if pdb.Spec.MinAvailable != nil || pdb.Spec.MaxUnavailable == nil || *pdb.Spec.MaxUnavailable != intstr.FromInt32(1) {
			c.addf("PodDisruptionBudget %s: want maxUnavailable 1 (and no minAvailable, which blocks drains at one replica)", pdb.Name)
		}
	}
	for _, w := range c.r.workloads() {
		var names []string
		for _, pdb := range c.r.PDBs {
			sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
			if err == nil && !sel.Empty() && pdb.Namespace == w.Namespace && sel.Matches(labels.Set(w.Template.Labels)) {
				names = append(names, pdb.Name)
			}
		}
		if len(names) != 1 {
			c.addf("%s: want one PodDisruptionBudget selecting its pods, found %d %v", w, len(names), names)
		}
	}
}

// peer is one end of a connection, for the NetworkPolicy checks.
type peer struct {
	namespace string
	labels    labels.Set
	ports     []corev1.ContainerPort // its containers' ports, to resolve named ports
}

func (c *checker) podPeer(w workload) peer {
	p := peer{namespace: w.Namespace, labels: labels.Set(w.Template.Labels)}
	for _, ctr := range w.Template.Spec.Containers {
		p.ports = append(p.ports, ctr.Ports...)
	}
	return p
}

func (c *checker) namespaceLabels(name string) labels.Set {
	set := labels.Set{"kubernetes.io/metadata.name": name}
	for _, ns := range c.r.Namespaces {
		if ns.Name == name {
			for k, v := range ns.Labels {
				set[k] = v
			}
		}
	}
	return set
}

// allowed says whether the NetworkPolicies let from open a connection to
// port of to: egress from from's side, ingress on to's side (each side
// unrestricted when no policy selects it for that direction).
func (c *checker) allowed(from, to peer, port int32, proto corev1.Protocol) (egress, ingress bool) {
	return c.side(from, to, port, proto, networkingv1.PolicyTypeEgress), c.side(to, from, port, proto, networkingv1.PolicyTypeIngress)
}

func (c *checker) side(self, other peer, port int32, proto corev1.Protocol, dir networkingv1.PolicyType) bool {
	selected := false
	for _, np := range c.r.NetworkPolicies {
		if np.Namespace != self.namespace || !slices.Contains(np.Spec.PolicyTypes, dir) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(self.labels) {
			continue
		}
		selected = true
		if dir == networkingv1.PolicyTypeEgress {
			for _, rule := range np.Spec.Egress {
				if c.peersMatch(rule.To, self.namespace, other) && portsMatch(rule.Ports, other, port, proto) {
					return true
				}
			}
		} else {
			for _, rule := range np.Spec.Ingress {
				if c.peersMatch(rule.From, self.namespace, other) && portsMatch(rule.Ports, self, port, proto) {
					return true
				}
			}
		}
	}
	return !selected
}

func (c *checker) peersMatch(peers []networkingv1.NetworkPolicyPeer, policyNamespace string, p peer) bool {
	if len(peers) == 0 {
		return true
	}
	for _, np := range peers {
		if np.IPBlock != nil {
			continue // pod-to-pod flows only
		}
		if np.NamespaceSelector == nil {
			if p.namespace != policyNamespace {
				continue
			}
		} else {
			nsSel, err := metav1.LabelSelectorAsSelector(np.NamespaceSelector)
			if err != nil || !nsSel.Matches(c.namespaceLabels(p.namespace)) {
				continue
			}
		}
		if np.PodSelector != nil {
			podSel, err := metav1.LabelSelectorAsSelector(np.PodSelector)
			if err != nil || !podSel.Matches(p.labels) {
				continue
			}
		}
		return true
	}
	return false
}

func portsMatch(ports []networkingv1.NetworkPolicyPort, dest peer, port int32, proto corev1.Protocol) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		pp := corev1.ProtocolTCP
		if p.Protocol != nil {
			pp = *p.Protocol
		}
		if pp != proto {
			continue
		}
		if p.Port == nil {
			return true
		}
		n := p.Port.IntVal
		if p.Port.Type == intstr.String {
			n = 0
			for _, cp := range dest.ports {
				if cp.Name == p.Port.StrVal {
					n = cp.ContainerPort
				}
			}
		}
		if n == port || (p.EndPort != nil && port >= n && port <= *p.EndPort) {
			return true
		}
	}
	return false
}

// checkNetworkPolicies: a default deny in the namespace, and the flows
// Hookbus needs are allowed, and no more than those around NATS.
func (c *checker) checkNetworkPolicies() {
	namespaces := map[string]bool{}
	for _, w := range c.r.workloads() {
		namespaces[w.Namespace] = true
	}
	for ns := range namespaces {
		if !slices.ContainsFunc(c.r.NetworkPolicies, func(np *networkingv1.NetworkPolicy) bool {
			return np.Namespace == ns && len(np.Spec.PodSelector.MatchLabels) == 0 && len(np.Spec.PodSelector.MatchExpressions) == 0 &&
				slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) && slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) &&
				len(np.Spec.Ingress) == 0 && len(np.Spec.Egress) == 0
		}) {
			c.addf("namespace %s: no default-deny NetworkPolicy (empty podSelector, Ingress and Egress, no rules)", ns)
		}
	}
	var natsPods, hookbusPods []workload
	for _, w := range c.r.workloads() {
		for _, ctr := range w.Template.Spec.Containers {
			switch imageRepo(ctr.Image) {
			case "nats":
				natsPods = append(natsPods, w)
			case "hookbus":
				hookbusPods = append(hookbusPods, w)
			}
		}
	}
	dns := peer{namespace: "kube-system", labels: labels.Set{"k8s-app": "kube-dns"}}
	prometheus := peer{namespace: "monitoring", labels: labels.Set{"app.kubernetes.io/name": "prometheus"}}
	stranger := func(ns string) peer { return peer{namespace: ns, labels: labels.Set{"app": "something-else"}} }
	for _, w := range c.r.workloads() {
		if egress, _ := c.allowed(c.podPeer(w), dns, 53, corev1.ProtocolUDP); !egress {
			c.addf("NetworkPolicy: %s cannot reach DNS (kube-system/kube-dns, 53/UDP)", w)
		}
	}
	for _, n := range natsPods {
		nats := c.podPeer(n)
		for _, h := range hookbusPods {
			if egress, ingress := c.allowed(c.podPeer(h), nats, 4222, corev1.ProtocolTCP); !egress || !ingress {
				c.addf("NetworkPolicy: %s cannot reach %s on 4222 (egress allowed %t, ingress allowed %t)", h, n, egress, ingress)
			}
			if _, ingress := c.allowed(c.podPeer(h), nats, 8222, corev1.ProtocolTCP); ingress {
				c.addf("NetworkPolicy: %s may reach the NATS monitoring port 8222", h)
			}
		}
		if egress, ingress := c.allowed(nats, nats, 6222, corev1.ProtocolTCP); !egress || !ingress {
			c.addf("NetworkPolicy: %s servers cannot reach each other's routes on 6222", n)
		}
		if _, ingress := c.allowed(stranger(n.Namespace), nats, 4222, corev1.ProtocolTCP); ingress {
			c.addf("NetworkPolicy: any pod of namespace %s may reach NATS on 4222, not only NATS clients", n.Namespace)
		}
		for _, h := range hookbusPods {
			if _, ingress := c.allowed(c.podPeer(h), nats, 6222, corev1.ProtocolTCP); ingress {
				c.addf("NetworkPolicy: %s may reach the NATS routes port 6222", h)
			}
		}
	}
	gatewayClient := func(ns string) peer {
		return peer{namespace: ns, labels: labels.Set{"hookbus.io/gateway-client": "true"}}
	}
	for _, h := range hookbusPods {
		// Services call NATS (and DNS), nothing else.
		if egress, _ := c.allowed(c.podPeer(h), stranger(h.Namespace), 8080, corev1.ProtocolTCP); egress {
			c.addf("NetworkPolicy: %s may open connections to any pod", h)
		}
		if h.Template.Labels["app.kubernetes.io/component"] != "gateway" {
			continue
		}
		if _, ingress := c.allowed(gatewayClient(h.Namespace), c.podPeer(h), 8080, corev1.ProtocolTCP); !ingress {
			c.addf("NetworkPolicy: pods labelled hookbus.io/gateway-client=true cannot reach %s on 8080", h)
		}
		if _, ingress := c.allowed(stranger(h.Namespace), c.podPeer(h), 8080, corev1.ProtocolTCP); ingress {
			c.addf("NetworkPolicy: any pod of namespace %s may reach %s on 8080, not only gateway clients", h.Namespace, h)
		}
	}
	c.checkWebhookEgress(hookbusPods)
	for _, h := range hookbusPods {
		if _, ingress := c.allowed(prometheus, c.podPeer(h), 8090, corev1.ProtocolTCP); !ingress {
			c.addf("NetworkPolicy: Prometheus (monitoring/app.kubernetes.io/name=prometheus) cannot scrape %s on 8090", h)
		}
		if _, ingress := c.allowed(stranger(h.Namespace), c.podPeer(h), 8090, corev1.ProtocolTCP); ingress {
			c.addf("NetworkPolicy: any pod may reach %s on 8090", h)
		}
	}
}

// webhookProbes are addresses a webhook might name: public ones, and one
// or more in each network the dispatcher's SSRF guard (internal/netguard)
// refuses. The NetworkPolicies must agree with the guard on each.
var webhookProbes = []string{
	"93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "2a00:1450:4001:80b::200e",
	"0.0.0.1", "10.0.0.1", "10.96.0.1", "100.64.0.1", "100.100.100.200", "127.0.0.1", "169.254.169.254",
	"172.16.0.1", "172.31.255.254", "192.0.0.1", "192.168.1.1", "198.18.0.1", "224.0.0.1", "255.255.255.255",
	"::", "::1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1", "100::1",
	"2001::1", "2002:a9fe:a9fe::1", "fd00:ec2::254", "fc00::1", "fe80::1", "ff02::1",
}

// checkWebhookEgress: the dispatcher may post webhooks (TCP 80 and 443)
// to exactly the addresses its SSRF guard lets through, on no other port;
// the other services reach no address outside the cluster.
func (c *checker) checkWebhookEgress(hookbusPods []workload) {
	for _, h := range hookbusPods {
		dispatcher := h.Template.Labels["app.kubernetes.io/component"] == "dispatcher"
		for _, s := range webhookProbes {
			ip := netip.MustParseAddr(s)
			public := netguard.Check(ip, nil) == nil
			for _, port := range []int32{80, 443} {
				switch got := c.egressToIP(c.podPeer(h), ip, port, corev1.ProtocolTCP); {
				case dispatcher && public && !got:
					c.addf("NetworkPolicy: %s cannot reach the webhook target %s on %d", h, ip, port)
				case got && !public:
					c.addf("NetworkPolicy: %s may reach %s on %d, which the webhook guard refuses", h, ip, port)
				case got && !dispatcher:
					c.addf("NetworkPolicy: %s may reach %s on %d outside the cluster: only the dispatcher posts webhooks", h, ip, port)
				}
			}
			if !public {
				continue
			}
			for _, pp := range []struct {
				port  int32
				proto corev1.Protocol
			}{{22, corev1.ProtocolTCP}, {8443, corev1.ProtocolTCP}, {443, corev1.ProtocolUDP}} {
				if c.egressToIP(c.podPeer(h), ip, pp.port, pp.proto) {
					c.addf("NetworkPolicy: %s may reach %s on %d/%s: webhooks need TCP 80 and 443 only", h, ip, pp.port, pp.proto)
				}
			}
		}
	}
}

// egressToIP says whether the Egress NetworkPolicies selecting from let it
// open a connection to ip (outside the cluster: no pod selector matches
// it) on port: through an ipBlock holding ip outside its excepts, or a
// rule open to every destination.
func (c *checker) egressToIP(from peer, ip netip.Addr, port int32, proto corev1.Protocol) bool {
	selected := false
	outside := peer{namespace: "", labels: labels.Set{}}
	for _, np := range c.r.NetworkPolicies {
		if np.Namespace != from.namespace || !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeEgress) {
			continue
		}
		sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
		if err != nil || !sel.Matches(from.labels) {
			continue
		}
		selected = true
		for _, rule := range np.Spec.Egress {
			if !portsMatch(rule.Ports, outside, port, proto) {
				continue
			}
			if len(rule.To) == 0 {
				return true
			}
			for _, to := range rule.To {
				if to.IPBlock != nil && ipBlockHolds(to.IPBlock, ip) {
					return true
				}
			}
		}
	}
	return !selected
}

// ipBlockHolds says whether ip is in b's CIDR and in none of its excepts;
// an unreadable CIDR holds nothing, an unreadable except everything.
func ipBlockHolds(b *networkingv1.IPBlock, ip netip.Addr) bool {
	cidr, err := netip.ParsePrefix(b.CIDR)
	if err != nil || !cidr.Contains(ip) {
		return false
	}
	for _, e := range b.Except {
		ex, err := netip.ParsePrefix(e)
		if err != nil || ex.Contains(ip) {
			return false
		}
	}
	return true
}

// envVar is one variable of a container's effective environment.
type envVar struct {
	Value  string
	Source string                      // "env", "configmap NAME", "secret NAME/KEY", "field PATH", "flag --x"
	Secret *corev1.SecretKeySelector   // set when it comes from a Secret
	Field  *corev1.ObjectFieldSelector // set for the downward API
}

// effectiveEnv returns a container's environment as the kubelet builds it
// (envFrom first, env overriding), reporting references that do not
// resolve. Secret values come from the overlay's Secrets, or from the
// example/ template the operators follow when the overlay ships none.
func (c *checker) effectiveEnv(where, namespace string, ctr corev1.Container) map[string]envVar {
	env := map[string]envVar{}
	for _, from := range ctr.EnvFrom {
		switch {
		case from.ConfigMapRef != nil:
			cm := c.r.configMap(namespace, from.ConfigMapRef.Name)
			if cm == nil {
				c.addf("%s: envFrom ConfigMap %s does not exist", where, from.ConfigMapRef.Name)
				continue
			}
			if from.ConfigMapRef.Optional != nil && *from.ConfigMapRef.Optional {
				c.addf("%s: envFrom ConfigMap %s is optional: a missing configuration must stop the pod", where, cm.Name)
			}
			for k, v := range cm.Data {
				env[from.Prefix+k] = envVar{Value: v, Source: "configmap " + cm.Name}
			}
		case from.SecretRef != nil:
			s, _ := c.secretObject(namespace, from.SecretRef.Name)
			if s == nil {
				c.addf("%s: envFrom Secret %s is neither in the overlay nor in example/", where, from.SecretRef.Name)
				continue
			}
			for k := range s.StringData {
				v, _ := secretValue(s, k)
				env[from.Prefix+k] = envVar{Value: v, Source: "secret " + s.Name + "/" + k, Secret: &corev1.SecretKeySelector{LocalObjectReference: from.SecretRef.LocalObjectReference, Key: k}}
			}
			for k := range s.Data {
				v, _ := secretValue(s, k)
				env[from.Prefix+k] = envVar{Value: v, Source: "secret " + s.Name + "/" + k, Secret: &corev1.SecretKeySelector{LocalObjectReference: from.SecretRef.LocalObjectReference, Key: k}}
			}
		}
	}
	for _, e := range ctr.Env {
		switch vf := e.ValueFrom; {
		case vf == nil:
			env[e.Name] = envVar{Value: expandEnv(e.Value, env), Source: "env"}
		case vf.SecretKeyRef != nil:
			v, ok := c.secretKey(namespace, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
			if !ok {
				c.addf("%s: %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", where, e.Name, vf.SecretKeyRef.Name, vf.SecretKeyRef.Key)
			}
			env[e.Name] = envVar{Value: v, Source: "secret " + vf.SecretKeyRef.Name + "/" + vf.SecretKeyRef.Key, Secret: vf.SecretKeyRef}
		case vf.ConfigMapKeyRef != nil:
			cm := c.r.configMap(namespace, vf.ConfigMapKeyRef.Name)
			v, ok := "", false
			if cm != nil {
				v, ok = cm.Data[vf.ConfigMapKeyRef.Key]
			}
			if !ok {
				c.addf("%s: %s: ConfigMap %s has no key %s", where, e.Name, vf.ConfigMapKeyRef.Name, vf.ConfigMapKeyRef.Key)
			}
			env[e.Name] = envVar{Value: v, Source: "configmap " + vf.ConfigMapKeyRef.Name}
		case vf.FieldRef != nil:
			env[e.Name] = envVar{Source: "field " + vf.FieldRef.FieldPath, Field: vf.FieldRef}
		default:
			env[e.Name] = envVar{Source: "resource"}
		}
	}
	return env
}

// expandEnv expands $(NAME) in an env value as the kubelet does: NAME is a
// variable defined before it (through envFrom or an earlier env entry), $$
// is an escaped $, and a reference to nothing stays as it is written.
func expandEnv(s string, env map[string]envVar) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '$' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		switch s[i+1] {
		case '$':
			b.WriteByte('$')
			i++
		case '(':
			end := strings.IndexByte(s[i+2:], ')')
			if end < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			if v, ok := env[s[i+2:i+2+end]]; ok {
				b.WriteString(v.Value)
			} else {
				b.WriteString(s[i : i+3+end])
			}
			i += 2 + end
		default:
			b.WriteByte('$')
		}
	}
	return b.String()
}

// secretObject finds a Secret in the overlay, or else in the example/
// template (whose values are placeholders).
func (c *checker) secretObject(namespace, name string) (*corev1.Secret, bool) {
	if s := c.r.secret(namespace, name); s != nil {
		return s, true
	}
	if c.examples != nil {
		for _, s := range c.examples.Secrets {
			if s.Name == name {
				return s, false
			}
		}
	}
	return nil, false
}

func (c *checker) secretKey(namespace, name, key string) (string, bool) {
	s, _ := c.secretObject(namespace, name)
	if s == nil {
		return "", false
	}
	return secretValue(s, key)
}

// mountedSecretFile resolves a file path in a container to the Secret key
// it is mounted from.
func (c *checker) mountedSecretFile(spec *corev1.PodSpec, ctr corev1.Container, file string) (secret, key string, ok bool) {
	for _, m := range ctr.VolumeMounts {
		rel, found := strings.CutPrefix(file, strings.TrimSuffix(m.MountPath, "/")+"/")
		if !found {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name != m.Name || v.Secret == nil {
				continue
			}
			key := rel
			if len(v.Secret.Items) > 0 { // only the items listed are there
				i := slices.IndexFunc(v.Secret.Items, func(item corev1.KeyToPath) bool { return item.Path == rel })
				if i < 0 {
					return "", "", false
				}
				key = v.Secret.Items[i].Key
			}
			return v.Secret.SecretName, key, true
		}
	}
	return "", "", false
}

// checkHookbus checks one `hookbus serve` container: the service it runs,
// every HOOKBUS_* variable against what the binary reads, the settings a
// Kubernetes deployment requires, and its probes.
func (c *checker) checkHookbus(w workload, ctr corev1.Container) {
	where := fmt.Sprintf("%s container %s", w, ctr.Name)
	if len(ctr.Command) > 0 && !slices.Equal(ctr.Command, []string{"/hookbus"}) {
		c.addf("%s: command %v replaces the image's entrypoint /hookbus", where, ctr.Command)
	}
	h := hookbusContainer{w: w}
	env := c.effectiveEnv(where, w.Namespace, ctr)
	for name, v := range env {
		if !strings.HasPrefix(name, "HOOKBUS_") {
			if !goRuntimeEnv[name] {
				c.addf("%s: sets %s (%s), which is not a HOOKBUS_* variable: the binary reads no other", where, name, v.Source)
			}
			delete(env, name)
			continue
		}
		if _, ok := binary.variable(name); !ok {
			c.addf("%s: sets %s (%s), which the binary does not read (`hookbus config` lists what it reads)", where, name, v.Source)
		}
	}
	if len(ctr.Args) == 0 || ctr.Args[0] != "serve" {
		c.addf("%s: args %v: want serve <service>", where, ctr.Args)
	} else {
		var services []string
		args := ctr.Args[1:]
		for i := 0; i < len(args); i++ {
			a := args[i]
			if !strings.HasPrefix(a, "-") {
				services = append(services, a)
				continue
			}
			flag, value, hasValue := strings.Cut(a, "=")
			if !hasValue && i+1 < len(args) {
				i++
				value = args[i]
			}
			if !binary.hasFlag(flag) {
				c.addf("%s: args: %s is not a flag of the binary", where, flag)
				continue
			}
			for _, v := range binary.Variables {
				if v.Flag == flag {
					env[v.Name] = envVar{Value: value, Source: "flag " + flag}
				}
			}
		}
		switch {
		case len(services) != 1:
			c.addf("%s: runs services %v: want exactly one per Deployment", where, services)
		case !slices.Contains(binary.Services, services[0]):
			c.addf("%s: runs service %q, which the binary does not have (it has %v)", where, services[0], binary.Services)
		default:
			h.service = services[0]
			if comp := w.Template.Labels["app.kubernetes.io/component"]; comp != h.service {
				c.addf("%s: runs %s but is labelled app.kubernetes.io/component=%s", where, h.service, comp)
			}
		}
	}
	value := func(name string) string { return env[name].Value }
	h.env = env
	h.tls = value(envNATSCA) != ""
	for _, raw := range strings.Split(value(envNATSURL), ",") {
		if u, err := url.Parse(strings.TrimSpace(raw)); err == nil && u.Scheme == "tls" {
			h.tls = true
		}
	}
	c.hookbus = append(c.hookbus, h)

	// Required settings.
	if u := value(envNATSURL); u == "" {
		c.addf("%s: %s is not set: serve would start an embedded NATS server in the pod", where, envNATSURL)
	} else {
		c.checkNATSURL(where, w.Namespace, u)
	}
	c.checkHookbusTLS(w, ctr, where, value(envNATSURL), value(envNATSCA))
	switch user, creds := value(envNATSUser), value(envNATSCreds); {
	case user != "" && creds != "":
		c.addf("%s: sets both %s and %s", where, envNATSUser, envNATSCreds)
	case user != "":
		if env[envNATSPassword].Secret == nil {
			c.addf("%s: %s must come from a Secret (secretKeyRef), not %q", where, envNATSPassword, env[envNATSPassword].Source)
		}
	case creds != "":
		if _, _, ok := c.mountedSecretFile(&w.Template.Spec, ctr, creds); !ok {
			c.addf("%s: %s %s is not in a mounted Secret", where, envNATSCreds, creds)
		}
	default:
		c.addf("%s: no NATS credentials: set %s and %s, or %s", where, envNATSUser, envNATSPassword, envNATSCreds)
	}
	ops := namedPort(ctr, "ops")
	if ops == 0 {
		c.addf("%s: no container port named ops", where)
	}
	host, port, err := net.SplitHostPort(value(envOpsAddr))
	switch {
	case err != nil:
		c.addf("%s: %s %q: %v", where, envOpsAddr, value(envOpsAddr), err)
	case host != "" && host != "0.0.0.0" && host != "::":
		c.addf("%s: %s listens on %s only: the kubelet's probes and Prometheus cannot reach it", where, envOpsAddr, host)
	case port != strconv.Itoa(int(ops)):
		c.addf("%s: %s port %s is not the container port ops (%d)", where, envOpsAddr, port, ops)
	}
	if h.service == "gateway" {
		c.checkGateway(w, ctr, where, value(envGatewayAddr))
		// Device sessions are on: the token secret and salt are files of
		// a mounted Secret whose keys operators create, never values in
		// the manifests.
		for _, v := range [][2]string{{envDeviceSecret, envDeviceSecretF}, {envDeviceSalt, envDeviceSaltF}} {
			direct, file := env[v[0]], value(v[1])
			switch {
			case direct.Source != "":
				c.addf("%s: sets %s: mount it as a file (%s) from a Secret", where, v[0], v[1])
			case file == "":
				c.addf("%s: %s is not set: device sessions are off", where, v[1])
			default:
				if secret, skey, ok := c.mountedSecretFile(&w.Template.Spec, ctr, file); !ok {
					c.addf("%s: %s %s is not in a mounted Secret", where, v[1], file)
				} else if _, found := c.secretKey(w.Namespace, secret, skey); !found {
					c.addf("%s: %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", where, v[1], secret, skey)
				}
			}
		}
	}
	if h.service == "persistence" {
		key, file := env[envPersistenceKey], value(envPersistenceKF)
		switch {
		case key.Value != "" && file != "":
			c.addf("%s: sets both %s and %s", where, envPersistenceKey, envPersistenceKF)
		case key.Source != "" && key.Secret == nil:
			c.addf("%s: %s must come from a Secret, not %s", where, envPersistenceKey, key.Source)
		case key.Value == "" && file == "":
			c.addf("%s: no encryption key: set %s (from a Secret) or %s (a mounted Secret)", where, envPersistenceKey, envPersistenceKF)
		case file != "":
			secret, skey, ok := c.mountedSecretFile(&w.Template.Spec, ctr, file)
			if !ok {
				c.addf("%s: %s %s is not in a mounted Secret", where, envPersistenceKF, file)
			} else if _, found := c.secretKey(w.Namespace, secret, skey); !found {
				c.addf("%s: %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", where, envPersistenceKF, secret, skey)
			}
		}
	}
	probe := func(name string, p *corev1.Probe, paths ...string) {
		if p == nil {
			return // reported by checkContainer
		}
		if p.HTTPGet == nil || !slices.Contains(paths, p.HTTPGet.Path) || containerPort(ctr, p.HTTPGet.Port) != ops {
			c.addf("%s: %s probe must be an HTTP GET of %s on the ops port", where, name, strings.Join(paths, " or "))
		}
	}
	probe("liveness", ctr.LivenessProbe, "/livez") // never /readyz: a NATS outage must not restart the services
	probe("readiness", ctr.ReadinessProbe, "/readyz")
	probe("startup", ctr.StartupProbe, "/livez", "/readyz")
}

// checkHookbusTLS: in an overlay whose NATS serves clients over TLS, the
// service connects with tls:// URLs only and verifies the server against a
// CA (HOOKBUS_NATS_CA), not the system's CAs, which did not sign it; the
// CA file is in a mounted Secret whose key operators create. (checkNATS
// reports a service that uses TLS against a NATS that serves none.)
func (c *checker) checkHookbusTLS(w workload, ctr corev1.Container, where, urls, ca string) {
	if c.haveRule && c.rule.tls {
		for _, raw := range strings.Split(urls, ",") {
			if urls == "" {
				break // reported by checkHookbus
			}
			if u, err := url.Parse(strings.TrimSpace(raw)); err != nil || u.Scheme != "tls" {
				c.addf("%s: %s %q: overlay %s wants tls:// URLs: NATS serves clients over TLS only", where, envNATSURL, raw, c.overlay)
			}
		}
		if ca == "" {
			c.addf("%s: %s is not set: the service would check NATS' certificate against the system's CAs, not the CA that signed it", where, envNATSCA)
		}
	}
	if ca == "" {
		return
	}
	secret, key, ok := c.mountedSecretFile(&w.Template.Spec, ctr, ca)
	if !ok {
		c.addf("%s: %s %s is not in a mounted Secret", where, envNATSCA, ca)
	} else if _, found := c.secretKey(w.Namespace, secret, key); !found {
		c.addf("%s: %s: Secret %s key %s is neither in the overlay nor in example/secrets.yaml", where, envNATSCA, secret, key)
	}
}

// checkNATSURL: every URL names a Service of the namespace, on a port it
// has, that selects the NATS pods.
func (c *checker) checkNATSURL(where, namespace, urls string) {
	for _, raw := range strings.Split(urls, ",") {
		u, err := url.Parse(strings.TrimSpace(raw))
		if err != nil || u.Scheme != "nats" && u.Scheme != "tls" || u.Port() == "" {
			c.addf("%s: %s %q: want nats://service:port", where, envNATSURL, raw)
			continue
		}
		name := strings.TrimSuffix(u.Hostname(), "."+namespace+".svc.cluster.local")
		svc := c.r.service(namespace, name)
		if svc == nil {
			c.addf("%s: %s names %s, which is not a Service of the overlay", where, envNATSURL, u.Hostname())
			continue
		}
		port, _ := strconv.Atoi(u.Port())
		if !slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return p.Port == int32(port) }) {
			c.addf("%s: %s: Service %s has no port %d", where, envNATSURL, name, port)
		}
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		if len(svc.Spec.Selector) == 0 || !slices.ContainsFunc(c.r.workloads(), func(w workload) bool {
			return sel.Matches(labels.Set(w.Template.Labels)) && slices.ContainsFunc(w.Template.Spec.Containers, func(ctr corev1.Container) bool { return imageRepo(ctr.Image) == "nats" })
		}) {
			c.addf("%s: %s: Service %s does not select the NATS pods", where, envNATSURL, name)
		}
	}
}

// checkGateway: the gateway listens on every interface, on its container
// port http, and a Service sends that port its traffic.
func (c *checker) checkGateway(w workload, ctr corev1.Container, where, addr string) {
	httpPort := namedPort(ctr, "http")
	if httpPort == 0 {
		c.addf("%s: no container port named http", where)
		return
	}
	host, port, err := net.SplitHostPort(addr)
	switch {
	case err != nil:
		c.addf("%s: %s %q: %v", where, envGatewayAddr, addr, err)
	case host != "" && host != "0.0.0.0" && host != "::":
		c.addf("%s: %s listens on %s only: Service and clients cannot reach it", where, envGatewayAddr, host)
	case port != strconv.Itoa(int(httpPort)):
		c.addf("%s: %s port %s is not the container port http (%d)", where, envGatewayAddr, port, httpPort)
	}
	if !slices.ContainsFunc(c.r.Services, func(svc *corev1.Service) bool {
		sel := labels.SelectorFromSet(svc.Spec.Selector)
		return svc.Namespace == w.Namespace && len(svc.Spec.Selector) > 0 && sel.Matches(labels.Set(w.Template.Labels)) &&
			slices.ContainsFunc(svc.Spec.Ports, func(p corev1.ServicePort) bool { return containerPort(ctr, p.TargetPort) == httpPort })
	}) {
		c.addf("%s: no Service selects its pods with a port to the container port http", w)
	}
}

// checkServices: what the Hookbus Deployments must be together.
func (c *checker) checkServices() {
	deployed := map[string]string{} // service -> workload
	users := map[string]string{}    // NATS user -> service
	creators := 0
	for _, h := range c.hookbus {
		if h.service == "" {
			continue
		}
		if other, ok := deployed[h.service]; ok && other != h.w.Name {
			c.addf("service %s runs in both %s and %s", h.service, other, h.w.Name)
		}
		deployed[h.service] = h.w.Name
		if u := h.env[envNATSUser].Value; u != "" {
			if other, ok := users[u]; ok && other != h.service {
				c.addf("services %s and %s share NATS user %s: each service has its own (DESIGN §5)", other, h.service, u)
			}
			users[u] = h.service
		}
		switch t := c.effective(h, envTopology); t {
		case "create":
			creators++
		case "ensure":
			// Only admin may update a stream or bucket (docs/security.md):
			// a service's user would be refused the update.
			c.addf("%s: %s is ensure, but a service's NATS user may not update streams and buckets: want create (or check)", h.w, envTopology)
		case "check":
		default:
			c.addf("%s: %s is %q, want create or check", h.w, envTopology, t)
		}
	}
	if len(c.hookbus) > 0 && creators == 0 {
		c.addf("no Hookbus service runs with %s=create: nothing would create the streams and buckets", envTopology)
	}
	for _, s := range binary.Services {
		if _, ok := deployed[s]; !ok && servicesNotDeployedYet[s] == "" {
			c.addf("the binary has service %s but no Deployment runs it", s)
		}
	}
}

// effective returns a variable's value in a container, or the binary's
// default.
func (c *checker) effective(h hookbusContainer, name string) string {
	if v, ok := h.env[name]; ok {
		return v.Value
	}
	def, _ := binary.variable(name)
	return def
}
