#!/bin/sh
# Assemble Corral's initramfs.
#
# usage: rootfs/build.sh OUT_DIR INIT MKCPIO [MKIMAGE]
#   INIT    the static init binary
#   MKCPIO  the corral-initramfs tool (writes reproducible cpio archives)
#   MKIMAGE corral-mkimage, which stages e2fsprogs (rootfs/e2fsprogs.toml)
#           from Debian's package with its libraries
#
# Also takes OUT_DIR/sysd, OUT_DIR/corral and OUT_DIR/corral-monitor (the
# engine, its CLI and the per-container monitor),
# OUT_DIR/images/*.tar (system images, imported by sysd at boot) and
# Debian's tini-static (the container init for `init = true`) and
# OUT_DIR/metal (GRUB's loaders, installed by `corral install`).
#
# Writes OUT_DIR/initramfs.img (zstd-compressed cpio). The tree is staged in
# OUT_DIR/initramfs.d, which is left behind for inspection.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
out=${1:?usage: build.sh OUT_DIR INIT MKCPIO}
init=${2:?usage: build.sh OUT_DIR INIT MKCPIO}
mkcpio=${3:?usage: build.sh OUT_DIR INIT MKCPIO}
mkimage=${4:-$(dirname "$mkcpio")/corral-mkimage}
busybox=${BUSYBOX:-/bin/busybox}
tini=${TINI:-/usr/bin/tini-static}

abspath() { case $1 in /*) echo "$1" ;; *) echo "$PWD/$1" ;; esac; }
mkdir -p "$out"
out=$(cd "$out" && pwd)
init=$(abspath "$init")
mkcpio=$(abspath "$mkcpio")
mkimage=$(abspath "$mkimage")

die() { printf 'initramfs: error: %s\n' "$*" >&2; exit 1; }
[ -x "$init" ] || die "init binary $init not found (make build)"
[ -x "$busybox" ] || die "$busybox not found (install busybox-static: make deps)"
[ -x "$tini" ] || die "$tini not found (install tini: make deps)"
for bin in sysd corral corral-monitor; do
    [ -x "$out/$bin" ] || die "$out/$bin not found (make build)"
done
ls "$out"/images/*.tar >/dev/null 2>&1 || die "no system images in $out/images (make images)"
file -L "$busybox" 2>/dev/null | grep -q 'statically linked' ||
    die "$busybox is not statically linked (install busybox-static, not busybox)"

# mke2fs and e2fsck with their libraries, for the state disk.
"$mkimage" --recipe "$here/e2fsprogs.toml" --out-dir "$out" --stage-only --output "$out/e2fsprogs.d" >/dev/null

stage="$out/initramfs.d"
rm -rf "$stage"
mkdir -p "$stage"
cd "$stage"

mkdir -p bin sbin usr/bin usr/sbin usr/libexec/corral usr/share/corral/images usr/share/corral/boot etc proc sys dev run tmp root var/lib/corral var/log
chmod 0700 root
chmod 1777 tmp
cp -R "$here/etc/." etc/

# init is /init (what the kernel runs) and answers to its other names.
install -m 0755 "$init" init
for name in init poweroff reboot halt; do
    ln -s /init "sbin/$name"
done

# The container engine, its CLI, the container init and the system images.
install -m 0755 "$out/sysd" usr/bin/sysd
install -m 0755 "$out/corral" usr/bin/corral
install -m 0755 "$out/corral-monitor" usr/libexec/corral/monitor
install -m 0755 "$tini" usr/libexec/corral/tini
for image in "$out"/images/*.tar; do
    install -m 0644 "$image" usr/share/corral/images/
done

# Mozilla's CAs, as the user engine's image has them from Debian's
# ca-certificates, where TLS clients look (every file in /etc/ssl/certs):
# what the system engine checks servers against when `corral os upgrade`
# fetches a bundle over HTTPS or from a registry.
cas="$out/images/user-engine.d/usr/share/ca-certificates/mozilla"
[ -d "$cas" ] || die "$cas not found (make images)"
mkdir -p etc/ssl
cp -R "$cas" etc/ssl/certs
chmod -R u=rwX,go=rX etc/ssl

# The build's release key (public half): upgrades signed with it are
# trusted unless the config names other keys ([os] trusted-keys).
[ -f "$out/release.pub" ] || die "$out/release.pub not found (make: the release key)"
install -m 0644 "$out/release.pub" usr/share/corral/release.pub

# GRUB's loaders and the disk's boot menu, for `corral install`
# (OUT_DIR/metal, from metal/grub.sh).
for f in boot.img core.img BOOTX64.EFI grub.cfg; do
    [ -f "$out/metal/$f" ] || die "$out/metal/$f not found (make: metal/grub.sh)"
    install -m 0644 "$out/metal/$f" usr/share/corral/boot/
done

# busybox for the shell and the rescue tools, minus the applets init replaces.
install -m 0755 "$busybox" bin/busybox
"$busybox" --list-full | while read -r applet; do
    case $applet in
        linuxrc | sbin/init | sbin/poweroff | sbin/reboot | sbin/halt | bin/busybox) continue ;;
    esac
    mkdir -p "$(dirname "$applet")"
    ln -s /bin/busybox "$applet"
done

# After busybox: e2fsprogs' real mke2fs and e2fsck replace its applets.
cp -a --remove-destination "$out/e2fsprogs.d/." .
ln -sf mke2fs sbin/mkfs.ext4
ln -sf e2fsck sbin/fsck.ext4
# The network service writes the resolver config; / links to it like
# every system image does.
ln -s /run/corral/net/resolv.conf etc/resolv.conf
# init writes the hosts file (the host name on 127.0.1.1) there too, and
# sysd rewrites it when the host name changes.
ln -s /run/corral/net/hosts etc/hosts

cd - >/dev/null
"$mkcpio" --root "$stage" \
    --char-device /dev/console:5:1:600 \
    --char-device /dev/null:1:3:666 \
    --output "$out/initramfs.cpio"
zstd -q -19 -f "$out/initramfs.cpio" -o "$out/initramfs.img"
rm -f "$out/initramfs.cpio"
printf 'initramfs: %s (%s bytes)\n' "$out/initramfs.img" "$(stat -c %s "$out/initramfs.img")"
