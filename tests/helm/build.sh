#!/usr/bin/env bash
# Builds the Helm CLI the chart tests run (helm lint, helm template) from its Go module,
# helm.sh/helm/v3, pinned in this folder's go.mod and go.sum (a module of its own, apart
# from tests/controlplane, so Helm's k8s.io versions never have to agree with the control
# plane's), and caches it outside the clone, keyed by the pinned version, so a warm run
# never rebuilds.
#
# Prints the directory holding `helm` on its last line of stdout.
# Progress goes to stderr. Exits non-zero, naming the step, on any failure.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
die() { echo "helm: $*" >&2; exit 1; }

command -v go >/dev/null || die "the Go toolchain ('go') is not on PATH; install Go 1.26 or newer"

# A module's version, from `require M V` or a line of a `require (...)` block.
pinned() { awk -v m="$1" '$1=="require" && $2==m {print $3; exit} $1==m {print $2; exit}' "$here/go.mod"; }
helm=$(pinned helm.sh/helm/v3)
clientgo=$(pinned k8s.io/client-go)
[ -n "$helm" ] && [ -n "$clientgo" ] || die "cannot read the pinned versions from $here/go.mod"

# The key also covers go.sum and this script, so a changed dependency set or build flag
# is a new cache entry.
sum=$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" | sha256sum | cut -c1-12)
cache_root=${APPATTACH_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/appattach}
out="$cache_root/helm/$helm-$sum"

if [ -x "$out/helm" ]; then
  echo "helm: reusing $out" >&2
  echo "$out"
  exit 0
fi

mkdir -p "$cache_root/helm"
# One build at a time: a second caller waits, then finds the first one's result.
exec 9>"$cache_root/helm/.lock"
flock 9
if [ -x "$out/helm" ]; then
  echo "helm: reusing $out" >&2
  echo "$out"
  exit 0
fi
tmp=$(mktemp -d "$cache_root/helm/.build.XXXXXX")
trap 'rm -rf "$tmp"' EXIT

cd "$here"
export CGO_ENABLED=0 GOFLAGS="-mod=readonly -buildvcs=false"
# Stamp what Helm's own Makefile does: the release version (`helm version`), and the
# Kubernetes version its client-go speaks (1.<minor of v0.<minor>>), which `helm template`
# and `helm lint` take for .Capabilities.KubeVersion and the deprecation checks.
minor=$(echo "$clientgo" | cut -d. -f2)
ldflags="-s -w -X helm.sh/helm/v3/internal/version.version=$helm -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
for pkg in pkg/lint/rules pkg/chartutil; do
  ldflags="$ldflags -X helm.sh/helm/v3/$pkg.k8sVersionMajor=1 -X helm.sh/helm/v3/$pkg.k8sVersionMinor=$minor"
done
start=$SECONDS
echo "helm: building helm from helm.sh/helm/v3/cmd/helm ($helm, client-go $clientgo)..." >&2
go build -trimpath -ldflags="$ldflags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm \
  || die "building helm from helm.sh/helm/v3/cmd/helm failed (see the go output above)"
"$tmp/helm" version >&2 || die "the built helm does not run"

# Publish atomically: a half-built directory is never seen as a cache hit.
rm -rf "$out"
mv "$tmp" "$out"
trap - EXIT
echo "helm: built in $((SECONDS - start))s into $out" >&2
echo "$out"
