#!/bin/sh
# GRUB's loaders for Corral's disk image, from Debian's GRUB 2.06 packages:
#   OUT/metal/boot.img     the MBR boot code (i386-pc)
#   OUT/metal/core.img     BIOS: loaded from the BIOS boot partition
#   OUT/metal/BOOTX64.EFI  UEFI: the ESP's removable-media path
#   OUT/metal/grub.cfg     the boot menu (metal/grub-disk.cfg)
# Both carry their modules inside and read grub.cfg from the ESP. The
# output is deterministic (grub-mkimage embeds no date), so the disk image
# built from them is too.
#
# usage: metal/grub.sh OUT_DIR
set -eu
out=${1:?usage: grub.sh OUT_DIR}/metal
mkdir -p "$out"

# What grub-disk.cfg uses: GPT and FAT, the environment block, regexp and
# test for the A/B choice, the serial terminal, the Linux loader.
modules="part_gpt fat normal configfile linux echo test loadenv regexp serial terminal sleep"

grub-mkimage -O i386-pc -p '(,gpt2)/grub' -o "$out/core.img.tmp" \
    biosdisk $modules
mv "$out/core.img.tmp" "$out/core.img"
cp /usr/lib/grub/i386-pc/boot.img "$out/boot.img"
# all_video (efi_gop, efi_uga) hands the firmware's framebuffer to
# the kernel, which draws its console there (FB_EFI).
grub-mkimage -O x86_64-efi -p /grub -o "$out/BOOTX64.EFI.tmp" \
    all_video $modules
mv "$out/BOOTX64.EFI.tmp" "$out/BOOTX64.EFI"
# The menu that chooses the slot (read from the ESP by both loaders).
here=$(cd "$(dirname "$0")" && pwd)
cp "$here/grub-disk.cfg" "$out/grub.cfg"
