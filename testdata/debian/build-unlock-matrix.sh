#!/usr/bin/env bash
# build-unlock-matrix.sh: the volumes of every kind crypttab can describe,
# and two initramfs images of the Debian 12 or 13 system of build-image.sh
# whose cryptroot opens them all: one as Debian builds it, one with
# ukdump's initramfs hook. A test boots both with the same disks and
# compares what opened (internal/e2e: TestUnlockMatrix): installing ukdump
# must never make an unlock fail that succeeds without it.
#
# Usage: build-unlock-matrix.sh bookworm|trixie HOOK
#   HOOK is ukdump's initramfs hook (packaging/initramfs-tools/ukdump).
#
# The volumes, made on the host by cryptsetup (no device-mapper needed),
# one disk each, in this order (vda, vdb, ...), with the crypttab line that
# opens each:
#   luks1     LUKS1, PBKDF2, key file
#   luks2     LUKS2, Argon2id, key file
#   reenc     LUKS2 with a reencryption initialized (two volume keys)
#   detach    LUKS2 with a detached header, on the next disk (detach-hdr)
#   plain     plain dm-crypt, key file
#   kc1, kc2  LUKS2, keyscript=decrypt_keyctl: one passphrase typed, cached
#             for the second
#   remote    LUKS2, the passphrase typed at cryptroot's prompt; the test
#             also opens it as a remote unlock does, with cryptroot-unlock
#   typed     LUKS2 holding ext4, the passphrase typed at cryptroot's
#             prompt; the test's root filesystem (root=/dev/mapper/m-typed)
#   wrong     LUKS2 whose key file holds another passphrase (tries=1): it
#             must fail with and without ukdump
# Key slots use cheap KDF settings (PBKDF2 1000 iterations, Argon2id 32 MiB
# 4 passes): the test is about how the volumes are opened, not the KDF.
#
# Output, in ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/<suite>-unlock-<hash>/
# (<hash> covers this script, the hook and the base image's directory name):
#   disks        the disk images, one per line, in order
#   *.img        the disks
#   initrd-debian.img, initrd-ukdump.img   the two initramfs images
#   vmlinuz, release    the kernel
#   keyfiles/<name>.key, kc.pass, remote.pass, typed.pass, wrong.pass
#                what unlocks
#                each volume (test data: the test asks cryptsetup for the
#                volume keys with them)
#   .complete    written last
# stdout: that directory.
set -euo pipefail

log() { printf 'build-unlock-matrix: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

suite="${1:-}"
hook="${2:-}"
[[ -n "$suite" && -f "$hook" ]] || die "usage: build-unlock-matrix.sh bookworm|trixie HOOK"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
# shellcheck source=image.sh
. "$here/image.sh"
base="$("$here/build-image.sh" "$suite")"
image_cache "$suite-unlock" "$(cat "$hook")" "$(basename "$base")"
[[ $EUID -eq 0 ]] || die "needs root (loop mount, chroot)"
for t in cryptsetup mkfs.ext4; do
	command -v "$t" >/dev/null || die "$t not installed (run .ci/deps)"
done
image_lock
image_work
image_mounts=("$work/root" "$work/root/proc" "$work/root/dev")
start=$SECONDS
release="$(cat "$base/release")"
keydir="$work/keyfiles"
mkdir -p "$keydir"

argon=(--pbkdf argon2id --pbkdf-memory 32768 --pbkdf-force-iterations 4 --pbkdf-parallel 1)
disks=()
disk() { # name size: a new image file
	truncate -s "$2" "$work/$1.img"
	disks+=("$1.img")
}
keyfile() { # name: a random key file
	head -c 64 /dev/urandom >"$keydir/$1.key"
	chmod 0400 "$keydir/$1.key"
}
uuid() { cryptsetup luksUUID "$work/$1"; }

disk luks1 24M
keyfile luks1
cryptsetup luksFormat --batch-mode --type luks1 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file "$keydir/luks1.key" "$work/luks1.img" >&2

disk luks2 32M
keyfile luks2
cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --key-file "$keydir/luks2.key" "$work/luks2.img" >&2

disk reenc 40M
keyfile reenc
cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --key-file "$keydir/reenc.key" "$work/reenc.img" >&2
cryptsetup reencrypt --init-only --batch-mode "${argon[@]}" --key-file "$keydir/reenc.key" "$work/reenc.img" >&2

disk detach 16M
disk detach-hdr 16M
keyfile detach
cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --header "$work/detach-hdr.img" --key-file "$keydir/detach.key" "$work/detach.img" >&2

# Plain dm-crypt has no header, and cryptroot wants a filesystem it knows
# inside (else "unknown fstype, bad password?"): plain.img is that ext4 in
# the clear, which the test encrypts into its copy, aes-xts-plain64 with
# the key file's 64 bytes (no hash for a key file in plain mode), as
# dm-crypt would write it.
disk plain 16M
keyfile plain
mkdir -p "$work/empty"
mkfs.ext4 -q -F -L plain -d "$work/empty" "$work/plain.img" >&2

printf '%s' matrix-keyctl-pass >"$work/kc.pass"
for kc in kc1 kc2; do
	disk "$kc" 32M
	cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --key-file "$work/kc.pass" "$work/$kc.img" >&2
done

# Opened with a typed passphrase at boot; the test closes it and opens it
# again as a remote unlock does (cryptroot-unlock, over dropbear's ssh).
printf '%s' matrix-remote-pass >"$work/remote.pass"
disk remote 32M
cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --key-file "$work/remote.pass" "$work/remote.img" >&2

# The root filesystem the initramfs mounts, encrypted in place.
printf '%s' matrix-typed-pass >"$work/typed.pass"
disk typed 64M
mkfs.ext4 -q -F -L matrix -d "$work/empty" "$work/typed.img" 48M >&2
cryptsetup reencrypt --batch-mode --encrypt --type luks2 --reduce-device-size 16M "${argon[@]}" \
	--key-file "$work/typed.pass" "$work/typed.img" >&2

disk wrong 32M
printf '%s' matrix-right-pass >"$work/wrong.pass"
cryptsetup luksFormat --batch-mode --type luks2 "${argon[@]}" --key-file "$work/wrong.pass" "$work/wrong.img" >&2
keyfile wrong

dev() { # image name: its device in the guest (vda, vdb, ... in disks order)
	local i=0 d
	for d in "${disks[@]}"; do
		if [[ "$d" == "$1.img" ]]; then
			printf '/dev/vd%s\n' "$(printf "\\$(printf '%03o' $((97 + i)))")"
			return
		fi
		i=$((i + 1))
	done
	die "no disk $1"
}

# The system's files, with the matrix's crypttab and key files.
cp --sparse=always "$base/root.img" "$work/root.img"
mkdir "$work/root"
mount -o loop "$work/root.img" "$work/root"
root="$work/root"
install -d -m 0700 "$root/etc/matrix"
cp "$keydir"/*.key "$root/etc/matrix/"
printf '%s' wrong-pass >"$root/etc/matrix/wrong.key"
cat >"$root/etc/crypttab" <<CRYPTTAB
m-luks1   UUID=$(uuid luks1.img)  /etc/matrix/luks1.key  luks,initramfs
m-luks2   UUID=$(uuid luks2.img)  /etc/matrix/luks2.key  luks,discard,initramfs
m-reenc   UUID=$(uuid reenc.img)  /etc/matrix/reenc.key  luks,initramfs
m-detach  $(dev detach)  /etc/matrix/detach.key  luks,header=$(dev detach-hdr),initramfs
m-plain   $(dev plain)  /etc/matrix/plain.key  plain,cipher=aes-xts-plain64,size=512,initramfs
m-kc1     UUID=$(uuid kc1.img)  matrix-cache  luks,keyscript=decrypt_keyctl,initramfs
m-kc2     UUID=$(uuid kc2.img)  matrix-cache  luks,keyscript=decrypt_keyctl,initramfs
m-remote  UUID=$(uuid remote.img)  none  luks,initramfs
m-typed   UUID=$(uuid typed.img)  none  luks,initramfs
m-wrong   UUID=$(uuid wrong.img)  /etc/matrix/wrong.key  luks,tries=1,initramfs
CRYPTTAB
printf 'KEYFILE_PATTERN="/etc/matrix/*.key"\nUMASK=0077\n' >>"$root/etc/cryptsetup-initramfs/conf-hook"
printf '%s\n' dm_mod dm_crypt aesni_intel xts ecb >>"$root/etc/initramfs-tools/modules"
mount -t proc proc "$root/proc"
mount --bind /dev "$root/dev"
for variant in debian ukdump; do
	if [[ "$variant" == ukdump ]]; then
		install -m 0755 "$hook" "$root/usr/share/initramfs-tools/hooks/ukdump"
	fi
	chroot "$root" mkinitramfs -o "/tmp/initrd-$variant.img" "$release" >&2
	cp "$root/tmp/initrd-$variant.img" "$work/initrd-$variant.img"
done
umount "$root/dev" "$root/proc" "$root"
rmdir "$root" "$work/empty"
rm -f "$work/root.img"

cp "$base/vmlinuz" "$work/vmlinuz"
echo "$release" >"$work/release"
printf '%s\n' "${disks[@]}" >"$work/disks"
log "built in $((SECONDS - start)) s"
image_done
