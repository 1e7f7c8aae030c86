#!/usr/bin/env bash
# build-backports.sh: the Debian 13 system of "build-image.sh trixie" with
# Debian's own 7.3 kernel from trixie-backports installed as a user
# installs it: dpkg of its packages (linux-image, linux-binary, linux-base,
# linux-modules, and linux-base from trixie-backports), in a chroot on the host, whose kernel postinst runs the
# hooks (initramfs-tools builds its initramfs). Those packages keep the
# image and config beside the modules, /usr/lib/modules/<release>/vmlinuz
# and config, not in /boot, as Fedora's kernel-core does.
#
# Usage: build-backports.sh
#
# Output, in ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/trixie-bpo-<hash>/
# (<hash> covers this script, private-apt.sh, the kernel's version and the
# base image's directory name):
#   root.img     the system, root=UUID=<uuid>, the 7.3 kernel installed; its
#                packages also in /root/backports/*.deb (a test reinstalls
#                them, as a kernel update does)
#   debs/        those packages, for tests that install them elsewhere
#   vmlinuz, initrd.img   the 7.3 kernel and its initramfs, for QEMU's
#                direct kernel boot
#   release, uuid
#   .complete    written last
# stdout: that directory.
set -euo pipefail

log() { printf 'build-backports: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=../kernel/private-apt.sh
. "$here/../kernel/private-apt.sh"
# shellcheck source=image.sh
. "$here/image.sh"
base="$("$here/build-image.sh" trixie)"
images="${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images"
apt_dir="$images/.trixie-backports-apt"
mkdir -p "$images"
exec 9>"$images/.trixie-backports.lock"
flock 9

private_apt_setup "$apt_dir" trixie-backports
papt() { private_apt "$apt_dir" "$@"; }
# The newest 7.3 cloud kernel the lists know; the lists are fetched once,
# and again only when they know none.
newest() {
	{ papt apt-cache pkgnames linux-image-7.3 2>/dev/null || true; } | { grep -E '^linux-image-7\.3\.[0-9]+\+deb13-cloud-amd64$' || true; } | sort -V | tail -n1
}
pkg="$(newest)"
if [[ -z "$pkg" ]]; then
	log "apt-get update (trixie-backports only, private lists in $apt_dir)"
	papt apt-get update -qq >&2 || die "apt-get update of trixie-backports failed"
	pkg="$(newest)"
fi
[[ -n "$pkg" ]] || die "trixie-backports has no linux-image-7.3.*+deb13-cloud-amd64"
release="${pkg#linux-image-}"
version="$(papt apt-cache policy "$pkg" | awk '/^  Candidate:/ {print $2}')"

# (The lock above is the image's too: image_lock is not needed.)
image_cache trixie-bpo "$(cat "$here/../kernel/private-apt.sh")" "$pkg $version" "$(basename "$base")"
[[ $EUID -eq 0 ]] || die "needs root (loop mount, chroot)"
image_work
image_mounts=("$work/root" "$work/root/proc" "$work/root/dev")
start=$SECONDS

debs="$work/debs"
mkdir -p "$debs"
# linux-base: the kernel's packages pre-depend on a newer one than
# Debian 13's, which apt -t trixie-backports would take from there too.
log "apt-get download $release ($version): image, binary, base, modules; linux-base"
(cd "$debs" && papt apt-get download -qq "linux-image-$release=$version" "linux-binary-$release=$version" \
	"linux-base-$release=$version" "linux-modules-$release=$version" linux-base >&2) ||
	die "apt-get download of the $release packages failed"

cp --sparse=always "$base/root.img" "$work/root.img"
cp "$base/uuid" "$work/uuid"
mkdir "$work/root"
mount -o loop "$work/root.img" "$work/root"
root="$work/root"
mkdir -p "$root/root/backports"
cp "$debs"/*.deb "$root/root/backports/"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
log "dpkg -i in the chroot (the kernel's postinst builds its initramfs)"
# linux-base first: a pre-dependency must be configured before the
# kernel's packages unpack (apt orders it so).
chroot "$root" sh -c 'dpkg -i /root/backports/linux-base_*.deb && dpkg -i /root/backports/*.deb' >&2 ||
	die "dpkg -i of the $release packages failed"
umount "$root/dev" "$root/proc"
[[ -f "$root/usr/lib/modules/$release/vmlinuz" ]] || die "no /usr/lib/modules/$release/vmlinuz: the packages' layout changed"
[[ -f "$root/boot/initrd.img-$release" ]] || die "no /boot/initrd.img-$release: the kernel's postinst made no initramfs"
cp "$root/usr/lib/modules/$release/vmlinuz" "$work/vmlinuz"
cp "$root/boot/initrd.img-$release" "$work/initrd.img"
echo "$release" >"$work/release"
umount "$root"
rmdir "$root"
log "built in $((SECONDS - start)) s (kernel $release)"
image_done
