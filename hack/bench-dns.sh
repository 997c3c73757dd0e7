#!/usr/bin/env bash
# `make bench-dns`: the "strait dns" figures of BENCHMARKS.md.
#
# Every server runs pinned to one core (SERVER_CPU, default 0) and dnsperf (Debian's dnsperf)
# to another (CLIENT_CPU, default 1), so a figure is per core of the server and the client
# never takes the server's CPU.
#
# 1. Queries per core, in the same run: strait dns (`strait dns serve`, RRL off), the peer to
#    beat, a bare miekg/dns server answering one fixed A record to every query
#    (hack/dnsbench bare), and stock CoreDNS (the lab's build, `file` plugin) serving the
#    same records as strait dns: a zone file that `strait dns zonefile` renders from the same
#    services file. Per run and server a throughput run (dnsperf as fast as it can, LIMIT
#    seconds); the servers rotate within each run; medians over RUNS runs. Then, per server,
#    RUNS latency runs at half of that server's median throughput, with per-query latencies
#    (dnsperf -v) for p50/p99.
# 2. Memory per 10,000 names: the live heap of strait dns's server holding MEM_SERVICES
#    services minus an empty one (hack/dnsbench memory), and the resident memory (VmRSS) of
#    `strait dns serve` and of CoreDNS with MEM_SERVICES services minus with none, after every
#    name was asked once.
# 3. Failover time of the server (Update with a zone's only shard down -> a client's answer
#    changed from A to CNAME), p50/p99 over 200 flips, from BenchmarkFailover; and the time
#    of one Update (zone built, every answer packed), BenchmarkUpdate.
# 4. Response rate limiting (RRL): its cost in QPS (strait dns with RRL off and with RRL on
#    at a limit dnsperf never reaches, alternating, RUNS runs), its cost per response
#    (BenchmarkServeRRL), and the limit itself: strait dns capped at RRL_BYTES bytes of
#    answers per second per client prefix (and, separately, at the default 1000 responses
#    per second) under dnsperf at full speed from 127.0.0.1 (one prefix), RRL_RUNS runs:
#    the answers sent whole per second, read from the server's /metrics, against the cap.
#    The comparisons (1.) run strait dns with RRL off, as CoreDNS and the bare server have
#    none.
#
# Everything listens on 127.0.0.1 only. Run it on an otherwise idle machine: figures from a
# busy one are worthless (the script prints the load average before and after).
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:/usr/sbin:/sbin"
strait=${STRAIT:-./bin/strait}
runs=${RUNS:-5}
limit=${LIMIT:-10}
services=${SERVICES:-1000}
mem_services=${MEM_SERVICES:-10000}
clients=${CLIENTS:-8}
outstanding=${OUTSTANDING:-200}
server_cpu=${SERVER_CPU:-0}
client_cpu=${CLIENT_CPU:-1}
rrl_bytes=${RRL_BYTES:-100000}
rrl_rps=${RRL_RPS:-1000}
rrl_runs=${RRL_RUNS:-3}
rrl_outstanding=${RRL_OUTSTANDING:-10000}
domain=fed.example.com
GO=${GO:-go}

for tool in dnsperf dig python3 curl taskset; do
	command -v "$tool" >/dev/null || { echo "bench-dns: $tool is needed (Debian: dnsperf, dnsutils, python3, curl, util-linux)" >&2; exit 1; }
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
$GO build -o "$work/dnsbench" ./hack/dnsbench
$GO test -c -o "$work/server.test" ./internal/dns/server
# A server is started as "${pin[@]}" cmd &, a simple command, so $! is the server's own PID
# (a shell function run in the background would be a subshell, whose PID is not the server's:
# its RSS would be read and the kill would leave the server running).
pin=(taskset -c "$server_cpu")
perf() { taskset -c "$client_cpu" dnsperf "$@"; }
load_avg() { awk '{ print $1, $2, $3 }' /proc/loadavg; }
echo "load average at start: $(load_avg)"

free_port() {
	python3 -c 'import socket
s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("127.0.0.1", p)); print(p)'
}

# services_file N FILE: N services with a shard in each of 4 clusters (2 regions, 3 zones);
# every 4th service has zone-b down (a CNAME to its region), every 8th all of region2 down.
services_file() {
	awk -v n="$1" 'BEGIN {
		print (n == 0) ? "services: []" : "services:"
		for (i = 0; i < n; i++) {
			printf "- {namespace: bench, name: svc%04d, federation: fed, shards: [\n", i
			b = (i % 4 == 0) ? "false" : "true"; r2 = (i % 8 == 1) ? "false" : "true"
			printf "  {cluster: cluster01, region: region1, zone: zone-a, healthy: true, addresses: [10.0.%d.%d]},\n", i / 256 % 256, i % 256
			printf "  {cluster: cluster02, region: region1, zone: zone-b, healthy: %s, addresses: [10.1.%d.%d]},\n", b, i / 256 % 256, i % 256
			printf "  {cluster: cluster03, region: region2, zone: zone-c, healthy: %s, addresses: [10.2.%d.%d]},\n", r2, i / 256 % 256, i % 256
			printf "  {cluster: cluster04, region: region2, zone: zone-c, healthy: %s, addresses: [10.3.%d.%d]}]}\n", r2, i / 256 % 256, i % 256
		}
	}' >"$2"
}
zone_file() { # services-file zone-file
	$strait dns zonefile --domain $domain --nameserver ns1.$domain=127.0.0.1 --from-file "$1" >"$2"
}
services_file "$services" "$work/services.yaml"
zone_file "$work/services.yaml" "$work/db.$domain"
# Every name of the zone, asked for A (CNAMEs are followed by both servers).
awk '$4 == "A" || $4 == "CNAME" { print $1, "A" }' "$work/db.$domain" | sort -u >"$work/queries"

# strait dns instances: RRL off (compared with the others and with RRL on), RRL on at a limit
# never reached, and capped by bytes and by responses per second (with /metrics).
serve() { # name port services-file extra-flags...
	local name=$1 port=$2 file=$3
	shift 3
	"${pin[@]}" $strait dns serve --domain $domain --listen 127.0.0.1:"$port" --nameserver ns1.$domain=127.0.0.1 \
		--from-file "$file" --interval 1h "$@" >"$work/$name.log" 2>&1 &
	pids+=($!)
}
coredns_serve() { # name port zone-file
	cat >"$work/Corefile.$1" <<-EOF
		$domain:$2 {
			bind 127.0.0.1
			file $3
		}
	EOF
	"${pin[@]}" "$coredns" -conf "$work/Corefile.$1" >"$work/$1.log" 2>&1 &
	pids+=($!)
}
strait_port=$(free_port)
serve strait "$strait_port" "$work/services.yaml" --rrl-responses-per-second 0
rrl_on_port=$(free_port)
serve rrl-on "$rrl_on_port" "$work/services.yaml" --rrl-responses-per-second 1000000000 --rrl-bytes-per-second 1000000000
rrl_bytes_port=$(free_port)
rrl_bytes_metrics=$(free_port)
serve rrl-bytes "$rrl_bytes_port" "$work/services.yaml" --rrl-responses-per-second 0 --rrl-bytes-per-second "$rrl_bytes" --metrics-bind-address 127.0.0.1:"$rrl_bytes_metrics"
rrl_rps_port=$(free_port)
rrl_rps_metrics=$(free_port)
serve rrl-rps "$rrl_rps_port" "$work/services.yaml" --rrl-responses-per-second "$rrl_rps" --metrics-bind-address 127.0.0.1:"$rrl_rps_metrics"
coredns_port=$(free_port)
coredns_serve coredns "$coredns_port" "$work/db.$domain"
miekg_port=$(free_port)
"${pin[@]}" "$work/dnsbench" bare -listen 127.0.0.1:"$miekg_port" >"$work/miekg.log" 2>&1 &
pids+=($!)

ask() { dig +short +time=1 +tries=2 @127.0.0.1 -p "$1" "$2" "$3" 2>/dev/null | grep -v '^;' | sort || true; }
wait_answer() { # port name
	for ((i = 0; i < 600; i++)); do
		[[ -n "$(ask "$1" "$2" A)" ]] && return 0
		sleep 0.1
	done
	echo "bench-dns: nothing answers $2 on port $1" >&2
	cat "$work"/*.log >&2
	exit 1
}
probe=svc0000.bench.fed.svc.zone-b.region1.$domain
for port in "$strait_port" "$coredns_port" "$miekg_port" "$rrl_on_port" "$rrl_bytes_port" "$rrl_rps_port"; do
	wait_answer "$port" "$probe"
done
# Same answers from strait dns and CoreDNS, on a sample of names.
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
	perf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$outstanding" 2>&1 |
		awk '/Queries lost:/ { lost = $3 } /Queries per second:/ { qps = $4 } END { printf "%.0f %d\n", qps, lost }'
}
latency_run() { # port qps -> "p50 p99" in milliseconds at that load
	perf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$outstanding" -Q "$2" -v >"$work/verbose" 2>&1
	awk '/^> / { print $NF }' "$work/verbose" | sort -g | awk '{ a[NR] = $1 } END { printf "%.3f %.3f\n", a[int(NR * 0.5)] * 1000, a[int(NR * 0.99)] * 1000 }'
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
lowest() { printf '%s\n' "$@" | sort -g | head -1; }
highest() { printf '%s\n' "$@" | sort -g | tail -1; }
port_of() {
	case $1 in
	strait) echo "$strait_port" ;;
	miekg) echo "$miekg_port" ;;
	coredns) echo "$coredns_port" ;;
	esac
}
label() {
	case $1 in
	strait) echo "strait dns" ;;
	miekg) echo "bare miekg/dns" ;;
	coredns) echo "CoreDNS (file)" ;;
	esac
}

servers=(strait miekg coredns)
declare -A qps lost p50 p99
for ((r = 1; r <= runs; r++)); do
	order=("${servers[@]:$((r % 3))}" "${servers[@]:0:$((r % 3))}")
	for s in "${order[@]}"; do
		read -r q l <<<"$(qps_run "$(port_of "$s")")"
		qps[$s]+="$q " lost[$s]=$((${lost[$s]:-0} + l))
	done
done
declare -A half
for s in "${servers[@]}"; do
	read -ra q <<<"${qps[$s]}"
	half[$s]=$(($(median "${q[@]}") / 2))
done
for ((r = 1; r <= runs; r++)); do
	order=("${servers[@]:$((r % 3))}" "${servers[@]:0:$((r % 3))}")
	for s in "${order[@]}"; do
		read -r l50 l99 <<<"$(latency_run "$(port_of "$s")" "${half[$s]}")"
		p50[$s]+="$l50 " p99[$s]+="$l99 "
	done
done

echo "machine: $(nproc) cores ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(free -g | awk '/Mem:/{print $2}') GiB, Linux $(uname -r)"
echo "peers: strait dns ($(git describe --always --dirty 2>/dev/null || echo unknown)), miekg/dns $(awk '$1 == "github.com/miekg/dns" { print $2 }' go.mod), CoreDNS $("$coredns" -version | awk '/CoreDNS-/ { print $1; exit }'), $(dnsperf -h 2>&1 | awk '/Version/ { print "dnsperf " $2 }')"
echo "servers on CPU $server_cpu, dnsperf on CPU $client_cpu; zone: $services services, $(wc -l <"$work/queries") names asked for A; dnsperf -l $limit -c $clients -q $outstanding; $runs runs"
echo
read -ra mq <<<"${qps[miekg]}"
miekg_median=$(median "${mq[@]}")
printf '| server | QPS per core p50 | min | max | of bare miekg/dns | lost (all runs) | load for latency (QPS) | latency p50 (ms) | p99 (ms) |\n|---|---|---|---|---|---|---|---|---|\n'
for s in "${servers[@]}"; do
	read -ra q <<<"${qps[$s]}"
	read -ra a <<<"${p50[$s]}"
	read -ra b <<<"${p99[$s]}"
	m=$(median "${q[@]}")
	printf '| %s | %s | %s | %s | %s %% | %s | %s | %s | %s |\n' "$(label "$s")" "$m" "$(lowest "${q[@]}")" "$(highest "${q[@]}")" \
		"$(awk -v a="$m" -v b="$miekg_median" 'BEGIN { printf "%.0f", 100 * a / b }')" "${lost[$s]}" "${half[$s]}" \
		"$(median "${a[@]}")" "$(median "${b[@]}")"
done
for s in "${servers[@]}"; do
	echo "runs, $(label "$s"): QPS ${qps[$s]}; p50 (ms) ${p50[$s]}; p99 (ms) ${p99[$s]}"
done

echo
echo "memory, $mem_services services:"
services_file "$mem_services" "$work/mem.yaml"
services_file 0 "$work/empty.yaml"
zone_file "$work/mem.yaml" "$work/db.mem"
zone_file "$work/empty.yaml" "$work/db.empty"
awk '$4 == "A" || $4 == "CNAME" { print $1, "A" }' "$work/db.mem" | sort -u >"$work/mem-queries"
read -r _ nservices _ names _ heap <<<"$("$work/dnsbench" memory -from-file "$work/mem.yaml" -domain $domain)"
rss() { awk '/^VmRSS:/ { print $2 * 1024 }' "/proc/$1/status"; }
rss_of() { # kind file -> bytes resident after every name was asked once
	local port pid
	port=$(free_port)
	if [[ $1 == strait ]]; then
		serve mem "$port" "$2" --rrl-responses-per-second 0
	else
		coredns_serve mem "$port" "$2"
	fi
	pid=${pids[-1]}
	wait_answer "$port" ns1.$domain
	if [[ $2 == *mem* ]]; then
		wait_answer "$port" "svc$(printf %04d $((mem_services - 1))).bench.fed.svc.$domain"
	fi
	perf -s 127.0.0.1 -p "$port" -d "$work/mem-queries" -n 1 -c "$clients" -q "$outstanding" >/dev/null 2>&1
	sleep 1
	rss "$pid"
	kill "$pid"
	wait "$pid" 2>/dev/null || true
	unset 'pids[-1]'
}
strait_rss=$(($(rss_of strait "$work/mem.yaml") - $(rss_of strait "$work/empty.yaml")))
coredns_rss=$(($(rss_of coredns "$work/db.mem") - $(rss_of coredns "$work/db.empty")))
coredns_names=$(awk '!/^\$/ { print $1 }' "$work/db.mem" | sort -u | wc -l)
per10k() { awk -v b="$1" -v n="$2" 'BEGIN { printf "%.1f", b / n * 10000 / 1048576 }'; }
printf '| server | names | live heap (MiB) | per 10,000 names (MiB) | resident (MiB) | per 10,000 names (MiB) |\n|---|---|---|---|---|---|\n'
printf '| strait dns | %s | %.1f | %s | %.1f | %s |\n' "$names" "$(awk -v b="$heap" 'BEGIN { print b / 1048576 }')" "$(per10k "$heap" "$names")" \
	"$(awk -v b="$strait_rss" 'BEGIN { print b / 1048576 }')" "$(per10k "$strait_rss" "$names")"
printf '| CoreDNS (file) | %s | | | %.1f | %s |\n' "$coredns_names" "$(awk -v b="$coredns_rss" 'BEGIN { print b / 1048576 }')" "$(per10k "$coredns_rss" "$coredns_names")"
echo "($nservices services; strait dns names include the in-cluster short names and empty non-terminals, which CoreDNS's zone file has not)"

echo
echo "failover (Update -> answer changed), 200 flips per size; Update alone (zone built, every answer packed):"
printf '| services | failover p50 (ms) | failover p99 (ms) |\n|---|---|---|\n'
(cd internal/dns/server && "$work/server.test" -test.run '^$' -test.bench BenchmarkFailover -test.benchtime 200x) |
	awk '/^BenchmarkFailover/ { split($1, n, "[=-]"); for (i = 1; i <= NF; i++) { if ($(i+1) == "p50-µs") p50 = $i; if ($(i+1) == "p99-µs") p99 = $i }
		printf "| %s | %.2f | %.2f |\n", n[2], p50 / 1000, p99 / 1000 }'
printf '| services | Update (ms), median of 5 |\n|---|---|\n'
(cd internal/dns/server && "$work/server.test" -test.run '^$' -test.bench 'BenchmarkUpdate/services=(1000|10000)$' -test.benchtime 5x -test.count 5) |
	awk '/^BenchmarkUpdate/ { split($1, n, "[=-]"); print n[2], $3 }' | sort -k1,1n -k2,2g |
	awk '{ v[$1] = v[$1] " " $2; c[$1]++ } END { for (k in v) { split(v[k], a, " "); printf "| %s | %.1f |\n", k, a[int((c[k] + 1) / 2)] / 1e6 } }' | sort -t'|' -k2,2n

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
	printf '| %s | %s | %s | %s | %s|\n' "$s" "$(median "${q[@]}")" "$(lowest "${q[@]}")" "$(highest "${q[@]}")" "${rqps[$s]}"
done
echo
echo "RRL cost per response (BenchmarkServeRRL: query bytes in, response bytes out, RRL decision; -count 5, median ns/op):"
(cd internal/dns/server && "$work/server.test" -test.run '^$' -test.bench BenchmarkServeRRL -test.benchtime 1s -test.count 5) |
	awk '/^BenchmarkServeRRL/ { sub(/-[0-9]+$/, "", $1); print $1, $3 }' | sort -k1,1 -k2,2g |
	awk '{ v[$1] = v[$1] " " $2; n[$1]++ } END { for (k in v) { split(v[k], a, " "); printf "| %s | %s ns/op |\n", k, a[int((n[k] + 1) / 2)] } }' | sort

metric() { # port name -> value (sum over label values matching the filter $3)
	curl -s "http://127.0.0.1:$1/metrics" | awk -v m="$2" -v f="${3:-}" '$1 ~ "^"m && index($1, f) { s += $2 } END { printf "%.0f\n", s }'
}
cap_run() { # dns-port metrics-port -> "bytes/s responses/s slipped/s dropped/s dnsperf-completed/s"
	local b0 r0 s0 d0 b1 r1 s1 d1 out secs done
	b0=$(metric "$2" strait_dns_response_bytes_total udp) r0=$(metric "$2" strait_dns_responses_total udp)
	s0=$(metric "$2" strait_dns_rrl_limited_responses_total slipped) d0=$(metric "$2" strait_dns_rrl_limited_responses_total dropped)
	out=$(perf -s 127.0.0.1 -p "$1" -d "$work/queries" -l "$limit" -c "$clients" -q "$rrl_outstanding" -t 1 2>&1)
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
echo
echo "load average at end: $(load_avg)"
