# Corral: build, boot and test.
#
#   make run     install build deps, build everything, boot in QEMU
#   make test    the same set-up, then lint, unit and QEMU boot tests
#   make bench   benchmarks (boot time against a trivial init; containers
#                against crun and runc; config set/get against the bare operations)
#
# Outputs go to out/. The kernel build is cached outside the clone (see
# kernel-config/build.sh), keyed by its inputs.

SHELL := /bin/bash
.SHELLFLAGS := -eu -o pipefail -c

OUT ?= out
CARGO ?= cargo
# Guest binaries are static glibc binaries: the initramfs has no libc.
GUEST_TARGET := x86_64-unknown-linux-gnu
GUEST_RUSTFLAGS := -C target-feature=+crt-static
GUEST_BIN := target/$(GUEST_TARGET)/release
HOST_BIN := target/debug
STAGE := tools/stage

.PHONY: all deps build guest host kernel initramfs images run test lint unit boot-test \
        bench bench-boot bench-containers bench-config clean

all: kernel initramfs

deps:
	@tools/deps.sh

# Static guest programs: init and the test/benchmark fixtures.
guest: deps
	@$(STAGE) "build guest binaries" env RUSTFLAGS="$(GUEST_RUSTFLAGS)" \
		$(CARGO) build --release --locked --target $(GUEST_TARGET) \
		-p corral-init -p corral-sysd -p corral-net -p corral-guest-tools
	@mkdir -p $(OUT)/guest
	@cp $(GUEST_BIN)/init $(OUT)/init
	@cp $(GUEST_BIN)/sysd $(GUEST_BIN)/corral $(GUEST_BIN)/corral-netconf $(OUT)/
	@cp $(GUEST_BIN)/zombie-storm $(GUEST_BIN)/floor-init $(GUEST_BIN)/container-bench $(OUT)/guest/

# Host tools: the initramfs writer and the VM harness (qemu/run, benchmarks).
host: deps
	@$(STAGE) "build host tools" $(CARGO) build --locked -p corral-tools -p corral-qemu --bins

build: guest host

kernel: deps
	@$(STAGE) "kernel" kernel-config/build.sh $(OUT)

# System container images, written reproducibly by corral-mkimage: busybox
# from its script, the services from their recipes (images/*/image.toml),
# which take files from Debian's packages (cached outside the clone).
RECIPES := $(wildcard images/*/image.toml)
images: host guest
	@$(STAGE) "image busybox" images/busybox/build.sh $(OUT) $(HOST_BIN)/corral-mkimage
	@for r in $(RECIPES); do \
		name=$$(basename $$(dirname $$r)); \
		$(STAGE) "image $$name" $(HOST_BIN)/corral-mkimage --recipe $$r \
			--out-dir $(OUT) --output $(OUT)/images/$$name.tar || exit 1; \
	done

initramfs: guest host images
	@$(STAGE) "initramfs" rootfs/build.sh $(OUT) $(OUT)/init $(HOST_BIN)/corral-initramfs
	@rm -rf $(OUT)/floor.d && mkdir -p $(OUT)/floor.d
	@install -m 0755 $(OUT)/guest/floor-init $(OUT)/floor.d/init
	@$(HOST_BIN)/corral-initramfs --root $(OUT)/floor.d \
		--char-device /dev/console:5:1:600 --output $(OUT)/floor-initramfs.cpio
	@zstd -q -19 -f --rm $(OUT)/floor-initramfs.cpio -o $(OUT)/floor-initramfs.img

run: kernel initramfs
	qemu/run $(RUN_ARGS)

lint: deps
	@$(STAGE) "rustfmt" $(CARGO) fmt --all --check
	@$(STAGE) "clippy" $(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit: deps
	@$(STAGE) "kernel config check" kernel-config/test-check.sh
	@$(STAGE) "unit tests" $(CARGO) test --locked --workspace --exclude corral-qemu
	@$(STAGE) "harness unit tests" $(CARGO) test --locked -p corral-qemu --lib --bins

boot-test: kernel initramfs
	@$(STAGE) "image build test" images/test-reproducible.sh $(OUT) $(HOST_BIN)/corral-mkimage
	@$(STAGE) "QEMU boot tests" $(CARGO) test --locked -p corral-qemu \
		--test boot --test engine --test services --test config --test docker -- --test-threads=2

test: lint unit boot-test

bench: bench-boot bench-containers bench-config

bench-boot: kernel initramfs
	@$(STAGE) "boot benchmark" $(HOST_BIN)/corral-bench boot --runs $${RUNS:-10}

clean:
	rm -rf $(OUT)
	$(CARGO) clean

bench-config: kernel initramfs
	@$(STAGE) "config benchmark" $(HOST_BIN)/corral-bench config --runs $${RUNS:-50}

bench-containers: kernel initramfs
	@$(STAGE) "container benchmark" $(HOST_BIN)/corral-bench containers --runs $${RUNS:-100}
