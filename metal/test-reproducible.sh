#!/bin/sh
# The ISO and disk image build test: each built a second time, elsewhere,
# gives the same bytes; the disk image's FAT filesystems pass fsck.fat.
#
# usage: metal/test-reproducible.sh OUT_DIR MKDISK
set -eu
out=${1:?usage: test-reproducible.sh OUT_DIR MKDISK}
mkdisk=${2:?usage: test-reproducible.sh OUT_DIR MKDISK}
here=$(cd "$(dirname "$0")" && pwd)
out=$(cd "$out" && pwd)
again=$(mktemp -d "$out/metal-again.XXXXXX")
trap 'rm -rf "$again"' EXIT
fail=0
same() {
    a=$(sha256sum <"$2" | cut -d' ' -f1)
    b=$(sha256sum <"$3" | cut -d' ' -f1)
    if [ "$a" = "$b" ]; then
        echo "metal test: $1: two builds are identical (sha256 $a)"
    else
        echo "metal test: $1: FAILED: the builds differ ($a, $b)" >&2
        fail=1
    fi
}

ln -s "$out/bzImage" "$again/bzImage"
ln -s "$out/initramfs.img" "$again/initramfs.img"
"$here/mkiso.sh" "$again" 2>/dev/null
same corral.iso "$out/corral.iso" "$again/corral.iso"

"$mkdisk" --loaders "$out/metal" --kernel "$out/bzImage" --initrd "$out/initramfs.img" \
    --release "$here/../rootfs/etc/os-release" --output "$again/corral.img"
same corral.img "$out/corral.img" "$again/corral.img"

# ESP, slot A, slot B (MiB offsets and sizes from disk/src/lib.rs).
for part in EFI:2:64 CORRAL_A:66:256 CORRAL_B:322:256; do
    name=${part%%:*}
    rest=${part#*:}
    dd if="$out/corral.img" of="$again/part.img" bs=1M skip="${rest%:*}" count="${rest#*:}" status=none
    if result=$(fsck.fat -n "$again/part.img" 2>&1); then
        echo "metal test: $name: fsck.fat clean ($(echo "$result" | tail -n 1 | sed 's/.*: //'))"
    else
        echo "metal test: $name: FAILED: fsck.fat: $result" >&2
        fail=1
    fi
done
exit "$fail"
