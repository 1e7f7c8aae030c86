# private-apt.sh: a private apt configuration for suites this machine's apt
# sources do not list. Sourced (not run) by build-crashdm.sh and
# fetch-debian.sh; it defines functions only and changes no shell options.
#
# The system's apt configuration, package lists and archives are not touched.
# private_apt_setup DIR SUITE... writes into DIR:
#
#   sources.list   deb [signed-by=<keyring>] <mirror> <suite> main
#                  one line per SUITE. <mirror> is the Debian archive URI
#                  already configured in /etc/apt/sources.list{,.d/*.list,
#                  .d/*.sources} (the one serving this release's main suite),
#                  read at run time; UKDUMP_DEBIAN_MIRROR overrides it. A
#                  suite ending in -security uses the configured security
#                  archive URI instead (the one serving <codename>-security
#                  main; UKDUMP_DEBIAN_SECURITY_MIRROR overrides it), and is
#                  left out, with a message, when there is none.
#   apt.conf       own Dir::State::Lists, Dir::Cache, Dir::State::status (an
#                  empty file), Dir::Etc::SourceList, Dir::Etc::SourceParts
#                  and preferences (empty), no update hooks; passed to apt
#                  through APT_CONFIG as the main file, which apt reads after
#                  /etc/apt/apt.conf.d, so ours wins over the system's parts.
#   apt-config     the file APT_CONFIG names.
#
# private_apt DIR CMD... then runs CMD (apt-get, apt-cache) with it.
#
# The caller defines log MESSAGE and die MESSAGE (print to stderr; die exits).
# PRIVATE_APT_KEYRING is the keyring named in signed-by (default: Debian's
# archive keyring, which also holds the security archive's keys).
# PRIVATE_APT_ARCH, when set (arm64), makes that the only architecture of
# the private configuration (APT::Architecture and APT::Architectures), so
# that packages of another architecture are listed and downloaded without
# dpkg --add-architecture on the host.

: "${PRIVATE_APT_KEYRING:=/usr/share/keyrings/debian-archive-keyring.gpg}"

# private_apt_codename prints this machine's Debian codename (bookworm).
private_apt_codename() {
	local VERSION_CODENAME=""
	# shellcheck disable=SC1091
	[[ -r /etc/os-release ]] && . /etc/os-release
	printf '%s\n' "${VERSION_CODENAME:-bookworm}"
}

# private_apt_mirrors SUITE_RE prints the http(s) URIs of the enabled "deb"
# entries with component main and a suite matching the extended regular
# expression SUITE_RE (anchored; a trailing / is allowed). Both the one-line
# format (*.list) and deb822 (*.sources) are read.
private_apt_mirrors() {
	local suite_re="^($1)/?\$" files=() f
	[[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
	for f in /etc/apt/sources.list.d/*.list; do [[ -f "$f" ]] && files+=("$f"); done
	((${#files[@]} == 0)) || awk -v suite_re="$suite_re" '
		{ sub(/#.*/, ""); gsub(/\[[^]]*\]/, " ") }
		$1 == "deb" && $2 ~ /^https?:\/\// && $3 ~ suite_re {
			for (i = 4; i <= NF; i++) if ($i == "main") { print $2; break }
		}' "${files[@]}"
	files=()
	for f in /etc/apt/sources.list.d/*.sources; do [[ -f "$f" ]] && files+=("$f"); done
	((${#files[@]} == 0)) || awk -v suite_re="$suite_re" '
		function flush(   n, i, u, ok) {
			ok = (" " f["types"] " " ~ / deb /) && tolower(f["enabled"]) != "no" &&
				(" " f["components"] " " ~ / main /)
			if (ok) {
				ok = 0
				n = split(f["suites"], s, /[ \t]+/)
				for (i = 1; i <= n; i++)
					if (s[i] ~ suite_re) ok = 1
			}
			if (ok) {
				n = split(f["uris"], u, /[ \t]+/)
				for (i = 1; i <= n; i++) if (u[i] ~ /^https?:\/\//) print u[i]
			}
			delete f
			last = ""
		}
		FNR == 1 { flush() }
		/^[ \t]*#/ { next }
		/^[ \t]*$/ { flush(); next }
		/^[ \t]/ { if (last != "") f[last] = f[last] " " $0; next }
		{
			key = tolower(substr($0, 1, index($0, ":") - 1))
			val = substr($0, index($0, ":") + 1)
			f[key] = val
			last = key
		}
		END { flush() }' "${files[@]}"
}

# private_apt_archive_mirror prints the Debian archive URI to use (no
# trailing /): UKDUMP_DEBIAN_MIRROR, or the first configured one serving
# <codename>, -updates, -backports or -proposed-updates; dies when none.
private_apt_archive_mirror() {
	local codename mirror="${UKDUMP_DEBIAN_MIRROR:-}"
	if [[ -z "$mirror" ]]; then
		codename="$(private_apt_codename)"
		mirror="$(private_apt_mirrors "$codename(-updates|-backports|-proposed-updates)?" | head -n1)"
		[[ -n "$mirror" ]] || die "no Debian archive URI for $codename main found in /etc/apt/sources.list or /etc/apt/sources.list.d/*.{list,sources}; set UKDUMP_DEBIAN_MIRROR"
	fi
	printf '%s\n' "${mirror%/}"
}

# private_apt_security_mirror prints the Debian security archive URI (no
# trailing /): UKDUMP_DEBIAN_SECURITY_MIRROR, or the first configured one
# serving <codename>-security; nothing when there is none.
private_apt_security_mirror() {
	local mirror="${UKDUMP_DEBIAN_SECURITY_MIRROR:-}"
	[[ -n "$mirror" ]] || mirror="$(private_apt_mirrors "$(private_apt_codename)-security" | head -n1)"
	[[ -z "$mirror" ]] || printf '%s\n' "${mirror%/}"
}

# private_apt_setup DIR SUITE... writes the private configuration into DIR.
# It is rewritten on each run, so a changed mirror takes effect at once; the
# package lists in DIR/lists are kept.
private_apt_setup() {
	local dir="$1" suite mirror archive="" security=""
	shift
	(($# > 0)) || die "private_apt_setup: no suite given"
	[[ -f "$PRIVATE_APT_KEYRING" ]] || die "$PRIVATE_APT_KEYRING not found (apt-get install debian-archive-keyring)"
	mkdir -p "$dir"/{lists/partial,cache/archives/partial,sources.list.d,preferences.d}
	: >"$dir/status"
	: >"$dir/sources.list.tmp"
	for suite in "$@"; do
		if [[ "$suite" == *-security ]]; then
			[[ -n "$security" ]] || security="$(private_apt_security_mirror)"
			if [[ -z "$security" ]]; then
				log "no security archive URI configured for $(private_apt_codename)-security; leaving $suite out (set UKDUMP_DEBIAN_SECURITY_MIRROR)"
				continue
			fi
			mirror="$security"
		else
			[[ -n "$archive" ]] || archive="$(private_apt_archive_mirror)" || exit 1
			mirror="$archive"
		fi
		printf 'deb [signed-by=%s] %s %s main\n' "$PRIVATE_APT_KEYRING" "$mirror" "$suite" >>"$dir/sources.list.tmp"
	done
	mv "$dir/sources.list.tmp" "$dir/sources.list"
	{
		echo '// Written by private-apt.sh; apt reads it last (Dir::Etc::main).'
		[[ -f /etc/apt/apt.conf ]] && echo '#include "/etc/apt/apt.conf";'
		echo "Dir::State::Lists \"$dir/lists\";"
		echo "Dir::State::status \"$dir/status\";"
		echo "Dir::Cache \"$dir/cache\";"
		echo "Dir::Etc::SourceList \"$dir/sources.list\";"
		echo "Dir::Etc::SourceParts \"$dir/sources.list.d\";"
		echo "Dir::Etc::Preferences \"$dir/preferences\";"
		echo "Dir::Etc::PreferencesParts \"$dir/preferences.d\";"
		if [[ -n "${PRIVATE_APT_ARCH:-}" ]]; then
			echo "APT::Architecture \"$PRIVATE_APT_ARCH\";"
			echo "APT::Architectures { \"$PRIVATE_APT_ARCH\"; };"
		fi
		echo 'Acquire::Languages "none";'
		echo 'Acquire::IndexTargets::deb::DEP-11::DefaultEnabled "false";'
		echo '#clear APT::Update::Pre-Invoke;'
		echo '#clear APT::Update::Post-Invoke;'
		echo '#clear APT::Update::Post-Invoke-Success;'
		# As root apt drops to the _apt user for downloads, which cannot reach
		# a cache under /root.
		[[ $EUID -ne 0 ]] || echo 'APT::Sandbox::User "root";'
	} >"$dir/apt.conf"
	# APT_CONFIG is read before /etc/apt/apt.conf.d and only names our main
	# file, which apt reads after it.
	printf 'Dir::Etc::main "%s";\n' "$dir/apt.conf" >"$dir/apt-config"
}

# private_apt DIR CMD... runs CMD with the private configuration in DIR.
private_apt() {
	local dir="$1"
	shift
	APT_CONFIG="$dir/apt-config" "$@"
}
