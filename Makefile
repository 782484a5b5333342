# palmd — every entry point. `make help` lists them.
SHELL := /bin/bash
GO ?= go
BIN := bin
PKGS := ./...
VERSION := $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/palmd/palmd/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2

.DEFAULT_GOAL := help

.PHONY: help
help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  make %-10s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: bootstrap
bootstrap: ## install missing Debian packages (libopencv-dev, mosquitto, …); quick when all are there
	@scripts/bootstrap.sh

.PHONY: build
build: bootstrap ## build palmd, palmctl and palm-matcher into bin/
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

.PHONY: demo
demo: build ## the main job: the simulated terminal end to end
	$(BIN)/palmctl demo

.PHONY: test
test: bootstrap ## go vet and every test (gocv packages included, Mat leak check)
	$(GO) vet $(PKGS)
	$(GO) test -count=1 -timeout 20m $(PKGS)
	$(GO) test -count=1 -tags matprofile -run NoMatLeaks ./imaging

.PHONY: vmtest
vmtest: bootstrap ## the V4L2 camera tests inside a VM (Debian kernel + vivid under qemu TCG); also part of make test
	$(GO) test -count=1 -run 'TestVM$$' -v ./sensor/v4l2cam

.PHONY: bench
bench: bootstrap ## benchmarks (speed and memory targets), one core each
	$(GO) test -run '^$$' -bench . -benchmem -count=1 -cpu 1 $(PKGS)

.PHONY: eval
eval: build ## recognition figures: a 100×6 synthetic set, then palmctl eval on it
	$(BIN)/palmctl synth --identities 100 --samples 6 --seed 5000 --out .cache/eval-set
	$(BIN)/palmctl eval --dir .cache/eval-set

.PHONY: lint
lint: bootstrap ## gofmt check, go vet, staticcheck
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	$(GO) run $(STATICCHECK) $(PKGS)

.PHONY: clean
clean: ## remove build outputs and caches made by the Makefile
	rm -rf $(BIN) .cache

.PHONY: simulate
simulate: build ## play scenarios/demo.json through the pipeline without broker or matcher
	$(BIN)/palmctl simulate --scenario scenarios/demo.json
