#!/bin/sh
# mkdeb.sh ROOT OUTDIR: makes ukdump_<version>_amd64.deb in OUTDIR from
# ROOT, a tree that "make install" filled with PREFIX=/usr. Adds what only
# Debian wants (copyright, changelog, maintainer scripts, control) and
# builds with dpkg-deb alone, as root-owned files, so neither debhelper
# nor fakeroot is needed.
#
# Reproducible: the version comes from the tree (VERSION and the top of
# packaging/debian/changelog, which must agree) and every timestamp is the
# changelog entry's date, unless SOURCE_DATE_EPOCH is set.
set -eu

mkdir -p "$2"
root=$(cd "$1" && pwd)
outdir=$(cd "$2" && pwd)
cd "$(dirname "$0")/.."
deb=packaging/debian

version=$(cat VERSION)
debversion=$(sed -n '1s/^ukdump (\([^)]*\)).*/\1/p' $deb/changelog)
case "$debversion" in
"$version"-*) ;;
*)
	echo "mkdeb: VERSION is $version but $deb/changelog's top entry is \"$debversion\": add a changelog entry" >&2
	exit 1
	;;
esac
: "${SOURCE_DATE_EPOCH:=$(date -d "$(sed -n 's/^ -- .*>  //p' $deb/changelog | head -n 1)" +%s)}"
export SOURCE_DATE_EPOCH

# The control file says amd64: refuse binaries of another machine
# (ELF e_machine 0x3e is x86-64).
for f in "$root/usr/sbin/ukdump" "$root/usr/lib/ukdump/kdumpinit"; do
	if [ "$(od -An -tx1 -j18 -N2 "$f" | tr -d ' \n')" != 3e00 ]; then
		echo "mkdeb: $f is not an x86-64 binary: build with GOARCH=amd64" >&2
		exit 1
	fi
done

doc=$root/usr/share/doc/ukdump
install -D -m 0644 $deb/copyright "$doc/copyright"
gzip -9 -n <$deb/changelog >"$doc/changelog.Debian.gz"
chmod 0644 "$doc/changelog.Debian.gz"
install -D -m 0644 $deb/lintian-overrides "$root/usr/share/lintian/overrides/ukdump"

mkdir -p "$root/DEBIAN"
install -m 0755 $deb/postinst $deb/prerm $deb/postrm "$root/DEBIAN/"
install -m 0644 $deb/conffiles "$root/DEBIAN/"
(cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' |
	LC_ALL=C sort | xargs md5sum) >"$root/DEBIAN/md5sums"
size=$(du -s -k --apparent-size --exclude=DEBIAN "$root" | cut -f1)
sed -e "s/@VERSION@/$debversion/" -e "s/@INSTALLED_SIZE@/$size/" \
	$deb/control.in >"$root/DEBIAN/control"
chmod 0644 "$root/DEBIAN/md5sums" "$root/DEBIAN/control"

# A umask must not leak into the package: directories are 0755.
find "$root" -type d -exec chmod 0755 {} +
find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +

dpkg-deb --root-owner-group -Zxz --build "$root" "$outdir/ukdump_${debversion}_amd64.deb"
