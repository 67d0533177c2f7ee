# zmqkit's contract: `make demo` and `make test` on a fresh Debian/Ubuntu
# machine with Go installed. Every target checks what it needs first.

GO      ?= go
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
PKGS    := libzmq3-dev pkg-config python3-zmq
BENCH   ?= .
COUNT   ?= 6
BENCHTIME ?= 1s
BENCHOUT := .bench/bench.txt
FUZZTIME ?= 30s
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHSTAT := golang.org/x/perf/cmd/benchstat@v0.0.0-20260908200009-22c9c6c9d4da

.PHONY: all deps check-go check-zmq test lint bench bench-report acceptance fuzz demo examples clean

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

# make bench: every side-by-side benchmark (sub-benchmarks named
# .../impl=zmqkit, impl=pebbe for the hand-written pebbe/zmq4 loop, impl=c
# for C libzmq's) from one test binary run COUNT times, so each
# implementation's runs interleave with the others' and see the same
# machine; the raw output goes to $(BENCHOUT), and benchstat prints medians
# with 95% confidence intervals and the difference from the base column
# ("~" when it is not significant). BENCH=PubSub narrows it, COUNT=10
# repeats more (benchstat gives no interval below 6), BENCHTIME=100x runs
# shorter; make bench-report prints the tables again from $(BENCHOUT).
bench: check-zmq
	@mkdir -p .bench && $(GO) test -c -o .bench/zmqkit.test .
	@rm -f $(BENCHOUT); for i in $$(seq $(COUNT)); do \
		echo "make: bench run $$i of $(COUNT) >> $(BENCHOUT)"; \
		./.bench/zmqkit.test -test.run '^$$' -test.bench '$(BENCH)' -test.benchtime $(BENCHTIME) -test.benchmem >>$(BENCHOUT) \
			|| { tail -n 30 $(BENCHOUT); exit 1; }; \
	done
	@$(MAKE) --no-print-directory bench-report

# Each table is printed when $(BENCHOUT) has its rows (BENCH= may leave
# some out).
bench-report: check-go
	@test -s $(BENCHOUT) || { echo "make: no $(BENCHOUT): run make bench first"; exit 1; }
	@if grep -q 'impl=pebbe' $(BENCHOUT); then \
		echo; echo "== zmqkit beside the hand-written pebbe/zmq4 loop (base: pebbe; vs base: zmqkit's difference, ~ when not significant)"; \
		$(GO) run $(BENCHSTAT) -col '/impl@(pebbe zmqkit zmqkit-append zmqkit-batch zmqkit-nocopy)' -filter '-.name:Paced' $(BENCHOUT); fi
	@if grep -q '^BenchmarkPaced' $(BENCHOUT); then \
		echo; echo "== CPU per message at a paced rate, tcp 64 B, both ends in one process (base: pebbe)"; \
		$(GO) run $(BENCHSTAT) -col '/impl@(pebbe zmqkit)' -filter '.name:Paced .unit:(cpu-s/Mmsg OR msgs/s)' $(BENCHOUT); fi
	@if grep -q '^BenchmarkRRServerConcurrency' $(BENCHOUT); then \
		echo; echo "== RRServer at concurrency 8 beside 1: echo handler, 64 requests in flight, tcp (base: conc=1)"; \
		$(GO) run $(BENCHSTAT) -col '/conc' -filter '.name:RRServerConcurrency .unit:(sec/op OR reqs/s)' $(BENCHOUT); fi
	@if grep -q 'impl=c-' $(BENCHOUT); then \
		echo; echo "== zmqkit beside C libzmq (base: C; allocations left out: the Go runtime sees none of C's)"; \
		$(GO) run $(BENCHSTAT) -col '/impl@(c zmqkit zmqkit-append zmqkit-batch zmqkit-nocopy)' -filter '/tr:(inproc OR tcp) -/op:handler-1ms -.unit:(B/op OR allocs/op)' $(BENCHOUT); fi
	@if grep -q 'tr=tcp+curve' $(BENCHOUT); then \
		echo; echo "== CURVE's cost (base: plain tcp)"; \
		$(GO) run $(BENCHSTAT) -col '/tr@(tcp tcp+curve)' -filter '/impl:(zmqkit OR pebbe) (.name:PubSub OR /op:roundtrip) /size:64B -.unit:(B/op OR allocs/op)' $(BENCHOUT); fi
	@if grep -q 'op=roundtrip-paired' $(BENCHOUT); then \
		echo; echo "== Round trip, zmqkit and pebbe timed in alternating batches within each run"; \
		$(GO) run $(BENCHSTAT) -filter '/op:roundtrip-paired .unit:(pebbe-ns/rt OR zmqkit-ns/rt OR zmqkit/pebbe)' paired=$(BENCHOUT); fi
	@if grep -q 'ReceiveWakeup' $(BENCHOUT); then \
		echo; echo "== zmqkit alone"; \
		$(GO) run $(BENCHSTAT) -filter '.name:ReceiveWakeup' zmqkit=$(BENCHOUT); fi

# The black-box acceptance suites (modules of their own, so not in ./...):
# faults and bad input (about 8 minutes), and the zmqkit command.
acceptance: deps
	cd acceptance/fault && CGO_ENABLED=1 $(GO) test -race -count=1 -timeout 15m ./...
	cd acceptance/cli && CGO_ENABLED=1 $(GO) test -count=1 ./...

fuzz: check-zmq
	$(GO) test -run '^$$' -fuzz FuzzDecode -fuzztime $(FUZZTIME) .
	$(GO) test -run '^$$' -fuzz FuzzParse -fuzztime $(FUZZTIME) ./internal/cert

demo: deps
	$(GO) run ./examples/pubsub

examples: check-zmq
	@for d in examples/*/; do echo "== $$d"; $(GO) run ./$$d || exit 1; done

clean:
	$(GO) clean -testcache
	rm -rf .bench
