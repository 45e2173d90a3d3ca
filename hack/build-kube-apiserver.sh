#!/bin/sh
# Builds the kube-apiserver the lab runs into the cache, once. Concurrent runs
# (and test/lab's KubeAPIServer) serialise on the same flock and build once.
set -eu

version=v1.36.3
cache="${HOME}/.cache/baremetal-lab"
bin="$cache/kube-apiserver-$version"
root=$(cd "$(dirname "$0")/.." && pwd)

if [ -x "$bin" ]; then
	exit 0
fi
mkdir -p "$cache"
exec 9>"$cache/kube-apiserver.lock"
flock 9
if [ -x "$bin" ]; then
	exit 0 # built by someone else while we waited
fi
echo "build-kube-apiserver: building kube-apiserver $version into $bin (several minutes, once)"
tmp="$bin.tmp.$$"
trap 'rm -f "$tmp"' EXIT
(cd "$root/hack/kube-apiserver" && go build -o "$tmp" k8s.io/kubernetes/cmd/kube-apiserver)
mv "$tmp" "$bin"
