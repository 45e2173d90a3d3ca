#!/bin/sh
# Prints the -ldflags that stamp a build with its version from git, for
# `make build` and the Dockerfile. The version is the nearest v* tag
# (`git describe`), or a Go-style pseudo-version v0.0.0-DATE-COMMIT when the
# history has no tag; "-dirty" marks uncommitted changes. VERSION, GIT_COMMIT
# and BUILD_DATE in the environment override git (an image build has no .git).
set -eu
pkg=k8s.io/component-base/version
commit=${GIT_COMMIT:-$(git rev-parse HEAD 2>/dev/null || echo unknown)}
if [ -z "${VERSION:-}" ]; then
	dirty=""
	if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
		dirty="-dirty"
	fi
	if tag=$(git describe --tags --match 'v*' --abbrev=12 2>/dev/null); then
		# v1.2.3-4-gabcdef012345 -> v1.2.3-4+abcdef012345 (semver build metadata)
		VERSION=$(echo "$tag" | sed -E 's/-g([0-9a-f]+)$/+\1/')$dirty
	elif when=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd 2>/dev/null); then
		VERSION=v0.0.0-$when-$(echo "$commit" | cut -c1-12)$dirty
	else
		VERSION=v0.0.0-unknown
	fi
	state=clean
	[ -z "$dirty" ] || state=dirty
else
	state=${GIT_TREE_STATE:-clean}
fi
date=${BUILD_DATE:-$(date -u +%Y-%m-%dT%H:%M:%SZ)}
echo "-X $pkg.gitVersion=$VERSION -X $pkg.gitCommit=$commit -X $pkg.gitTreeState=$state -X $pkg.buildDate=$date"
