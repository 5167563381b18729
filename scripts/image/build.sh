#!/usr/bin/env bash
# `make image`: cloak's image as an OCI archive, built without Docker. The same image the
# Dockerfile describes (test/deploy/image.test.ts keeps the two in step): Debian 12 with the
# packages the code runs, Node 24 as package.json pins it, `npm ci --omit=dev`, the compiled
# product code, tini as PID 1, root by default, the same entrypoint.
#
#   scripts/image/build.sh                  build (or reuse) the archive; prints its path and digest
#   scripts/image/build.sh --print-path     the archive the current sources give (builds nothing)
#   scripts/image/build.sh --print-config   the image's packages, entrypoint, cmd, env, workdir and
#                                           user as JSON (builds nothing; for the tests)
#
# Four layers, lowest (changing least often) first, each cached under $CACHE_DIR/image/layers by
# what goes into it; about 235 MB in all, and every MB costs an import on an emulated CPU:
#   rootfs  mmdebstrap --variant=essential of bookworm (+ updates, security) with PACKAGES below
#           and no Recommends (as the Dockerfile's --no-install-recommends); no docs (copyright
#           files kept), man pages, locales or apt lists. Keyed by this script's function and
#           the versions apt offers for PACKAGES, the Essential set and their dependencies (a
#           Debian update of any of them rebuilds it). 80 MB.
#   node    /usr/local/bin/node: the binary of the npm `node` package (package.json's version),
#           stripped (126 -> 108 MB, as Debian strips its nodejs). Keyed by the binary.
#   modules /opt/cloak/{package.json,package-lock.json,node_modules}: `npm ci --omit=dev`,
#           without type declarations and source maps. Keyed by package*.json. 50 MB.
#   app     /opt/cloak/proto (*.proto, loader-options.json) and dist/, compiled from the sources
#           alone (scripts/image/tsconfig.json). Keyed by those sources. 1 MB.
# Reproducible: the same inputs give the same image digest (sorted tars, every mtime
# SOURCE_DATE_EPOCH, default 0; numeric owners; canonical JSON; see oci-archive.sh).
#
# Environment: CACHE_DIR (/var/cache/cloak), IMAGE_NAME (cloak.invalid/cloak:<version>, the name
# manifests/ use), IMAGE_OUT (also copy the archive there), DEBIAN_MIRROR
# (http://deb.debian.org/debian), DEBIAN_SECURITY_MIRROR (http://deb.debian.org/debian-security).
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
root=$(cd "$here/../.." && pwd)
CACHE_DIR=${CACHE_DIR:-/var/cache/cloak}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-0}
say() { echo "image: $*" >&2; }
die() { say "error: $*"; exit 1; }

version=$(jq -r .version "$root/package.json")
node_version=$(jq -r '.devDependencies.node' "$root/package.json")
name=${IMAGE_NAME:-cloak.invalid/cloak:$version}

# What the code runs (test/deploy/image.test.ts checks this list against the Dockerfile's), plus
# libstdc++6, which Node needs and the Dockerfile's node:*-bookworm-slim base already has.
PACKAGES=(cryptsetup-bin e2fsprogs xfsprogs util-linux mount wireguard-tools wireguard-go iproute2 nftables tini)
BASE_EXTRAS=(libstdc++6)
# xfsprogs depends on python3 and libicu72 (80 MB) for xfs_scrub and xfs_scrub_all alone, which
# cloak never runs (it runs mkfs.xfs and xfs_growfs, which link neither). They are removed
# after installation (python3 first: its prerm needs python3.11); the build then checks that
# every other program in the image still finds all its libraries.
UNUSED=(python3 "python3-minimal python3.11 python3.11-minimal libpython3-stdlib libpython3.11-stdlib libpython3.11-minimal libicu72 media-types")
ENTRYPOINT='["/usr/bin/tini","--","node","/opt/cloak/dist/cmd/cloak.js"]'
CMD='["help"]'
WORKDIR=/opt/cloak
ENVS=(PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin NODE_ENV=production)
# Root by default, as the Dockerfile: the node plugin and netd need it; the key service's pod
# sets its own user (manifests/base/keyservice.yaml).
USER_NAME=

if [[ ${1:-} == --print-config ]]; then
  jq -n -S --argjson entrypoint "$ENTRYPOINT" --argjson cmd "$CMD" --arg workdir "$WORKDIR" --arg user "$USER_NAME" \
    --arg name "$name" --arg node "$node_version" \
    --argjson packages "$(printf '%s\n' "${PACKAGES[@]}" | jq -R . | jq -s -c .)" \
    --argjson baseExtras "$(printf '%s\n' "${BASE_EXTRAS[@]}" | jq -R . | jq -s -c .)" \
    --argjson env "$(printf '%s\n' "${ENVS[@]}" | jq -R . | jq -s -c .)" \
    '{name: $name, node: $node, packages: $packages, baseExtras: $baseExtras, entrypoint: $entrypoint, cmd: $cmd, env: $env, workdir: $workdir, user: $user}'
  exit 0
fi

# Keys hash contents, never paths: another clone of the repository finds the same layers.
hash_files() { sha256sum "$@" | cut -d' ' -f1 | sha256sum | cut -c1-16; }
layers=$CACHE_DIR/image/layers
mkdir -p "$layers"
pack() { "$here/oci-archive.sh" --pack-layer "$@"; }

# ---- the layers: each function builds one into "$1" (a tar); its own text is in its key ------
build_rootfs() {
  local out=$1 mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian} include missing
  local security=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
  include=$(IFS=,; echo "${PACKAGES[*]},${BASE_EXTRAS[*]}")
  # The merged-usr hook sets /usr up as debootstrap and Debian's images do; without it apt
  # satisfies init-system-helpers' "usrmerge | usr-is-merged" with usrmerge and 55 MB of perl.
  mmdebstrap --mode=root --variant=essential --format=directory --include="$include" \
    --aptopt='APT::Install-Recommends "false"' \
    --hook-dir=/usr/share/mmdebstrap/hooks/merged-usr \
    --dpkgopt='path-exclude=/usr/share/doc/*' --dpkgopt='path-include=/usr/share/doc/*/copyright' \
    --dpkgopt='path-exclude=/usr/share/man/*' --dpkgopt='path-exclude=/usr/share/info/*' \
    --dpkgopt='path-exclude=/usr/share/locale/*' --dpkgopt='path-exclude=/usr/share/lintian/*' \
    --customize-hook="chroot \"\$1\" dpkg --purge --force-depends ${UNUSED[0]}" \
    --customize-hook="chroot \"\$1\" dpkg --purge --force-depends ${UNUSED[1]}" \
    --customize-hook='rm -rf "$1"/var/cache/* "$1"/var/lib/apt/lists/* "$1"/var/log/* "$1"/var/lib/dpkg/*-old' \
    --customize-hook='rm -f "$1"/etc/machine-id "$1"/var/lib/dbus/machine-id "$1"/etc/hostname "$1"/etc/resolv.conf' \
    bookworm "$work/rootfs" \
    "deb $mirror bookworm main" "deb $mirror bookworm-updates main" "deb $security bookworm-security main" \
    >"$work/mmdebstrap.log" 2>&1 || { tail -n 40 "$work/mmdebstrap.log" >&2; die "mmdebstrap failed"; }
  missing=$(cd "$work/rootfs" && find usr/bin usr/sbin -type f -perm -u+x ! -name 'xfs_scrub*' -printf '/%p\n' |
    while read -r f; do chroot "$work/rootfs" ldd "$f" 2>/dev/null | sed -n "s|^\s*\(.*\) => not found|$f: \1|p"; done)
  [[ -z $missing ]] || die "programs in the image lack libraries:"$'\n'"$missing"
  pack "$work/rootfs" "$out"
  rm -rf "$work/rootfs"
}

build_node() {
  mkdir -p "$work/node/usr/local/bin"
  strip --strip-all -o "$work/node/usr/local/bin/node" "$node_bin"
  pack "$work/node" "$1" root
}

build_modules() {
  local app=$work/modules/opt/cloak
  mkdir -p "$app"
  cp "$root/package.json" "$root/package-lock.json" "$app/"
  # --ignore-scripts as in the Dockerfile: the `node` package's script would fetch a second Node.
  (cd "$app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null)
  # Type declarations and source maps are never loaded at run time (no --enable-source-maps):
  # 38 of the 111 MB, @kubernetes/client-node's most of all.
  find "$app/node_modules" -type f \( -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.map' \) -delete
  pack "$work/modules" "$1" root
}

build_app() {
  local app=$work/app/opt/cloak
  mkdir -p "$app/proto"
  cp "$root"/proto/*.proto "$root/proto/loader-options.json" "$app/proto/"
  (cd "$root" && node_modules/.bin/tsc -p "$here/tsconfig.json" --outDir "$app/dist")
  pack "$work/app" "$1" root
}

# ---- cache keys ----------------------------------------------------------------------------
key() { { declare -f "$1"; shift; printf '%s\n' "$@" "$SOURCE_DATE_EPOCH"; hash_files "$here/oci-archive.sh"; } | sha256sum | cut -c1-16; }
# The versions apt offers for everything the rootfs can hold: the packages above, the Essential
# set (--variant=essential; this Debian 12 machine's own, the same release) and all they depend
# on, so that a security update of any of them (libc6, libssl3...) rebuilds the layer. Three
# apt/dpkg calls in all: a warm run's lookup stays a few seconds.
rootfs_packages=$( {
  printf '%s\n' "${PACKAGES[@]}" "${BASE_EXTRAS[@]}"
  dpkg-query -W -f '${Essential} ${Package}\n' | awk '$1 == "yes" {print $2}'
} | xargs apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts --no-breaks \
      --no-replaces --no-enhances | grep -v -e '^ ' -e '^<' | LC_ALL=C sort -u)
candidates=$(xargs apt-cache policy <<<"$rootfs_packages" |
  awk '/^[^ ].*:$/ {p = substr($0, 1, length($0) - 1)} $1 == "Candidate:" {print p "=" $2}' | LC_ALL=C sort)
[[ $(wc -l <<<"$candidates") -gt 50 && $candidates == *"libc6="* ]] || die "apt-cache gave no candidate versions (apt-get update?)"
rootfs_key=$(key build_rootfs "$candidates" "${UNUSED[@]}" "${DEBIAN_MIRROR:-}" "${DEBIAN_SECURITY_MIRROR:-}")
node_bin=$root/node_modules/node/bin/node
[[ -x $node_bin ]] || die "no $node_bin: run make deps-npm first"
[[ $("$node_bin" --version) == "v$node_version" ]] || die "$node_bin is not Node $node_version (run make deps-npm)"
node_key=$(key build_node "$(hash_files "$node_bin")")
[[ -d $root/proto/gen ]] || die "no proto/gen: run make gen first"
mapfile -t app_inputs < <(cd "$root" && find cmd lib csi keyservice netd proto -type f ! -name '*.test.ts' | LC_ALL=C sort)
modules_key=$(key build_modules "$(cd "$root" && sha256sum package.json package-lock.json | sha256sum)")
# Relative names with the contents: a renamed file is a different app.
app_key=$(key build_app "$(cd "$root" && sha256sum "${app_inputs[@]}" tsconfig.json scripts/image/tsconfig.json | sha256sum)")
image_key=$(echo "$rootfs_key $node_key $modules_key $app_key $name ${PACKAGES[*]} $ENTRYPOINT $CMD $WORKDIR ${ENVS[*]} $USER_NAME" | sha256sum | cut -c1-16)
archive=$CACHE_DIR/image/cloak-$version-$image_key.oci.tar

if [[ ${1:-} == --print-path ]]; then
  echo "$archive"
  exit 0
fi
[[ $# -eq 0 ]] || die "unknown argument $1"

exec 9>"$CACHE_DIR/image/.build.lock"
flock 9
umask 022
work=''
trap '[[ -n $work ]] && rm -rf "$work"' EXIT
work=$(mktemp -d "$CACHE_DIR/image/.work.XXXXXX")

# layer <kind> <key>: the cached layer's path, built first if missing.
layer() {
  local file=$layers/$1-$2.tar started=$SECONDS
  if [[ ! -f $file ]]; then
    say "$1: building"
    "build_$1" "$work/$1.tar" >&2
    mv "$work/$1.tar" "$file"
    say "$1: $(du -h "$file" | cut -f1) in $((SECONDS - started)) s"
  fi
  touch "$file"
  echo "$file"
}

if [[ ! -f $archive ]]; then
  rootfs=$(layer rootfs "$rootfs_key")
  node_layer=$(layer node "$node_key")
  modules_layer=$(layer modules "$modules_key")
  app_layer=$(layer app "$app_key")
  envs=()
  for e in "${ENVS[@]}"; do envs+=(--env "$e"); done
  user=()
  [[ -n $USER_NAME ]] && user=(--user "$USER_NAME")
  digest=$("$here/oci-archive.sh" --out "$work/image.tar" --name "$name" \
    --entrypoint "$ENTRYPOINT" --cmd "$CMD" --workdir "$WORKDIR" "${envs[@]}" "${user[@]}" \
    --label "org.opencontainers.image.title=cloak" --label "org.opencontainers.image.version=$version" \
    "$rootfs" "$node_layer" "$modules_layer" "$app_layer")
  mv "$work/image.tar" "$archive"
  echo "$digest" >"$archive.digest"
fi
touch "$archive" "$archive.digest"
# Archives and layers of older sources: keep the 4 newest of each kind, drop the rest after a day.
prune() { # prune <glob pattern>
  local -a files
  mapfile -t files < <(compgen -G "$1" | xargs -r ls -t)
  for f in "${files[@]:4}"; do
    if [[ -n $(find "$f" -mmin +1440) ]]; then rm -f "$f" "$f.digest"; fi
  done
}
prune "$CACHE_DIR/image/cloak-*.oci.tar"
for kind in rootfs node modules app; do prune "$layers/$kind-*.tar"; done

if [[ -n ${IMAGE_OUT:-} ]]; then
  cp "$archive" "$IMAGE_OUT.tmp.$$" && mv -f "$IMAGE_OUT.tmp.$$" "$IMAGE_OUT"
  say "copied to $IMAGE_OUT"
fi
say "$name $(cat "$archive.digest") ($(du -h "$archive" | cut -f1)): $archive"
echo "$archive"
