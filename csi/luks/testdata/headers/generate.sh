#!/usr/bin/env bash
# Regenerates the LUKS2 header fixtures in this directory from real cryptsetup (header.test.ts
# reads them). Run as root from anywhere:
#
#   csi/luks/testdata/headers/generate.sh
#
# cipher_null and dm-integrity headers can only be written with device-mapper, so the work runs
# through test/vm/run.sh (natively on a kernel with dm-crypt, else in the qemu guest) and comes
# back as a base64 tar on its stdout; nothing is written on the host but these files.
#
# Each fixture is the start of a device formatted or changed by cryptsetup, as far as both
# header copies reach (2 × hdr_size bytes; 4 KiB of a LUKS1 device), gzipped: <name>.bin.gz.
# Beside it, <name>.cryptsetup.json records what cryptsetup itself made of the whole device:
# `luksDump --dump-json-metadata`'s exit status and output, and whether loading the header
# rewrote it (its automatic repair of a damaged or older copy).
#
# Only byte copies and single-byte or same-length edits are made by hand (dd); every checksum
# in a fixture was computed by cryptsetup, so none comes from the code under test.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

if [[ ${1:-} != --inner ]]; then
  repo=$(cd "$here/../../../.." && pwd)
  out=$(cd "$repo" && test/vm/run.sh --timeout 1800 -- bash "$here/generate.sh" --inner)
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  sed -n '/^--- fixtures begin ---$/,/^--- fixtures end ---$/{//!p}' <<<"$out" | base64 -d | tar -xz -C "$tmp"
  [[ -s $tmp/plain.bin.gz ]] || { echo "generate.sh: the run produced no fixtures" >&2; exit 1; }
  rm -f "$here"/*.bin.gz "$here"/*.cryptsetup.json
  cp "$tmp"/* "$here"/
  ls -l "$here" >&2
  exit 0
fi

# ---- inside run.sh: make the devices, capture their headers ---------------------------------
work=$(mktemp -d)
out=$work/out
mkdir "$out"
cd "$work"
trap 'cd /; rm -rf "$work"' EXIT

head -c 32 /dev/urandom >key
head -c 32 /dev/urandom >key2
uuid=$(cat /proc/sys/kernel/random/uuid)

# cloak's format (csi/luks/cryptsetup.ts), with any extra or replacing flags appended.
cloak_flags=(--type luks2 --cipher aes-xts-plain64 --key-size 512 --sector-size 4096 --hash sha256
  --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --uuid "$uuid" --label fresh --subsystem cloak)
format() { # name flags...
  local name=$1; shift
  truncate -s 40M "$name.img"
  cryptsetup luksFormat --batch-mode --key-file key "$@" "$name.img"
}
u64() { # file offset → the big-endian 64-bit integer there
  printf '%d' "0x$(od -An -tx1 -j "$2" -N 8 "$1" | tr -d ' \n')"
}
hdr_size() { u64 "$1" 8; }
seqid() { u64 "$1" 16; }
copy_bytes() { # from to offset length: copy a byte range from one image into another
  dd if="$1" of="$2" bs=1 skip="$3" seek="$3" count="$4" conv=notrunc status=none
}
write_at() { # file offset text
  printf '%s' "$3" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
flip_byte() { # file offset
  local byte
  byte=$(od -An -tu1 -j "$2" -N 1 "$1" | tr -d ' ')
  printf "\\x$(printf '%02x' $(((byte + 1) % 256)))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}
capture() { # name image
  local name=$1 img=$2 size copy status=0 repaired=false
  if [[ $(od -An -tx1 -j 6 -N 2 "$img" | tr -d ' ') == 0002 ]]; then size=$((2 * $(hdr_size "$img"))); else size=4096; fi
  head -c "$size" "$img" | gzip -9n >"$out/$name.bin.gz"
  copy=$work/dump-$name.img
  cp --sparse=always "$img" "$copy"
  cryptsetup luksDump --dump-json-metadata "$copy" >"$work/dump.json" 2>"$work/dump.err" || status=$?
  cmp -s -n "$size" "$img" "$copy" || repaired=true
  jq -n --argjson exitCode "$status" --argjson repaired "$repaired" --rawfile stderr "$work/dump.err" \
    --slurpfile metadata "$work/dump.json" \
    '{exitCode: $exitCode, repaired: $repaired, stderr: $stderr, metadata: ($metadata[0] // null)}' >"$out/$name.cryptsetup.json"
  rm -f "$copy"
  echo "captured $name: $size bytes, luksDump exit $status, repaired $repaired" >&2
}

# Headers cryptsetup writes itself.
format plain "${cloak_flags[@]}"
capture plain plain.img

cp --sparse=always plain.img in-use.img
cryptsetup config --label in-use --subsystem cloak in-use.img
capture in-use in-use.img

format integrity "${cloak_flags[@]}" --integrity hmac-sha256 --integrity-no-wipe
capture integrity integrity.img

format metadata-64k "${cloak_flags[@]}" --luks2-metadata-size 64k
capture metadata-64k metadata-64k.img

format cipher-null "${cloak_flags[@]}" --cipher cipher_null-ecb
capture cipher-null cipher-null.img

cp --sparse=always plain.img extra-keyslot.img
cryptsetup luksAddKey --batch-mode --pbkdf pbkdf2 --pbkdf-force-iterations 1000 --key-file key extra-keyslot.img key2
capture extra-keyslot extra-keyslot.img

cp --sparse=always plain.img token.img
cryptsetup token add --key-description cloak-fixture token.img
capture token token.img

format luks1 --type luks1 --pbkdf-force-iterations 1000
capture luks1 luks1.img

# Damaged copies: one byte changed, checksum left as it was.
cp --sparse=always plain.img primary-checksum.img
flip_byte primary-checksum.img 104 # the primary's salt
capture primary-checksum primary-checksum.img

cp --sparse=always plain.img secondary-checksum.img
flip_byte secondary-checksum.img $((16384 + 104)) # the secondary's salt
capture secondary-checksum secondary-checksum.img

cp --sparse=always plain.img checksum-field.img
flip_byte checksum-field.img 448 # the primary's stored checksum
capture checksum-field checksum-field.img

# The primary's segment cipher edited to cipher_null (same length) without a new checksum.
cp --sparse=always plain.img primary-edited.img
segment_cipher=$(head -c 16384 plain.img | grep -obUa 'aes-xts-plain64' | sed -n 2p | cut -d: -f1)
write_at primary-edited.img "$segment_cipher" cipher_null-ecb
capture primary-edited primary-edited.img

cp --sparse=always plain.img no-secondary.img
dd if=/dev/zero of=no-secondary.img bs=16384 seek=1 count=1 conv=notrunc status=none
capture no-secondary no-secondary.img

# Two valid copies that differ. A cipher_null header with the same UUID supplies a secondary,
# once with a higher seqid than cloak's (cryptsetup then uses it and rewrites the primary),
# once with the same seqid (cryptsetup then uses the primary and leaves the secondary).
format null-newer "${cloak_flags[@]}" --cipher cipher_null-ecb
cryptsetup config --label fresh --subsystem cloak null-newer.img
cryptsetup config --label fresh --subsystem cloak null-newer.img
cp --sparse=always plain.img swapped-secondary-newer.img
copy_bytes null-newer.img swapped-secondary-newer.img 16384 16384
capture swapped-secondary-newer swapped-secondary-newer.img

format null-same "${cloak_flags[@]}" --cipher cipher_null-ecb
[[ $(seqid null-same.img) == $(seqid plain.img) ]] || { echo "expected equal seqids" >&2; exit 1; }
cp --sparse=always plain.img swapped-secondary-same-seqid.img
copy_bytes null-same.img swapped-secondary-same-seqid.img 16384 16384
capture swapped-secondary-same-seqid swapped-secondary-same-seqid.img

# What a crash between cryptsetup's two header writes leaves: one copy a label change newer.
cp --sparse=always in-use.img stale-secondary.img
copy_bytes plain.img stale-secondary.img 16384 16384
capture stale-secondary stale-secondary.img

cp --sparse=always in-use.img stale-primary.img
copy_bytes plain.img stale-primary.img 0 16384
capture stale-primary stale-primary.img

cryptsetup --version >"$out/cryptsetup-version.txt"
echo "--- fixtures begin ---"
tar -C "$out" -cz . | base64
echo "--- fixtures end ---"
