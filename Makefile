# LinkGuard. `make help` lists the targets.
SHELL := /bin/bash
GO ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
DATE    ?= $(shell date -u +%Y-%m-%dT%H:%M:%SZ)
PKG     := linkguard.dev/linkguard/agent/version
LDFLAGS := -s -w -X $(PKG).Version=$(VERSION) -X $(PKG).Commit=$(COMMIT) -X $(PKG).Date=$(DATE)
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)'
CMDS    := linkguard lgctl
# Packages whose tests also run cross-compiled under qemu-user.
QEMU_PKGS ?= ./policy/... ./hal/atomicfile

.PHONY: help build cross test test-go test-qemu deps bench demo lint clean

help: ## Show the targets
	@grep -hE '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

build: ## Build linkguard, lgctl and testbench for this machine into bin/
	@mkdir -p bin
	$(BUILD) -o bin/ ./agent/cmd/... ./testbench/cmd/...

cross: ## Cross-build linkguard for arm (v7), arm64, mipsle and mips (softfloat) into dist/
	@mkdir -p dist
	CGO_ENABLED=0 GOOS=linux GOARCH=arm GOARM=7 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linkguard-linux-armv7 ./agent/cmd/linkguard
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linkguard-linux-arm64 ./agent/cmd/linkguard
	CGO_ENABLED=0 GOOS=linux GOARCH=mipsle GOMIPS=softfloat $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linkguard-linux-mipsle ./agent/cmd/linkguard
	CGO_ENABLED=0 GOOS=linux GOARCH=mips GOMIPS=softfloat $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o dist/linkguard-linux-mips ./agent/cmd/linkguard
	@ls -l dist/

deps: ## Install the Debian packages the tests need (root; apt-get update first)
	./scripts/deps.sh

test: deps lint test-go test-qemu ## THE test command: install deps, lint, run every test (race) and the ARM tests under qemu

test-go:
	$(GO) test -race -timeout 25m -count=1 ./...

test-qemu: ## Run the core packages' tests cross-compiled for arm and arm64 under qemu-user
	CGO_ENABLED=0 GOARCH=arm GOARM=7 $(GO) test -short -count=1 -exec qemu-arm $(QEMU_PKGS)
	CGO_ENABLED=0 GOARCH=arm64 $(GO) test -short -count=1 -exec qemu-aarch64 $(QEMU_PKGS)

bench: ## Run the benchmarks (with allocations)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime 2s ./...

demo: ## Run the testbench demo: embedded broker, simulated sites, console (Ctrl-C stops)
	$(GO) run ./testbench/cmd/testbench demo

lint: ## gofmt and go vet
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

clean: ## Remove build output
	rm -rf bin dist
