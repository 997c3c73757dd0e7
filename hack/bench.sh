#!/usr/bin/env bash
# `make bench`: reproduces the figures of BENCHMARKS.md. Lab start-up: time of `strait lab up`
# (binaries and images cached, fresh state each run) for 2, 5 and 10 clusters, and the
# resident memory of the lab per cluster (every component process, the supervisor, which
# runs the egress proxies, API forwarders, registry and agents, and every process in the
# nodes' cgroups: containerd shims and pods), read once the lab is up.
#
# STRAIT=<binary> measures another build: the last one with the node simulator is
#   mkdir /tmp/nodesim && git archive 6c80318 | tar -x -C /tmp/nodesim &&
#   (cd /tmp/nodesim && go build -o /tmp/strait-nodesim ./cmd/strait)
#   STRAIT=/tmp/strait-nodesim NODES=simulated RUNS=2 hack/bench.sh
set -euo pipefail
cd "$(dirname "$0")/.."
strait=${STRAIT:-./bin/strait}
nodes=${NODES:-real}
runs=${RUNS:-3}
sizes=${SIZES:-"2 5 10"}
export XDG_STATE_HOME=$(mktemp -d)
trap 'rm -rf "$XDG_STATE_HOME"' EXIT

echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB, $(uname -r); runs per size: $runs; nodes: $nodes"
printf '| nodes | clusters | lab up p50 (s) | lab up max (s) | memory per cluster p50 (MiB) |\n|---|---|---|---|---|\n'
for n in $sizes; do
	times=() mems=()
	for ((r = 1; r <= runs; r++)); do
		lab="bench$n"
		start=$(date +%s.%N)
		$strait lab up --lab "$lab" --clusters "$n" --api-port-base 24000 >/dev/null
		end=$(date +%s.%N)
		times+=("$(awk -v s="$start" -v e="$end" 'BEGIN { print e - s }')")
		mems+=("$($strait lab status --lab "$lab" -o json | python3 -c '
import json, sys
st = json.load(sys.stdin)
import glob, os
pids = {st["supervisorPID"]} | {c["pid"] for cl in st["clusters"] for c in cl["components"] if c.get("pid")}
# Real nodes: every process in the node cgroups too (containerd shims, pods).
for procs in glob.glob(f"/sys/fs/cgroup/memory/strait-{sys.argv[1]}-*/**/cgroup.procs", recursive=True):
    pids |= {int(p) for p in open(procs).read().split()}
kib = 0
for pid in pids:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                kib += int(line.split()[1])
    except FileNotFoundError:
        pass
print(kib / 1024 / len(st["clusters"]))
' "$lab")")
		$strait lab down --lab "$lab" --purge >/dev/null
	done
	stats() { printf '%s\n' "$@" | sort -n | awk '{a[NR]=$1} END {printf "%.1f %.1f", a[int((NR+1)/2)], a[NR]}'; }
	read -r tp50 tmax <<<"$(stats "${times[@]}")"
	read -r mp50 _ <<<"$(stats "${mems[@]}")"
	printf '| %s | %s | %s | %s | %.0f |\n' "$nodes" "$n" "$tp50" "$tmax" "$mp50"
done
