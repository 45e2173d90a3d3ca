#!/bin/sh
# Builds helm (helm.sh/helm/v3) and kubectl (k8s.io/kubectl, the version helm
# pins) from the tools module hack/helm into the cache, once. The deploy tests
# render the chart and the kustomizations with them, and the doc-test runs the
# docs' commands with them. Concurrent runs serialise on a flock and build once.
#
# Prints nothing when the tools are cached; otherwise how long the build took.
set -eu

version=v3.22.0
cache="${HOME}/.cache/baremetal-lab"
dir="$cache/helm-$version"
root=$(cd "$(dirname "$0")/.." && pwd)

if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ]; then
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/helm.lock"
flock 9
if [ -x "$dir/helm" ] && [ -x "$dir/kubectl" ]; then
	exit 0 # built by someone else while we waited
fi
echo "build-helm: building helm $version and kubectl into $dir (minutes, once)"
start=$(date +%s)
tmp="$dir.tmp.$$"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"
# The version stamps helm's and kubectl's own builds set: helm checks charts'
# kubeVersion against the Kubernetes version it was built for (v1.20 when
# unset).
kube=v1.37.0
helm_flags="-X helm.sh/helm/v3/internal/version.version=$version"
helm_flags="$helm_flags -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=37"
helm_flags="$helm_flags -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=37"
kubectl_flags="-X k8s.io/component-base/version.gitVersion=$kube -X k8s.io/client-go/pkg/version.gitVersion=$kube"
cd "$root/hack/helm"
go build -ldflags "$helm_flags" -o "$tmp/helm" helm.sh/helm/v3/cmd/helm
go build -ldflags "$kubectl_flags" -o "$tmp/kubectl" ./kubectl
mkdir -p "$dir"
mv "$tmp/kubectl" "$dir/kubectl"
mv "$tmp/helm" "$dir/helm"
echo "build-helm: built in $(($(date +%s) - start))s"
