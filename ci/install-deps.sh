#!/usr/bin/env bash
# Installs, with apt and only when missing, the Debian packages meshbench
# needs. Idempotent; safe to run on every `make`.
#   ci/install-deps.sh run       what `make bench` needs
#   ci/install-deps.sh test      also what the tests need (a browser for the report test;
#                                containerd, runc and CNI plugins for the real Kubernetes node)
#   ci/install-deps.sh generate  also clang, libbpf headers and protoc for `make generate`
set -euo pipefail

want=()
need() { # need COMMAND-OR-FILE PACKAGE
	if [[ "$1" == /* ]]; then [[ -e "$1" ]] || want+=("$2"); else command -v "$1" >/dev/null 2>&1 || want+=("$2"); fi
}

need ip iproute2
need tc iproute2
need iptables iptables
need ethtool ethtool
need haproxy haproxy
case "${1:-run}" in
run) ;;
test)
	need /usr/bin/chromium chromium
	need containerd containerd
	need ctr containerd
	need runc runc
	need /usr/lib/cni/bridge containernetworking-plugins
	;;
generate)
	need clang clang
	need /usr/include/bpf/bpf_helpers.h libbpf-dev
	need /usr/include/x86_64-linux-gnu/asm/types.h linux-libc-dev
	need protoc protobuf-compiler
	;;
*) echo "usage: $0 run|test|generate" >&2; exit 2 ;;
esac

if ((${#want[@]} == 0)); then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "install-deps: missing packages: ${want[*]}; run as root (or install them) first" >&2
	exit 1
fi
mapfile -t want < <(printf '%s\n' "${want[@]}" | sort -u)
echo "install-deps: installing ${want[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
