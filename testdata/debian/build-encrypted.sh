#!/usr/bin/env bash
# build-encrypted.sh: the Debian 12 or 13 system of build-image.sh laid out
# as Debian's installer does for "guided, encrypted LVM": a LUKS volume
# holding an LVM volume group vg0 with the logical volumes root and swap_1,
# opened at boot by initramfs-tools' cryptroot with a passphrase typed on
# the console, and /boot unencrypted beside it.
#
# Usage: build-encrypted.sh [bookworm|trixie] [luks2|luks1]
#   (default bookworm luks2). luks1 is what systems installed before
#   Debian 10 still have, and what people keep so that GRUB can unlock
#   /boot: PBKDF2, which the keyslot forces to 50000 iterations so that
#   an emulated guest unlocks in seconds.
#
# Everything is made on the host by the real tools, without device-mapper:
# lvm2 writes the volume group's metadata onto a loop device with
# activation off, the root filesystem is written at its logical volume's
# physical extents, and cryptsetup encrypts the whole physical volume in
# place (offline "reencrypt --encrypt", which needs no dm-crypt). The LUKS2
# key slot uses Argon2id with 64 MiB, as cryptsetup's own benchmark picks
# under emulation: a 1 GiB guest could not unlock a volume made with this
# machine's 1 GiB default (ukdump never runs that KDF anyway).
#
# Output, in ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/<suite>-enc-<luks>-<hash>/
# (<hash> covers this script, the LUKS version and the base image's
# directory name):
#   disk.img     vda: LUKS2 or LUKS1 (UUID below), inside it the PV of vg0
#   boot.img     vdb: ext4 /boot (vmlinuz, initrd.img-*, config)
#   vmlinuz, initrd.img   for QEMU's direct kernel boot; the initramfs has
#                cryptroot and lvm2 and asks "Please unlock disk vda_crypt"
#   luks-uuid, luks-version, passphrase, release, root-device
#                (/dev/mapper/vg0-root)
#   .complete    written last
# stdout: that directory.
set -euo pipefail

log() { printf 'build-encrypted: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

suite="${1:-bookworm}"
luks="${2:-luks2}"
case "$luks" in
luks2) pbkdf=(--pbkdf argon2id --pbkdf-memory 65536) ;;
luks1) pbkdf=(--pbkdf pbkdf2 --pbkdf-force-iterations 50000 --sector-size 512) ;;
*) die "unknown LUKS version $luks (luks2 or luks1)" ;;
esac
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=image.sh
. "$here/image.sh"
base="$("$here/build-image.sh" "$suite")"
image_cache "$suite-enc-$luks" "$luks" "$(basename "$base")"
[[ $EUID -eq 0 ]] || die "needs root (loop devices, chroot)"
for t in cryptsetup pvcreate losetup mkfs.ext4 mkswap; do
	command -v "$t" >/dev/null || die "$t not installed (run .ci/deps)"
done
image_lock

luks_uuid=3b0f5a8e-1c2d-4e6f-8a9b-7c6d5e4f3a21
boot_uuid=9e8d7c6b-5a49-4837-a261-5f4e3d2c1b0a
root_uuid=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f
passphrase=ukdump-test-passphrase
image_work
loop=
image_on_exit() { [[ -z "$loop" ]] || losetup -d "$loop" 2>/dev/null || true; }
image_mounts=("$work/base" "$work/root/proc" "$work/root/dev")
start=$SECONDS

# The system's files, from the base image (mounted read-only: ext4 needs no
# device-mapper).
mkdir -p "$work/base" "$work/root"
mount -o ro,loop "$base/root.img" "$work/base"
cp -a "$work/base/." "$work/root/"
umount "$work/base"
root="$work/root"
release="$(cat "$base/release")"

cat >"$root/etc/fstab" <<FSTAB
/dev/mapper/vg0-root	/	ext4	errors=remount-ro	0	1
UUID=$boot_uuid	/boot	ext4	defaults	0	2
/dev/mapper/vg0-swap_1	none	swap	sw	0	0
FSTAB
# "initramfs": cryptroot includes the volume although, in this chroot, it
# cannot see that the root filesystem lies on it.
printf 'vda_crypt UUID=%s none luks,discard,initramfs\n' "$luks_uuid" >"$root/etc/crypttab"
# The drivers cryptroot would find on a booted system.
printf '%s\n' dm_mod dm_crypt aesni_intel xts ecb >>"$root/etc/initramfs-tools/modules"
printf 'RESUME=none\n' >"$root/etc/initramfs-tools/conf.d/resume"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
chroot "$root" update-initramfs -u -k "$release" >&2
umount "$root/dev" "$root/proc"
# (Listed to a variable: grep -q would close the pipe early, which
# pipefail reports as a failure.)
listing="$(chroot "$root" lsinitramfs "/boot/initrd.img-$release")"
grep -qx 'cryptroot/crypttab' <<<"$listing" ||
	die "the initramfs has no cryptroot/crypttab: cryptroot would not unlock vda_crypt"

# /boot on its own disk, as the installer does on its own partition.
mkdir -p "$work/boot"
mv "$root/boot/"* "$work/boot/"
mkfs.ext4 -q -F -U "$boot_uuid" -L boot -d "$work/boot" "$work/boot.img" 256M >&2
cp "$work/boot/vmlinuz-$release" "$work/vmlinuz"
cp "$work/boot/initrd.img-$release" "$work/initrd.img"

# The physical volume, laid out by lvm2 on a loop device.
pv="$work/pv.img"
truncate -s 1800M "$pv"
loop="$(losetup -f --show "$pv")"
export LVM_SUPPRESS_FD_WARNINGS=1
# No activation: the host has no device-mapper.
lvm() { command lvm "$@" --config 'global { activation = 0 } devices { obtain_device_list_from_udev = 0 }'; }
lvm pvcreate -q "$loop" >&2
lvm vgcreate -q vg0 "$loop" >&2
lvm lvcreate -q -an -Zn -L 1500M -n root vg0 >&2
lvm lvcreate -q -an -Zn -l 100%FREE -n swap_1 vg0 >&2
ext=$(lvm vgs --noheadings --units s --nosuffix -o vg_extent_size vg0 | tr -d ' ')
pe_start=$(lvm pvs --noheadings --units s --nosuffix -o pe_start "$loop" | tr -d ' ')
seg() { # LV -> first PE of its single segment
	lvm lvs --noheadings --segments -o seg_pe_ranges "vg0/$1" | tr -d ' ' | sed -n 's/.*:\([0-9]*\)-[0-9]*$/\1/p'
}
root_pe=$(seg root)
swap_pe=$(seg swap_1)
losetup -d "$loop"
loop=
log "vg0: extent $ext sectors, pe_start $pe_start, root at PE $root_pe, swap_1 at PE $swap_pe"

rootfs="$work/rootfs.img"
mkfs.ext4 -q -F -U "$root_uuid" -L root -d "$root" "$rootfs" 1500M >&2
dd if="$rootfs" of="$pv" bs=1M seek=$(((pe_start + root_pe * ext) / 2048)) conv=notrunc,sparse status=none
rm -f "$rootfs"
swap="$work/swap.img"
truncate -s 64M "$swap"
mkswap -q "$swap" >&2
dd if="$swap" of="$pv" bs=1M seek=$(((pe_start + swap_pe * ext) / 2048)) conv=notrunc,sparse status=none
rm -f "$swap"
rm -rf "$root"

# Encrypt the physical volume in place: its contents keep their offsets
# inside the LUKS2 data segment.
truncate -s +16M "$pv"
# cryptsetup encrypts offline into LUKS2 only (its LUKS1 path needs
# device-mapper); a LUKS1 volume is that LUKS2 one converted, as
# "cryptsetup convert --type luks1" does for people who keep LUKS1 for
# GRUB (PBKDF2 keyslots and 512-byte sectors are what LUKS1 can hold).
printf '%s' "$passphrase" | cryptsetup reencrypt --batch-mode --encrypt --type luks2 \
	--reduce-device-size 16M --uuid "$luks_uuid" "${pbkdf[@]}" \
	--key-file - "$pv" >&2
if [[ "$luks" == luks1 ]]; then
	cryptsetup convert --batch-mode --type luks1 "$pv" >&2
fi
mv "$pv" "$work/disk.img"

echo "$luks_uuid" >"$work/luks-uuid"
echo "${luks#luks}" >"$work/luks-version"
echo "$passphrase" >"$work/passphrase"
echo "$release" >"$work/release"
echo /dev/mapper/vg0-root >"$work/root-device"
log "built in $((SECONDS - start)) s"
image_done
