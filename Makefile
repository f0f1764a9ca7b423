# meshbench — see README.md.
#   make bench    set up this machine and run scenarios/default.yaml
#   make test     set up this machine and run every test (privileged ones need root)

SCENARIO ?= scenarios/default.yaml
OUT      ?= results/$(shell date +%Y%m%d-%H%M%S)
GO       ?= go
COMMIT   := $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS  := -X github.com/meshbench/meshbench/internal/version.Commit=$(COMMIT)
BIN      := bin/meshbench
# Packages run one at a time: privileged tests check kernel-wide state (BPF
# links) and measure CPU, which other packages running alongside would disturb.
TESTFLAGS ?= -count=1 -p 1 -timeout 15m

.PHONY: all build bench test unit-test deps test-deps kube-bins generate lint regress baseline down doctor clean

all: build

# meshbench, and meshbench-kube beside it: meshbench hands the commands that
# need the Kubernetes client (--provider kube or kind, image) to meshbench-kube, so
# that the programs the harness starts in pods (meshbench) stay lean.
build:
	$(GO) build -ldflags '$(LDFLAGS)' -o bin/ ./cmd/meshbench ./cmd/meshbench-kube

deps:
	ci/install-deps.sh run

test-deps:
	ci/install-deps.sh test

bench: deps build
	$(BIN) bench $(SCENARIO) --out $(OUT)

# The Kubernetes binaries the Kubernetes tests run (internal/kubeenv), built
# once into a cache outside the repository; nothing to do when cached. A cold
# build takes about 16 min here, so it is a step of its own: .ci/run runs it
# before `make test`, in which the Kubernetes tests skip, saying so, when the
# binaries are not built.
kube-bins:
	@if [ "$$(id -u)" = 0 ]; then nice -n 19 ionice -c3 $(GO) run ./internal/kubeenv/cmd/kube-bins; \
	else echo "kube-bins: not root, skipped (the Kubernetes tests skip too)"; fi

test: test-deps
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) test $(TESTFLAGS) ./...

# Unit tests only: no root needed, privileged tests skip with their reason.
unit-test:
	$(GO) test -count=1 -short ./...

# protoc's Go plugins, pinned, built into a cache outside the repository.
TOOLS    ?= $(or $(MESHBENCH_CACHE),/var/cache/meshbench)/gotools
generate:
	ci/install-deps.sh generate
	GOBIN=$(TOOLS) $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.11
	GOBIN=$(TOOLS) $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.5.1
	PATH=$(TOOLS):$$PATH $(GO) generate ./bpf/... ./harness/agent/...

lint:
	$(GO) vet ./...
	gofmt -l .
	@command -v golangci-lint >/dev/null && golangci-lint run ./... || echo "golangci-lint not installed; skipped"

# regress and baseline run REGRESS_SCENARIO, what the nightly job runs.
REGRESS_SCENARIO ?= scenarios/nightly.yaml
regress: deps build
	SCENARIO=$(REGRESS_SCENARIO) BASELINE_DIR=$(BASELINE_DIR) ci/regress.sh

down: build
	$(BIN) down

doctor: build
	$(BIN) doctor

clean:
	rm -rf bin

# Run REGRESS_SCENARIO and keep its results as this machine's baseline for
# `make regress`, which then keeps each good run as the next one (see
# ci/baselines/README.md). Nothing is committed: a baseline belongs to
# the machine that measured it.
BASELINE_DIR ?= results/baseline/$(shell hostname -s)
baseline: deps build
	rm -rf results/baseline-run
	$(BIN) bench $(REGRESS_SCENARIO) --out results/baseline-run
	mkdir -p $(BASELINE_DIR) && cp results/baseline-run/results.json $(BASELINE_DIR)/results.json
	@echo "baseline: $(BASELINE_DIR)/results.json"
