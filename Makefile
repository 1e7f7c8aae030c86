# ukdump: see README.md.
GO       ?= go
GOBIN    := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(shell command -v staticcheck 2>/dev/null || echo $(GOBIN)/staticcheck)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"
DEMO_OUT ?= $(CURDIR)/out/demo

.PHONY: all build deps hooks lint test unit e2e demo bench clean

all: build

# kdumpinit must be static: the crash kernel has no libc. ukdump finds it
# beside itself, so bin/ukdump works from the build tree.
build:
	$(BUILD) -o bin/ukdump ./cmds/ukdump
	$(BUILD) -o bin/kdumpinit ./cmds/kdumpinit

deps:
	.ci/deps

# The pre-commit hook refuses staged binaries and files over 1 MiB.
hooks:
	git config core.hooksPath .githooks

lint:
	.ci/check-files
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
		if [ -n "$$out" ]; then echo "gofmt would change: $$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

unit:
	$(GO) test -short -count=1 ./...

e2e:
	$(GO) test -count=1 -timeout 30m -v -run . ./internal/e2e/

# The test command of README.md and CI: lint, unit tests and the QEMU
# end-to-end tests, then the tests that read the vmcores those real crashes
# left (Debian 6.1 and 6.12, Linux 7.3) against makedumpfile, crash and
# libkdumpfile.
VMCORE_DIR ?= $(HOME)/.cache/ukdump/vmcores/test
REAL_VMCORES := UKDUMP_TEST_VMCORE=$(VMCORE_DIR)/debian-6.1.vmcore UKDUMP_TEST_VMCORE_612=$(VMCORE_DIR)/debian-6.12.vmcore \
	UKDUMP_TEST_VMCORE_73=$(VMCORE_DIR)/crashdm-7.3.vmcore
test: lint
	rm -rf $(VMCORE_DIR)
	UKDUMP_VMCORE_DIR=$(VMCORE_DIR) $(GO) test -count=1 -timeout 40m ./...
	$(REAL_VMCORES) $(GO) test -count=1 -timeout 20m ./pkg/vmcore/... ./pkg/diskdump/... ./pkg/collector/... ./cmds/ukdump/

# The whole crash cycle in QEMU, dumping to a LUKS2 volume, with a short
# report. Debian's stock kernel, so no kernel build is needed.
DEMO_CASE := TestLUKSInitrd
demo: deps
	rm -rf $(DEMO_OUT)
	UKDUMP_E2E=1 UKDUMP_E2E_OUT=$(DEMO_OUT) $(GO) test -count=1 -timeout 20m -run '$(DEMO_CASE)$$' ./internal/e2e/
	@echo; echo "== ukdump demo: artifacts in $(DEMO_OUT)/$(DEMO_CASE)"; cat $(DEMO_OUT)/$(DEMO_CASE)/report.txt

# ukdump convert against makedumpfile on a realistic vmcore: a 1.25 GiB
# guest with page cache, anonymous memory of mixed content and free memory,
# made once by a real crash in QEMU and kept outside the repository.
BENCH_VMCORE ?= $(HOME)/.cache/ukdump/vmcores/bench-1280M.vmcore
BENCH_REPS ?= 5
bench: deps build
	UKDUMP_E2E=1 UKDUMP_BENCH_VMCORE=$(BENCH_VMCORE) $(GO) test -count=1 -timeout 20m -run 'TestBenchVmcore$$' ./internal/e2e/ >/dev/null
	$(GO) run ./internal/e2e/bench -vmcore $(BENCH_VMCORE) -ukdump bin/ukdump -reps $(BENCH_REPS)

clean:
	rm -rf bin out
