# Canopy: two commands.
#   make run   set up and start the server on its embedded defaults
#   make test  run every test (what CI runs)

SHELL := /bin/bash
CARGO ?= cargo
NPM ?= npm
DATA_DIR ?= ./canopy-data
LISTEN ?= 127.0.0.1:8420

WEB := examples/web-client

.PHONY: run test setup js-deps opencode web web-deps web-test web-e2e build release lint fmt bench smoke clean sandbox-image

## Set up and start Canopy (SQLite in $(DATA_DIR), listening on $(LISTEN)).
run: opencode release web
	$(CARGO) run --quiet --release --bin canopy -- serve --listen $(LISTEN) --data-dir $(DATA_DIR) --web-dir $(WEB)/dist

## Run every test: unit, integration (real servers, Node interop), the make-run smoke test.
test: js-deps opencode web
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --all-targets
	$(MAKE) --no-print-directory web-test
	$(MAKE) --no-print-directory web-e2e
	$(MAKE) --no-print-directory smoke

setup: js-deps opencode web

## Pinned official automerge JS packages used by the interop tests and benchmarks.
js-deps: tests/js/node_modules/.package-lock.json

# `npm install --no-save` rather than `npm ci`: the lock pins every package we
# use, but cbor-x's optional native helpers (@cbor-extract/*) are not on every
# registry mirror, so the lock cannot list them and `npm ci` refuses it as out
# of sync. `install` honours the lock and skips the optional helpers.
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	$(NPM) install --prefix tests/js --no-save --no-audit --no-fund
	@touch $@

## The web client (TypeScript, React, automerge-repo): its packages, pinned by
## its lock (`install --no-save` for the same reason as above), and its build,
## which the server serves at `/` (`--web-dir`).
web-deps: $(WEB)/node_modules/.package-lock.json

$(WEB)/node_modules/.package-lock.json: $(WEB)/package.json $(WEB)/package-lock.json
	$(NPM) install --prefix $(WEB) --no-save --no-audit --no-fund
	@touch $@

web: web-deps
	$(NPM) run --prefix $(WEB) build

## The web client's type check and unit tests (Vitest).
web-test: web-deps
	$(NPM) run --prefix $(WEB) typecheck
	$(NPM) run --prefix $(WEB) test

## The web client in Chromium against real servers (debug builds; run after
## `cargo test` has built them): two users, offline edits, a viewer, an
## offline reload, screenshots in $(WEB)/e2e/screenshots.
web-e2e: web-deps
	$(CARGO) build --bin canopy
	$(CARGO) build -p canopy-sidecar
	$(CARGO) build --example fake-github
	$(NPM) run --prefix $(WEB) e2e

## The pinned OpenCode agent server (sandbox/opencode), installed from npm once;
## nothing is downloaded at run time.
opencode: sandbox/opencode/node_modules/.package-lock.json

sandbox/opencode/node_modules/.package-lock.json: sandbox/opencode/package.json sandbox/opencode/package-lock.json
	$(NPM) install --prefix sandbox/opencode --no-save --no-audit --no-fund
	@touch $@

## The Docker sandbox image (`canopy-sandbox:<version>`) from the release
## sidecar and the pinned OpenCode, for `--sandbox docker`. Creates the
## Debian base image with debootstrap where no registry can be reached.
sandbox-image: opencode release
	"$${CARGO_TARGET_DIR:-target}/release/canopy" sandbox build-image --sidecar-bin "$${CARGO_TARGET_DIR:-target}/release/canopy-sidecar"

build:
	$(CARGO) build --workspace

release:
	$(CARGO) build --release --bin canopy
	$(CARGO) build --release -p canopy-sidecar

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

fmt:
	$(CARGO) fmt --all

## The sync benchmark against the JS reference server (see docs/benchmarks.md).
bench: js-deps opencode
	$(CARGO) bench --bench sync_hub

## `make run` end to end; the release build comes first so the smoke test
## times the server's start, not the compiler.
smoke: release
	./tests/smoke/make-run.sh

clean:
	$(CARGO) clean
	rm -rf tests/js/node_modules sandbox/opencode/node_modules
