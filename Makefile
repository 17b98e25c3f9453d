# custos build, test and tooling. `make help` lists the targets.

SHELL := /bin/bash
GO ?= go
# Tools and big server builds live outside the repository and are reused.
CUSTOS_CACHE ?= $(HOME)/.cache/custos
TOOLS_BIN := $(CUSTOS_CACHE)/bin
export PATH := $(TOOLS_BIN):$(PATH)

PROTOC_GEN_GO_VERSION := v1.36.12
PROTOC_GEN_GO_GRPC_VERSION := v1.6.2

# Example plugins are modules of their own that build against plugin/sdk alone.
EXAMPLES := $(patsubst %/go.mod,%,$(wildcard examples/*/go.mod))
MODULES := . core plugin/sdk bench chaos demo testkit $(sort $(wildcard plugins/*)) $(EXAMPLES)
PLUGINS := $(notdir $(sort $(wildcard plugins/*)))
PROTOS := $(shell find plugin/sdk/proto -name '*.proto')
TEST_TIMEOUT ?= 20m

.DEFAULT_GOAL := help

.PHONY: help
help: ## Show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  %-16s %s\n", $$1, $$2}'

# Static binaries (no cgo): nothing in custos needs libc, and a dynamically
# linked Go process maps libc and the loader besides its own text, about
# 1.7 MiB of resident memory per process (docs/benchmarks.md).
build: export CGO_ENABLED := 0

.PHONY: build
build: ## Build bin/custos, bin/custosctl, bin/custos-demo and bin/plugins/custos-plugin-*
	@mkdir -p bin/plugins
	$(GO) build -o bin/custos ./cmd/custos
	$(GO) build -o bin/custosctl ./cmd/custosctl
	$(GO) build -o bin/custos-demo ./demo
	@for p in $(PLUGINS); do \
		echo "$(GO) build -o bin/plugins/custos-plugin-$$p ./plugins/$$p"; \
		$(GO) build -o bin/plugins/custos-plugin-$$p ./plugins/$$p || exit 1; \
	done
	@chmod 755 bin/plugins

# Arguments for custos-demo, e.g. make demo DEMO_ARGS="--members 5 --keep".
DEMO_ARGS ?=

.PHONY: demo
demo: build ## Run a three-member cluster (embedded etcd, PostgreSQL) until Ctrl-C; installs PostgreSQL when root
	@if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then \
		if [ "$$(id -u)" != 0 ]; then echo "PostgreSQL is missing: apt-get install postgresql-15 (as root)" >&2; exit 1; fi; \
		echo "installing postgresql-15"; \
		export DEBIAN_FRONTEND=noninteractive; \
		apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null; \
	fi
	bin/custos-demo $(DEMO_ARGS)

# Arguments for the benchmark, e.g. make bench BENCH_ARGS="-trials 2 -profiles fast".
BENCH_ARGS ?=
BENCH_MARKDOWN ?= bench-results.md

.PHONY: bench
bench: build ## Run custos and Patroni 3.0.2 side by side (docs/benchmarks.md); installs what is missing when root
	@if [ "$$(id -u)" = 0 ]; then ./.ci/install-deps --bench; fi
	cd bench && $(GO) run . -bin ../bin -markdown $(abspath $(BENCH_MARKDOWN)) $(BENCH_ARGS)

# Arguments for the fault suite, e.g. make chaos CHAOS_RUNS=5 CHAOS_ARGS="-scenarios kill-node,sigstop-agent".
CHAOS_RUNS ?= 20
CHAOS_ARGS ?=
CHAOS_MARKDOWN ?= chaos/results.md

.PHONY: chaos
chaos: build ## Run every fault scenario CHAOS_RUNS times on real clusters and print a table per scenario (docs/reliability.md)
	@if [ "$$(id -u)" = 0 ]; then ./.ci/install-deps; fi
	cd chaos && $(GO) run . -bin ../bin -runs $(CHAOS_RUNS) -markdown $(abspath $(CHAOS_MARKDOWN)) $(CHAOS_ARGS)

.PHONY: test-deps
test-deps: ## Install what the tests need (Debian packages; needs root)
	./.ci/install-deps

.PHONY: servers
servers: ## Build the Consul, kube-apiserver and etcd 3.6 test servers into $(CUSTOS_CACHE)/bin when missing
	./.ci/build-servers

# The tests that need a server built from tools/ (Consul, kube-apiserver and
# its etcd 3.6): the Consul and Kubernetes plugins, and these end-to-end
# tests. `make test` starts the build in the background and runs everything
# else meanwhile; these run once the servers are there.
SERVER_MODULES := plugins/dcs-consul plugins/dcs-kubernetes
SERVER_E2E := ^(TestConsul|TestKubernetes)$$
# The fault suite's short form loads both cores for over a minute: it runs
# last, alone, so that the timing of the other tests does not suffer.
LAST_MODULES := chaos
GO_TEST := $(GO) test -tags integration -count=1 -timeout $(TEST_TIMEOUT) -p 2

.PHONY: test
test: ## Run every test tier against real servers (installs what is missing when root; builds the test servers meanwhile)
	@if [ "$$(id -u)" = 0 ]; then ./.ci/install-deps; fi
	@./.ci/build-servers --start
	@rc=0; \
	echo "$(GO_TEST) -skip '$(SERVER_E2E)' <every module but $(SERVER_MODULES) $(LAST_MODULES)>"; \
	$(GO_TEST) -skip '$(SERVER_E2E)' $(addsuffix /...,$(addprefix ./,$(filter-out $(SERVER_MODULES) $(LAST_MODULES),$(MODULES)))) || rc=1; \
	./.ci/build-servers --wait || exit 1; \
	echo "$(GO_TEST) -run '$(SERVER_E2E)' ./core/e2e; $(GO_TEST) $(addsuffix /...,$(addprefix ./,$(SERVER_MODULES)))"; \
	$(GO_TEST) -run '$(SERVER_E2E)' ./core/e2e & e2e=$$!; \
	$(GO_TEST) $(addsuffix /...,$(addprefix ./,$(SERVER_MODULES))) || rc=1; \
	wait $$e2e || rc=1; \
	echo "$(GO_TEST) $(addsuffix /...,$(addprefix ./,$(LAST_MODULES)))"; \
	$(GO_TEST) $(addsuffix /...,$(addprefix ./,$(LAST_MODULES))) || rc=1; \
	exit $$rc

.PHONY: test-short
test-short: ## Run the fast tier only: tests without the integration tag (no server, no root, no go build)
	$(GO) test -short $(addsuffix /...,$(addprefix ./,$(MODULES)))

.PHONY: generate
generate: tools ## Regenerate the protobuf code
	cd plugin/sdk && protoc -I proto \
		--go_out=. --go_opt=module=github.com/custos-ha/custos/plugin/sdk \
		--go-grpc_out=. --go-grpc_opt=module=github.com/custos-ha/custos/plugin/sdk \
		$(patsubst plugin/sdk/proto/%,%,$(PROTOS))

.PHONY: generate-check
generate-check: generate ## Fail when the committed generated code is stale
	@if [ -n "$$(git status --porcelain -- plugin/sdk/proto)" ]; then \
		git status --porcelain -- plugin/sdk/proto; \
		echo "generated code is stale: run 'make generate' and commit the result"; exit 1; \
	fi

.PHONY: tools
tools: ## Install protoc plugins (pinned) into $(TOOLS_BIN)
	@command -v protoc >/dev/null || { echo "protoc missing: apt-get install protobuf-compiler"; exit 1; }
	@[ -x $(TOOLS_BIN)/protoc-gen-go ] && $(TOOLS_BIN)/protoc-gen-go --version | grep -q $(PROTOC_GEN_GO_VERSION) || \
		GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@$(PROTOC_GEN_GO_VERSION)
	@[ -x $(TOOLS_BIN)/protoc-gen-go-grpc ] && $(TOOLS_BIN)/protoc-gen-go-grpc --version | grep -q $(PROTOC_GEN_GO_GRPC_VERSION:v%=%) || \
		GOBIN=$(TOOLS_BIN) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@$(PROTOC_GEN_GO_GRPC_VERSION)

.PHONY: lint
lint: ## gofmt and go vet over every module
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '\.pb\.go$$')); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet -tags integration $(addsuffix /...,$(addprefix ./,$(MODULES)))
	@for e in $(EXAMPLES); do echo "cd $$e && GOWORK=off $(GO) build -o /dev/null ./..."; (cd $$e && GOWORK=off $(GO) build -o /dev/null ./...) || exit 1; done

.PHONY: tidy
tidy: ## go mod tidy in every module
	@for m in $(MODULES); do (cd $$m && $(GO) mod tidy) || exit 1; done

.PHONY: clean
clean: ## Remove build output
	rm -rf bin
