#!/bin/sh
# The busybox image: Debian's busybox-static with every applet, and the
# base files of Corral's root (passwd, group, profile, os-release). The
# built-in console service runs from it.
#
# usage: images/busybox/build.sh OUT_DIR MKIMAGE
set -eu

here=$(cd "$(dirname "$0")/../.." && pwd)
out=${1:?usage: build.sh OUT_DIR MKIMAGE}
mkimage=${2:?usage: build.sh OUT_DIR MKIMAGE}
busybox=${BUSYBOX:-/bin/busybox}

mkdir -p "$out/images"
stage="$out/images/busybox.d"
rm -rf "$stage"
mkdir -p "$stage/bin" "$stage/etc" "$stage/root" "$stage/tmp" "$stage/proc" "$stage/sys" "$stage/dev"
chmod 0700 "$stage/root"
chmod 1777 "$stage/tmp"
install -m 0755 "$busybox" "$stage/bin/busybox"
"$busybox" --list-full | while read -r applet; do
    [ "$applet" = bin/busybox ] && continue
    mkdir -p "$stage/$(dirname "$applet")"
    ln -s /bin/busybox "$stage/$applet"
done
for f in passwd group profile os-release; do
    cp "$here/rootfs/etc/$f" "$stage/etc/$f"
done
# The host's /etc/hosts is a link to the running system's; an image gets
# the loopback names only, as Docker's base images do.
printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' > "$stage/etc/hosts"
"$mkimage" --rootfs "$stage" --name busybox:latest --cmd /bin/sh \
    --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --output "$out/images/busybox.tar"
