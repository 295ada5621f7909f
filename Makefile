# Canopy: two commands.
#   make run   set up and start the server on its embedded defaults
#   make test  run every test (what CI runs)

SHELL := /bin/bash
CARGO ?= cargo
NPM ?= npm
DATA_DIR ?= ./canopy-data
LISTEN ?= 127.0.0.1:8420

.PHONY: run test setup js-deps opencode build release lint fmt bench smoke clean sandbox-image

## Set up and start Canopy (SQLite in $(DATA_DIR), listening on $(LISTEN)).
run: opencode release
	$(CARGO) run --quiet --release --bin canopy -- serve --listen $(LISTEN) --data-dir $(DATA_DIR)

## Run every test: unit, integration (real servers, Node interop), the make-run smoke test.
test: js-deps opencode
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) test --workspace --all-targets
	$(MAKE) --no-print-directory smoke

setup: js-deps opencode

## Pinned official automerge JS packages used by the interop tests and benchmarks.
js-deps: tests/js/node_modules/.package-lock.json

# `npm install --no-save` rather than `npm ci`: the lock pins every package we
# use, but cbor-x's optional native helpers (@cbor-extract/*) are not on every
# registry mirror, so the lock cannot list them and `npm ci` refuses it as out
# of sync. `install` honours the lock and skips the optional helpers.
tests/js/node_modules/.package-lock.json: tests/js/package.json tests/js/package-lock.json
	$(NPM) install --prefix tests/js --no-save --no-audit --no-fund
	@touch $@

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
