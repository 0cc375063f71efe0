# herald's build, test and benchmark entry points. CI runs `make test` (via .ci/run).
SHELL := /bin/bash
GO ?= go
BIN := bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/herald-router/herald/internal/version.Version=$(VERSION)

.PHONY: build run test unit e2e bench chaos lint generate check-generate deps

build: ## writes bin/herald and bin/herald-loadgen
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/herald ./services/herald
	$(GO) build -o $(BIN)/herald-loadgen ./services/loadgen

# A static binary to ship (deploy/systemd, deploy/container): CGO_ENABLED=0 so it
# needs no libc and runs on any Linux of its architecture; -trimpath keeps this
# machine's paths out of it; -s -w drops the symbol tables (panics still name
# files and lines). The version is git's description, as for build.
.PHONY: release
release: ## writes bin/release/herald-VERSION-OS-ARCH, static
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '-s -w $(LDFLAGS)' \
		-o $(BIN)/release/herald-$(VERSION)-$$($(GO) env GOOS)-$$($(GO) env GOARCH) ./services/herald

run: build ## herald on its embedded default config
	$(BIN)/herald run --config deploy/herald.yaml

# protoc comes from Debian's protobuf-compiler; protoc-gen-go and
# protoc-gen-go-vtproto (reflection-free Marshal/Unmarshal for the hot path)
# are built at the versions go.mod pins, so generated code only changes when
# go.mod does.
# The Debian packages of the build and of the tests' real peers (protoc,
# PostgreSQL, rsyslog ...), installed when missing: deploy/ci/deps.sh lists them.
deps:
	@bash deploy/ci/deps.sh

generate: deps ## rebuilds schemas/*.pb.go, schemas/config.schema.json and docs/config.md
	$(GO) build -o $(BIN)/protoc-gen-go google.golang.org/protobuf/cmd/protoc-gen-go
	$(GO) build -o $(BIN)/protoc-gen-go-vtproto github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto
	PATH="$(CURDIR)/$(BIN):$$PATH" protoc --proto_path=schemas --go_out=schemas --go_opt=paths=source_relative \
		--go-vtproto_out=schemas --go-vtproto_opt=paths=source_relative,features=marshal+unmarshal+unmarshal_unsafe+size \
		schemas/event.proto
	$(GO) run ./internal/schemagen -out schemas/config.schema.json -doc docs/config.md

# Fails when the committed generated code, schema or config reference differs
# from what `make generate` writes.
check-generate: generate
	@git diff --exit-code -- schemas/ docs/ || { echo "schemas/, docs/: generated files are stale, run make generate and commit"; exit 1; }

# -race: the stages are concurrent by design; -shuffle: no test may depend on another's order.
# The e2e tests (package e2e) build and run bin/herald, so build first.
test: deps check-generate build
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt: files above need formatting"; exit 1; }
	$(GO) test -race -shuffle=on -count=1 -timeout 12m ./...

unit: ## unit tests only (no built binary)
	$(GO) test -race -count=1 -timeout 5m $$($(GO) list ./... | grep -v /e2e)

e2e: build ## end-to-end tests against bin/herald
	$(GO) test -race -count=1 -timeout 10m ./e2e/...

# The full chaos run (e2e/chaos_long_test.go, build tag chaos): 1,000,000 events
# through the pipeline with each stage in its own process, 20 kill -9s of a random
# stage; prints sent, delivered, lost, duplicates and the longest stall. A short
# version (e2e/chaos_test.go) runs in `make test`.
chaos: build ## the chaos suite: kill -9 over a million events, sink outages, reload storms, SIGTERM, a full store (about 4 min on 2 cores)
	$(GO) test -tags chaos -count=1 -timeout 30m -v -run Chaos ./e2e/

# The Go micro-benchmarks first, so that the comparison table with rsyslog,
# syslog-ng and Benthos (services/loadgen/compare.sh, run by bench.sh) ends
# the output.
bench: build ## Go micro-benchmarks, then the load generator against the built binary and the peers
	$(GO) test -run '^$$' -bench . -benchmem ./actors/... ./bus/...
	$(GO) test -run '^$$' -bench 'LogAsyncUntracked' -benchtime=1000000x ./elapi/
	$(GO) test -run '^$$' -bench 'LogAsyncTracked' -benchtime=100000x ./elapi/
	bash services/loadgen/bench.sh

lint:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
