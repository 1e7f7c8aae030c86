#!/bin/sh
# deb-check.sh: builds the Debian package into a temporary directory and
# checks it: the exact file list with modes and owners, the conffiles, the
# version, the syntax of every shell script, static binaries, the man
# pages, the unit, what the kernel hooks do, a second build giving the same
# bytes, and lintian (no E: line). Tools that are missing (groff, readelf,
# systemd-analyze, lintian, unshare as root) skip their check and say so,
# or fail it when CI is set.
# "make deb-check" runs it; it takes about a minute, lintian most of it.
set -u

repo=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
passed=0
failed=0

pass() { passed=$((passed + 1)); echo "ok: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
# Under CI, as for the end-to-end tests, a missing tool is a failure.
skip() {
	if [ -n "${CI:-}" ]; then fail "$* (CI is set)"; else echo "skip: $*"; fi
}
have() { command -v "$1" >/dev/null 2>&1; }

build() {
	make -s -C "$repo" deb DEB_DIR="$1" >"$tmp/build.log" 2>&1 || {
		cat "$tmp/build.log"
		return 1
	}
	set -- "$1"/ukdump_*_amd64.deb
	[ -f "$1" ] && echo "$1"
}

if ! deb=$(build "$tmp/out"); then
	echo "FAIL: make deb"
	echo "deb-check: 0 passed, 1 failed"
	exit 1
fi
x=$tmp/x
dpkg-deb -R "$deb" "$x"

# The whole list: a new file in the package is a decision, made here too.
cat >"$tmp/want-contents" <<'EOF'
drwxr-xr-x root/root ./
drwxr-xr-x root/root ./etc/
drwxr-xr-x root/root ./etc/default/
drwxr-xr-x root/root ./etc/default/grub.d/
-rw-r--r-- root/root ./etc/default/grub.d/ukdump.cfg
drwxr-xr-x root/root ./etc/kernel/
drwxr-xr-x root/root ./etc/kernel/postinst.d/
-rwxr-xr-x root/root ./etc/kernel/postinst.d/ukdump
drwxr-xr-x root/root ./etc/kernel/postrm.d/
-rwxr-xr-x root/root ./etc/kernel/postrm.d/ukdump
-rw-r--r-- root/root ./etc/ukdump.conf
drwxr-xr-x root/root ./lib/
drwxr-xr-x root/root ./lib/systemd/
drwxr-xr-x root/root ./lib/systemd/system/
-rw-r--r-- root/root ./lib/systemd/system/ukdump.service
drwxr-xr-x root/root ./lib/udev/
drwxr-xr-x root/root ./lib/udev/rules.d/
-rw-r--r-- root/root ./lib/udev/rules.d/98-ukdump.rules
drwxr-xr-x root/root ./usr/
drwxr-xr-x root/root ./usr/lib/
drwxr-xr-x root/root ./usr/lib/kernel/
drwxr-xr-x root/root ./usr/lib/kernel/install.d/
-rwxr-xr-x root/root ./usr/lib/kernel/install.d/60-ukdump.install
drwxr-xr-x root/root ./usr/lib/ukdump/
-rwxr-xr-x root/root ./usr/lib/ukdump/kdumpinit
drwxr-xr-x root/root ./usr/sbin/
-rwxr-xr-x root/root ./usr/sbin/ukdump
drwxr-xr-x root/root ./usr/share/
drwxr-xr-x root/root ./usr/share/doc/
drwxr-xr-x root/root ./usr/share/doc/ukdump/
-rw-r--r-- root/root ./usr/share/doc/ukdump/changelog.Debian.gz
-rw-r--r-- root/root ./usr/share/doc/ukdump/copyright
drwxr-xr-x root/root ./usr/share/initramfs-tools/
drwxr-xr-x root/root ./usr/share/initramfs-tools/hooks/
-rwxr-xr-x root/root ./usr/share/initramfs-tools/hooks/ukdump
drwxr-xr-x root/root ./usr/share/lintian/
drwxr-xr-x root/root ./usr/share/lintian/overrides/
-rw-r--r-- root/root ./usr/share/lintian/overrides/ukdump
drwxr-xr-x root/root ./usr/share/man/
drwxr-xr-x root/root ./usr/share/man/man5/
-rw-r--r-- root/root ./usr/share/man/man5/ukdump.conf.5.gz
drwxr-xr-x root/root ./usr/share/man/man8/
-rw-r--r-- root/root ./usr/share/man/man8/ukdump.8.gz
EOF
dpkg-deb -c "$deb" | awk '{print $1, $2, $6}' >"$tmp/contents"
if diff -u "$tmp/want-contents" "$tmp/contents"; then
	pass "contents"
else
	fail "contents (diff above: - expected, + built)"
fi

# Every file in /etc is a conffile, and nothing else is.
grep '^-.* \./etc/' "$tmp/contents" | sed 's|.* \./|/|' | sort >"$tmp/want-conffiles"
if sort "$x/DEBIAN/conffiles" | diff -u "$tmp/want-conffiles" -; then
	pass "conffiles"
else
	fail "conffiles (diff above: - files in /etc, + conffiles)"
fi

version=$(cat "$repo/VERSION")
debversion=$(dpkg-deb -f "$deb" Version)
case "$debversion" in
"$version"-*) pass "version $debversion" ;;
*) fail "version: control says $debversion, VERSION says $version" ;;
esac
for m in ukdump.8 ukdump.conf.5; do
	if grep -q "^\.TH .* \"ukdump $version\"" "$repo/doc/$m"; then
		pass "doc/$m names ukdump $version"
	else
		fail "doc/$m: its .TH line does not name ukdump $version"
	fi
done

for s in DEBIAN/postinst DEBIAN/prerm DEBIAN/postrm etc/kernel/postinst.d/ukdump \
	etc/kernel/postrm.d/ukdump usr/lib/kernel/install.d/60-ukdump.install etc/default/grub.d/ukdump.cfg \
	usr/share/initramfs-tools/hooks/ukdump; do
	if sh -n "$x/$s"; then pass "sh -n $s"; else fail "sh -n $s"; fi
done

if grep -q 'dpkg-trigger --no-await update-initramfs' "$x/DEBIAN/postinst" &&
	grep -q 'update-initramfs -u -k "$v"' "$x/DEBIAN/postrm" && grep -q 'etc/ukdump-initramfs' "$x/DEBIAN/postrm"; then
	pass "the initramfs is rebuilt on install where cryptroot opens volumes, and every one holding the hook's change on removal"
else
	fail "postinst/postrm do not rebuild the initramfs"
fi

# A oneshot unit has no start timeout of its own: a hung load would hold
# dpkg and the boot for ever.
for k in TimeoutStartSec TimeoutStopSec; do
	v=$(sed -n "s/^$k=//p" "$x/lib/systemd/system/ukdump.service")
	case "$v" in
	'' | infinity | 0) fail "ukdump.service: $k is \"$v\", want a bound" ;;
	*) pass "ukdump.service: $k=$v" ;;
	esac
done

# The initramfs hook, run as mkinitramfs does on a DESTDIR holding the
# system's own cryptroot functions (package cryptsetup): its unlock_mapping
# is changed once, and then, run in a mount namespace whose
# /sbin/cryptsetup is a fake that records its arguments, it adds
# --disable-keyring to "open" of a LUKS volume only when that cryptsetup
# lists the option, never reads the passphrase waiting on standard input
# for it, and leaves every other command as cryptroot wrote it. A
# functions file of another shape is left as it was. These are checks of
# the hook's text only: the unlock itself is proven by real cryptsetup in
# QEMU guests (internal/e2e: TestUnlockMatrix and the encrypted installs).
hook=$x/usr/share/initramfs-tools/hooks/ukdump
functions=
for f in /usr/lib/cryptsetup/functions /lib/cryptsetup/functions; do
	[ -f "$f" ] && functions=$f && break
done
if [ -z "$functions" ]; then
	skip "initramfs hook: no cryptroot functions here (package cryptsetup)"
elif [ "$(id -u)" != 0 ] || ! unshare -m true 2>/dev/null; then
	skip "initramfs hook: needs root and unshare -m"
else
	d=$tmp/hook
	mkdir -p "$d/dest/lib/cryptsetup"
	cp "$functions" "$d/dest/lib/cryptsetup/functions"
	if DESTDIR=$d/dest sh "$hook" 2>"$d/stderr" && DESTDIR=$d/dest sh "$hook" 2>>"$d/stderr"; then
		pass "initramfs hook exits 0 (twice)"
	else
		fail "initramfs hook failed: $(cat "$d/stderr")"
	fi
	edited=$d/dest/lib/cryptsetup/functions
	if [ "$(grep -c 'ukdump_keyring_option' "$edited")" = 2 ] && [ -f "$d/dest/etc/ukdump-initramfs" ] &&
		[ "$(diff "$functions" "$edited" | grep -c '^<')" = 1 ]; then
		pass "initramfs hook changes one line of unlock_mapping, once, and marks the initramfs"
	else
		fail "initramfs hook: unexpected change of $functions: $(diff "$functions" "$edited")"
	fi
	real=$(readlink -f /sbin/cryptsetup)
	cat >"$d/fake" <<'FAKE'
#!/bin/sh
if [ "$1" = --help ]; then
	echo "help CRYPTTAB_NAME=${CRYPTTAB_NAME-unset} stdin=$(cat)" >>"$FAKE_LOG"
	case "$FAKE_HELP" in
	new) printf '      --disable-keyring    Disable loading volume keys via kernel keyring\n' ;;
	old) printf '      --key-file=STRING    Read the key from a file\n' ;;
	*) exit 1 ;;
	esac
	exit 0
fi
echo "$* stdin=$(cat)" >>"$FAKE_LOG"
FAKE
	chmod 755 "$d/fake"
	unlock_case() { # name, help variant, CRYPTTAB_TYPE, want
		: >"$d/log"
		printf 'secret' | FAKE_LOG=$d/log FAKE_HELP=$2 CRYPTTAB_TYPE=$3 CRYPTTAB_NAME=vda2_crypt \
			CRYPTTAB_SOURCE=/dev/vda2 unshare -m /bin/sh -c '
			mount --bind "$1" "$2" || exit 99
			. "$3"
			unlock_mapping' sh "$d/fake" "$real" "$edited" 2>"$d/stderr"
		got=$(grep -v '^help ' "$d/log")
		if [ "$got" = "$4" ] && ! grep -q '^help .*\(CRYPTTAB_NAME=vda2\|stdin=.\)' "$d/log"; then
			pass "initramfs hook: $1"
		else
			fail "initramfs hook: $1: cryptsetup ran as \"$(cat "$d/log")\", want \"$4\" (and --help without CRYPTTAB_NAME or stdin); stderr: $(cat "$d/stderr")"
		fi
	}
	plain_args="-T1 --type=plain --key-file=- open -- /dev/vda2 vda2_crypt stdin=secret"
	luks_args="-T1 --type=luks --key-file=- open -- /dev/vda2 vda2_crypt stdin=secret"
	unlock_case "LUKS open gets --disable-keyring" new luks "--disable-keyring $luks_args"
	unlock_case "plain open unchanged" new plain "$plain_args"
	unlock_case "a cryptsetup without --disable-keyring: unchanged" old luks "$luks_args"
	unlock_case "a failing cryptsetup --help: unchanged" broken luks "$luks_args"
	# Another shape of unlock_mapping: nothing changes, exit 0, a warning.
	mkdir -p "$d/other/lib/cryptsetup"
	sed 's|/sbin/cryptsetup -T1 \\$|/sbin/cryptsetup \\|' "$functions" >"$d/other/lib/cryptsetup/functions"
	cp "$d/other/lib/cryptsetup/functions" "$d/other.orig"
	if DESTDIR=$d/other sh "$hook" 2>"$d/stderr" && cmp -s "$d/other.orig" "$d/other/lib/cryptsetup/functions" &&
		[ ! -e "$d/other/etc/ukdump-initramfs" ] && grep -q 'not the one ukdump knows' "$d/stderr"; then
		pass "initramfs hook leaves an unknown unlock_mapping alone and warns"
	else
		fail "initramfs hook with an unknown unlock_mapping: $(cat "$d/stderr")"
	fi
	mkdir -p "$d/none"
	if DESTDIR=$d/none sh "$hook" 2>"$d/stderr" && [ -z "$(ls -A "$d/none")" ]; then
		pass "initramfs hook without cryptroot: nothing"
	else
		fail "initramfs hook without cryptroot: $(cat "$d/stderr")"
	fi
fi

if have readelf; then
	for b in usr/sbin/ukdump usr/lib/ukdump/kdumpinit; do
		if readelf -lW "$x/$b" | grep -q 'Requesting program interpreter'; then
			fail "$b is dynamically linked"
		else
			pass "$b is static"
		fi
	done
else
	skip "static binaries: no readelf"
fi

if have groff; then
	for m in usr/share/man/man8/ukdump.8.gz usr/share/man/man5/ukdump.conf.5.gz; do
		out=$(zcat "$x/$m" | groff -man -Tutf8 -ww -z 2>&1)
		if [ -z "$out" ]; then pass "groff $m"; else fail "groff $m: $out"; fi
	done
else
	skip "man pages: no groff"
fi

if have systemd-analyze; then
	# verify wants the programs the unit runs to exist.
	sed "s|/usr/sbin/ukdump|$x/usr/sbin/ukdump|g" "$x/lib/systemd/system/ukdump.service" >"$tmp/ukdump.service"
	if out=$(systemd-analyze verify --man=no "$tmp/ukdump.service" 2>&1); then
		pass "systemd-analyze verify ukdump.service"
	else
		fail "systemd-analyze verify ukdump.service: $out"
	fi
else
	skip "unit: no systemd-analyze"
fi

# The kernel hooks against the contract of "ukdump status --loaded-kernel"
# (the loaded release and exit 0, or nothing and exit 1), with a fake
# ukdump and systemctl, in a mount namespace whose /run says whether
# systemd runs.
hook_case() { # name want-log systemd(yes|no) path hook args...
	name=$1 want=$2 systemd=$3 path=$4
	shift 4
	: >"$tmp/log"
	FAKE_LOG=$tmp/log unshare -m /bin/sh -c '
		mount -t tmpfs tmpfs /run || exit 99
		[ "$1" = no ] || mkdir -p /run/systemd/system
		PATH=$2
		shift 2
		exec /bin/sh "$@"' sh "$systemd" "$path" "$@" 2>"$tmp/stderr"
	rc=$?
	got=$(cat "$tmp/log")
	if [ "$rc" = 0 ] && [ "$got" = "$want" ]; then
		pass "hook: $name"
	else
		fail "hook: $name: exit $rc, ran \"$got\", want exit 0 and \"$want\"; stderr: $(cat "$tmp/stderr")"
	fi
}
if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
	fake=$tmp/fake
	mkdir -p "$fake/all" "$fake/none" "$fake/broken"
	printf '#!/bin/sh\n[ "$*" = "status --loaded-kernel" ] || exit 2\n[ -n "${FAKE_LOADED:-}" ] || exit 1\necho "$FAKE_LOADED"\n' >"$fake/all/ukdump"
	printf '#!/bin/sh\necho "systemctl $*" >>"$FAKE_LOG"\n' >"$fake/all/systemctl"
	cp "$fake/all/systemctl" "$fake/none/"
	cp "$fake/all/ukdump" "$fake/broken/"
	printf '#!/bin/sh\necho "systemctl $*" >>"$FAKE_LOG"\nexit 1\n' >"$fake/broken/systemctl"
	chmod 755 "$fake"/*/*
	img=$tmp/vmlinuz
	: >"$img"
	reload="systemctl try-reload-or-restart ukdump.service"
	deb_hook=$x/etc/kernel/postinst.d/ukdump
	ki=$x/usr/lib/kernel/install.d/60-ukdump.install
	export FAKE_LOADED=6.1.0-18-amd64
	hook_case "loaded release reinstalled: reload" "$reload" yes "$fake/all" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "other release: nothing" "" yes "$fake/all" "$deb_hook" 6.1.0-19-amd64 "$img"
	hook_case "image gone (postrm.d): nothing" "" yes "$fake/all" "$x/etc/kernel/postrm.d/ukdump" 6.1.0-18-amd64 "$tmp/gone"
	DEB_MAINT_PARAMS="upgrade 6.1.76-1" hook_case "postrm.d of an upgrade: nothing (the postinst reloads)" "" yes "$fake/all" "$x/etc/kernel/postrm.d/ukdump" 6.1.0-18-amd64 "$img"
	DEB_MAINT_PARAMS="configure 6.1.76-1" hook_case "postinst.d of a configure: reload" "$reload" yes "$fake/all" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "no systemd: nothing" "" no "$fake/all" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "reload fails: exit 0" "$reload" yes "$fake/broken" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "ukdump not installed: nothing" "" yes "$fake/none" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "kernel-install add: reload" "$reload" yes "$fake/all" "$ki" add 6.1.0-18-amd64 /boot/entry "$img"
	hook_case "kernel-install remove: nothing" "" yes "$fake/all" "$ki" remove 6.1.0-18-amd64 /boot/entry
	FAKE_LOADED=
	hook_case "nothing loaded: nothing" "" yes "$fake/all" "$deb_hook" 6.1.0-18-amd64 "$img"
	hook_case "kernel-install, nothing loaded: nothing" "" yes "$fake/all" "$ki" add 6.1.0-18-amd64 /boot/entry "$img"
	unset FAKE_LOADED
else
	skip "kernel hooks: they need root and unshare -m"
fi

if deb2=$(build "$tmp/out2") && cmp -s "$deb" "$deb2"; then
	pass "reproducible: a second build gives the same bytes"
else
	fail "reproducible: a second build differs"
fi

if have lintian; then
	lintian --pedantic --display-experimental "$deb" >"$tmp/lintian" 2>&1
	cat "$tmp/lintian"
	if grep -q '^E:' "$tmp/lintian"; then fail "lintian: errors"; else pass "lintian: no errors"; fi
else
	skip "lintian: not installed"
fi

echo "deb-check: $passed passed, $failed failed"
[ "$failed" = 0 ]
