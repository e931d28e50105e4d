# Corral: build, boot and test.
#
#   make run     install build deps, build everything, boot in QEMU
#   make test    the same set-up, then lint, unit and QEMU boot tests
#   make iso     out/corral.iso: the live system for BIOS and UEFI, CD or USB
#   make disk    out/corral.img and out/corral.qcow2: the installed layout
#   make release the ISO, the disk image and out/corral-VERSION.bundle, the
#                signed upgrade for `corral os upgrade` (RELEASE_KEY signs),
#                and the same as an image to push, out/corral-VERSION.oci.tar
#   make bench   benchmarks (boot time against a trivial init; containers
#                against crun, runc and dockerd; config set/get against the bare
#                operations; docker pull against skopeo copy)
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

.PHONY: all deps build guest host kernel initramfs images iso disk run test lint unit boot-test fuzz fuzz-short \
        bench bench-boot bench-containers bench-config bench-images bench-build release clean

all: kernel initramfs

deps:
	@tools/deps.sh

# Static guest programs: init and the test/benchmark fixtures. cargo
# leaves an unchanged binary alone and `install -C` an unchanged copy, so
# nothing below is rebuilt when nothing changed: a second `make run`
# boots at once.
GUEST_PROGRAMS := init sysd corral corral-monitor corral-netconf
GUEST_FIXTURES := zombie-storm floor-init container-bench
GUEST_FILES := $(addprefix $(OUT)/,$(GUEST_PROGRAMS)) $(addprefix $(OUT)/guest/,$(GUEST_FIXTURES))
guest: deps
	@$(STAGE) "build guest binaries" env RUSTFLAGS="$(GUEST_RUSTFLAGS)" \
		$(CARGO) build --release --locked --target $(GUEST_TARGET) \
		-p corral-init -p corral-sysd -p corral-net -p corral-guest-tools
	@mkdir -p $(OUT)/guest
	@install -C -m 0755 $(addprefix $(GUEST_BIN)/,$(GUEST_PROGRAMS)) $(OUT)/
	@install -C -m 0755 $(addprefix $(GUEST_BIN)/,$(GUEST_FIXTURES)) $(OUT)/guest/
$(GUEST_FILES): guest ; @:

# Host tools: the initramfs writer and the VM harness (qemu/run, benchmarks).
MKIMAGE := $(HOST_BIN)/corral-mkimage
MKCPIO := $(HOST_BIN)/corral-initramfs
MKDISK := $(HOST_BIN)/corral-mkdisk
MKBUNDLE := $(HOST_BIN)/corral-bundle
host: deps
	@$(STAGE) "build host tools" $(CARGO) build --locked -p corral-tools -p corral-qemu --bins
$(MKIMAGE) $(MKCPIO) $(MKDISK) $(MKBUNDLE): host ; @:

build: guest host

kernel: deps
	@$(STAGE) "kernel" kernel-config/build.sh $(OUT)

# System container images, written reproducibly by corral-mkimage: busybox
# from its script, the services from their recipes (images/*/image.toml),
# which take files from Debian's packages (cached outside the clone). An
# image is rebuilt when its recipe directory, the project's binaries, the
# tool or the files recipes take from rootfs/etc change.
RECIPES := $(wildcard images/*/image.toml)
IMAGE_TARS := $(OUT)/images/busybox.tar \
	$(patsubst images/%/image.toml,$(OUT)/images/%.tar,$(RECIPES))
ROOTFS_ETC := $(shell find rootfs/etc -type f)
# Debian's files the images and the initramfs take, installed by deps.
HOST_INPUTS := /bin/busybox /usr/bin/tini-static
$(HOST_INPUTS): deps ; @:
.SECONDEXPANSION:
.DELETE_ON_ERROR:
$(OUT)/images/busybox.tar: images/busybox/build.sh $(ROOTFS_ETC) $(MKIMAGE) /bin/busybox
	@$(STAGE) "image busybox" images/busybox/build.sh $(OUT) $(MKIMAGE)
$(OUT)/images/%.tar: $$(wildcard images/$$*/*) $(ROOTFS_ETC) $(GUEST_FILES) $(MKIMAGE)
	@$(STAGE) "image $*" $(MKIMAGE) --recipe images/$*/image.toml \
		--out-dir $(OUT) --output $@
# The user engine's recipe copies the console's users (`docker top`).
$(OUT)/images/user-engine.tar: images/console/passwd
images: $(IMAGE_TARS)

METAL_LOADERS := $(addprefix $(OUT)/metal/,boot.img core.img BOOTX64.EFI grub.cfg)

# The release key signs upgrade bundles; its public half goes into the
# initramfs as the key the system trusts by default ([os] trusted-keys).
# Made on first use, outside the clone, so builds on this machine keep
# trusting each other; give RELEASE_KEY=... to sign with your own (an
# unencrypted minisign secret key: `minisign -G -W`).
RELEASE_KEY ?= $(HOME)/.local/share/corral/release.key
VERSION := $(shell sed -n 's/^VERSION_ID=//p' rootfs/etc/os-release)
# Runs every time, rewrites the file only when the key changed.
$(OUT)/release.pub: host
	@mkdir -p $(OUT)
	@$(MKBUNDLE) keygen --secret $(RELEASE_KEY) --public $@

$(OUT)/initramfs.img: $(METAL_LOADERS) $(OUT)/release.pub rootfs/build.sh rootfs/e2fsprogs.toml $(ROOTFS_ETC) $(GUEST_FILES) \
		$(IMAGE_TARS) $(MKCPIO) $(MKIMAGE) /bin/busybox /usr/bin/tini-static
	@$(STAGE) "initramfs" rootfs/build.sh $(OUT) $(OUT)/init $(MKCPIO)
$(OUT)/floor-initramfs.img: $(OUT)/guest/floor-init $(MKCPIO)
	@rm -rf $(OUT)/floor.d && mkdir -p $(OUT)/floor.d
	@install -m 0755 $(OUT)/guest/floor-init $(OUT)/floor.d/init
	@$(MKCPIO) --root $(OUT)/floor.d \
		--char-device /dev/console:5:1:600 --output $(OUT)/floor-initramfs.cpio
	@zstd -q -19 -f --rm $(OUT)/floor-initramfs.cpio -o $(OUT)/floor-initramfs.img
initramfs: $(OUT)/initramfs.img $(OUT)/floor-initramfs.img

# Bare metal (metal/): GRUB's loaders, the hybrid ISO and the disk image.
# None needs root, loop devices or mounts. The kernel target refreshes
# out/bzImage only when it changed, so these rebuild only on a change.
$(OUT)/bzImage: kernel ; @:
$(METAL_LOADERS) &: metal/grub.sh metal/grub-disk.cfg | deps
	@$(STAGE) "GRUB loaders" metal/grub.sh $(OUT)
$(OUT)/corral.iso: metal/mkiso.sh metal/grub-iso.cfg rootfs/etc/os-release $(OUT)/bzImage $(OUT)/initramfs.img
	@$(STAGE) "ISO" metal/mkiso.sh $(OUT)
$(OUT)/corral.img: $(METAL_LOADERS) $(OUT)/bzImage $(OUT)/initramfs.img rootfs/etc/os-release $(MKDISK)
	@$(STAGE) "disk image" $(MKDISK) --loaders $(OUT)/metal --kernel $(OUT)/bzImage \
		--initrd $(OUT)/initramfs.img --release rootfs/etc/os-release --output $@
# The qcow2 is the raw image on an 8 GiB virtual disk (sparse): the first
# boot makes the state partition fill it.
$(OUT)/corral.qcow2: $(OUT)/corral.img
	@qemu-img convert -f raw -O qcow2 $< $@.tmp
	@qemu-img resize -q $@.tmp 8G
	@mv $@.tmp $@
iso: $(OUT)/corral.iso
disk: $(OUT)/corral.img $(OUT)/corral.qcow2
$(OUT)/corral-$(VERSION).bundle: $(OUT)/bzImage $(OUT)/initramfs.img rootfs/etc/os-release $(OUT)/release.pub $(MKBUNDLE)
	@$(STAGE) "upgrade bundle" $(MKBUNDLE) create --kernel $(OUT)/bzImage --initrd $(OUT)/initramfs.img \
		--release rootfs/etc/os-release --secret $(RELEASE_KEY) --output $@
# The same bundle as an image (an OCI archive holding /corral.bundle), to
# push to a registry for `corral os upgrade IMAGE`.
$(OUT)/corral-$(VERSION).oci.tar: $(OUT)/corral-$(VERSION).bundle $(MKBUNDLE)
	@$(STAGE) "upgrade image" $(MKBUNDLE) image --bundle $< --name corral:$(VERSION) --output $@
release: iso disk $(OUT)/corral-$(VERSION).bundle $(OUT)/corral-$(VERSION).oci.tar
	@ls -l $(OUT)/corral.iso $(OUT)/corral.img $(OUT)/corral.qcow2 $(OUT)/corral-$(VERSION).bundle \
		$(OUT)/corral-$(VERSION).oci.tar

run: kernel initramfs
	qemu/run $(RUN_ARGS)

lint: deps
	@$(STAGE) "rustfmt" $(CARGO) fmt --all --check
	@$(STAGE) "rustfmt (fuzz targets)" rustfmt --edition 2021 --check fuzz/fuzz_targets/*.rs
	@$(STAGE) "clippy" $(CARGO) clippy --locked --workspace --all-targets -- -D warnings

unit: deps
	@$(STAGE) "kernel config check" kernel-config/test-check.sh
	@$(STAGE) "unit tests" $(CARGO) test --locked --workspace --exclude corral-qemu
	@$(STAGE) "harness unit tests" $(CARGO) test --locked -p corral-qemu --lib --bins

boot-test: kernel initramfs iso disk $(OUT)/corral-$(VERSION).bundle
	@$(STAGE) "image build test" images/test-reproducible.sh $(OUT) $(HOST_BIN)/corral-mkimage
	@$(STAGE) "ISO and disk image build test" metal/test-reproducible.sh $(OUT) $(MKDISK)
	@$(STAGE) "QEMU boot tests" tools/boot-tests "boot networks config build upgrade" "docker registry services engine metal"

test: lint unit boot-test

# Every parser of outside input under libFuzzer (fuzz/): FUZZ_SECONDS per
# target (default 10 minutes); fuzz-short is the bounded run.
fuzz: deps
	@$(STAGE) "fuzzing" tools/fuzz $${FUZZ_SECONDS:-600}

fuzz-short: deps
	@$(STAGE) "short fuzzing" tools/fuzz $${FUZZ_SECONDS:-20}

bench: bench-boot bench-containers bench-config bench-images bench-build

bench-boot: kernel initramfs iso disk $(OUT)/corral-$(VERSION).bundle
	@$(STAGE) "boot benchmark" $(HOST_BIN)/corral-bench boot --runs $${RUNS:-10}
	@$(STAGE) "firmware and upgrade benchmark" $(HOST_BIN)/corral-bench firmware --runs $${RUNS:-5}

clean:
	rm -rf $(OUT)
	$(CARGO) clean

bench-images: kernel initramfs host
	@$(STAGE) "image benchmark" $(HOST_BIN)/corral-bench images --runs $${RUNS:-5}

bench-config: kernel initramfs
	@$(STAGE) "config benchmark" $(HOST_BIN)/corral-bench config --runs $${RUNS:-50}

# The benchmark's peer engine, Debian's dockerd 20.10 (not a system image).
$(OUT)/bench/docker-peer.tar: qemu/bench/docker-peer/image.toml $(MKIMAGE)
	@mkdir -p $(OUT)/bench
	@$(STAGE) "image docker-peer" $(MKIMAGE) --recipe $< --out-dir $(OUT) --output $@

bench-containers: kernel initramfs $(OUT)/bench/docker-peer.tar
	@$(STAGE) "container benchmark" $(HOST_BIN)/corral-bench containers --runs $${RUNS:-100}

bench-build: kernel initramfs $(OUT)/bench/docker-peer.tar
	@$(STAGE) "build benchmark" $(HOST_BIN)/corral-bench build --runs $${RUNS:-5}
