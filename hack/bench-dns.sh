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
# 3. Response rate limiting (RRL): its cost in QPS (strait dns with RRL off and with RRL on
#    at a limit dnsperf never reaches, alternating, RUNS runs), its cost per response
#    (BenchmarkServeRRL), and the limit itself: strait dns capped at RRL_BYTES bytes of
#    answers per second per client prefix (and, separately, at the default 1000 responses
#    per second) under dnsperf at full speed from 127.0.0.1 (one prefix), RRL_RUNS runs:
#    the answers sent whole per second, read from the server's /metrics, against the cap.
#    The comparison with CoreDNS (1.) runs strait dns with RRL off, as CoreDNS has none.
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
rrl_bytes=${RRL_BYTES:-100000}
rrl_rps=${RRL_RPS:-1000}
rrl_runs=${RRL_RUNS:-3}
rrl_outstanding=${RRL_OUTSTANDING:-10000}
domain=fed.example.com

for tool in dnsperf dig python3 curl; do
	command -v "$tool" >/dev/null || { echo "bench-dns: $tool is needed (Debian: dnsperf, dnsutils, python3, curl)" >&2; exit 1; }
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

# strait dns instances: RRL off (compared with CoreDNS and with RRL on), RRL on at a limit
# never reached, and capped by bytes and by responses per second (with /metrics).
serve() { # name port extra-flags...
	local name=$1 port=$2
	shift 2
	$strait dns serve --domain $domain --listen 127.0.0.1:"$port" --nameserver ns1.$domain=127.0.0.1 \
		--from-file "$work/services.yaml" --interval 1h "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}
strait_port=$(free_port)
serve strait "$strait_port" --rrl-responses-per-second 0
rrl_on_port=$(free_port)
serve rrl-on "$rrl_on_port" --rrl-responses-per-second 1000000000 --rrl-bytes-per-second 1000000000
rrl_bytes_port=$(free_port)
rrl_bytes_metrics=$(free_port)
serve rrl-bytes "$rrl_bytes_port" --rrl-responses-per-second 0 --rrl-bytes-per-second "$rrl_bytes" --metrics-bind-address 127.0.0.1:"$rrl_bytes_metrics"
rrl_rps_port=$(free_port)
rrl_rps_metrics=$(free_port)
serve rrl-rps "$rrl_rps_port" --rrl-responses-per-second "$rrl_rps" --metrics-bind-address 127.0.0.1:"$rrl_rps_metrics"
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
for port in "$strait_port" "$coredns_port" "$rrl_on_port" "$rrl_bytes_port" "$rrl_rps_port"; do
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

echo
echo "RRL cost: QPS with RRL off and on (limit never reached), $runs runs alternating, dnsperf -l $limit -c $clients -q $outstanding:"
declare -A rqps
for ((r = 1; r <= runs; r++)); do
	order=(off on)
	((r % 2 == 0)) && order=(on off)
	for s in "${order[@]}"; do
		port=$strait_port
		[[ $s == on ]] && port=$rrl_on_port
		read -r q l <<<"$(qps_run "$port")"
		rqps[$s]+="$q "
	done
done
printf '| RRL | QPS p50 | QPS min | QPS max | runs |\n|---|---|---|---|---|\n'
for s in off on; do
	read -ra q <<<"${rqps[$s]}"
	printf '| %s | %s | %s | %s | %s|\n' "$s" "$(median "${q[@]}")" "$(printf '%s\n' "${q[@]}" | sort -g | head -1)" \
		"$(printf '%s\n' "${q[@]}" | sort -g | tail -1)" "${rqps[$s]}"
done
echo
echo "RRL cost per response (BenchmarkServeRRL: answer, pack, RRL decision; -count 5, median ns/op):"
go test -run '^$' -bench BenchmarkServeRRL -benchtime 1s -count 5 ./internal/dns/server/ |
	awk '/^BenchmarkServeRRL/ { sub(/-[0-9]+$/, "", $1); print $1, $3 }' | sort -k1,1 -k2,2g |
	awk '{ v[$1] = v[$1] " " $2; n[$1]++ } END { for (k in v) { split(v[k], a, " "); printf "| %s | %s ns/op |\n", k, a[int((n[k] + 1) / 2)] } }' | sort

metric() { # port name -> value (sum over label values matching the filter $3)
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m && index($1, f) { s += $2 } END { printf "%.0f\n", s }'
}
cap_run() { # dns-port metrics-port -> "bytes/s responses/s slipped/s dropped/s dnsperf-completed/s"
	local b0 r0 s0 d0 b1 r1 s1 d1 out secs done
	b0=$(metric "$2" strait_dns_response_bytes_total udp) r0=$(metric "$2" strait_dns_responses_total udp)
	s0=$(metric "$2" strait_dns_rrl_limited_responses_total slipped) d0=$(metric "$2" strait_dns_rrl_limited_responses_total dropped)
	out=$(dnsperf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$rrl_outstanding" -t 1 2>&1)
	b1=$(metric "$2" strait_dns_response_bytes_total udp) r1=$(metric "$2" strait_dns_responses_total udp)
	s1=$(metric "$2" strait_dns_rrl_limited_responses_total slipped) d1=$(metric "$2" strait_dns_rrl_limited_responses_total dropped)
	secs=$(awk '/Run time \(s\):/ { print $4 }' <<<"$out")
	done=$(awk '/Queries completed:/ { print $3 }' <<<"$out")
	awk -v s="$secs" -v b=$((b1 - b0)) -v r=$((r1 - r0)) -v sl=$((s1 - s0)) -v d=$((d1 - d0)) -v c="$done" \
		'BEGIN { printf "%.0f %.0f %.0f %.0f %.0f\n", b / s, r / s, sl / s, d / s, c / s }'
}
echo
echo "RRL limit: dnsperf at full speed from one prefix (127.0.0.1), -q $rrl_outstanding -t 1, $rrl_runs runs of $limit s, slip 2; answers sent whole per second from /metrics:"
printf '| limit | run | answer bytes/s sent whole | answers/s sent whole | slipped (TC) /s | dropped /s | dnsperf responses/s |\n|---|---|---|---|---|---|---|\n'
for ((r = 1; r <= rrl_runs; r++)); do
	read -r b q sl d c <<<"$(cap_run "$rrl_bytes_port" "$rrl_bytes_metrics")"
	printf '| %s bytes/s | %d | %s | %s | %s | %s | %s |\n' "$rrl_bytes" "$r" "$b" "$q" "$sl" "$d" "$c"
	read -r b q sl d c <<<"$(cap_run "$rrl_rps_port" "$rrl_rps_metrics")"
	printf '| %s responses/s | %d | %s | %s | %s | %s | %s |\n' "$rrl_rps" "$r" "$b" "$q" "$sl" "$d" "$c"
done
