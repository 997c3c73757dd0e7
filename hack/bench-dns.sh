#!/usr/bin/env bash
# `make bench-dns`: the "strait dns" figures of BENCHMARKS.md.
#
# 1. Query throughput and latency under dnsperf (Debian's dnsperf), in the same run, of
#    strait dns and of stock CoreDNS (the lab's build, `file` plugin) serving the same
#    records: a zone file that `strait dns zonefile` renders from the same services file.
#    Per run and server: a throughput run (dnsperf as fast as it can, LIMIT seconds) and a
#    latency run at a fixed LATENCY_QPS with per-query latencies (dnsperf -v) for p50/p99.
#    Medians over RUNS runs; the two servers alternate within each run.
# 2. Failover time of the server (Update with a zone's only shard down -> a client's answer
#    changed from A to CNAME), p50/p99 over 200 flips, from BenchmarkFailover.
#
# Everything listens on 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
strait=./bin/strait
runs=${RUNS:-5}
limit=${LIMIT:-10}
services=${SERVICES:-1000}
latency_qps=${LATENCY_QPS:-5000}
clients=${CLIENTS:-8}
outstanding=${OUTSTANDING:-200}
domain=fed.example.com

for tool in dnsperf dig python3; do
	command -v "$tool" >/dev/null || { echo "bench-dns: $tool is needed (Debian: dnsperf, dnsutils, python3)" >&2; exit 1; }
done
coredns="$($strait lab binaries)/coredns"
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# The federation: $services services with a shard in each of 4 clusters (2 regions, 3 zones);
# every 4th service has zone-b down (a CNAME to its region), every 8th all of region2 down.
awk -v n="$services" 'BEGIN {
	print "services:"
	for (i = 0; i < n; i++) {
		printf "- {namespace: bench, name: svc%04d, federation: fed, shards: [\n", i
		b = (i % 4 == 0) ? "false" : "true"; r2 = (i % 8 == 1) ? "false" : "true"
		printf "  {cluster: cluster01, region: region1, zone: zone-a, healthy: true, addresses: [10.0.%d.%d]},\n", i / 256, i % 256
		printf "  {cluster: cluster02, region: region1, zone: zone-b, healthy: %s, addresses: [10.1.%d.%d]},\n", b, i / 256, i % 256
		printf "  {cluster: cluster03, region: region2, zone: zone-c, healthy: %s, addresses: [10.2.%d.%d]},\n", r2, i / 256, i % 256
		printf "  {cluster: cluster04, region: region2, zone: zone-c, healthy: %s, addresses: [10.3.%d.%d]}]}\n", r2, i / 256, i % 256
	}
}' >"$work/services.yaml"
$strait dns zonefile --domain $domain --nameserver ns1.$domain=127.0.0.1 --from-file "$work/services.yaml" >"$work/db.$domain"
# Every name of the zone, asked for A (CNAMEs are followed by both servers).
awk '$4 == "A" || $4 == "CNAME" { print $1, "A" }' "$work/db.$domain" | sort -u >"$work/queries"

strait_port=$(free_port)
$strait dns serve --domain $domain --listen 127.0.0.1:"$strait_port" --nameserver ns1.$domain=127.0.0.1 \
	--from-file "$work/services.yaml" --interval 1h >"$work/strait.log" 2>&1 &
pids+=($!)
coredns_port=$(free_port)
cat >"$work/Corefile" <<EOF
$domain:$coredns_port {
	bind 127.0.0.1
	file $work/db.$domain
}
EOF
"$coredns" -conf "$work/Corefile" >"$work/coredns.log" 2>&1 &
pids+=($!)

ask() { dig +short +time=1 +tries=2 @127.0.0.1 -p "$1" "$2" "$3" 2>/dev/null | grep -v '^;' | sort || true; }
probe=svc0000.bench.fed.svc.zone-b.region1.$domain
for port in "$strait_port" "$coredns_port"; do
	for ((i = 0; i < 100; i++)); do
		[[ -n "$(ask "$port" "$probe" A)" ]] && break
		sleep 0.1
	done
done
# Same answers from both, on a sample of names.
while read -r name qtype; do
	a=$(ask "$strait_port" "$name" "$qtype")
	b=$(ask "$coredns_port" "$name" "$qtype")
	if [[ "$a" != "$b" || -z "$a" ]]; then
		echo "bench-dns: strait dns and CoreDNS answer $name differently: [$a] vs [$b]" >&2
		cat "$work/strait.log" "$work/coredns.log" >&2
		exit 1
	fi
done < <(awk 'NR % 97 == 1' "$work/queries")

qps_run() { # port -> "queries-per-second lost-queries"
	dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$outstanding" 2>&1 |
		awk '/Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 } END { printf "%.0f %d\n", qps, lost }'
}
latency_run() { # port -> "p50 p99" in milliseconds at $latency_qps
	dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$outstanding" -Q "$latency_qps" -v >"$work/verbose" 2>&1
	awk '/^> / { print $NF }' "$work/verbose" | sort -g | awk '{ a[NR] = $1 } END { printf "%.3f %.3f\n", a[int(NR * 0.5)] * 1000, a[int(NR * 0.99)] * 1000 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

declare -A qps lost p50 p99
for ((r = 1; r <= runs; r++)); do
	order=(strait coredns)
	((r % 2 == 0)) && order=(coredns strait)
	for s in "${order[@]}"; do
		port=$strait_port
		[[ $s == coredns ]] && port=$coredns_port
		read -r q l <<<"$(qps_run "$port")"
		qps[$s]+="$q " lost[$s]=$((${lost[$s]:-0} + l))
		read -r l50 l99 <<<"$(latency_run "$port")"
		p50[$s]+="$l50 " p99[$s]+="$l99 "
	done
done

echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r)"
echo "peers: strait dns ($(git describe --always --dirty 2>/dev/null || echo unknown)), CoreDNS $("$coredns" -version | awk '/CoreDNS-/ { print $1; exit }'), $(dnsperf -h 2>&1 | awk '/Version/ { print "dnsperf " $2 }')"
echo "zone: $services services, $(wc -l <"$work/queries") names asked for A; dnsperf -l $limit -c $clients -q $outstanding; $runs runs; latency at $latency_qps qps"
echo
printf '| server | QPS p50 | QPS min | QPS max | queries lost (all runs) | latency p50 (ms) | latency p99 (ms) |\n|---|---|---|---|---|---|---|\n'
for s in strait coredns; do
	read -ra q <<<"${qps[$s]}"
	read -ra a <<<"${p50[$s]}"
	read -ra b <<<"${p99[$s]}"
	name="strait dns"
	[[ $s == coredns ]] && name="CoreDNS (file)"
	printf '| %s | %s | %s | %s | %s | %s | %s |\n' "$name" "$(median "${q[@]}")" \
		"$(printf '%s\n' "${q[@]}" | sort -g | head -1)" "$(printf '%s\n' "${q[@]}" | sort -g | tail -1)" "${lost[$s]}" \
		"$(median "${a[@]}")" "$(median "${b[@]}")"
done

for s in strait coredns; do
	echo "runs, $s: QPS ${qps[$s]}; p99 (ms) ${p99[$s]}"
done

echo
echo "failover (Update -> answer changed), 200 flips per size:"
printf '| services | p50 (ms) | p99 (ms) |\n|---|---|---|\n'
go test -run '^$' -bench BenchmarkFailover -benchtime 200x ./internal/dns/server/ |
	awk '/^BenchmarkFailover/ { split($1, n, "[=-]"); for (i = 1; i <= NF; i++) { if ($(i+1) == "p50-µs") p50 = $i; if ($(i+1) == "p99-µs") p99 = $i }
		printf "| %s | %.2f | %.2f |\n", n[2], p50 / 1000, p99 / 1000 }'
