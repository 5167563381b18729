#!/usr/bin/env bash
# Writes a container image as an OCI image-layout archive (a tar of oci-layout, index.json and
# blobs/sha256/*), without a container engine: what `docker load`, `ctr images import`,
# `podman load` and `skopeo copy oci-archive:...` read. Layers are uncompressed tars (nothing to
# gunzip where the import runs on an emulated CPU).
#
#   oci-archive.sh --out FILE --name REF [--name REF]... [--entrypoint JSON] [--cmd JSON] [--env K=V]...
#                  [--workdir DIR] [--user USER] [--label K=V]... LAYER...
#
# Each LAYER is a directory (packed here) or an existing .tar (used as it is), lowest first.
# REF is the full name the importer gives the image (e.g. cloak.invalid/cloak:0.1.0); with more
# than one, the index lists the same manifest under each.
#
# Reproducible: the same inputs give the same bytes, and so the same image digest. Entries are
# sorted by name, every mtime is SOURCE_DATE_EPOCH (default 0), no atime/ctime or pax header
# names with a pid, owners numeric; JSON is canonical (jq -S -c). Directories are packed with
# their numeric owners (a rootfs keeps its system users' files) unless --root-owned is given
# before them, which makes every later directory's entries root:root.
# Prints the image's manifest digest (sha256:...) on stdout.
set -euo pipefail

say() { echo "oci-archive: $*" >&2; }
die() { say "error: $*"; exit 1; }
epoch=${SOURCE_DATE_EPOCH:-0}
[[ $epoch =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds, not '$epoch'"

# Packs DIR into OUT reproducibly (also used by scripts/image/build.sh for its cached layers).
pack_layer() { # pack_layer DIR OUT [root]
  local dir=$1 out=$2 owners=()
  [[ ${3:-} == root ]] && owners=(--owner=0 --group=0)
  (cd "$dir" && find . -mindepth 1 -printf '%P\n' | LC_ALL=C sort) >"$out.list"
  tar --create --file="$out" --directory="$dir" --no-recursion --verbatim-files-from --files-from="$out.list" \
    --format=posix --pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime \
    --mtime="@$epoch" --numeric-owner "${owners[@]}"
  rm -f "$out.list"
}
if [[ ${1:-} == --pack-layer ]]; then
  pack_layer "${2:?DIR}" "${3:?OUT}" "${4:-}"
  exit 0
fi

out='' names=() entrypoint=null cmd=null workdir='' user='' envs=() labels=() layers=() owners=()
root_owned=0
while [[ $# -gt 0 ]]; do
  case $1 in
    --out) out=${2:?}; shift 2 ;;
    --name) names+=("${2:?}"); shift 2 ;;
    --entrypoint) entrypoint=${2:?}; shift 2 ;;
    --cmd) cmd=${2:?}; shift 2 ;;
    --env) envs+=("${2:?}"); shift 2 ;;
    --workdir) workdir=${2:?}; shift 2 ;;
    --user) user=${2:?}; shift 2 ;;
    --label) labels+=("${2:?}"); shift 2 ;;
    --root-owned) root_owned=1; shift ;;
    -*) die "unknown option $1" ;;
    *) layers+=("$1"); owners+=("$root_owned"); shift ;;
  esac
done
[[ -n $out && ${#names[@]} -gt 0 && ${#layers[@]} -gt 0 ]] || die "usage: oci-archive.sh --out FILE --name REF [options] LAYER..."
jq -e 'type == "array" or . == null' <<<"$entrypoint" >/dev/null || die "--entrypoint takes a JSON array"
jq -e 'type == "array" or . == null' <<<"$cmd" >/dev/null || die "--cmd takes a JSON array"

umask 022
work=$(mktemp -d "${TMPDIR:-/tmp}/oci-archive.XXXXXX")
trap 'rm -rf "$work"' EXIT
blobs=$work/layout/blobs/sha256
mkdir -p "$blobs"

# Moves FILE into the blob store; prints "<digest> <size>".
add_blob() {
  local digest size
  digest=$(sha256sum "$1" | cut -d' ' -f1)
  size=$(stat -c %s "$1")
  mv -f "$1" "$blobs/$digest"
  echo "$digest $size"
}

layer_json=() diff_ids=()
for i in "${!layers[@]}"; do
  layer=${layers[$i]}
  if [[ -d $layer ]]; then
    ownership=keep
    [[ ${owners[$i]} == 1 ]] && ownership=root
    pack_layer "$layer" "$work/layer.tar" "$ownership"
  elif [[ -f $layer ]]; then
    cp "$layer" "$work/layer.tar"
  else
    die "no such layer: $layer"
  fi
  read -r digest size < <(add_blob "$work/layer.tar")
  diff_ids+=("sha256:$digest")
  layer_json+=("{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar\",\"digest\":\"sha256:$digest\",\"size\":$size}")
done

to_json_array() { if [[ $# -eq 0 ]]; then echo '[]'; else printf '%s\n' "$@" | jq -R . | jq -s -c .; fi; }
to_json_map() { if [[ $# -eq 0 ]]; then echo '{}'; else printf '%s\n' "$@" | jq -R 'split("=") | {(.[0]): (.[1:] | join("="))}' | jq -s -c 'add'; fi; }
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

jq -n -S -c \
  --arg created "$created" --argjson entrypoint "$entrypoint" --argjson cmd "$cmd" \
  --argjson env "$(to_json_array "${envs[@]}")" --argjson labels "$(to_json_map "${labels[@]}")" \
  --arg workdir "$workdir" --arg user "$user" --argjson diff_ids "$(to_json_array "${diff_ids[@]}")" '
  {created: $created, architecture: "amd64", os: "linux",
   config: ({Env: $env, Labels: $labels}
     + (if $entrypoint then {Entrypoint: $entrypoint} else {} end)
     + (if $cmd then {Cmd: $cmd} else {} end)
     + (if $workdir != "" then {WorkingDir: $workdir} else {} end)
     + (if $user != "" then {User: $user} else {} end)),
   rootfs: {type: "layers", diff_ids: $diff_ids}}' >"$work/config.json"
read -r config_digest config_size < <(add_blob "$work/config.json")

printf '%s\n' "${layer_json[@]}" | jq -s -S -c --arg digest "sha256:$config_digest" --argjson size "$config_size" '
  {schemaVersion: 2, mediaType: "application/vnd.oci.image.manifest.v1+json",
   config: {mediaType: "application/vnd.oci.image.config.v1+json", digest: $digest, size: $size},
   layers: .}' >"$work/manifest.json"
read -r manifest_digest manifest_size < <(add_blob "$work/manifest.json")

# containerd names the image after io.containerd.image.name; OCI tools read ref.name (the tag).
printf '%s\n' "${names[@]}" | jq -R . | jq -s -S -c --arg digest "sha256:$manifest_digest" --argjson size "$manifest_size" '
  {schemaVersion: 2, mediaType: "application/vnd.oci.image.index.v1+json",
   manifests: [.[] | {mediaType: "application/vnd.oci.image.manifest.v1+json", digest: $digest, size: $size,
     annotations: {"io.containerd.image.name": ., "org.opencontainers.image.ref.name": sub("^.*:"; "")}}]}' \
  >"$work/layout/index.json"
echo '{"imageLayoutVersion":"1.0.0"}' >"$work/layout/oci-layout"

mkdir -p "$(dirname "$out")"
pack_layer "$work/layout" "$work/archive.tar" root
mv -f "$work/archive.tar" "$out"
echo "sha256:$manifest_digest"
