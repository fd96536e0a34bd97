# Hookbus. `make help` lists the targets. Nothing but Go (and Node for the
# e2e suite) is needed: tools are pinned in go.mod as `tool` lines.

GO        ?= go
BIN       ?= bin/hookbus
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
FUZZTIME  ?= 30s
LDFLAGS   := -s -w -X main.version=$(VERSION)
IMAGE     ?= hookbus

.DEFAULT_GOAL := help

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-z][a-z0-9-]*:.*## / {printf "  %-8s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: run
run: build ## Start Hookbus on an embedded NATS (data in ./data, NATS on 127.0.0.1:4222, ops on 127.0.0.1:8090)
	$(BIN) serve

.PHONY: build
build: ## Build the hookbus binary into bin/
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/hookbus

.PHONY: install
install: ## Install the hookbus binary into $(go env GOPATH)/bin, for the README's shell examples
	CGO_ENABLED=0 $(GO) install -trimpath -ldflags '$(LDFLAGS)' ./cmd/hookbus

.PHONY: image
image: ## Build the container image IMAGE:VERSION (default hookbus:<git describe>) from the Dockerfile; needs a Docker engine
	docker build --build-arg VERSION=$(VERSION) -t $(IMAGE):$(VERSION) .

.PHONY: test
test: ## What CI runs: vet, unit tests with the race detector, fuzz seeds, the Kubernetes manifests' checks and the attack suite (prints its summary line), the Node.js SDK's tests, then the e2e suite (the conformance table printed) and a short chaos run
	$(GO) vet ./...
	$(GO) vet -tags e2e ./e2e/...
	$(GO) vet -tags chaos ./chaos/
	cd deployments/k8s && $(GO) vet ./...
	$(GO) test -race -count=1 ./...
	cd deployments/k8s && $(GO) test -race -count=1  # one package, no ./...: go test then prints its output, the attack suite summary line included
	$(MAKE) node-sdk
	$(MAKE) e2e
	$(MAKE) chaos CHAOS_TIME=15s

.PHONY: node-sdk
node-sdk: build ## The Node.js SDK (sdks/node): npm ci, build (tsc) and its tests against a real hookbus serve (bin/hookbus)
	cd sdks/node && npm ci --no-audit --no-fund && npm run build && HOOKBUS_BIN=$(CURDIR)/$(BIN) npm test

.PHONY: e2e
e2e: ## Black-box tests of the built binary: Node.js clients, curl against the HTTP gateway, and the conformance suite of the SDKs' workers, whose table it prints (needs node 20+, npm and curl)
	@rm -f bin/conformance.txt
	HOOKBUS_CONFORMANCE_TABLE=$(CURDIR)/bin/conformance.txt $(GO) test -tags e2e -count=1 ./e2e/...
	@cat bin/conformance.txt

.PHONY: chaos
CHAOS_TIME    ?= 3m
CHAOS_TIMEOUT ?= 60m
chaos: ## Chaos suite: kill -9 services and NATS nodes under load, poison flood; CHAOS_TIME=10m for a long run
	CHAOS_TIME=$(CHAOS_TIME) $(GO) test -tags chaos -count=1 -timeout $(CHAOS_TIMEOUT) -v ./chaos/

.PHONY: bench
BENCH_COUNT ?= 1
bench: ## Benchmarks beside raw NATS figures: codec, publish, notify delivery, Call p50/p99, auth keys, gateway HTTP publish (1/64 clients, x_raw), HTTP call p50/p99 and webhook hook deliveries (1/32 hooks: events/s, p50/p99, x_raw), 10000 idle device sessions (heap B and goroutines a device, HOOKBUS_BENCH_DEVICES=N), device message ack, push and call reply p50/p99, the Node.js SDK beside raw nats.js (publish and notify delivery: events/s, x_raw; needs node and npm) (BENCH_COUNT=5 for medians; docs/performance.md)
	$(GO) test -run '^$$' -bench . -benchmem -count=$(BENCH_COUNT) ./...

.PHONY: bench-peers
PEERS_FLAGS ?=
bench-peers: ## Hookbus beside raw nats.go and Watermill on one embedded server, medians of interleaved rounds (5 to 8 minutes on 2 cores; PEERS_FLAGS='-rounds 3 -events 50000'; benchmarks/peers, a module of its own; docs/performance.md)
	cd benchmarks/peers && $(GO) run . $(PEERS_FLAGS)

.PHONY: lint
lint: ## gofmt and staticcheck (also of deployments/k8s and benchmarks/peers, modules of their own)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) tool staticcheck ./...
	$(GO) tool staticcheck -tags e2e ./e2e/...
	$(GO) tool staticcheck -tags chaos ./chaos/
	$(GO) build -o bin/staticcheck honnef.co/go/tools/cmd/staticcheck
	cd deployments/k8s && ../../bin/staticcheck ./...
	cd benchmarks/peers && ../../bin/staticcheck ./...

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME each (default 30s)
	@for pkg in $$($(GO) list ./...); do \
	  for target in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$target"; \
	    $(GO) test -run '^$$' -fuzz "^$$target$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
	  done; \
	done

.PHONY: clean
clean: ## Remove bin/ (./data, the embedded server's store, is kept: delete it by hand)
	rm -rf bin
