# Sourced (bash) after go-env.sh by the build scripts of cloak's own Go test tools
# (test/kms-plugin, test/pluginwatcher, test/blockdriver): their module sits beside their sources.
#
#   go_build_cached <dir> <out> <lock name>
#
# builds the main package in <dir> into <out> unless <out> exists, and prints <out>. The caller
# names <out> after what it is built from (a hash of the sources), so a change builds a new
# binary and an unchanged one is never rebuilt. Builds hold $CACHE_DIR/bin/.<lock name>.lock —
# their own, not the shared .build.lock that a kube-controller-manager build holds for minutes
# — and rename into place, so concurrent callers never see half a binary; a failed build leaves
# no partial file. The caller's environment (CGO_ENABLED, say) is the build's.
go_build_cached() {
  local dir=${1:?dir} out=${2:?out} lock=${3:?lock name} started
  if [[ -x "$out" ]]; then echo "$out"; return 0; fi
  mkdir -p "$(dirname "$out")"
  # Explicit exits: `set -e` does not hold inside a subshell whose status is tested.
  (
    exec 9>"$(dirname "$out")/.$lock.lock" && flock 9 || exit 1
    if [[ ! -x "$out" ]]; then
      trap 'rm -f "$out.tmp.$$"' EXIT
      started=$SECONDS
      echo "$lock: building $out" >&2
      (cd "$dir" && "$GO" build -trimpath -ldflags "-s -w" -o "$out.tmp.$$" .) >&2 || exit 1
      mv -f "$out.tmp.$$" "$out" || exit 1
      echo "$lock: built $(basename "$out") in $((SECONDS - started)) s" >&2
    fi
  ) || return 1
  echo "$out"
}
