# tether: `make demo` to see it work, `make test` for the whole suite (what CI runs).
# Both install what a fresh Debian machine with a Rust toolchain lacks.

CARGO ?= cargo
# Only for `tether check` on the example configs: they read the secret from TETHER_SECRET.
EXAMPLE_SECRET := example-secret-for-checking-conf-files-only

.PHONY: all demo test deps deps-system deps-node deps-nginx deps-browser deps-pebble build check-conf lint bench soak fuzz clean

all: build

## demo: build (the dev profile: the quickest build, shared with `make test`) and run three demo
## nodes with tether in front; open the printed URL. `make build` is the binary as shipped.
demo: deps-system
	$(CARGO) run -- demo

## test: formatting, lints, example configs and every test (unit, integration, socket.io, the
## admin page in headless Chromium).
test: deps
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings
	$(CARGO) build --bins
	$(MAKE) check-conf
	$(CARGO) bench --no-run
	$(CARGO) test --lib --bins --tests

## build: the binary as shipped (the `dist` profile: fat LTO, one codegen unit), in target/dist/.
build: deps-system
	$(CARGO) build --profile dist

## check-conf: every example config under conf/ must pass `tether check`.
check-conf:
	@for f in conf/*.yaml; do \
		TETHER_SECRET=$(EXAMPLE_SECRET) ./target/debug/tether check --config $$f || exit 1; \
	done

## bench: the end-to-end comparison (direct, tether, nginx, HAProxy) on loopback; ~10 minutes.
## It measures the `dist` profile (what ships). BASELINE=path/to/tether adds an older tether
## build as a column, interleaved with this one.
bench: deps-system
	$(CARGO) bench --profile dist --bench compare -- $(if $(BASELINE),--baseline $(BASELINE))

## fuzz: libFuzzer over every parser that sees network bytes (heads, chunked bodies and trailers,
## PROXY headers, tokens) for FUZZ_SECONDS (default 30 minutes); needs `cargo install cargo-fuzz`.
FUZZ_SECONDS ?= 1800
fuzz:
	cd fuzz && RUSTC_BOOTSTRAP=1 $(CARGO) fuzz run parsers -- -max_total_time=$(FUZZ_SECONDS) -max_len=4096

## soak: 10 minutes of mixed load through tether while its DNS-discovered nodes are replaced
## every 5 s and its config reloaded every 30 s: descriptors, RSS and stickiness must hold.
## SOAK_ARGS=--quick for a 90-second run (or --duration 30m).
## Then the tunnel-move tests at the sizes `make test` scales down: 600 socket.io clients moved
## off a drained, removed and undiscovered node over 10 s, and 3,000 rebalanced over 4 nodes.
soak: deps-system deps-node
	$(CARGO) bench --bench soak -- $(SOAK_ARGS)
	TETHER_MOVES_FULL=1 $(CARGO) test --release --test it moves:: -- --test-threads 1 --nocapture

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

deps: deps-system deps-node deps-nginx deps-browser deps-pebble

# The zlib-ng under pingora's health probes is built with cmake.
deps-system:
	@if ! command -v cmake >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing cmake (zlib-ng, under pingora's health probes, needs it)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq cmake >/dev/null; \
		else \
			echo "cmake is missing: install it (Debian: sudo apt-get install cmake); zlib-ng needs it" >&2; exit 1; \
		fi; \
	fi

# The import-nginx tests compare routing with real nginx (run in the foreground from a scratch
# directory, never as a service: a temporary policy-rc.d keeps apt from starting one). Without
# root they compare with the expected upstreams only, and say so.
deps-nginx:
	@if ! [ -x /usr/sbin/nginx ] && ! command -v nginx >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing nginx-light (the import-nginx tests compare routing with it)"; \
			own=0; if [ ! -e /usr/sbin/policy-rc.d ]; then printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d && own=1; fi; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null 2>&1 || \
			 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null)); rc=$$?; \
			if [ $$own = 1 ]; then rm -f /usr/sbin/policy-rc.d; fi; exit $$rc; \
		else \
			echo "nginx is not installed: the import-nginx tests will compare with expected upstreams only (Debian: sudo apt-get install nginx-light)" >&2; \
		fi; \
	fi

# The real-client tests run socket.io clusters on Node.js: 4.x pinned by
# tests/socketio/package-lock.json, 2.x (engine.io protocol 3) by tests/socketio2/package-lock.json.
deps-node:
	@if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing nodejs and npm (for the socket.io tests)"; \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
		else \
			echo "node and npm are missing: install them (Debian: sudo apt-get install nodejs npm)" >&2; exit 1; \
		fi; \
	fi
	@if [ ! -f tests/socketio/node_modules/.package-lock.json ] || \
	    [ tests/socketio/package-lock.json -nt tests/socketio/node_modules/.package-lock.json ]; then \
		npm ci --prefix tests/socketio --no-audit --no-fund; \
	fi
	@if [ ! -f tests/socketio2/node_modules/.package-lock.json ] || \
	    [ tests/socketio2/package-lock.json -nt tests/socketio2/node_modules/.package-lock.json ]; then \
		npm ci --prefix tests/socketio2 --no-audit --no-fund; \
	fi

# The admin status page test (tests/it/admin_page.rs) drives Debian's Chromium headless with
# puppeteer-core, pinned by tests/browser/package-lock.json. Chromium is only ever started by
# that test, with background networking off and a throwaway profile.
deps-browser: deps-node
	@if ! [ -x /usr/bin/chromium ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing chromium (the admin page test drives it headless)"; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 || \
			 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null)); \
		else \
			echo "chromium is missing: install it (Debian: sudo apt-get install chromium); the admin page test needs /usr/bin/chromium" >&2; exit 1; \
		fi; \
	fi
	@if [ ! -f tests/browser/node_modules/.package-lock.json ] || \
	    [ tests/browser/package-lock.json -nt tests/browser/node_modules/.package-lock.json ]; then \
		npm ci --prefix tests/browser --no-audit --no-fund; \
	fi

# The ACME tests (tests/it/acme.rs) order certificates from Pebble, Let's Encrypt's test CA,
# with its pebble-challtestsrv as the DNS server: both started by the tests on loopback, never as
# a service (the package ships none).
deps-pebble:
	@if ! command -v pebble >/dev/null 2>&1 || ! command -v pebble-challtestsrv >/dev/null 2>&1; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			echo "installing pebble (the ACME tests order certificates from it)"; \
			(DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null 2>&1 || \
			 (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pebble >/dev/null)); \
		else \
			echo "pebble is missing: install it (Debian: sudo apt-get install pebble); the ACME tests need it" >&2; exit 1; \
		fi; \
	fi

clean:
	$(CARGO) clean
	rm -rf tests/socketio/node_modules tests/socketio2/node_modules tests/browser/node_modules
