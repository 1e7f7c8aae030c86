#!/usr/bin/env bash
# build-image.sh: a real Debian 12 or 13 system for the end-to-end tests,
# built on the host with debootstrap (no device-mapper, no guest needed)
# and cached.
#
# Usage: build-image.sh [bookworm|trixie]   (default bookworm)
#
# The system is what a minimal Debian server install gives: systemd, udev,
# initramfs-tools, the stock cloud kernel (linux-image-cloud-amd64),
# e2fsprogs, and the packages the encrypted-install tests need: cryptsetup,
# cryptsetup-initramfs, lvm2 and keyutils (cryptroot opens the root volume
# in the initramfs, as both installers set it up), on Debian 13 also
# systemd-cryptsetup (systemd opens the other volumes of /etc/crypttab),
# and util-linux's setpriv (the key tests drop capabilities with it), so
# one base image per release serves every case. Test conveniences, and
# only these: root has no password and is
# logged in on ttyS0 (the test types at the serial console as an
# administrator would), hostname ukdump-test, timers that would start work
# at boot masked, and an initramfs with only the drivers QEMU's virtio
# machine needs (MODULES=list) so that it builds without seeing a disk.
#
# Output, in ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/<suite>-<hash>/
# where <hash> covers this script, private-apt.sh (the recipe) and the suite:
#   root.img      raw ext4 image of the whole system (sparse, 3 GiB), the
#                 filesystem UUID below; boot it with root=UUID=<uuid>
#   vmlinuz       the installed kernel, initrd.img its initramfs (copies of
#                 /boot, for QEMU's direct kernel boot: no bootloader)
#   release       the kernel release; uuid  the root filesystem UUID
#   kernel.deb    the installed kernel's package, as debootstrap fetched it,
#                 for tests that reinstall it (the kernel hooks)
#   .complete     written last
# stdout: exactly one line, that directory. Chatter goes to stderr.
#
# The mirror is the Debian archive this machine's apt already uses, read at
# run time (private-apt.sh), never written into the repository.
set -euo pipefail

log() { printf 'build-image: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=../kernel/private-apt.sh
. "$here/../kernel/private-apt.sh"
# shellcheck source=image.sh
. "$here/image.sh"

suite="${1:-bookworm}"
packages=(systemd systemd-sysv udev kmod e2fsprogs initramfs-tools linux-image-cloud-amd64 keyutils dmsetup procps lz4
	cryptsetup cryptsetup-initramfs lvm2)
case "$suite" in
bookworm) ;;
trixie) packages+=(systemd-cryptsetup) ;;
*) die "unknown suite $suite (bookworm or trixie)" ;;
esac
# Fixed, so that a test knows the root UUID without reading the image.
uuid=6c7d1a2e-0b5f-4e38-9a51-3f0d2c9e8b17

image_cache "$suite" "$(cat "$here/../kernel/private-apt.sh")" "$suite"
[[ $EUID -eq 0 ]] || die "needs root (debootstrap, chroot)"
command -v debootstrap >/dev/null || die "debootstrap not installed (run .ci/deps)"
command -v mkfs.ext4 >/dev/null || die "mkfs.ext4 not installed (e2fsprogs)"

image_lock
image_work
root="$work/root"
image_mounts=("$root/proc" "$root/dev")

mirror="$(private_apt_archive_mirror)"
start=$SECONDS
log "debootstrap $suite (${#packages[@]} packages and their dependencies)"
include="$(IFS=,; echo "${packages[*]}")"
debootstrap --variant=minbase --include="$include" "$suite" "$root" "$mirror" >&2 ||
	die "debootstrap failed (see $root/debootstrap/debootstrap.log)"
log "debootstrap took $((SECONDS - start)) s"

echo ukdump-test >"$root/etc/hostname"
printf '127.0.0.1\tlocalhost\n127.0.1.1\tukdump-test\n' >"$root/etc/hosts"
printf 'UUID=%s\t/\text4\terrors=remount-ro\t0\t1\n' "$uuid" >"$root/etc/fstab"
chroot "$root" passwd -d root >&2
mkdir -p "$root/etc/systemd/system/serial-getty@ttyS0.service.d"
cat >"$root/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf" <<'UNIT'
[Service]
ExecStart=
ExecStart=-/sbin/agetty --autologin root --noclear --keep-baud 115200,57600,38400,9600 %I $TERM
UNIT
for t in apt-daily.timer apt-daily-upgrade.timer e2scrub_all.timer fstrim.timer; do
	ln -sf /dev/null "$root/etc/systemd/system/$t"
done
# The journal in memory: the tests read what they need from the console,
# and a volatile journal spares the emulated disk.
mkdir -p "$root/etc/systemd/journald.conf.d"
printf '[Journal]\nStorage=volatile\n' >"$root/etc/systemd/journald.conf.d/ukdump-test.conf"

# lz4: under emulation the guest rebuilds its initramfs (a kernel package
# reinstalled by a test) several times faster than with gzip.
printf 'MODULES=list\nCOMPRESS=lz4\n' >"$root/etc/initramfs-tools/conf.d/ukdump-test.conf"
printf '%s\n' virtio_pci virtio_blk ext4 >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
chroot "$root" update-initramfs -u -k all >&2
umount "$root/dev" "$root/proc"

release="$(basename "$(ls "$root"/boot/vmlinuz-* | head -n1)")"
release="${release#vmlinuz-}"
[[ -f "$root/boot/initrd.img-$release" ]] || die "no initramfs for $release"
cp "$root/boot/vmlinuz-$release" "$work/vmlinuz"
cp "$root/boot/initrd.img-$release" "$work/initrd.img"
echo "$release" >"$work/release"
echo "$uuid" >"$work/uuid"
cp "$root/var/cache/apt/archives/linux-image-${release}_"*.deb "$work/kernel.deb" ||
	die "no package of linux-image-$release in the debootstrap cache"
rm -rf "$root/var/cache/apt/archives"/*.deb "$root/var/lib/apt/lists"/*_Packages
mkfs.ext4 -q -F -U "$uuid" -L root -d "$root" "$work/root.img" 3G >&2
rm -rf "$root"
log "built in $((SECONDS - start)) s (kernel $release)"
image_done
