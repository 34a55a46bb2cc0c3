# LinkGuard. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
# Bundles need a semantic version: the newest v* tag, else a dev version.
VERSION ?= $(or $(shell git describe --tags --match 'v[0-9]*' 2>/dev/null | sed 's/^v//'),0.1.0-dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG     := linkguard.dev/linkguard/agent/version
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
CMDS    := linkguard lgctl
# Packages whose tests also run cross-compiled under qemu-user: the policy
# engine, the packet decision, capture files (read on 32-bit devices), the
# MQTT queue, firmware install. Namespace tests need a real kernel's
# AF_PACKET and ethtool, which qemu-user lacks.
QEMU_PKGS ?= ./policy/... ./hal/atomicfile ./hal/capture/pcapfile ./agent/queue ./agent/linkfilter ./agent/linkfilter/packet ./firmware/bundle ./firmware/slot ./firmware/fetch ./firmware/update ./firmware/provision ./agent/command ./agent/report ./agent/mqttlink/contract
QEMU_SKIP ?= ^TestNetns
ARCHS     := armv7:arm:7 arm64:arm64: mipsle:mipsle: mips:mips:
RELEASE_KEY ?= release.key

.PHONY: help build cross bundles bench-bridge bench-flood fleet test test-go test-qemu deps bench demo lint clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build linkguard, lgctl, lglaunch and testbench for this machine into bin/
	@mkdir -p bin
	$(BUILD) -o bin/ ./agent/cmd/... ./firmware/cmd/... ./testbench/cmd/...

cross: ## Cross-build linkguard and its launcher lglaunch for arm (v7), arm64, mipsle and mips (softfloat) into dist/
	@mkdir -p dist
	@set -e; for t in $(ARCHS); do IFS=: read -r name arch arm <<< "$$t"; \
	  for c in agent/cmd/linkguard firmware/cmd/lglaunch; do \
	    echo "build $$(basename $$c) linux/$$name"; \
	    CGO_ENABLED=0 GOOS=linux GOARCH=$$arch GOARM=$$arm GOMIPS=softfloat $(GO) build -trimpath -ldflags '$(LDFLAGS)' \
	      -o dist/$$(basename $$c)-linux-$$name ./$$c; \
	  done; done
	@ls -l dist/

bundles: cross ## Signed firmware bundles per arch into dist/ (RELEASE_KEY=release.key)
	$(GO) build -o bin/lgctl ./agent/cmd/lgctl
	@set -e; for t in $(ARCHS); do IFS=: read -r name arch arm <<< "$$t"; \
	  bin/lgctl bundle build --arch $$arch --version $(VERSION) --binary dist/linkguard-linux-$$name --default-config scripts/linkguard.yaml \
	    --init scripts/linkguard.procd --init scripts/linkguard.service --key $(RELEASE_KEY) \
	    -o dist/linkguard-$(VERSION)-$$name.lgb; done

deps: ## Install the Debian packages the tests need (root; apt-get update first)
	./scripts/deps.sh

test: deps lint test-go test-qemu ## THE test command: install deps, lint, run every test (race) and the ARM tests under qemu

# The browser tests save their screenshots here, kept as the run's artefacts.
SCREENSHOTS ?= $(CURDIR)/artifacts/screenshots

test-go:
	LINKGUARD_SCREENSHOTS=$(SCREENSHOTS) $(GO) test -race -timeout 25m -count=1 ./...

test-qemu: ## Run the core packages' tests cross-compiled for arm and arm64 under qemu-user
	CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -short -count=1 -skip '$(QEMU_SKIP)' -exec qemu-arm $(QEMU_PKGS)
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -short -count=1 -skip '$(QEMU_SKIP)' -exec qemu-aarch64 $(QEMU_PKGS)

bench: ## Run the benchmarks (with allocations)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

bench-bridge: ## Inline vs kernel bridge vs nftables peer, 5 rounds side by side, medians (offloads off / on the ports / on everywhere; iperf3 TCP, 64 B UDP pps); revocation-to-drop (root)
	@mkdir -p artifacts
	set -o pipefail; LG_BENCH_ROUNDS=5 $(GO) test -run '^$$' -bench 'BenchmarkBridge|BenchmarkRevocationToDrop' -benchtime 1x -count=1 -timeout 60m -v ./agent/linkfilter/ | tee artifacts/bench-bridge.txt

bench-flood: ## 60 s SYN flood through the inline bridge: memory stays bounded (root)
	LG_FLOOD_SECONDS=60 $(GO) test -run TestNetnsSYNFlood -count=1 -v ./agent/linkfilter/

fleet: ## Fleet-scale simulation: N agents over child processes against a local mosquitto, 10 min hold (FLEET=10000; testbench/README.md)
	$(GO) run ./testbench/cmd/testbench fleet --mosquitto --agents $(or $(FLEET),10000) --telemetry 10s --hold 10m --report fleet.json

demo: ## Run the testbench demo: embedded broker, simulated sites, console (Ctrl-C stops)
	@# Built, then exec'd: `go run` exits 1 on any interrupt, whatever the demo returns.
	CGO_ENABLED=0 $(GO) build -o bin/testbench ./testbench/cmd/testbench
	exec ./bin/testbench demo

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## Remove build output
	rm -rf bin dist
