// Package k8s holds the offline checks of the Kubernetes manifests beside
// it (base/, overlays/, example/; docs/operations.md explains them). It has
// no code of its own. `go test` here renders every overlay with kustomize's
// Go API, decodes every object strictly into the Kubernetes API types (an
// unknown or misspelled field fails), checks the deployment policy (probes,
// resources, the restricted Pod Security profile, image tags, disruption
// budgets, network policies, the HOOKBUS_* variables against what the
// binary reads), parses the NATS configuration with nats-server's own
// parser, and runs the dev overlay's services, as its manifests configure
// them, against a NATS server with the overlay's own configuration, with
// plugin workers of pkg/client (chain and notify) as the example worker's
// NATS user.
//
// It is a module of its own so that the main module does not depend on
// Kubernetes and kustomize; it requires the main module of this checkout
// (replace ../..) for those workers.
package k8s
