# cloud-provider-baremetal — the two commands a new user runs are `make demo`
# and `make test`. Both install what they need and can be run again.

GO        ?= go
BIN       := $(CURDIR)/bin
E2E_FLAGS ?=

.PHONY: all build image deps test test-unit test-fuzz test-e2e vet bench demo demo-down clean

all: build

# Every binary is stamped with its version from git (hack/version.sh): it
# prints it with --version and logs it at start.
LDFLAGS ?= $(shell ./hack/version.sh)

build:
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/...

# The image has no .git: its version comes from here.
image:
	docker build --build-arg LDFLAGS='$(LDFLAGS)' -t $${IMAGE:-cloud-provider-baremetal:dev} .

# Debian packages for the lab, Go modules, and the cached builds of
# kube-apiserver, helm and kubectl ($$HOME/.cache/baremetal-lab, outside the
# clone).
deps: deps-lab
	./hack/build-helm.sh

# What the lab needs (make demo): without helm and kubectl, whose first
# build takes minutes.
deps-lab:
	./hack/install-deps.sh
	$(GO) mod download
	./hack/build-kube-apiserver.sh

vet:
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); echo "gofmt needed"; exit 1; }

# The deploy tests and the doc-test render with the helm and kubectl that
# make deps built; here their absence is a failure, not a skip.
test-unit: export BAREMETAL_REQUIRE_TOOLS = 1
test-unit:
	$(GO) test -race -count=1 $$($(GO) list ./... | grep -v /test/e2e)

# A short run of every fuzz target (each also runs from its seeds in
# test-unit). Budgets are execution counts, about 10 s each here: a duration
# -fuzztime races the Go 1.26 fuzz coordinator (golang/go#75804) and fails
# with "context deadline exceeded" and no crasher.
FUZZ = $(GO) test -run '^$$' -fuzzminimizetime 2s
test-fuzz:
	$(FUZZ) -fuzztime 200000x -fuzz '^FuzzParseRange$$' ./ipam
	$(FUZZ) -fuzztime 40000x -fuzz '^FuzzAllocator$$' ./ipam
	$(FUZZ) -fuzztime 30000x -fuzz '^FuzzParse$$' ./config
	$(FUZZ) -fuzztime 50000x -fuzz '^FuzzFromMetalLB$$' ./convert

# End-to-end: real etcd, kube-apiserver, CCM, agents and FRR in network
# namespaces. Needs root.
# The deploy lab test installs each way (base, copied overlay, Helm chart)
# and runs the binaries with their ServiceAccounts, proving the RBAC is
# enough; the docs lab test runs the docs' doctest-lab commands.
test-e2e: export BAREMETAL_REQUIRE_TOOLS = 1
test-e2e: deps
	$(GO) test -count=1 -p 1 -timeout 45m $(E2E_FLAGS) ./test/e2e/
	$(GO) test -count=1 -tags lab -timeout 10m ./deploy/ ./docs/
	$(GO) test -count=1 -tags lab -timeout 10m ./announce/l2/ ./test/lab/

test: deps vet test-unit test-fuzz test-e2e

# Benchmarks; figures go to docs/benchmarks.md.
bench: deps
	$(GO) test -run '^$$' -bench . -benchmem ./ipam
	BAREMETAL_BENCH=1 $(GO) test -count=1 -p 1 -timeout 90m -run 'Bench' -v ./test/e2e/
	BAREMETAL_BENCH=1 $(GO) test -count=1 -tags lab -timeout 10m -run 'TestLabBenchResponder' -v ./announce/l2/

demo: deps-lab
	$(GO) run ./hack/demo

demo-down:
	$(GO) run ./hack/demo --down

clean:
	rm -rf $(BIN)
