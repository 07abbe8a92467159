# maildirector — the two commands a mail admin needs are `make demo` and `make test`.
GO        ?= go
FUZZTIME  ?= 2s
FUZZLONG  ?= 10m
BIN       := bin/maildirector
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X main.version=$(VERSION)

export GOTOOLCHAIN := local
export CGO_ENABLED ?= 0

.PHONY: all build build-openssl deps lint test unit integration fuzz-smoke fuzz soak demo bench bench-cluster clean

all: build

## build: a static binary in bin/
build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/maildirector

## build-openssl: the same binary with cgo, whose RSA certificates sign with the
## system's libcrypto (loaded at start; Go's RSA if it is missing): about a third
## of the CPU of a full handshake with an RSA certificate (internal/rsasign)
build-openssl:
	CGO_ENABLED=1 $(GO) build -trimpath -tags openssl -ldflags '$(LDFLAGS)' -o $(BIN)-openssl ./cmd/maildirector

## deps: install what the tests and the demo need (Dovecot, HAProxy) when missing
deps:
	@scripts/deps.sh

## lint: gofmt and go vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go') 2>/dev/null); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

## test: the whole suite: lint, unit tests with the race detector (and the engine without it), end-to-end tests against real Dovecot, fuzz smoke
test: deps lint
	CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	# the engine and frontends once more without -race: release builds move
	# socket bytes with raw system calls (proxy/rawio_linux.go), race builds not
	$(GO) test -count=1 -timeout 5m ./proxy/... ./protocols/...
	# the openssl build (make build-openssl): its signer, and that its
	# binary loads this system's libcrypto
	CGO_ENABLED=1 $(GO) vet -tags openssl ./internal/rsasign ./cmd/maildirector
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags openssl ./internal/rsasign
	CGO_ENABLED=1 $(GO) test -race -count=1 -tags openssl -run TestRSAKeysSignInOpenSSL ./cmd/maildirector
	$(MAKE) build-openssl
	$(BIN)-openssl version | grep '^RSA signatures: OpenSSL '
	@scripts/fuzz-smoke.sh $(FUZZTIME)

## unit: only the fast packages (no Dovecot)
unit:
	CGO_ENABLED=1 $(GO) test -race -count=1 $$($(GO) list ./... | grep -v /integration)

## soak: the long end-to-end runs (issue 12), beyond make test's budget: 100 reloads over 2 minutes of IMAP
## logins and LMTP deliveries, SIGTERM with 1,000 IMAP IDLE sessions, upgrades under login load, the LMTP soak
soak: deps
	CGO_ENABLED=1 MAILDIRECTOR_SOAK=1 $(GO) test -race -count=1 -timeout 30m -v \
		-run 'TestReloadUnderLoad|TestShutdownIdleSessionsHearBye|TestUpgradeUnderLoad|TestLMTPSoakServerRestarts' ./integration

## fuzz-smoke: run every fuzz target for FUZZTIME
fuzz-smoke:
	@scripts/fuzz-smoke.sh $(FUZZTIME)

## fuzz: run every fuzz target for FUZZLONG (10 minutes each by default; outside make test)
fuzz:
	@scripts/fuzz-smoke.sh $(FUZZLONG)

## demo: local Dovecot backends with maildirector in front of them (Ctrl-C stops everything)
demo: deps build
	@scripts/demo.sh

## bench: maildirector against HAProxy and direct connections, as ratios
bench: deps build build-openssl
	$(GO) run ./bench -maildirector $(BIN) -maildirector-openssl $(BIN)-openssl

## bench-cluster: logins/s through three nodes sharing etcd against one node and three without, and etcd writes per login
bench-cluster: deps build
	$(GO) run ./bench -maildirector $(BIN) -suites cluster

clean:
	rm -rf bin .demo
