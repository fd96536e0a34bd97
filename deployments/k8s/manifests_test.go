package k8s

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// overlays lists the directories under root/overlays.
func overlays(t *testing.T, root string) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(root, "overlays"))
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.IsDir() {
			out = append(out, e.Name())
		}
	}
	if len(out) == 0 {
		t.Fatal("no overlays")
	}
	return out
}

// problems renders one overlay of the manifests under root and returns
// everything wrong with it: kustomize and strict decoding errors, then
// the policy's findings.
func problems(t *testing.T, root, overlay string) []string {
	t.Helper()
	var out []string
	r, err := render(filepath.Join(root, "overlays", overlay))
	if err != nil {
		out = append(out, strings.Split(err.Error(), "\n")...)
		if r == nil {
			return out
		}
	}
	examples, err := render(filepath.Join(root, "example"))
	if err != nil {
		out = append(out, "example/: "+err.Error())
	}
	return append(out, checkPolicy(r, overlay, examples, t.TempDir(), t.Setenv)...)
}

// TestOverlays renders every overlay and checks it: this is what fails
// `make test` when a manifest is wrong.
func TestOverlays(t *testing.T) {
	for _, overlay := range overlays(t, ".") {
		t.Run(overlay, func(t *testing.T) {
			for _, p := range problems(t, ".", overlay) {
				t.Error(p)
			}
		})
	}
}

// TestProdReplicas states the production numbers outright: three NATS
// servers, and three replicas of every stream and bucket.
func TestProdReplicas(t *testing.T) {
	r, err := render(filepath.Join("overlays", "prod"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.StatefulSets) != 1 || replicas(r.StatefulSets[0].Spec.Replicas) != 3 {
		t.Errorf("prod: want one NATS StatefulSet of 3 replicas")
	}
	if len(r.Deployments) == 0 {
		t.Fatal("prod: no Deployments")
	}
	for _, d := range r.Deployments {
		c := &checker{r: r}
		env := c.effectiveEnv(d.Name, d.Namespace, d.Spec.Template.Spec.Containers[0])
		if got := env[envStreamReplicas].Value; got != "3" {
			t.Errorf("prod: Deployment %s: %s=%q, want 3", d.Name, envStreamReplicas, got)
		}
		if replicas(d.Spec.Replicas) != 2 {
			t.Errorf("prod: Deployment %s has %d replicas, want 2", d.Name, replicas(d.Spec.Replicas))
		}
	}
}

// TestCheckerNamesOnlyVariablesTheBinaryReads keeps the checks in step
// with the binary: a variable they require that the binary renamed must
// fail here, not pass silently.
func TestCheckerNamesOnlyVariablesTheBinaryReads(t *testing.T) {
	for _, name := range checkedVariables {
		if _, ok := binary.variable(name); !ok {
			t.Errorf("the checks use %s, which `hookbus config -o json` does not list", name)
		}
	}
	for s, why := range servicesNotDeployedYet {
		if why == "" {
			t.Errorf("servicesNotDeployedYet[%s] gives no reason", s)
		}
	}
}

// TestCheckerCatches shows that `make test` fails when a manifest goes
// wrong: each row edits a copy of the manifests as someone might, and the
// checks must report it.
func TestCheckerCatches(t *testing.T) {
	const (
		service     = "base/hookbus/service.yaml"
		registry    = "base/hookbus/registry/deployment.yaml"
		persistence = "base/hookbus/persistence/deployment.yaml"
		hookbusKust = "base/hookbus/kustomization.yaml"
		gateway     = "base/hookbus/gateway/deployment.yaml"
		gatewayNP   = "base/hookbus/gateway/networkpolicy.yaml"
		webhooksNP  = "base/hookbus/dispatcher/networkpolicy.yaml"
		nats        = "base/nats/statefulset.yaml"
		natsConf    = "base/nats/nats.conf"
		accounts    = "base/nats/accounts.conf"
		prodKust    = "overlays/prod/kustomization.yaml"
		prodTLS     = "overlays/prod/tls.conf"
		prodCluster = "overlays/prod/cluster.conf"
		prodNATS    = "overlays/prod/nats.yaml"
		prodHookbus = "overlays/prod/hookbus.yaml"
	)
	livenessProbe := `          livenessProbe:
            httpGet:
              path: /livez
              port: ops
            periodSeconds: 10
            timeoutSeconds: 2
            failureThreshold: 3
`
	routeTLS := `  tls {
    cert_file: /etc/nats-tls/tls.crt
    key_file: /etc/nats-tls/tls.key
    ca_file: /etc/nats-tls/ca.crt
`
	routeAuth := `  authorization {
    user: route
    password: $NATS_ROUTE_PASSWORD
  }
`
	routePassword := `            - name: NATS_ROUTE_PASSWORD
              valueFrom:
                secretKeyRef:
                  name: hookbus-nats-users
                  key: route
`
	routeURLs := `            - name: NATS_ROUTE_0
              value: nats://route:$(NATS_ROUTE_PASSWORD)@nats-0.nats-headless:6222
            - name: NATS_ROUTE_1
              value: nats://route:$(NATS_ROUTE_PASSWORD)@nats-1.nats-headless:6222
            - name: NATS_ROUTE_2
              value: nats://route:$(NATS_ROUTE_PASSWORD)@nats-2.nats-headless:6222
`
	tests := []struct {
		name          string
		overlay       string // "" for dev
		file, old, nu string // the edit: the first old in file becomes nu
		want          string // a problem must contain this
	}{
		// The three the issue names.
		{name: "misspelled field", file: service, old: "imagePullPolicy: IfNotPresent", nu: "imagePullPolicyy: IfNotPresent",
			want: `Deployment hookbus-persistence: strict decoding: error unmarshaling JSON: while decoding JSON: json: unknown field "imagePullPolicyy"`},
		{name: "dropped probe", file: service, old: livenessProbe, nu: "",
			want: "Deployment hookbus-registry container hookbus: no liveness probe"},
		{name: "variable the binary does not read", file: hookbusKust, old: "HOOKBUS_LOG_LEVEL=info", nu: "HOOKBUS_LOG_LEVLE=info",
			want: "Deployment hookbus-registry container hookbus: sets HOOKBUS_LOG_LEVLE (configmap hookbus-config-"},

		// More misspellings and mistakes strict decoding catches.
		{name: "misspelled StatefulSet field", file: nats, old: "podManagementPolicy:", nu: "podManagmentPolicy:",
			want: `StatefulSet nats: strict decoding: error unmarshaling JSON: while decoding JSON: json: unknown field "podManagmentPolicy"`},
		{name: "misspelled probe field", file: nats, old: "failureThreshold: 90", nu: "failureTreshold: 90", want: `unknown field "failureTreshold"`},
		{name: "misspelled resource quantity", file: service, old: "memory: 256Mi", nu: "memory: 256MB!", want: "Deployment hookbus-registry: strict decoding"},
		{name: "field duplicated", file: registry, old: "  replicas: 2\n", nu: "  replicas: 2\n  replicas: 3\n", want: `mapping key "replicas" already defined`},

		// Environment.
		{name: "a service that would update the topology", file: registry, old: "value: create", nu: "value: ensure",
			want: "Deployment hookbus-registry: HOOKBUS_TOPOLOGY is ensure, but a service's NATS user may not update streams and buckets: want create (or check)"},
		{name: "variable in a Deployment the binary does not read", file: registry, old: "name: HOOKBUS_TOPOLOGY", nu: "name: HOOKBUS_TOPOLOGY_MODE",
			want: "Deployment hookbus-registry container hookbus: sets HOOKBUS_TOPOLOGY_MODE (env), which the binary does not read"},
		{name: "variable without the prefix", file: registry, old: "name: HOOKBUS_NATS_USER", nu: "name: HOKBUS_NATS_USER",
			want: "sets HOKBUS_NATS_USER (env), which is not a HOOKBUS_* variable"},
		{name: "no NATS URL", file: hookbusKust, old: "      - HOOKBUS_NATS_URL=nats://nats:4222\n", nu: "",
			want: "HOOKBUS_NATS_URL is not set: serve would start an embedded NATS server in the pod"},
		{name: "NATS URL of no Service", file: hookbusKust, old: "nats://nats:4222", nu: "nats://nats-client:4222",
			want: "HOOKBUS_NATS_URL names nats-client, which is not a Service of the overlay"},
		{name: "ops endpoint on loopback", file: hookbusKust, old: "HOOKBUS_OPS_ADDR=0.0.0.0:8090", nu: "HOOKBUS_OPS_ADDR=127.0.0.1:8090",
			want: "HOOKBUS_OPS_ADDR listens on 127.0.0.1 only"},
		{name: "gateway on loopback", file: gateway, old: "value: 0.0.0.0:8080", nu: "value: 127.0.0.1:8080",
			want: "Deployment hookbus-gateway container hookbus: HOOKBUS_GATEWAY_ADDR listens on 127.0.0.1 only"},
		{name: "gateway on another port than its container port", file: gateway, old: "value: 0.0.0.0:8080", nu: "value: 0.0.0.0:8081",
			want: "HOOKBUS_GATEWAY_ADDR port 8081 is not the container port http (8080)"},
		{name: "gateway behind no Service", file: "base/hookbus/gateway/service.yaml", old: "targetPort: http", nu: "targetPort: ops",
			want: "Deployment hookbus-gateway: no Service selects its pods with a port to the container port http"},
		{name: "gateway password from another user's key", file: gateway, old: "key: gateway", nu: "key: dispatcher",
			want: "Deployment hookbus-gateway: HOOKBUS_NATS_PASSWORD (secret hookbus-nats-users/dispatcher) is not the password NATS has for user gateway"},
		{name: "gateway without device sessions", file: gateway, old: "            - name: HOOKBUS_DEVICE_TOKEN_SALT_FILE\n              value: /etc/hookbus/device-tokens/salt\n", nu: "",
			want: "Deployment hookbus-gateway container hookbus: HOOKBUS_DEVICE_TOKEN_SALT_FILE is not set: device sessions are off"},
		{name: "device token secret outside the mounted Secret", file: gateway, old: "value: /etc/hookbus/device-tokens/secret", nu: "value: /etc/hookbus/secret",
			want: "HOOKBUS_DEVICE_TOKEN_SECRET_FILE /etc/hookbus/secret is not in a mounted Secret"},
		{name: "device token salt as a value", file: gateway, old: "            - name: HOOKBUS_DEVICE_TOKEN_SALT_FILE\n              value: /etc/hookbus/device-tokens/salt\n", nu: "            - name: HOOKBUS_DEVICE_TOKEN_SALT\n              value: pepper\n",
			want: "sets HOOKBUS_DEVICE_TOKEN_SALT: mount it as a file"},
		{name: "persistence without a key", file: persistence, old: "            - name: HOOKBUS_PERSISTENCE_KEY_FILE\n              value: /etc/hookbus/persistence/keys\n", nu: "",
			want: "Deployment hookbus-persistence container hookbus: no encryption key"},
		{name: "key file outside the mounted Secret", file: persistence, old: "value: /etc/hookbus/persistence/keys", nu: "value: /etc/hookbus/keys",
			want: "HOOKBUS_PERSISTENCE_KEY_FILE /etc/hookbus/keys is not in a mounted Secret"},
		{name: "password from the wrong Secret key", file: registry, old: "key: registry", nu: "key: persistence",
			want: "Deployment hookbus-registry: HOOKBUS_NATS_PASSWORD (secret hookbus-nats-users/persistence) is not the password NATS has for user registry"},
		{name: "unknown service", file: registry, old: `args: ["serve", "registry"]`, nu: `args: ["serve", "registery"]`,
			want: `runs service "registery", which the binary does not have`},
		{name: "service without a Deployment", file: hookbusKust, old: "  - dispatcher\n", nu: "",
			want: "the binary has service dispatcher but no Deployment runs it"},
		{name: "unknown flag", file: registry, old: `args: ["serve", "registry"]`, nu: `args: ["serve", "--nats-ur=nats://nats:4222", "registry"]`,
			want: "args: --nats-ur is not a flag of the binary"},

		// Probes.
		{name: "liveness on /readyz", file: service, old: "              path: /livez\n              port: ops\n            periodSeconds: 10", nu: "              path: /readyz\n              port: ops\n            periodSeconds: 10",
			want: "liveness probe must be an HTTP GET of /livez on the ops port"},
		{name: "dropped NATS startup probe", file: nats, old: "          startupProbe:\n", nu: "          x-startupProbe:\n",
			want: `unknown field "x-startupProbe"`},
		{name: "probe on a port the container lacks", file: service, old: "path: /readyz\n              port: ops", nu: "path: /readyz\n              port: 9090",
			want: "readiness probe port 9090 is not a port of the container"},

		// Resources, security, images.
		{name: "no memory limit", file: service, old: "              cpu: \"1\"\n              memory: 256Mi\n", nu: "              cpu: \"1\"\n",
			want: "Deployment hookbus-registry container hookbus: no memory limit"},
		{name: "writable root filesystem", file: nats, old: "readOnlyRootFilesystem: true", nu: "readOnlyRootFilesystem: false",
			want: "StatefulSet nats container nats: readOnlyRootFilesystem is not true"},
		{name: "capabilities kept", file: service, old: `drop: ["ALL"]`, nu: `drop: ["NET_RAW"]`, want: "capabilities do not drop ALL"},
		{name: "root user", file: nats, old: "runAsUser: 1000", nu: "runAsUser: 0", want: "StatefulSet nats container nats: runs as user 0"},
		{name: "root allowed", file: service, old: "            runAsNonRoot: true\n", nu: "            runAsNonRoot: false\n",
			want: "Deployment hookbus-registry container hookbus: runAsNonRoot is not true"},
		{name: "pod seccomp profile removed, the container's applies", file: service, old: "        seccompProfile:\n          type: RuntimeDefault\n      topologySpreadConstraints", nu: "      topologySpreadConstraints",
			want: ""}, // the container's own profile still applies: no problem expected
		{name: "latest image", overlay: "prod", file: "overlays/prod/kustomization.yaml", old: "newTag: 0.1.0", nu: "newTag: latest",
			want: "image registry.example.com/hookbus/hookbus:latest: the tag latest is not a version"},
		{name: "untagged image", file: nats, old: "image: nats:2.15.2-alpine", nu: "image: nats", want: "image nats has neither a tag nor a digest"},
		{name: "NATS image of another release", file: nats, old: "image: nats:2.15.2-alpine", nu: "image: nats:2.12.1-alpine",
			want: "image nats:2.12.1-alpine is not nats-server"},
		{name: "no spreading over zones", file: nats, old: "topologyKey: topology.kubernetes.io/zone", nu: "topologyKey: topology.kubernetes.io/region",
			want: "StatefulSet nats: no topologySpreadConstraint over topology.kubernetes.io/zone"},

		// Disruption budgets and network policies.
		{name: "budget selecting nothing", file: "base/hookbus/registry/pdb.yaml", old: "component: registry", nu: "component: registy",
			want: "PodDisruptionBudget hookbus-registry: selector app.kubernetes.io/component=registy,app.kubernetes.io/name=hookbus selects no pods"},
		{name: "budget blocking drains", file: "base/nats/pdb.yaml", old: "maxUnavailable: 1", nu: "minAvailable: 3", want: "PodDisruptionBudget nats: want maxUnavailable 1"},
		{name: "no default deny", file: "base/networkpolicy.yaml", old: "  podSelector: {}\n  policyTypes: [\"Ingress\", \"Egress\"]\n---", nu: "  podSelector: {}\n  policyTypes: [\"Ingress\"]\n---",
			want: "namespace hookbus-dev: no default-deny NetworkPolicy"},
		{name: "NATS closed to the services", file: "base/nats/networkpolicy.yaml", old: "- port: 4222", nu: "- port: 4223",
			want: "NetworkPolicy: Deployment hookbus-persistence cannot reach StatefulSet nats on 4222 (egress allowed true, ingress allowed false)"},
		{name: "NATS open to every pod", file: "base/nats/networkpolicy.yaml", old: "      from:\n        - podSelector:\n            matchLabels:\n              hookbus.io/nats-client: \"true\"\n", nu: "      from:\n        - podSelector: {}\n",
			want: "any pod of namespace hookbus-dev may reach NATS on 4222"},
		{name: "gateway open to every pod", file: gatewayNP, old: "      from:\n        - podSelector:\n            matchLabels:\n              hookbus.io/gateway-client: \"true\"\n", nu: "      from:\n        - podSelector: {}\n",
			want: "any pod of namespace hookbus-dev may reach Deployment hookbus-gateway on 8080, not only gateway clients"},
		{name: "gateway closed to its clients", file: gatewayNP, old: "- port: 8080", nu: "- port: 8081",
			want: "pods labelled hookbus.io/gateway-client=true cannot reach Deployment hookbus-gateway on 8080"},
		{name: "services may call any pod", file: "base/hookbus/networkpolicy.yaml", old: "  egress:\n", nu: "  egress:\n    - to:\n        - podSelector: {}\n",
			want: "NetworkPolicy: Deployment hookbus-gateway may open connections to any pod"},
		{name: "webhooks to cloud metadata", file: webhooksNP, old: "              - 169.254.0.0/16\n", nu: "",
			want: "NetworkPolicy: Deployment hookbus-dispatcher may reach 169.254.169.254 on 80, which the webhook guard refuses"},
		{name: "webhooks to private IPv4 addresses written as IPv6", file: webhooksNP, old: "              - ::ffff:0:0/96\n", nu: "",
			want: "Deployment hookbus-dispatcher may reach ::ffff:10.0.0.1 on 443, which the webhook guard refuses"},
		{name: "webhooks to carrier-grade NAT", file: webhooksNP, old: "              - 100.64.0.0/10\n", nu: "",
			want: "Deployment hookbus-dispatcher may reach 100.100.100.200 on 80, which the webhook guard refuses"},
		{name: "no webhooks on 443", file: webhooksNP, old: "        - port: 443\n          protocol: TCP\n", nu: "",
			want: "NetworkPolicy: Deployment hookbus-dispatcher cannot reach the webhook target 93.184.215.14 on 443"},
		{name: "webhooks on every port", file: webhooksNP, old: "    - ports:\n        - port: 80\n          protocol: TCP\n        - port: 443\n          protocol: TCP\n      to:", nu: "    - to:",
			want: "Deployment hookbus-dispatcher may reach 93.184.215.14 on 22/TCP: webhooks need TCP 80 and 443 only"},
		{name: "every service posts webhooks", file: webhooksNP, old: "      app.kubernetes.io/component: dispatcher\n  policyTypes", nu: "  policyTypes",
			want: "Deployment hookbus-registry may reach 93.184.215.14 on 80 outside the cluster: only the dispatcher posts webhooks"},
		{name: "no DNS", file: "base/networkpolicy.yaml", old: "port: 53\n          protocol: UDP", nu: "port: 5353\n          protocol: UDP",
			want: "cannot reach DNS"},

		// NATS configuration.
		{name: "sync_interval dropped", file: natsConf, old: "  sync_interval: always\n", nu: "",
			want: "jetstream sync_interval is <nil>, want always"},
		{name: "max_payload too small", file: natsConf, old: "max_payload: 2MiB", nu: "max_payload: 1MiB", want: "max_payload 1048576 is below 2097152"},
		{name: "unknown NATS option", file: natsConf, old: "lame_duck_duration: 30s", nu: "lame_duck_duraton: 30s", want: `unknown field "lame_duck_duraton"`},
		{name: "NATS syntax error", file: accounts, old: "system_account: SYS", nu: "system_account: {SYS", want: "/etc/nats/nats.conf"},
		{name: "password variable nobody sets", file: accounts, old: "$NATS_REGISTRY_PASSWORD", nu: "$NATS_REGISTRY_PASSWD",
			want: "refers to $NATS_REGISTRY_PASSWD, which the container's environment does not set"},
		{name: "literal password", file: accounts, old: "password: $NATS_PERSISTENCE_PASSWORD", nu: "password: hunter2hunter2",
			want: "the password of NATS user persistence does not come from a Secret"},
		{name: "user allowed everything", file: accounts, old: `"hookbus.auth.>"`, nu: `">"`, want: "NATS user persistence may subscribe to >"},
		{name: "user without permissions", file: accounts, old: "user: plugin-example\n        password: $NATS_PLUGIN_EXAMPLE_PASSWORD\n        permissions: {", nu: "user: plugin-example\n        password: $NATS_PLUGIN_EXAMPLE_PASSWORD\n        x_permissions: {",
			want: `unknown field "x_permissions"`},
		{name: "service user NATS lacks", file: registry, old: "value: registry", nu: "value: registrar",
			want: "connects as NATS user registrar, which the NATS configuration does not have"},
		{name: "lame duck beyond the grace period", file: nats, old: "terminationGracePeriodSeconds: 60", nu: "terminationGracePeriodSeconds: 30",
			want: "lame duck takes 40s (grace period plus duration), not less than terminationGracePeriodSeconds 30s"},
		{name: "no lame duck", file: nats, old: `command: ["nats-server", "--signal", "ldm=/var/run/nats/nats.pid"]`, nu: `command: ["sleep", "5"]`,
			want: "no preStop hook putting the server in lame duck mode"},
		{name: "store on the root filesystem", file: natsConf, old: "store_dir: /data", nu: "store_dir: /var/lib/nats", want: "store_dir /var/lib/nats is not on a writable volume"},
		{name: "store above the volume", overlay: "prod", file: natsConf, old: "max_file_store: 8GiB", nu: "max_file_store: 12GiB",
			want: "max_file_store 12884901888 is not below the volume's 10Gi"},
		{name: "routes missing a server", overlay: "prod", file: prodCluster, old: "    $NATS_ROUTE_2\n", nu: "",
			want: "routes [nats-0.nats-headless:6222 nats-1.nats-headless:6222], want one per server"},

		// TLS and route authentication (prod).
		{name: "NATS without client TLS", overlay: "prod", file: prodKust, old: "      - tls.conf\n", nu: "",
			want: "StatefulSet nats container nats: clients connect over plain TCP: overlay prod wants a tls block"},
		{name: "NATS taking plain TCP clients too", overlay: "prod", file: prodTLS, old: "tls {\n", nu: "allow_non_tls: true\ntls {\n",
			want: "StatefulSet nats container nats: allow_non_tls lets clients connect without TLS"},
		{name: "routes without TLS", overlay: "prod", file: prodCluster, old: routeTLS + "    # Routes always ask for the other server's certificate; said anyway.\n    verify: true\n  }\n", nu: "",
			want: "StatefulSet nats container nats: cluster routes run over plain TCP: overlay prod wants cluster { tls"},
		{name: "routes not verifying each other", overlay: "prod", file: prodCluster, old: "    verify: true\n", nu: "    verify: true\n    insecure: true\n",
			want: "cluster tls is insecure: a server would not verify the certificate of the server it routes to"},
		{name: "routes verified against the system's CAs", overlay: "prod", file: prodCluster, old: "    ca_file: /etc/nats-tls/ca.crt\n", nu: "",
			want: "cluster tls has no ca_file"},
		{name: "unauthenticated routes", overlay: "prod", file: prodCluster, old: routeAuth, nu: "",
			want: "StatefulSet nats container nats: cluster routes are not authenticated"},
		{name: "route password not from a Secret", overlay: "prod", file: prodCluster, old: "password: $NATS_ROUTE_PASSWORD", nu: "password: hunter2hunter2",
			want: "the route password (cluster authorization) does not come from a Secret"},
		{name: "route URL without the credentials", overlay: "prod", file: prodNATS, old: "nats://route:$(NATS_ROUTE_PASSWORD)@nats-2.nats-headless:6222", nu: "nats://nats-2.nats-headless:6222",
			want: "route nats-2.nats-headless:6222 does not carry the route credentials (user route and its password)"},
		{name: "route password defined after the URLs (the kubelet expands only earlier variables)", overlay: "prod", file: prodNATS, old: routePassword + routeURLs, nu: routeURLs + routePassword,
			want: "route nats-0.nats-headless:6222 does not carry the route credentials"},
		{name: "route password missing from the template", overlay: "prod", file: "example/secrets.yaml", old: "  route: dev-only-not-secret-route\n", nu: "",
			want: "NATS_ROUTE_PASSWORD: Secret hookbus-nats-users key route is neither in the overlay nor in example/secrets.yaml"},
		{name: "NATS key outside the mounted Secret", overlay: "prod", file: prodTLS, old: "key_file: /etc/nats-tls/tls.key", nu: "key_file: /etc/nats/tls.key",
			want: "StatefulSet nats container nats: tls key_file /etc/nats/tls.key is not in a mounted Secret"},
		{name: "TLS Secret key operators do not create", overlay: "prod", file: prodNATS, old: "              - key: ca.crt\n                path: ca.crt\n", nu: "              - key: ca.pem\n                path: ca.crt\n",
			want: "cluster tls ca_file: Secret nats-tls key ca.pem is neither in the overlay nor in example/secrets.yaml"},
		{name: "service connecting without tls://", overlay: "prod", file: prodKust, old: "HOOKBUS_NATS_URL=tls://nats:4222", nu: "HOOKBUS_NATS_URL=nats://nats:4222",
			want: `Deployment hookbus-registry container hookbus: HOOKBUS_NATS_URL "nats://nats:4222": overlay prod wants tls:// URLs`},
		{name: "service not verifying NATS against its CA", overlay: "prod", file: prodKust, old: "      - HOOKBUS_NATS_CA=/etc/hookbus/nats-ca/ca.crt\n", nu: "",
			want: "Deployment hookbus-dispatcher container hookbus: HOOKBUS_NATS_CA is not set"},
		{name: "service CA file not mounted", overlay: "prod", file: prodHookbus, old: "mountPath: /etc/hookbus/nats-ca", nu: "mountPath: /etc/hookbus/ca",
			want: "Deployment hookbus-persistence container hookbus: HOOKBUS_NATS_CA /etc/hookbus/nats-ca/ca.crt is not in a mounted Secret"},
		{name: "service TLS against a NATS without TLS", file: hookbusKust, old: "nats://nats:4222", nu: "tls://nats:4222",
			want: "Deployment hookbus-registry: connects over TLS (a tls:// URL or HOOKBUS_NATS_CA), but NATS serves no TLS"},

		// Overlays.
		{name: "prod with one NATS server", overlay: "prod", file: nats, old: "  replicas: 3\n", nu: "  replicas: 1\n",
			want: "StatefulSet nats: 1 replicas, overlay prod wants 3"},
		{name: "prod streams with one replica", overlay: "prod", file: "overlays/prod/kustomization.yaml", old: "HOOKBUS_STREAM_REPLICAS=3", nu: "HOOKBUS_STREAM_REPLICAS=1",
			want: "Deployment hookbus-registry: HOOKBUS_STREAM_REPLICAS is 1, want 3"},
		{name: "dev with a persistent volume", file: "overlays/dev/kustomization.yaml", old: "      - op: remove\n        path: /spec/volumeClaimTemplates\n", nu: "",
			want: "StatefulSet nats: overlay dev wants no PersistentVolumeClaim"},
		{name: "no restricted Pod Security", file: "overlays/dev/namespace.yaml", old: "pod-security.kubernetes.io/enforce: restricted", nu: "pod-security.kubernetes.io/enforce: baseline",
			want: "label pod-security.kubernetes.io/enforce is \"baseline\", want restricted"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := copyManifests(t)
			edit(t, filepath.Join(root, tt.file), tt.old, tt.nu)
			overlay := tt.overlay
			if overlay == "" {
				overlay = "dev"
			}
			got := problems(t, root, overlay)
			if tt.want == "" {
				for _, p := range got {
					t.Errorf("unexpected problem: %s", p)
				}
				return
			}
			if !slices.ContainsFunc(got, func(p string) bool { return strings.Contains(p, tt.want) }) {
				t.Errorf("no problem reported says %q; got %d:\n%s", tt.want, len(got), strings.Join(got, "\n"))
			}
		})
	}
}

// copyManifests copies the manifests (base, overlays, example) into a
// temporary directory and returns it.
func copyManifests(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	for _, dir := range []string{"base", "overlays", "example"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			dst := filepath.Join(root, path)
			if d.IsDir() {
				return os.MkdirAll(dst, 0o755)
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// edit replaces the first old in file by nu, failing if old is not there
// (the manifests changed: update the test row).
func edit(t *testing.T, file, old, nu string) {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s does not contain %s: update the test row", file, strconv.Quote(old))
	}
	if err := os.WriteFile(file, []byte(strings.Replace(string(b), old, nu, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
