#!/bin/sh
# Installs what the test suite needs on a fresh Debian machine of the kind CI
# uses (run as root). Idempotent: packages already present are not fetched
# again, but `apt-get update` runs once first as Debian needs.
set -eu

PKGS="postgresql mosquitto mosquitto-clients qemu-user socat iproute2 iputils-ping iperf3 ethtool systemd openssh-client chromium fonts-dejavu-core"
# The kernel fast path (hal/nft) is tested against nft(8): it lists, flushes
# and tampers with the ruleset the agent installed.
PKGS="$PKGS nftables"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -z "$missing" ]; then
	echo "deps: all test packages present"
	exit 0
fi
if [ "$(id -u)" != 0 ]; then
	echo "deps: missing:$missing — run as root (or install them) so the whole suite can run" >&2
	exit 1
fi
echo "deps: installing:$missing"
export DEBIAN_FRONTEND=noninteractive
apt-get -o DPkg::Lock::Timeout=300 update -q
# shellcheck disable=SC2086
apt-get -o DPkg::Lock::Timeout=300 install -y -q --no-install-recommends $missing
