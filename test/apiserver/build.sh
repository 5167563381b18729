#!/usr/bin/env bash
# Builds the real kube-apiserver, etcd and (optionally) kubectl that cloak's tests run, from the
# Go modules pinned by test/apiserver/go.mod, and caches them as
#   $CACHE_DIR/bin/kube-apiserver-<k8s version>, etcd-<etcd version>, kubectl-<k8s version>
# A binary that is already cached is not rebuilt. Builds hold a lock and rename into place, so
# concurrent callers (two make targets, two helpers) never see a half-written binary.
#
#   build.sh                 kube-apiserver and etcd
#   build.sh kubectl         also kubectl
#   build.sh kubectl kube-controller-manager   also both (test/deploy runs the PV controllers)
#   build.sh kube-scheduler kubelet kube-proxy  also these (test/cluster runs a whole cluster)
#   build.sh --print-paths   print NAME=PATH lines for what would be used (builds nothing)
#   build.sh --regen         regenerate go.mod's replace block for K8S_VERSION (needs the proxy)
set -euo pipefail

K8S_VERSION=v1.34.4
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../../scripts/go-env.sh
source "$here/../../scripts/go-env.sh"
bin_dir=$CACHE_DIR/bin

minor=${K8S_VERSION#v1.}
minor=${minor%%.*}
staging_version=v0.${K8S_VERSION#v1.}

if [[ "${1:-}" == "--regen" ]]; then
  mod=$(mktemp)
  trap 'rm -f "$mod"' EXIT
  (cd "$here" && "$GO" mod download -json "k8s.io/kubernetes@$K8S_VERSION" >/dev/null)
  cp "$GOMODCACHE/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod" "$mod"
  {
    sed -n '1,/^module /p' "$here/go.mod"
    printf '\ngo 1.24.0\n\nrequire k8s.io/kubernetes %s\n\ntool (\n' "$K8S_VERSION"
    printf '\tgo.etcd.io/etcd/server/v3\n\tk8s.io/kubernetes/cmd/kube-apiserver\n\tk8s.io/kubernetes/cmd/kube-controller-manager\n\tk8s.io/kubernetes/cmd/kube-proxy\n\tk8s.io/kubernetes/cmd/kube-scheduler\n\tk8s.io/kubernetes/cmd/kubectl\n\tk8s.io/kubernetes/cmd/kubelet\n)\n\nreplace (\n'
    awk '/=> \.\/staging/ {print "\t" $1 " => " $1 " '"$staging_version"'"}' "$mod"
    printf ')\n'
  } >"$here/go.mod.new"
  mv "$here/go.mod.new" "$here/go.mod"
  (cd "$here" && "$GO" mod tidy)
  exit 0
fi

etcd_version=$(awk '$1 == "go.etcd.io/etcd/server/v3" {print $2}' "$here/go.mod")
[[ -n "$etcd_version" ]] || { echo "build.sh: go.mod does not pin go.etcd.io/etcd/server/v3" >&2; exit 1; }
grep -q "k8s.io/kubernetes $K8S_VERSION" "$here/go.mod" ||
  { echo "build.sh: go.mod does not require k8s.io/kubernetes $K8S_VERSION (run build.sh --regen)" >&2; exit 1; }

apiserver=$bin_dir/kube-apiserver-$K8S_VERSION
etcd=$bin_dir/etcd-$etcd_version
kubectl=$bin_dir/kubectl-$K8S_VERSION
kcm=$bin_dir/kube-controller-manager-$K8S_VERSION
scheduler=$bin_dir/kube-scheduler-$K8S_VERSION
kubelet=$bin_dir/kubelet-$K8S_VERSION
proxy=$bin_dir/kube-proxy-$K8S_VERSION

if [[ "${1:-}" == "--print-paths" ]]; then
  printf 'KUBE_APISERVER=%s\nETCD=%s\nKUBECTL=%s\nKUBE_CONTROLLER_MANAGER=%s\n' "$apiserver" "$etcd" "$kubectl" "$kcm"
  printf 'KUBE_SCHEDULER=%s\nKUBELET=%s\nKUBE_PROXY=%s\n' "$scheduler" "$kubelet" "$proxy"
  exit 0
fi

wanted=("$apiserver" "$etcd")
for extra in "$@"; do
  case $extra in
    kubectl) wanted+=("$kubectl") ;;
    kube-controller-manager) wanted+=("$kcm") ;;
    kube-scheduler) wanted+=("$scheduler") ;;
    kubelet) wanted+=("$kubelet") ;;
    kube-proxy) wanted+=("$proxy") ;;
    *) echo "build.sh: unknown binary $extra" >&2; exit 2 ;;
  esac
done
missing=0
for f in "${wanted[@]}"; do [[ -x "$f" ]] || missing=1; done
[[ $missing -eq 0 ]] && exit 0

mkdir -p "$bin_dir"
exec 9>"$bin_dir/.build.lock"
flock 9

# The version the binaries report (kubectl's skew warning, /version) instead of v0.0.0-master.
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$K8S_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
  ldflags+=" -X $pkg.gitTreeState=clean"
done

build() { # build <output> <package>
  local out=$1 pkg=$2
  [[ -x "$out" ]] && return 0
  local started=$SECONDS
  echo "build.sh: building $pkg -> $out"
  (cd "$here" && "$GO" build -trimpath -ldflags "$ldflags" -o "$out.tmp.$$" "$pkg")
  mv -f "$out.tmp.$$" "$out"
  echo "build.sh: built $(basename "$out") in $((SECONDS - started)) s"
}

build "$apiserver" k8s.io/kubernetes/cmd/kube-apiserver
build "$etcd" go.etcd.io/etcd/server/v3
for extra in "$@"; do
  case $extra in
    kubectl) build "$kubectl" k8s.io/kubernetes/cmd/kubectl ;;
    kube-controller-manager) build "$kcm" k8s.io/kubernetes/cmd/kube-controller-manager ;;
    kube-scheduler) build "$scheduler" k8s.io/kubernetes/cmd/kube-scheduler ;;
    kubelet) build "$kubelet" k8s.io/kubernetes/cmd/kubelet ;;
    kube-proxy) build "$proxy" k8s.io/kubernetes/cmd/kube-proxy ;;
  esac
done
exit 0
