SHELL := /bin/bash
# sdr — see README.md.
GO      ?= go
BIN     := bin/sdr
BIN_FP  := bin/sdr-failpoints
DEMO_DIR ?= /tmp/sdr-demo
# The version in sdr_info (sdr metrics); without it, the VCS revision Go records.
VERSION ?= $(shell git describe --always --dirty 2>/dev/null)
LDFLAGS := $(if $(VERSION),-X main.version=$(VERSION))

.PHONY: all build build-failpoints test unit e2e demo demo-down lint bench clean

all: build

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sdr

# The failpoints build is used by the robustness and end-to-end tests.
build-failpoints:
	$(GO) build -tags failpoints -ldflags '$(LDFLAGS)' -o $(BIN_FP) ./cmd/sdr

# Everything CI runs: lint, unit tests, end-to-end tests.
test: lint unit e2e

# Fast tests that need no server (the robustness test of cmd/sdr builds
# the binary with the failpoints tag and kills it at every failpoint).
UNIT_PKGS := ./workflow/... ./store/... ./cluster/... ./steps/... ./cmd/... ./e2e/bed/...
unit:
	{ $(GO) test -count=1 -v $(UNIT_PKGS) && $(GO) test -count=1 -v -tags failpoints ./cmd/... ; } 2>&1 | tee unit-test.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go)' ; test $${PIPESTATUS[0]} -eq 0

# End-to-end tests: real PostgreSQL 15 and a real sshd on loopback, driven
# through the built binary. Installs postgresql-15 and openssh-server with
# apt when they are missing (needs root).
e2e: build build-failpoints
	SDR_E2E=1 SDR_BIN=$(CURDIR)/$(BIN) SDR_BIN_FP=$(CURDIR)/$(BIN_FP) $(GO) test -p 1 -parallel 2 -count=1 -v -timeout 60m ./e2e/... 2>&1 | tee e2e-test.log | grep -E '^(=== RUN|--- |PASS|FAIL|ok|panic|\s+\S+_test.go|\s+bed)' ; test $${PIPESTATUS[0]} -eq 0

# A local sandbox: two clusters on loopback, both starts, then status.
demo: build
	bash e2e/scripts/demo.sh $(CURDIR)/$(BIN) $(DEMO_DIR)

demo-down:
	$(GO) run ./e2e/cmd/sdr-bed down --dir $(DEMO_DIR)

lint:
	@test -z "$$(gofmt -l cmd workflow store steps cluster e2e)" || { gofmt -l cmd workflow store steps cluster e2e; echo "gofmt needed"; exit 1; }
	$(GO) vet ./...
	$(GO) vet -tags failpoints ./...

# Benchmarks (need root; take a few minutes each; docs/performance.md).
# BENCH picks the sections, comma-separated: start (the default: the Go
# micro-benchmarks of workflow and store, then sdr start against the raw
# PostgreSQL floor), failover (sdr failover against pg_promote alone),
# switchover (the write-unavailability window of sdr switchover against a
# bare fast shutdown plus pg_promote), or all. SCALE is the pgbench scale
# (default: 50 for start and switchover, 10 for failover).
#   make bench SCALE=200 RUNS=5 BENCH_ARGS=-json
#   make bench BENCH=failover
#   make bench BENCH=switchover RUNS=5
# The start section's copy options: -fanout (copy.fan_out), -compress METHOD
# (floor and sdr with copy.compress), -max-rate RATE (copy.max_rate), and
# -link-rate RATE, which puts the primary's replication connections behind
# a tc-limited veth pair into a network namespace (ip and tc needed).
#   make bench SCALE=50 RUNS=3 BENCH_ARGS="-fanout -compress server-lz4"
#   make bench BENCH_ARGS="-link-rate 200mbit -fanout -compress server-zstd -max-rate 12M"
BENCH ?= start
SCALE ?=
RUNS  ?= 3
BENCH_ARGS ?=
comma := ,
BENCH_MICRO := $(filter start all,$(subst $(comma), ,$(BENCH)))
bench: build
	$(if $(BENCH_MICRO),$(GO) test -run '^$$' -bench . -benchmem ./workflow/... ./store/...)
	$(GO) build -o bin/sdr-bench ./e2e/cmd/sdr-bench
	$(GO) build -o bin/sdr-bench-shim ./e2e/cmd/sdr-bench-shim
	bin/sdr-bench -sdr $(CURDIR)/$(BIN) -shim $(CURDIR)/bin/sdr-bench-shim -bench $(BENCH) $(if $(SCALE),-scale $(SCALE)) -runs $(RUNS) $(BENCH_ARGS)

clean:
	rm -rf bin unit-test.log e2e-test.log
