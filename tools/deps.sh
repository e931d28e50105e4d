#!/bin/sh
# Install the Debian packages Corral's build, run and tests need, if any is
# missing (dosfstools, mtools: the boot tests' NoCloud config drive; crun, runc:
# the peers of `make bench-containers`; docker-compose and python3-paramiko, which its docker-py needs for ssh:// even when it runs ssh itself: the compose boot test; bzip2: the build test's ADD of a .tar.bz2; grub-*, xorriso, ovmf: `make iso` and `make disk`, and booting them under UEFI; ssh-audit: the services boot test audits the guest's sshd). As root it runs apt-get; otherwise it prints the command.
set -eu

packages="
    qemu-system-x86 qemu-utils
    busybox-static tini cpio zstd file
    linux-source-6.1 bc flex bison libelf-dev libssl-dev xz-utils make gcc
    openssh-client skopeo docker-registry ssh-audit
    dosfstools mtools
    crun runc
    docker-compose python3-paramiko
    bzip2
    grub-common grub-pc-bin grub-efi-amd64-bin xorriso ovmf
"

missing=""
for p in $packages; do
    status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
    [ "$status" = "install ok installed" ] || missing="$missing $p"
done

if [ -z "$missing" ]; then
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "deps: missing Debian packages:$missing" >&2
    echo "deps: install them with: sudo apt-get update && sudo apt-get install -y --no-install-recommends$missing" >&2
    exit 1
fi

echo "deps: installing$missing" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -q
# shellcheck disable=SC2086
apt-get install -y -q --no-install-recommends $missing
