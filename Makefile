# Strait. The two commands a newcomer needs: `make demo` and `make test`.
GO      ?= go
BIN     := bin/strait
LAB     ?= strait
export PATH := $(PATH):/usr/sbin:/sbin

.PHONY: all build demo demo-down test test-unit test-faults lab-binaries bench fmt vet clean manifests helm image release-local

all: build

# The version `strait version` prints and the lab tags strait.io/strait with.
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS := -X github.com/strait-io/strait/internal/version.Version=$(VERSION) -X github.com/strait-io/strait/internal/version.GitCommit=$(COMMIT)

build:
	CGO_ENABLED=0 $(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/strait

# The host tools the lab and the tests need (nftables, iproute2, runc, dig, named, ...):
# installs the missing Debian packages as root, else names them (hack/install-deps.sh).
.PHONY: deps
deps:
	./hack/install-deps.sh

# Start the lab (building its Kubernetes binaries the first time) and show it working.
demo: deps build
	./hack/demo.sh

demo-down: build
	./$(BIN) lab down --lab $(LAB)

# Build (or find in the cache) the lab's binaries, so the test timeout covers tests only.
lab-binaries: build
	./$(BIN) lab binaries

# Everything CI must pass: vet, the fast layer first (as an unprivileged user when run as
# root, which proves it needs neither root nor a lab), then every test, integration tests
# against real lab clusters included.
test: deps build lab-binaries vet helm
	./hack/test-unit-unprivileged.sh
	$(GO) test -count=1 -timeout 60m ./...

# The fast layer: every test that needs no root and no lab (lab-bound tests skip under -short).
test-unit:
	$(GO) test -short -count=1 ./...

# The failure model on a 3-cluster lab (docs/failure-model.md); part of `make test` too.
# STRAIT_FAULT_KILLS sets how often the importing agent is killed (default 100).
test-faults: deps build lab-binaries
	$(GO) test -count=1 -timeout 40m -run '^TestFaults$$' -v ./test/e2e/

vet:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

bench: deps build lab-binaries
	./hack/bench.sh
	$(GO) test -run '^$$' -bench . -benchtime 1x -timeout 120m ./test/bench/
	$(MAKE) bench-dns

# strait dns against stock CoreDNS (dnsperf), and the server's failover time.
.PHONY: bench-dns
bench-dns: deps build lab-binaries
	./hack/bench-dns.sh

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf bin

# The scale harness: one real broker and member, N simulated members (BENCHMARKS.md, "Scale:
# simulated members"). SIZES and RUNS override the member counts and the churn rounds.
.PHONY: bench-scale
SIZES ?= 10,50,100,250
RUNS  ?= 2
bench-scale: deps build lab-binaries
	SCALE_SIZES=$(SIZES) SCALE_RUNS=$(RUNS) $(GO) test -run '^$$' -bench BenchmarkScale -benchtime 1x -timeout 90m ./test/bench/ | tee bench-scale.out

# config/ is generated from the Helm chart charts/strait (default values); a test fails
# when they differ. Run after changing the chart (or the API types' CRD).
manifests:
	$(GO) run ./hack/manifests

# Helm, built from its Go module into bin/tools/helm, for the chart's lint test. The -X
# flags are those of Helm's own release builds: its version, and the Kubernetes version
# `helm template` assumes (1.20 otherwise, which the chart's kubeVersion refuses).
HELM_VERSION ?= v3.19.5
HELM_K8S_MINOR ?= 34
HELM := bin/tools/helm
HELM_LDFLAGS := -X helm.sh/helm/v3/internal/version.version=$(HELM_VERSION) \
	$(foreach p,pkg/lint/rules pkg/chartutil,-X helm.sh/helm/v3/$(p).k8sVersionMajor=1 -X helm.sh/helm/v3/$(p).k8sVersionMinor=$(HELM_K8S_MINOR))
helm: $(HELM)
$(HELM):
	GOBIN=$(CURDIR)/bin/tools CGO_ENABLED=0 $(GO) install -ldflags "$(HELM_LDFLAGS)" helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

# Strait's image for linux/amd64 and linux/arm64 as one OCI archive (no container engine):
# dist/strait-image-<version>.oci.tar, which `strait lab load-image`, `ctr images import`,
# `skopeo copy oci-archive:` and `crane push` take.
image:
	$(GO) run ./hack/release -dir dist -version $(VERSION) -commit $(COMMIT) -image-only

# The release artifacts in dist/: static binaries for linux/amd64 and linux/arm64, the image
# archive, the chart packaged with the version stamped, and SHA256SUMS.
release-local:
	rm -rf dist
	$(GO) run ./hack/release -dir dist -version $(VERSION) -commit $(COMMIT)
