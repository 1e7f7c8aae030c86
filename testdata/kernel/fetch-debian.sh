#!/usr/bin/env bash
# fetch-debian.sh: fetch a stock Debian cloud kernel for the QEMU tests.
#
# Usage: fetch-debian.sh [bookworm|trixie] [amd64|arm64]
#
#   (none), bookworm  Debian 12's kernel 6.1: the newest
#                     linux-image-6.1.0-N-cloud-amd64 package that the system's
#                     apt knows about.
#   trixie            Debian 13's kernel 6.12: the newest package matching
#                     linux-image-6.12.<N>...-cloud-amd64 (the signed image,
#                     not -unsigned or -dbg) in trixie, trixie-updates or
#                     trixie-security. This Debian 12 machine's sources do not
#                     list those suites, so apt runs with a private
#                     configuration and package lists kept in
#                     <cache>/.trixie-apt (see private-apt.sh, beside this
#                     script, shared with build-crashdm.sh); the system's apt
#                     configuration, package lists and archives are not
#                     touched. Its modules are .ko.xz.
#
#   amd64 (default)   the x86_64 kernel, as above.
#   arm64             bookworm only: linux-image-6.1.0-N-cloud-arm64, a plain
#                     arm64 Image, for QEMU's virt machine. apt runs with a
#                     private configuration whose only architecture is arm64
#                     (bookworm, bookworm-updates, bookworm-security; lists
#                     in <cache>/.bookworm-arm64-apt), so the host needs no
#                     dpkg --add-architecture.
#
# The package is downloaded (not installed) and unpacked into a cache outside
# the repository:
#
#   ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/kernels/<package>_<version>/
#       <package>_<version>_<arch>.deb  the downloaded package
#       deb.sha256                      its sha256 (checked against apt's index)
#       root/                           dpkg-deb -x output: boot/vmlinuz-<kver>,
#                                       lib/modules/<kver>/ (no modules.dep);
#                                       trixie's package ships usr/lib/modules,
#                                       so root/lib is a link to usr/lib there
#       .complete                       written last; its presence means done
#
# stdout: exactly one line, the absolute path of root/. All chatter goes to
# stderr so callers (go test, CI) can capture the path with $(...).
#
# apt-get update (of the system's lists, or of the private trixie lists) is
# run only when apt-cache knows no such package (a fresh machine). If that
# fails, the newest complete extraction of that release already in the cache
# is used so an offline machine with a warm cache still works.
set -euo pipefail

log() { printf 'fetch-debian: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"

usage="usage: fetch-debian.sh [bookworm|trixie] [amd64|arm64]"
(($# <= 2)) || die "$usage"
release="${1:-bookworm}"
arch="${2:-amd64}"
private_suites=()
case "$release/$arch" in
bookworm/amd64)
	pattern='^linux-image-6\.1\.0-[0-9]+-cloud-amd64$'
	cached_glob='linux-image-6.1.0-*-cloud-amd64_*'
	hint='is this Debian 12 with main enabled?'
	;;
bookworm/arm64)
	pattern='^linux-image-6\.1\.0-[0-9]+-cloud-arm64$'
	cached_glob='linux-image-6.1.0-*-cloud-arm64_*'
	private_suites=(bookworm bookworm-updates bookworm-security)
	hint="private arm64 lists: ${private_suites[*]}"
	;;
trixie/amd64 | trixie/arm64)
	pattern="^linux-image-6\\.12\\.[0-9]+.*-cloud-$arch\$"
	cached_glob="linux-image-6.12.*-cloud-${arch}_*"
	private_suites=(trixie trixie-updates trixie-security)
	hint="private lists: ${private_suites[*]}"
	;;
*) die "unknown release and architecture '$release $arch'; $usage" ;;
esac

for tool in apt-cache apt-get dpkg-deb sha256sum flock sort; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found (is this Debian 12?)"
done

cache_root="${UKDUMP_CACHE:-$HOME/.cache/ukdump}/kernels"
mkdir -p "$cache_root"
cache_root="$(cd "$cache_root" && pwd -P)"

# Concurrent `go test` packages may call this at once; serialise on one lock
# so they neither download twice nor see a half-extracted tree.
exec 9>"$cache_root/.lock"
flock 9

# papt runs an apt command with the apt configuration of $release and
# $arch: the system's for bookworm on amd64, a private one otherwise
# (written afresh each run, under the lock).
if ((${#private_suites[@]} == 0)); then
	papt() { "$@"; }
else
	# shellcheck source=private-apt.sh
	. "$here/private-apt.sh"
	apt_dir="$cache_root/.$release-apt"
	if [[ "$arch" != amd64 ]]; then
		apt_dir="$cache_root/.$release-$arch-apt"
		PRIVATE_APT_ARCH="$arch"
	fi
	private_apt_setup "$apt_dir" "${private_suites[@]}"
	papt() { private_apt "$apt_dir" "$@"; }
fi

# newest_package prints "<package> <version>" for the newest package whose
# name matches $pattern and which has an installable candidate, or nothing.
newest_package() {
	local names name candidate
	names="$(papt apt-cache search --names-only "$pattern" 2>/dev/null | awk '{print $1}' | grep -E "$pattern" | sort -V -r || true)"
	for name in $names; do
		candidate="$(papt apt-cache policy "$name" 2>/dev/null | awk '/^  Candidate:/ {print $2}')"
		if [[ -n "$candidate" && "$candidate" != "(none)" ]]; then
			printf '%s %s\n' "$name" "$candidate"
			return 0
		fi
	done
}

# newest_cached prints the root/ of the newest complete extraction, if any.
newest_cached() {
	local d best=""
	while IFS= read -r d; do
		[[ -f "$d/.complete" && -d "$d/root" ]] && best="$d"
	done < <(find "$cache_root" -mindepth 1 -maxdepth 1 -type d -name "$cached_glob" | sort -V)
	[[ -n "$best" ]] && printf '%s\n' "$best/root"
}

# cached_or_die prints the newest complete extraction in the cache and
# exits, or dies; $1 says what went wrong.
cached_or_die() {
	local cached
	if cached="$(newest_cached)"; then
		log "$1; using cached $cached"
		printf '%s\n' "$cached"
		exit 0
	fi
	die "$1 and the cache $cache_root holds no complete kernel"
}

# update_lists runs apt-get update; when that fails (offline), it falls back
# to the newest complete extraction in the cache, or gives up.
update_lists() {
	log "running apt-get update ($*)"
	papt apt-get update >&2 && return 0
	cached_or_die "apt-get update failed"
}

# fetch downloads, verifies and extracts one package version, printing the
# extracted root. When the download itself fails, which stale package lists
# cause once the mirror has dropped that version, it prints nothing and sets
# download_failed instead of dying. It reports through a variable, not its
# status, because bash ignores set -e inside a function called as a condition.
fetch() {
	local pkg="$1" version="$2" dir deb want got
	local -a debs apt_opts=()
	# Epochs contain ':' which is awkward in paths; apt uses %3a for the same.
	dir="$cache_root/${pkg}_${version//:/%3a}"
	if [[ -f "$dir/.complete" && -d "$dir/root" ]]; then
		log "using cached $pkg $version"
		printf '%s\n' "$dir/root"
		return 0
	fi

	log "fetching $pkg $version into $dir"
	# Start clean: a directory without .complete is a leftover of an interrupted run.
	rm -rf "$dir"
	mkdir -p "$dir/dl"
	# As root apt drops to the _apt user for downloads, which cannot reach a
	# cache under /root; downloading as root avoids a scary (harmless) warning.
	[[ $EUID -ne 0 ]] || apt_opts=(-o APT::Sandbox::User=root)
	if ! (cd "$dir/dl" && papt apt-get "${apt_opts[@]}" download "$pkg=$version" >&2); then
		rm -rf "$dir"
		download_failed=true
		return 0
	fi

	debs=("$dir"/dl/*.deb)
	[[ ${#debs[@]} -eq 1 && -f "${debs[0]}" ]] || die "apt-get download left ${#debs[@]} files in $dir/dl"
	deb="$dir/$(basename "${debs[0]}")"
	mv "${debs[0]}" "$deb"
	rmdir "$dir/dl"

	want="$(papt apt-cache show "$pkg=$version" 2>/dev/null | awk '/^SHA256:/ {print $2; exit}')"
	got="$(sha256sum "$deb" | awk '{print $1}')"
	[[ -n "$want" ]] || die "apt-cache show has no SHA256 for $pkg=$version"
	[[ "$got" == "$want" ]] || die "sha256 mismatch for $deb: got $got, index says $want"
	printf '%s  %s\n' "$got" "$(basename "$deb")" >"$dir/deb.sha256"

	dpkg-deb -x "$deb" "$dir/root.tmp"
	compgen -G "$dir/root.tmp/boot/vmlinuz-*" >/dev/null || die "$deb contains no boot/vmlinuz-*"
	# Debian 13's packages ship their modules in usr/lib/modules (merged
	# /usr); add the lib -> usr/lib link a merged-/usr system has, so that
	# root/lib/modules/<kver> is the module tree for every release.
	if [[ ! -e "$dir/root.tmp/lib" && -d "$dir/root.tmp/usr/lib/modules" ]]; then
		ln -s usr/lib "$dir/root.tmp/lib"
	fi
	compgen -G "$dir/root.tmp/lib/modules/*" >/dev/null || die "$deb contains no lib/modules/* (nor usr/lib/modules/*)"
	mv "$dir/root.tmp" "$dir/root"

	# Re-check the .deb on disk right before declaring success, so .complete
	# always vouches for a file whose hash matches the index.
	(cd "$dir" && sha256sum --check --quiet deb.sha256 >&2) || die "sha256 re-check failed for $deb"
	: >"$dir/.complete"

	log "extracted $(basename "$(compgen -G "$dir/root/boot/vmlinuz-*" | head -n1)")"
	printf '%s\n' "$dir/root"
}

updated=false
found="$(newest_package)"
if [[ -z "$found" ]]; then
	update_lists "apt-cache knows no package matching $pattern"
	updated=true
	found="$(newest_package)"
fi
# apt-get update exits 0 when it merely could not reach the mirror (offline):
# then there are still no lists, so fall back to the cache here too.
[[ -n "$found" ]] || cached_or_die "no package matching $pattern is available ($hint)"
read -r pkg version <<<"$found"

download_failed=false
fetch "$pkg" "$version"
if $download_failed; then
	$updated && die "apt-get download $pkg=$version failed"
	update_lists "downloading $pkg=$version failed; the package lists may be stale"
	found="$(newest_package)"
	[[ -n "$found" ]] || die "no package matching $pattern is available after apt-get update"
	read -r pkg version <<<"$found"
	download_failed=false
	fetch "$pkg" "$version"
	! $download_failed || die "apt-get download $pkg=$version failed"
fi
