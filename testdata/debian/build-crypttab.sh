#!/usr/bin/env bash
# build-crypttab.sh: the Debian 13 system of "build-image.sh trixie" with its
# dump target on an encrypted volume that systemd opens, as systemd
# distributions (Fedora's layout, Debian 13 with systemd-cryptsetup) do: a
# LUKS2 volume on its own disk, listed in /etc/crypttab and opened at boot
# by systemd-cryptsetup@crashvol.service, holding the ext4 filesystem that
# is mounted on /var/crash. The root filesystem is not encrypted, so
# initramfs-tools' cryptroot takes no part: this is the path of
# `ukdump setup-crypttab` (crypttab's link-volume-key=).
#
# Usage: build-crypttab.sh
#
# The volume opens with a key file on the root filesystem, so the machine
# boots unattended; systemd-cryptsetup still runs the keyslot's Argon2id
# (64 MiB, as cryptsetup's own benchmark picks under emulation), exactly as
# for a typed passphrase. It is made on the host without device-mapper:
# the ext4 image is encrypted in place (offline "reencrypt --encrypt").
#
# Output, in ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/trixie-crypt-<hash>/
# (<hash> covers this script and the base image's directory name):
#   root.img     vda: the system, root=UUID=<uuid>
#   crash.img    vdb: LUKS2 (UUID in luks-uuid), inside it ext4 for /var/crash
#   vmlinuz, initrd.img, release, uuid   as in build-image.sh
#   luks-uuid, passphrase (the key file's content)
#   .complete    written last
# stdout: that directory.
set -euo pipefail

log() { printf 'build-crypttab: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=image.sh
. "$here/image.sh"
base="$("$here/build-image.sh" trixie)"
image_cache trixie-crypt "$(basename "$base")"
[[ $EUID -eq 0 ]] || die "needs root (loop mount)"
for t in cryptsetup mkfs.ext4; do
	command -v "$t" >/dev/null || die "$t not installed (run .ci/deps)"
done
image_lock

luks_uuid=5d4c3b2a-1908-4f7e-8d6c-5b4a39281706
crash_uuid=0f1e2d3c-4b5a-4697-8879-6a5b4c3d2e1f
passphrase=ukdump-test-crypttab-key
image_work
image_mounts=("$work/root")
start=$SECONDS

cp --sparse=always "$base/root.img" "$work/root.img"
for f in vmlinuz initrd.img release uuid; do
	cp "$base/$f" "$work/$f"
done
mkdir "$work/root"
mount -o loop "$work/root.img" "$work/root"
root="$work/root"
install -d -m 0700 "$root/etc/ukdump-test"
printf '%s' "$passphrase" >"$root/etc/ukdump-test/crash.key"
chmod 0400 "$root/etc/ukdump-test/crash.key"
printf 'crashvol UUID=%s /etc/ukdump-test/crash.key luks,discard\n' "$luks_uuid" >"$root/etc/crypttab"
printf '/dev/mapper/crashvol\t/var/crash\text4\tdefaults\t0\t2\n' >>"$root/etc/fstab"
mkdir -p "$root/var/crash"
umount "$root"

# The target: ext4, encrypted in place. Its contents keep their offsets
# inside the LUKS2 data segment.
mkdir "$work/empty"
crash="$work/crash.img"
truncate -s 640M "$crash"
mkfs.ext4 -q -F -U "$crash_uuid" -L crash -d "$work/empty" "$crash" 624M >&2
printf '%s' "$passphrase" | cryptsetup reencrypt --batch-mode --encrypt --type luks2 \
	--reduce-device-size 16M --uuid "$luks_uuid" --pbkdf argon2id --pbkdf-memory 65536 \
	--key-file - "$crash" >&2

echo "$luks_uuid" >"$work/luks-uuid"
echo "$passphrase" >"$work/passphrase"
rmdir "$work/root" "$work/empty"
log "built in $((SECONDS - start)) s"
image_done
