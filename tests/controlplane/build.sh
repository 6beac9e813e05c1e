#!/usr/bin/env bash
# Builds the real control-plane binaries the integration tests run (etcd,
# kube-apiserver, kubectl) from their Go modules, and caches them outside the
# clone, keyed by the pinned versions, so a warm run never rebuilds.
#
# Prints the directory holding the binaries on its last line of stdout.
# Progress goes to stderr. Exits non-zero, naming the step, on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "controlplane: $*" >&2; exit 1; }

command -v go >/dev/null || die "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer"

k8s=$(awk '$1=="k8s.io/kubernetes" {print $2; exit}' "$here/go.mod")
etcd=$(awk '$1=="go.etcd.io/etcd/server/v3" {print $2; exit}' "$here/go.mod")
[ -n "$k8s" ] && [ -n "$etcd" ] || die "cannot read the pinned versions from $here/go.mod"

# The key also covers go.sum and this script, so a changed dependency set or build flag
# is a new cache entry.
sum=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
cache_root=${APPATTACH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/appattach}
out="$cache_root/controlplane/kubernetes-$k8s-etcd-$etcd-$sum"

if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "controlplane: reusing $out" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root/controlplane"
# One build at a time: a second caller waits, then finds the first one's result.
exec 9>"$cache_root/controlplane/.lock"
flock 9
if [ -x "$out/kube-apiserver" ] && [ -x "$out/kubectl" ] && [ -x "$out/etcd" ]; then
  echo "controlplane: reusing $out" >&2
  echo "$out"
  exit 0
fi
tmp=$(mktemp -d "$cache_root/controlplane/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$here"
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Stamp the versions a release build would, so `kubectl version` and the API server's
# /version tell the truth instead of v0.0.0-master.
minor=$(echo "$k8s" | cut -d. -f2)
ver=k8s.io/component-base/version
ldflags="-s -w -X $ver.gitVersion=$k8s -X $ver.gitMajor=1 -X $ver.gitMinor=$minor -X $ver.gitTreeState=clean"
ldflags="$ldflags -X k8s.io/client-go/pkg/version.gitVersion=$k8s -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$minor"
start=$SECONDS
for target in \
  "etcd=go.etcd.io/etcd/server/v3" \
  "kube-apiserver=k8s.io/kubernetes/cmd/kube-apiserver" \
  "kubectl=k8s.io/kubernetes/cmd/kubectl"; do
  name=${target%%=*}; pkg=${target#*=}
  echo "controlplane: building $name from $pkg (kubernetes $k8s, etcd $etcd)..." >&2
  t=$SECONDS
  go build -trimpath -ldflags="$ldflags" -o "$tmp/$name" "$pkg" \
    || die "building $name from $pkg failed (see the go output above)"
  echo "controlplane: built $name in $((SECONDS - t))s" >&2
done
"$tmp/kube-apiserver" --version >&2 || die "the built kube-apiserver does not run"
"$tmp/etcd" --version >&2 || die "the built etcd does not run"

# Publish atomically: a half-built directory is never seen as a cache hit.
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "controlplane: built all in $((SECONDS - start))s into $out" >&2
echo "$out"
