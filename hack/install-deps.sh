#!/usr/bin/env bash
# The host tools the lab and the tests need, from Debian packages: `make deps`, on which
# `make demo`, `make test` and the other lab targets depend. It checks each tool first and
# installs only the packages whose tool is missing, with apt-get (running apt-get update only
# then); with everything present it does nothing and needs no root.
#
#   hack/install-deps.sh           install what is missing (as root), else say what to run
#   hack/install-deps.sh --check   only list what is missing; exit status 1 if anything is
#
# Exit status: 0 when every tool is present (afterwards), 1 when some are missing and were
# not installed (--check, not root, or no apt-get), 2 on a bad argument.
#
# STRAIT_DEPS_PATH replaces the directories searched for the tools and for apt-get and id
# (default: $PATH with /usr/sbin and /sbin): the tests run the script against a directory
# of stand-ins.
set -euo pipefail

# Debian package, then the command that shows it is installed.
deps=(
	"nftables nft"                            # the lab's nodes, router and kube-proxy (nftables mode)
	"iproute2 ip"                             # network namespaces, veth pairs, routes
	"runc runc"                               # containerd's runtime on the lab's nodes
	"busybox-static busybox"                  # the lab's debug image (a static busybox)
	"dnsutils dig"                            # dig and nsupdate: the demo, the debug image, the DNS tests
	"bind9 named"                             # a real DNS server for the RFC 2136 tests
	"bind9-utils named-checkconf"             # named's configuration tools
	"dnsperf dnsperf"                         # the DNS benchmarks
	"curl curl"                               # the demo and the debug image
	"ca-certificates update-ca-certificates"  # TLS to the Go module proxy when building the lab
	"procps pgrep"                            # pgrep, ps, free
	"util-linux setpriv"                      # setpriv, nsenter, taskset: the unprivileged test run, the lab
	"make make"                               # the Makefile
	"git git"                                 # the unprivileged test run lists the tree's files
)

check=false
case "${1:-}" in
"") ;;
--check) check=true ;;
-h | --help)
	sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'
	exit 0
	;;
*)
	echo "install-deps: unknown argument ${1@Q}; use --check to list what is missing, or no argument to install it" >&2
	exit 2
	;;
esac

PATH=${STRAIT_DEPS_PATH:-$PATH:/usr/sbin:/sbin}

# present COMMAND: the command is on PATH (for busybox: a static one, as the debug image
# copies it into images that have no C library).
present() {
	local p
	p=$(command -v "$1") || return 1
	if [ "$1" = busybox ] && command -v ldd >/dev/null && ldd "$p" >/dev/null 2>&1; then
		return 1 # linked dynamically: Debian's busybox, not busybox-static
	fi
}

missing=() why=()
for d in "${deps[@]}"; do
	read -r pkg cmd <<<"$d"
	if ! present "$cmd"; then
		missing+=("$pkg")
		why+=("$pkg (for $cmd)")
	fi
done

if ((${#missing[@]} == 0)); then
	$check && echo "install-deps: every tool is installed"
	exit 0
fi

list() { printf '  %s\n' "${why[@]}" >&2; }
if $check; then
	echo "install-deps: missing Debian packages:" >&2
	list
	echo "install with: sudo apt-get install ${missing[*]}" >&2
	exit 1
fi
if ! command -v apt-get >/dev/null; then
	echo "install-deps: these tools are missing, and there is no apt-get to install them; install the equivalent packages of your system (Debian names):" >&2
	list
	exit 1
fi
if [ "$(id -u)" != 0 ]; then
	echo "install-deps: these Debian packages are missing:" >&2
	list
	echo "run as root (the lab needs root too):" >&2
	echo "  sudo apt-get install ${missing[*]}" >&2
	exit 1
fi

echo "--- installing Debian packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
still=()
for d in "${deps[@]}"; do
	read -r pkg cmd <<<"$d"
	present "$cmd" || still+=("$pkg (for $cmd)")
done
if ((${#still[@]})); then
	echo "install-deps: apt-get installed the packages, but these tools are still missing:" >&2
	printf '  %s\n' "${still[@]}" >&2
	exit 1
fi
