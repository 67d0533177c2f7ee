# zmqkit's contract: `make demo` and `make test` on a fresh Debian/Ubuntu
# machine with Go installed. Every target checks what it needs first.

GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PKGS    := libzmq3-dev pkg-config python3-zmq
BENCH   ?= .
COUNT   ?= 3
FUZZTIME ?= 30s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: all deps check-go check-zmq test lint bench fuzz demo examples clean

all: lint test

check-go:
	@command -v $(GO) >/dev/null || { echo "make: Go is not installed (https://go.dev/doc/install)"; exit 1; }

# libzmq's headers (for cgo), pkg-config (to find them) and pyzmq (for the
# interop tests), from the distribution, when any is missing.
deps: check-go
	@if ! pkg-config --exists libzmq 2>/dev/null || ! /usr/bin/python3 -c 'import zmq' 2>/dev/null; then \
		command -v apt-get >/dev/null || { echo "make: install libzmq (headers), pkg-config and pyzmq with your package manager"; exit 1; }; \
		echo "make: installing $(PKGS) with apt-get"; \
		$(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $(PKGS) >/dev/null; \
	fi
	@pkg-config --exists libzmq || { echo "make: libzmq headers still missing"; exit 1; }

check-zmq: check-go
	@pkg-config --exists libzmq 2>/dev/null || { echo "make: libzmq headers are missing: run 'make deps' (apt-get install $(PKGS))"; exit 1; }

test: deps
	CGO_ENABLED=1 $(GO) test -race -count=1 ./...

lint: check-zmq
	@out=$$(gofmt -l .); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

# Each benchmark runs zmqkit and the hand-written pebbe/zmq4 loop side by
# side; benchratio prints their ratio (medians). The test binary is built
# once and run COUNT times, so the two sides' runs interleave and see the
# same machine. BENCH=PubSub narrows it.
bench: check-zmq
	@mkdir -p .bench && $(GO) test -c -o .bench/zmqkit.test .
	@for i in $$(seq $(COUNT)); do ./.bench/zmqkit.test -test.run '^$$' -test.bench '$(BENCH)' -test.benchmem || exit 1; done | $(GO) run ./internal/cmd/benchratio

fuzz: check-zmq
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) .

demo: deps
	$(GO) run ./examples/pubsub

examples: check-zmq
	@for d in examples/*/; do echo "== $$d"; $(GO) run ./$$d || exit 1; done

clean:
	$(GO) clean -testcache
	rm -rf .bench
