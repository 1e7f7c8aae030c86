# image.sh: what the image recipes of testdata/debian share. Sourced (not
# run); it defines functions only and changes no shell options. A recipe
# defines log and die, then calls, in order:
#
#   image_cache NAME INPUT...   INPUT the recipe's other inputs (its base
#                      image's name, the content of a file it copies, a
#                      version): sets $cache to
#                      ${UKDUMP_CACHE:-~/.cache/ukdump}/images/NAME-<hash of
#                      the recipe, this file and the inputs>, and ends the
#                      recipe, printing $cache, when that image is complete
#   image_lock         takes the image's lock (test binaries run recipes
#                      in parallel: one builds, the others wait) and ends
#                      the recipe the same way if it was built meanwhile
#   image_work         $work, a new directory beside $cache; on any exit
#                      until image_done, image_on_exit runs (if the recipe
#                      defines it), the mounts listed in image_mounts are
#                      undone, last first, and $work is removed
#   image_done         marks $work complete, puts it in the place of
#                      $cache and prints $cache, the recipe's only output
#
# Everything else a recipe prints goes to stderr.

image_mounts=()

image_cache() {
	local key
	key="$( (cat "$0" "${BASH_SOURCE[0]}"; printf '%s\n' "${@:2}") | sha256sum | cut -c1-16)"
	cache="${UKDUMP_CACHE:-$HOME/.cache/ukdump}/images/$1-$key"
	image_if_complete
}

image_if_complete() {
	if [[ -f "$cache/.complete" ]]; then
		printf '%s\n' "$cache"
		exit 0
	fi
}

image_lock() {
	mkdir -p "$(dirname "$cache")"
	exec 9>"$cache.lock"
	flock 9
	image_if_complete
}

image_cleanup() {
	local i
	if declare -F image_on_exit >/dev/null; then
		image_on_exit
	fi
	for ((i = ${#image_mounts[@]} - 1; i >= 0; i--)); do
		if mountpoint -q "${image_mounts[i]}"; then
			umount "${image_mounts[i]}"
		fi
	done
	rm -rf "$work"
}

image_work() {
	work="$(mktemp -d "$cache.tmp.XXXXXX")"
	trap image_cleanup EXIT
}

image_done() {
	touch "$work/.complete"
	rm -rf "$cache"
	mv "$work" "$cache"
	trap - EXIT
	printf '%s\n' "$cache"
}
