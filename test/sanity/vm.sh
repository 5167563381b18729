#!/usr/bin/env bash
# The sanity tier in one VM boot (`make sanity` starts it inside test/vm/run.sh): csi-sanity
# against the local disk source (run.sh), then against cloak in wrapper mode in front of the
# block test driver (wrap.sh cloak). The second runs even when the first failed; each part's
# time is printed, and the tier fails when either does.
#
#   test/sanity/vm.sh <csi-sanity binary> <blockdriver binary>
set -uo pipefail
sanity=${1:?usage: vm.sh <csi-sanity> <blockdriver>}
blockdriver=${2:?usage: vm.sh <csi-sanity> <blockdriver>}
here=$(cd "$(dirname "$0")" && pwd)
status=0
for part in local wrap; do
  started=$SECONDS
  echo "==> sanity, $part disk source"
  if [[ $part == local ]]; then
    "$here/run.sh" "$sanity" || status=1
  else
    "$here/wrap.sh" cloak "$sanity" "$blockdriver" || status=1
  fi
  echo "==> sanity, $part disk source: $((SECONDS - started)) s"
done
exit $status
