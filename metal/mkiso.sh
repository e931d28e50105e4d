#!/bin/sh
# Corral's live ISO: one hybrid image that boots on BIOS and UEFI, from a
# CD and written raw to a USB stick (grub-mkrescue: El Torito for BIOS and
# for UEFI, a GPT and a protective MBR for sticks).
#
# usage: metal/mkiso.sh OUT_DIR
# Takes OUT_DIR/bzImage, OUT_DIR/initramfs.img and rootfs/etc/os-release;
# writes OUT_DIR/corral.iso.
#
# Reproducible: two builds of the same inputs give the same bytes. Every
# date in the image is SOURCE_DATE_EPOCH (default: the last commit's
# time), the volume UUID is derived from it, and the FAT serial of the
# embedded EFI image is fixed (grub-mkrescue gives mformat no -N, so a
# wrapper earlier on PATH adds one).
set -eu
here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: mkiso.sh OUT_DIR}
out=$(cd "$out" && pwd)
die() { printf 'iso: error: %s\n' "$*" >&2; exit 1; }
for f in bzImage initramfs.img; do
    [ -f "$out/$f" ] || die "$out/$f not found (make kernel initramfs)"
done
command -v grub-mkrescue >/dev/null || die "grub-mkrescue not found (make deps)"

epoch=${SOURCE_DATE_EPOCH:-$(git -C "$here" log -1 --format=%ct 2>/dev/null || echo 0)}
export SOURCE_DATE_EPOCH=$epoch
# xorriso's volume dates: YYYYMMDDhhmmsscc, UTC.
stamp=$(TZ=UTC date -d "@$epoch" +%Y%m%d%H%M%S)00

work=$(mktemp -d "$out/iso.XXXXXX")
trap 'rm -rf "$work"' EXIT
tree=$work/tree
mkdir -p "$tree/boot/grub" "$tree/corral" "$work/bin"
cp "$here/grub-iso.cfg" "$tree/boot/grub/grub.cfg"
cp "$out/bzImage" "$tree/corral/vmlinuz"
cp "$out/initramfs.img" "$tree/corral/initrd.img"
cp "$here/../rootfs/etc/os-release" "$tree/corral/release"
find "$tree" -exec touch -h -d "@$epoch" {} +

cat >"$work/bin/mformat" <<'WRAP'
#!/bin/sh
exec /usr/bin/mformat -N 434f5252 "$@"
WRAP
chmod +x "$work/bin/mformat"

# Only what the menu needs, no locales, fonts or themes (16 MB less,
# metal-notes.md). The part_* modules are the ones grub-mkrescue's own
# early config loads when the image boots as a disk (a USB stick).
PATH="$work/bin:$PATH" grub-mkrescue -o "$work/corral.iso" \
    --locales= --fonts= --themes= --compress=xz \
    --install-modules="normal configfile linux echo test serial terminal sleep iso9660 fat search all_video part_gpt part_msdos part_acorn part_amiga part_apple part_bsd part_dfly part_dvh part_plan part_sun part_sunpc" \
    "$tree" -- \
    -volid CORRAL \
    -volume_date all_file_dates "=$epoch" \
    -volume_date uuid "$stamp" \
    >"$work/log" 2>&1 || { cat "$work/log" >&2; die "grub-mkrescue failed"; }
mv "$work/corral.iso" "$out/corral.iso"
echo "iso: $out/corral.iso ($(stat -c %s "$out/corral.iso") bytes)" >&2
