#!/usr/bin/env bash
# build-crashdm.sh: build, once, a small kernel with CONFIG_CRASH_DM_CRYPT=y
# for the QEMU end-to-end tests.
#
# Usage: build-crashdm.sh [x86_64|arm64]
#
#   (none), x86_64  bzImage for x86_64, built natively with crashdm.config
#   arm64           Image for arm64 (QEMU's virt machine), cross-built with
#                   Debian's gcc-aarch64-linux-gnu and crashdm-arm64.config
#
# Source: Debian's linux-source-7.3 package from trixie-backports. This
# Debian 12 machine's sources do not list that suite, so the package is
# fetched through a private apt configuration kept in the cache (set up by
# private-apt.sh, beside this script, which fetch-debian.sh shares); the
# system's apt configuration, package lists and archives are not touched:
#
#   sources.list   deb [signed-by=<debian-archive-keyring>] <mirror> trixie-backports main
#                  where <mirror> is the Debian archive URI already configured
#                  in /etc/apt/sources.list{,.d/*.list,.d/*.sources} (the one
#                  serving this release's main suite), read at run time.
#                  UKDUMP_DEBIAN_MIRROR overrides it.
#   apt.conf       own Dir::State::Lists, Dir::Cache, Dir::State::status (an
#                  empty file), Dir::Etc::SourceList, Dir::Etc::SourceParts
#                  and preferences (empty), no update hooks; passed to apt
#                  through APT_CONFIG as the main file, which apt reads after
#                  /etc/apt/apt.conf.d, so ours wins over the system's parts.
#
# The kernel is `make tinyconfig` + the fragment (beside this script) +
# `make olddefconfig`; the build stops, naming them, when requested symbols
# did not end up as requested. The result is cached outside the repository:
#
#   ${UKDUMP_CACHE:-$HOME/.cache/ukdump}/kernels/
#       .crashdm.lock             flock: one build at a time
#       .crashdm-apt/             the private apt state; debs/ keeps the
#                                 newest linux-source .deb
#       crashdm-<hash>/           x86_64; arm64: crashdm-arm64-<hash>/.
#                                 <hash>: sha256 over the fragment, the
#                                 linux-source version, the architecture
#                                 and this script
#           bzImage               the kernel (arm64: Image)
#           config                its final .config
#           build.log             make output
#           build-info            versions and hashes that went in
#           .complete             written last; its presence means done
#
# The unpacked source tree and object files (crashdm-<hash>.work) are deleted
# after a successful build. Build dependencies (build-essential bc bison flex
# libelf-dev libssl-dev, and for arm64 gcc-aarch64-linux-gnu) are installed
# with the system's apt when missing (needs root).
#
# stdout: exactly one line, the absolute path of the cached kernel. All
# chatter, including the build wall time, goes to stderr.
set -euo pipefail

log() { printf 'build-crashdm: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

started=$SECONDS
elapsed() { printf '%dm%02ds' $(((SECONDS - started) / 60)) $(((SECONDS - started) % 60)); }

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)"
self="$here/$(basename "${BASH_SOURCE[0]}")"
pkg=linux-source-7.3
suite=trixie-backports
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
build_deps=(build-essential bc bison flex libelf-dev libssl-dev xz-utils)

(($# <= 1)) || die "usage: build-crashdm.sh [x86_64|arm64]"
arch="${1:-x86_64}"
# Per architecture: the fragment, make's ARCH and cross compiler, the image
# target, where make leaves it, the compiler and the cache entry's prefix
# (x86_64 keeps the name it had before arm64 came).
case "$arch" in
x86_64)
	fragment="$here/crashdm.config"
	make_arch=(ARCH=x86_64)
	target=bzImage
	built=arch/x86/boot/bzImage
	prefix=crashdm
	cc=gcc
	;;
arm64)
	fragment="$here/crashdm-arm64.config"
	make_arch=(ARCH=arm64 CROSS_COMPILE=aarch64-linux-gnu-)
	target=Image
	built=arch/arm64/boot/Image
	prefix=crashdm-arm64
	cc=aarch64-linux-gnu-gcc
	build_deps+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu)
	;;
*) die "unknown architecture '$arch'; usage: build-crashdm.sh [x86_64|arm64]" ;;
esac

[[ -f "$fragment" ]] || die "config fragment $fragment not found"
[[ "$(uname -m)" == x86_64 ]] || die "builds on an x86_64 host; this machine is $(uname -m)"
for tool in apt-get apt-cache dpkg-deb dpkg-query sha256sum flock tar awk; do
	command -v "$tool" >/dev/null 2>&1 || die "required tool '$tool' not found (is this Debian 12?)"
done
[[ -f "$keyring" ]] || die "$keyring not found (apt-get install debian-archive-keyring)"

cache_root="${UKDUMP_CACHE:-$HOME/.cache/ukdump}/kernels"
mkdir -p "$cache_root"
cache_root="$(cd "$cache_root" && pwd -P)"
apt_dir="$cache_root/.crashdm-apt"

# Several `go test` packages may call this at once: serialise everything on
# one lock so they neither download nor build twice.
exec 9>"$cache_root/.crashdm.lock"
if ! flock -n 9; then
	log "waiting for another build-crashdm.sh (lock $cache_root/.crashdm.lock)"
	flock 9
fi

# ---------------------------------------------------------------------------
# The private apt configuration.

# The functions are shared with fetch-debian.sh; see private-apt.sh.
PRIVATE_APT_KEYRING="$keyring"
# shellcheck source=private-apt.sh
. "$here/private-apt.sh"

# setup_private_apt writes the private configuration into $apt_dir. It is
# rewritten on each run, so a changed mirror takes effect at once.
setup_private_apt() {
	private_apt_setup "$apt_dir" "$suite"
	mkdir -p "$apt_dir/debs"
}

papt() { private_apt "$apt_dir" "$@"; }

# candidate prints the version of $pkg the private lists offer, or nothing.
candidate() {
	papt apt-cache policy "$pkg" 2>/dev/null | awk '/^  Candidate:/ && $2 != "(none)" {print $2}'
}

private_update() {
	log "apt-get update ($suite only, private lists in $apt_dir)"
	papt apt-get update >&2
}

# ---------------------------------------------------------------------------
# The cache key and the cache entry.

sha() { sha256sum "$@" | awk '{print $1}'; }

# key prints the cache key for linux-source version $1.
key() {
	printf 'fragment %s\nsource %s %s\narch %s\nscript %s\n' "$(sha "$fragment")" "$pkg" "$1" "$arch" "$(sha "$self")" | sha | cut -c1-16
}

# entry prints the cache entry's directory for version $1.
entry() { printf '%s/%s-%s\n' "$cache_root" "$prefix" "$(key "$1")"; }

# cached prints the kernel of a complete entry for version $1, if any.
cached() {
	local entry
	entry="$(entry "$1")"
	[[ -f "$entry/.complete" && -f "$entry/$target" ]] && printf '%s\n' "$entry/$target"
}

# cached_any prints the kernel of a complete entry built from the current
# fragment and script with any source version (the newest), for offline runs.
cached_any() {
	local d v best=""
	for d in "$cache_root/$prefix"-*/; do
		d="${d%/}"
		[[ -f "$d/.complete" && -f "$d/build-info" ]] || continue
		v="$(awk '$1 == "source-version" {print $2}' "$d/build-info")"
		[[ -n "$v" && "$d" == "$(entry "$v")" ]] && best="$d"
	done
	[[ -n "$best" ]] && printf '%s\n' "$best/$target"
}

# ---------------------------------------------------------------------------
# Building.

install_build_deps() {
	local p missing=()
	for p in "${build_deps[@]}"; do
		[[ "$(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null || true)" == installed ]] || missing+=("$p")
	done
	((${#missing[@]} > 0)) || return 0
	[[ $EUID -eq 0 ]] || die "build dependencies missing; run: sudo apt-get install ${missing[*]}"
	log "installing build dependencies: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
		log "apt-get install failed; updating the system's package lists and retrying"
		apt-get update >&2
		apt-get install -y --no-install-recommends "${missing[@]}" >&2
	fi
}

# download prints the path of the verified linux-source .deb for version $1,
# downloading it into $apt_dir/debs when needed. It prints nothing when the
# download fails (stale lists); callers update and retry.
download() {
	local version="$1" want deb
	want="$(papt apt-cache show "$pkg=$version" 2>/dev/null | awk '/^SHA256:/ {print $2; exit}')"
	[[ -n "$want" ]] || die "apt-cache show has no SHA256 for $pkg=$version"
	for deb in "$apt_dir"/debs/"${pkg}_${version//:/%3a}"_*.deb; do
		if [[ -f "$deb" && "$(sha "$deb")" == "$want" ]]; then
			printf '%s\n' "$deb"
			return 0
		fi
	done
	rm -rf "$apt_dir/debs/dl"
	mkdir -p "$apt_dir/debs/dl"
	log "downloading $pkg $version"
	(cd "$apt_dir/debs/dl" && papt apt-get download "$pkg=$version" >&2) || return 0
	for deb in "$apt_dir"/debs/dl/*.deb; do
		[[ -f "$deb" ]] || die "apt-get download left no .deb"
		[[ "$(sha "$deb")" == "$want" ]] || die "sha256 mismatch for $deb (index says $want)"
		mv "$deb" "$apt_dir/debs/"
		rmdir "$apt_dir/debs/dl"
		printf '%s\n' "$apt_dir/debs/$(basename "$deb")"
		return 0
	done
}

# verify_config checks the final .config $1 against the fragment: every
# CONFIG_X=<value> must be there as is, every "# CONFIG_X is not set" must
# be neither =y nor =m. It lists all mismatches and fails.
verify_config() {
	local config="$1" line sym want have bad=()
	while IFS= read -r line; do
		if [[ "$line" =~ ^(CONFIG_[A-Za-z0-9_]+)=(.*)$ ]]; then
			sym="${BASH_REMATCH[1]}" want="${BASH_REMATCH[2]}"
		elif [[ "$line" =~ ^#\ (CONFIG_[A-Za-z0-9_]+)\ is\ not\ set$ ]]; then
			sym="${BASH_REMATCH[1]}" want=n
		elif [[ "$line" =~ ^[[:space:]]*(#.*)?$ ]]; then
			continue
		else
			die "$fragment: malformed line: $line"
		fi
		have="$(awk -v s="$sym" 'index($0, s "=") == 1 {print substr($0, length(s) + 2); exit}' "$config")"
		if [[ "$want" == n ]]; then
			if [[ "$have" == y || "$have" == m ]]; then
				bad+=("$sym: want not set, have =$have")
			fi
		elif [[ -z "$have" ]]; then
			bad+=("$sym: want =$want, have not set (unknown symbol or unmet dependencies)")
		elif [[ "$have" != "$want" ]]; then
			bad+=("$sym: want =$want, have =$have")
		fi
	done <"$fragment"
	if ((${#bad[@]} > 0)); then
		log "error: ${#bad[@]} requested symbol(s) did not end up as requested in $config:"
		printf '  %s\n' "${bad[@]}" >&2
		die "fix $fragment (add the missing dependencies)"
	fi
	log "all symbols of $(basename "$fragment") are set as requested"
}

# build builds version $1 from .deb $2 into its cache entry.
build() {
	local version="$1" deb="$2" entry work src out tarball jobs
	entry="$(entry "$version")"
	work="$entry.work"
	jobs="$(nproc)"

	# We hold the lock: any .work or .tmp is left over from a failed or
	# interrupted run.
	rm -rf "$cache_root"/crashdm-*.work "$cache_root"/crashdm-*.tmp "$entry"
	mkdir -p "$work"

	log "unpacking $(basename "$deb")"
	dpkg-deb -x "$deb" "$work/deb"
	tarball="$work/deb/usr/src/$pkg.tar.xz"
	[[ -f "$tarball" ]] || die "$deb has no usr/src/$pkg.tar.xz"
	tar -xJf "$tarball" -C "$work"
	rm -rf "$work/deb"
	src="$work/$pkg"
	[[ -f "$src/Makefile" ]] || die "$pkg.tar.xz did not unpack to $pkg/"
	out="$work/out"
	mkdir -p "$out"

	local -a mk=(make -C "$src" O="$out" "${make_arch[@]}")
	log "configuring: tinyconfig + $(basename "$fragment") + olddefconfig"
	"${mk[@]}" tinyconfig >"$work/build.log" 2>&1 || {
		tail -n 30 "$work/build.log" >&2
		die "make tinyconfig failed (log: $work/build.log)"
	}
	"$src/scripts/kconfig/merge_config.sh" -m -O "$out" "$out/.config" "$fragment" >>"$work/build.log" 2>&1 || {
		tail -n 30 "$work/build.log" >&2
		die "merge_config.sh failed (log: $work/build.log)"
	}
	"${mk[@]}" olddefconfig >>"$work/build.log" 2>&1 || {
		tail -n 30 "$work/build.log" >&2
		die "make olddefconfig failed (log: $work/build.log)"
	}
	verify_config "$out/.config"

	log "make -j$jobs $target for $arch (about 10 minutes on 2 cores; log: $work/build.log)"
	"${mk[@]}" -j"$jobs" "$target" 2>&1 | tee -a "$work/build.log" >&2 || {
		die "make $target failed after $(elapsed) (log: $work/build.log)"
	}
	[[ -f "$out/$built" ]] || die "make succeeded but left no $built"

	mkdir -p "$entry.tmp"
	cp "$out/$built" "$entry.tmp/$target"
	cp "$out/.config" "$entry.tmp/config"
	cp "$work/build.log" "$entry.tmp/build.log"
	{
		echo "arch $arch"
		echo "source-package $pkg"
		echo "source-version $version"
		echo "source-deb-sha256 $(sha "$deb")"
		echo "fragment-sha256 $(sha "$fragment")"
		echo "script-sha256 $(sha "$self")"
		echo "kernel-release $(cat "$out/include/config/kernel.release" 2>/dev/null || echo unknown)"
		echo "compiler $("$cc" --version | head -n1)"
		echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(elapsed) with make -j$jobs"
	} >"$entry.tmp/build-info"
	mv "$entry.tmp" "$entry"
	: >"$entry/.complete"
	rm -rf "$work"
	# Keep only this version's .deb for rebuilds after config changes.
	find "$apt_dir/debs" -maxdepth 1 -name "${pkg}_*.deb" ! -name "$(basename "$deb")" -delete
	log "built $entry/$target ($(stat -c %s "$entry/$target") bytes)"
}

# ---------------------------------------------------------------------------

setup_private_apt

updated=false
version="$(candidate)"
if [[ -z "$version" ]]; then
	if ! private_update; then
		if found="$(cached_any)"; then
			log "apt-get update failed; using cached $found"
			printf '%s\n' "$found"
			exit 0
		fi
		die "apt-get update for $suite failed and no cached build matches"
	fi
	updated=true
	version="$(candidate)"
	[[ -n "$version" ]] || die "$pkg is not in $suite"
fi

if found="$(cached "$version")"; then
	log "using cached $found ($pkg $version)"
	printf '%s\n' "$found"
	exit 0
fi

log "building for $pkg $version"
install_build_deps
deb="$(download "$version")"
if [[ -z "$deb" ]]; then
	$updated && die "apt-get download $pkg=$version failed"
	private_update || die "apt-get update for $suite failed"
	version="$(candidate)"
	[[ -n "$version" ]] || die "$pkg is not in $suite"
	if found="$(cached "$version")"; then
		log "using cached $found ($pkg $version)"
		printf '%s\n' "$found"
		exit 0
	fi
	deb="$(download "$version")"
	[[ -n "$deb" ]] || die "apt-get download $pkg=$version failed"
fi

build "$version" "$deb"
log "build wall time $(elapsed)"
printf '%s\n' "$(entry "$version")/$target"
