#!/bin/sh
# Build Corral's kernel: tinyconfig + the fragments in this directory, from
# Debian's linux-source-6.1 package, everything built in.
#
# usage: kernel-config/build.sh OUT_DIR
#
# The result is cached outside the clone, keyed by the hash of the fragments,
# this script and the kernel source tarball, so the ~8 minute build happens
# once per machine and input change. Writes OUT_DIR/bzImage and
# OUT_DIR/kernel.config.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)
src_tar=${KERNEL_SOURCE_TARBALL:-/usr/src/linux-source-6.1.tar.xz}
cache_root=${CORRAL_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/corral}
jobs=${JOBS:-$(nproc)}

log() { printf 'kernel: %s\n' "$*" >&2; }
die() { printf 'kernel: error: %s\n' "$*" >&2; exit 1; }

[ -r "$src_tar" ] || die "kernel source $src_tar not found (install linux-source-6.1: make deps)"

fragments=$(ls "$here"/*.config)
# check.sh decides what a good build is, so it is part of the key too. The
# tarball is big; hashing its package version would be cheaper, but a content
# hash is what keeps a locally replaced tarball honest.
key=$( {
    for f in $fragments; do sha256sum < "$f"; done
    sha256sum < "$here/build.sh"
    sha256sum < "$here/check.sh"
    sha256sum < "$src_tar"
} | sha256sum | cut -c1-16)

cache="$cache_root/kernel/$key"
# out/bzImage is replaced only when it differs, so what is built from it
# (the ISO, the disk image) is not rebuilt by a no-op `make`.
install_outputs() {
    cmp -s "$cache/bzImage" "$out/bzImage" ||
        { cp "$cache/bzImage" "$out/bzImage.tmp" && mv "$out/bzImage.tmp" "$out/bzImage"; }
    cmp -s "$cache/kernel.config" "$out/kernel.config" ||
        cp "$cache/kernel.config" "$out/kernel.config"
}
if [ -f "$cache/bzImage" ] && [ -f "$cache/kernel.config" ]; then
    log "cached build $key ($cache)"
    install_outputs
    exit 0
fi

build="$cache_root/kernel/build-$key"
rm -rf "$build"
mkdir -p "$build"
trap 'rm -rf "$build"' EXIT
log "extracting $src_tar"
tar -xf "$src_tar" -C "$build" --strip-components=1

cd "$build"
log "configuring: tinyconfig + $(echo "$fragments" | xargs -n1 basename | tr '\n' ' ')"
make -s tinyconfig >/dev/null
# -m: merge only; olddefconfig then resolves dependencies once. Choice
# overrides (zstd over xz, SLUB over SLOB) make both warn; they are intended,
# and check.sh below is what catches real losses, so the output is shown only
# on failure.
./scripts/kconfig/merge_config.sh -m .config $fragments >kconfig.log 2>&1 &&
    make -s olddefconfig >>kconfig.log 2>&1 ||
    { cat kconfig.log >&2; die "merging the config fragments failed"; }

# Every option requested by a fragment must be in the final config exactly as
# written; check.sh names the ones Kconfig dropped.
"$here/check.sh" .config $fragments || die "fix kernel-config/*.config (see above)"

log "building bzImage with $jobs jobs (about 8 minutes on 2 cores)"
start=$(date +%s)
make -s -j"$jobs" bzImage KBUILD_BUILD_TIMESTAMP='1970-01-01' KBUILD_BUILD_USER=corral KBUILD_BUILD_HOST=corral
log "built in $(( $(date +%s) - start )) s"

mkdir -p "$cache.tmp"
cp arch/x86/boot/bzImage "$cache.tmp/bzImage"
cp .config "$cache.tmp/kernel.config"
rm -rf "$cache"
mv "$cache.tmp" "$cache"
install_outputs
log "bzImage: $(stat -c %s "$out/bzImage") bytes, cached as $key"
