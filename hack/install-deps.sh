#!/bin/sh
# Installs the Debian packages the lab (test/lab, make test-e2e, make demo)
# needs. Idempotent and quick when everything is present. Run as root.
#
# The lab runs its own FRR daemons inside network namespaces; this script
# keeps Debian's frr service from being started by the install and stops it
# if it runs, so it cannot hold port 179 or /var/run/frr.
set -eu

# package:command-or-file that proves it is installed
need="
etcd-server:/usr/bin/etcd
frr:/usr/lib/frr/bgpd
arping:/usr/sbin/arping
ndisc6:/usr/bin/ndisc6
iproute2:/usr/sbin/ip
iputils-ping:/usr/bin/ping
procps:/usr/sbin/sysctl
curl:/usr/bin/curl
tcpdump:/usr/bin/tcpdump
gobgpd:/usr/bin/gobgpd
"

missing=""
for entry in $need; do
	pkg=${entry%%:*}
	file=${entry#*:}
	if [ ! -e "$file" ] || ! dpkg -s "$pkg" >/dev/null 2>&1; then
		missing="$missing $pkg"
	fi
done

if [ -z "$missing" ]; then
	exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
	echo "install-deps: missing packages:$missing; run this script as root" >&2
	exit 1
fi

echo "install-deps: installing$missing"
# policy-rc.d 101 = "do not start services from maintainer scripts".
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
	printf '#!/bin/sh\nexit 101\n' >"$policy"
	chmod +x "$policy"
	created_policy=1
fi
cleanup() { if [ -n "$created_policy" ]; then rm -f "$policy"; fi; }
trap cleanup EXIT

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y -qq --no-install-recommends $missing

# If an frr service got started anyway (no policy-rc.d honoured), stop it.
if command -v service >/dev/null 2>&1 && [ -x /etc/init.d/frr ]; then
	service frr stop >/dev/null 2>&1 || true
fi
