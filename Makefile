# ukdump: see README.md.
GO       ?= go
GOBIN    := $(shell $(GO) env GOPATH)/bin
STATICCHECK := $(shell command -v staticcheck 2>/dev/null || echo $(GOBIN)/staticcheck)
BUILD    := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "-s -w"
DEMO_OUT ?= $(CURDIR)/out/demo

.PHONY: all build deps hooks lint test unit test-arm64-unit e2e faults fuzz demo bench bench-file bench-crash clean install uninstall deb deb-check

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

# The unit tests again as arm64 binaries, run on this x86_64 host by
# Debian's qemu-user-static: the packages whose code depends on the machine
# it runs on (system calls and their structures, word size, the dump
# reader's machine taken from its input, not from the host). Codecs, LUKS
# and LVM parsing and key derivation, module decompression and the key
# scrub compute the same on every machine and take minutes each under
# emulation, so they run natively only; internal/e2e is the host's harness.
QEMU_AARCH64 ?= qemu-aarch64-static
ARM64_UNIT_SKIP := /(pkg/diskdump|pkg/luks|pkg/lvm|pkg/kmod|pkg/scrub|internal/e2e)(/|$$)
test-arm64-unit:
	GOARCH=arm64 CGO_ENABLED=0 $(GO) test -short -count=1 -exec $(QEMU_AARCH64) \
		$$($(GO) list ./... | grep -Ev '$(ARM64_UNIT_SKIP)')

e2e:
	$(GO) test -count=1 -timeout 30m -v -run . ./internal/e2e/

# The fault tests (internal/e2e/faults_test.go): the target or the machine
# failing under the dump, one QEMU guest at a time. make test runs them
# too, beside the other end-to-end tests. Not after deps: they need only
# QEMU, e2fsprogs and Debian's kernel (which the tests fetch), not the
# kernels deps builds; a missing tool fails them, naming .ci/deps.
FAULTS_OUT ?= $(CURDIR)/out/faults
faults:
	rm -rf $(FAULTS_OUT)
	@UKDUMP_E2E=1 UKDUMP_E2E_OUT=$(FAULTS_OUT) $(GO) test -count=1 -parallel 1 -timeout 60m -v -run '^TestFault' ./internal/e2e/; \
		s=$$?; echo; for r in $(FAULTS_OUT)/TestFault*/report.txt; do echo "== $$r"; sed -n '1,4p' $$r; done; exit $$s

# Every fuzz target of the repository, FUZZTIME each, one after the other
# (see .ci/fuzz); "make fuzz FUZZTIME=10m" for a long run.
FUZZTIME ?= 30s
fuzz:
	.ci/fuzz $(FUZZTIME)

# The test command of README.md and CI: lint, unit tests and the QEMU
# end-to-end tests (x86_64 and arm64 guests), then the tests that read the
# vmcores those real crashes left (Debian 6.1 and 6.12, Linux 7.3 on
# x86_64 and arm64) against makedumpfile, crash, libkdumpfile and drgn.
# TESTFLAGS=-v prints each test's time.
VMCORE_DIR ?= $(HOME)/.cache/ukdump/vmcores/test
REAL_VMCORES := UKDUMP_TEST_VMCORE=$(VMCORE_DIR)/debian-6.1.vmcore UKDUMP_TEST_VMCORE_612=$(VMCORE_DIR)/debian-6.12.vmcore \
	UKDUMP_TEST_VMCORE_73=$(VMCORE_DIR)/crashdm-7.3.vmcore UKDUMP_TEST_VMCORE_73_ARM64=$(VMCORE_DIR)/crashdm-7.3-arm64.vmcore
test: lint deb-check test-arm64-unit
	rm -rf $(VMCORE_DIR)
	UKDUMP_VMCORE_DIR=$(VMCORE_DIR) $(GO) test $(TESTFLAGS) -count=1 -parallel 2 -timeout 60m ./...
	$(REAL_VMCORES) $(GO) test -count=1 -timeout 20m ./pkg/vmcore/... ./pkg/diskdump/... ./pkg/collector/... ./cmds/ukdump/

# The whole crash cycle in QEMU, dumping to a LUKS2 volume, with a short
# report. Debian's stock kernel, so no kernel build is needed.
DEMO_CASE := TestLUKSInitrd
demo: deps
	rm -rf $(DEMO_OUT)
	UKDUMP_E2E=1 UKDUMP_E2E_OUT=$(DEMO_OUT) $(GO) test -count=1 -timeout 20m -run '$(DEMO_CASE)$$' ./internal/e2e/
	@echo; echo "== ukdump demo: artifacts in $(DEMO_OUT)/$(DEMO_CASE)"; cat $(DEMO_OUT)/$(DEMO_CASE)/report.txt

# ukdump against makedumpfile, in two modes. bench-crash: one QEMU crash of
# a guest of BENCH_MEM MiB (page cache, anonymous memory of mixed content,
# free memory) whose crash kernel (BENCH_CPUS CPUs) runs makedumpfile -l and
# ukdump's collector on the same /proc/vmcore, alternating, BENCH_REPS times
# each; its lines "bench:" and "bench-smp:" (medians) are the figures that count;
# "bench-fastest:" and "bench-smp-fastest:" compare the fastest runs, which
# move less on a busy host when BENCH_REPS is 5 or more.
# bench-file: "ukdump convert" and makedumpfile on a host file, the ELF
# vmcore of a 1.25 GiB guest made once by a real crash in QEMU and kept
# outside the repository.
BENCH_VMCORE ?= $(HOME)/.cache/ukdump/vmcores/bench-1280M.vmcore
BENCH_REPS ?= 5
BENCH_MEM ?= 4096
BENCH_CPUS ?= 2
BENCH_CRASH_DIR ?= $(HOME)/.cache/ukdump/bench/crash-$(BENCH_MEM)M-$(BENCH_CPUS)cpu
bench: bench-crash bench-file

bench-file: deps build
	UKDUMP_E2E=1 UKDUMP_BENCH_VMCORE=$(BENCH_VMCORE) $(GO) test -count=1 -timeout 20m -run 'TestBenchVmcore$$' ./internal/e2e/ >/dev/null
	$(GO) run ./internal/e2e/bench -vmcore $(BENCH_VMCORE) -ukdump bin/ukdump -reps $(BENCH_REPS)

bench-crash: deps
	@mkdir -p $(BENCH_CRASH_DIR)
	UKDUMP_E2E=1 UKDUMP_BENCH_CRASH=$(BENCH_CRASH_DIR) UKDUMP_BENCH_MEM=$(BENCH_MEM) UKDUMP_BENCH_CPUS=$(BENCH_CPUS) \
		UKDUMP_BENCH_REPS=$(BENCH_REPS) $(GO) test -count=1 -timeout 90m -v -run 'TestBenchCrash$$' ./internal/e2e/ \
		>$(BENCH_CRASH_DIR)/test.log 2>&1 || { tail -40 $(BENCH_CRASH_DIR)/test.log; exit 1; }
	$(GO) run ./internal/e2e/bench -crash $(BENCH_CRASH_DIR)

# Installation, for any distribution: make install DESTDIR=... PREFIX=...
# /etc and the directories of systemd, udev and kernel-install do not follow
# PREFIX: those programs look only in their own places. ukdump finds
# kdumpinit in ../lib/ukdump beside itself, so keep PKGLIBDIR there.
PREFIX     ?= /usr/local
SBINDIR    ?= $(PREFIX)/sbin
PKGLIBDIR  ?= $(PREFIX)/lib/ukdump
MANDIR     ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
SYSTEMDUNITDIR   ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
UDEVDIR          ?= $(or $(shell pkg-config --variable=udevdir udev 2>/dev/null),/lib/udev)
KERNELINSTALLDIR ?= /usr/lib/kernel/install.d
INITRAMFSTOOLSDIR ?= /usr/share/initramfs-tools

# $(call install_sub,SRC,MODE,DEST): SRC with ukdump's path made SBINDIR's.
define install_sub
	mkdir -p $(dir $(DESTDIR)$(3))
	sed 's|/usr/sbin/ukdump|$(SBINDIR)/ukdump|g' $(1) >$(DESTDIR)$(3)
	chmod $(2) $(DESTDIR)$(3)
endef

# $(call install_conf,SRC,DEST): like install_sub, but an existing file is
# the administrator's and stays.
define install_conf
	@if [ -e $(DESTDIR)$(2) ]; then echo "install: keeping $(DESTDIR)$(2)"; else \
		mkdir -p $(dir $(DESTDIR)$(2)) && \
		sed 's|/usr/sbin/ukdump|$(SBINDIR)/ukdump|g' $(1) >$(DESTDIR)$(2) && chmod 0644 $(DESTDIR)$(2); fi
endef

INSTALLED = $(SBINDIR)/ukdump $(PKGLIBDIR)/kdumpinit $(SYSTEMDUNITDIR)/ukdump.service \
	$(UDEVDIR)/rules.d/98-ukdump.rules $(SYSCONFDIR)/kernel/postinst.d/ukdump \
	$(SYSCONFDIR)/kernel/postrm.d/ukdump $(KERNELINSTALLDIR)/60-ukdump.install \
	$(INITRAMFSTOOLSDIR)/hooks/ukdump \
	$(MANDIR)/man8/ukdump.8.gz $(MANDIR)/man5/ukdump.conf.5.gz

install: build
	install -D -m 0755 bin/ukdump $(DESTDIR)$(SBINDIR)/ukdump
	install -D -m 0755 bin/kdumpinit $(DESTDIR)$(PKGLIBDIR)/kdumpinit
	$(call install_sub,packaging/systemd/ukdump.service,0644,$(SYSTEMDUNITDIR)/ukdump.service)
	install -D -m 0644 packaging/udev/98-ukdump.rules $(DESTDIR)$(UDEVDIR)/rules.d/98-ukdump.rules
	install -D -m 0755 packaging/kernel/ukdump $(DESTDIR)$(SYSCONFDIR)/kernel/postinst.d/ukdump
	install -D -m 0755 packaging/kernel/ukdump $(DESTDIR)$(SYSCONFDIR)/kernel/postrm.d/ukdump
	install -D -m 0755 packaging/kernel/60-ukdump.install $(DESTDIR)$(KERNELINSTALLDIR)/60-ukdump.install
	install -D -m 0755 packaging/initramfs-tools/ukdump $(DESTDIR)$(INITRAMFSTOOLSDIR)/hooks/ukdump
	mkdir -p $(DESTDIR)$(MANDIR)/man8 $(DESTDIR)$(MANDIR)/man5
	gzip -9 -n <doc/ukdump.8 >$(DESTDIR)$(MANDIR)/man8/ukdump.8.gz
	gzip -9 -n <doc/ukdump.conf.5 >$(DESTDIR)$(MANDIR)/man5/ukdump.conf.5.gz
	chmod 0644 $(DESTDIR)$(MANDIR)/man8/ukdump.8.gz $(DESTDIR)$(MANDIR)/man5/ukdump.conf.5.gz
	$(call install_conf,packaging/ukdump.conf,$(SYSCONFDIR)/ukdump.conf)
	$(call install_conf,packaging/grub/ukdump.cfg,$(SYSCONFDIR)/default/grub.d/ukdump.cfg)

# The configuration files stay: they are the administrator's, and
# ukdump.cfg reserves nothing without $(SBINDIR)/ukdump.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	-rmdir $(DESTDIR)$(PKGLIBDIR)
	@echo "uninstall: kept $(DESTDIR)$(SYSCONFDIR)/ukdump.conf and $(DESTDIR)$(SYSCONFDIR)/default/grub.d/ukdump.cfg"

# The Debian package: the files of "make install" for /usr, then
# packaging/mkdeb.sh (see there). Output: $(DEB_DIR)/ukdump_<version>_amd64.deb.
DEB_DIR ?= out
deb:
	rm -rf $(DEB_DIR)/deb-root
	$(MAKE) --no-print-directory install GOOS=linux GOARCH=amd64 DESTDIR=$(abspath $(DEB_DIR))/deb-root \
		PREFIX=/usr SYSCONFDIR=/etc SYSTEMDUNITDIR=/lib/systemd/system UDEVDIR=/lib/udev \
		KERNELINSTALLDIR=/usr/lib/kernel/install.d
	packaging/mkdeb.sh $(DEB_DIR)/deb-root $(DEB_DIR)

# Builds the package in a temporary directory and checks its contents,
# scripts, man pages and lintian's verdict.
deb-check:
	packaging/deb-check.sh

clean:
	rm -rf bin out
