# minicluster — run `make` for the list of targets.
SHELL := /bin/bash
# sudo resets PATH; find the Go toolchain where these machines keep it.
GO ?= $(shell command -v go 2>/dev/null || echo /usr/local/go/bin/go)
BIN := bin/minicluster
# chromium: the topology page's tests drive a real headless browser.
DEB_PACKAGES := iproute2 iptables nftables dnsutils busybox nginx-light curl dnsperf netcat-openbsd chromium
FUZZTIME ?= 30s
# Real clients the integration tests drive, pinned, built from the Go module proxy once.
TOOLS := /var/cache/minicluster-tools
HELM_VERSION := v3.21.4
COREDNS_VERSION := v1.15.0
RUN_FLAGS ?=

.DEFAULT_GOAL := help
.PHONY: help build run deps tools test test-unit test-integration bench fuzz lint clean conformance

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-17s %s\n", $$1, $$2}'

build: ## build bin/minicluster (and bin/minicluster-shim, the small container shim it uses)
	$(GO) build -o $(BIN) ./cmd/minicluster
	$(GO) build -o $(BIN)-shim ./cmd/minicluster-shim

run: deps build ## build and run the daemon with its defaults (root)
	$(BIN) serve $(RUN_FLAGS)

deps: ## install the Debian packages minicluster and its tests use (root; only missing ones)
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		echo "installing:" $$missing; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

tools: ## install the real clients the integration tests use (Helm, CoreDNS) into $(TOOLS)
	@test -x $(TOOLS)/helm || { echo "installing helm $(HELM_VERSION) into $(TOOLS)"; \
		cd /tmp && GOFLAGS= GOBIN=$(TOOLS) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION); }
	@test -x $(TOOLS)/coredns || { echo "installing coredns $(COREDNS_VERSION) into $(TOOLS) (a few minutes)"; \
		cd /tmp && GOFLAGS= GOBIN=$(TOOLS) $(GO) install github.com/coredns/coredns@$(COREDNS_VERSION); }

test: deps tools test-unit test-integration ## all tests: unit, then integration (root)

test-unit: ## unit tests (no root needed)
	$(GO) test -race -count=1 ./...

test-integration: build ## end-to-end tests against the real binary in private network namespaces (root)
	$(GO) test -count=1 -tags integration -timeout 20m ./integration/...

bench: build ## benchmarks: API and store, then pod start-up, the proxy and DNS against the real daemon (root); see docs/benchmarks.md
	$(GO) test -run '^$$' -bench . -benchtime 3s -count 1 ./store/ ./apiserver/
	$(GO) test -tags integration -run '^$$' -bench PodStartup -benchtime 20x -count 1 ./integration/
	$(GO) test -tags integration -run '^$$' -bench Proxy -benchtime 1x -count 1 -timeout 60m ./integration/
	$(GO) test -tags integration -run '^$$' -bench DNS -benchtime 1x -count 1 -timeout 20m ./integration/
	$(GO) test -tags integration -run '^$$' -bench TopologyPage -benchtime 5x -count 1 ./integration/
	bash bench/biglists.sh bin/minicluster

conformance: build ## Kubernetes' e2e suite on this node (root; long; FOCUS, SKIP, PROCS; not part of test)
	scripts/conformance.sh

fuzz: ## run every fuzz target for FUZZTIME each
	@for t in $$($(GO) test -list '^Fuzz' ./... | grep '^Fuzz'); do \
		pkg=$$(grep -rl "func $$t(" --include='*_test.go' . | xargs -n1 dirname | head -1); \
		echo "fuzz $$pkg $$t"; scripts/fuzz.sh $(GO) $$pkg $$t $(FUZZTIME) || exit 1; \
	done

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags integration ./integration/...

clean: ## remove build output
	rm -rf bin
