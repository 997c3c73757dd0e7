#!/usr/bin/env bash
# `make demo`: start the lab and show that it works the way a real cluster does: a
# Deployment gets Ready pods from a real kubelet and containerd, kubectl exec and logs work,
# the endpointslice controller publishes the pods, CoreDNS resolves the Service and
# kube-proxy balances requests over the pods, and pod IPs route between clusters.
set -euo pipefail
cd "$(dirname "$0")/.."
strait=./bin/strait
lab=${LAB:-strait}
export STRAIT_LAB=$lab
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# rebel_base CLUSTER REPLICAS: the demo namespace, a rebel-base Deployment and its Service.
rebel_base() {
	kubectl --context "$1" apply -f - <<YAML
apiVersion: v1
kind: Namespace
metadata: {name: demo}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: rebel-base, namespace: demo}
spec:
  replicas: $2
  selector: {matchLabels: {app: rebel-base}}
  template:
    metadata: {labels: {app: rebel-base}}
    spec:
      containers:
      - name: rebel-base
        image: strait.io/lab/rebel-base
        ports: [{name: http, containerPort: 80}]
        readinessProbe: {httpGet: {path: /readyz, port: http}, periodSeconds: 2}
---
apiVersion: v1
kind: Service
metadata: {name: rebel-base, namespace: demo}
spec:
  selector: {app: rebel-base}
  ports: [{name: http, port: 80, targetPort: http}]
YAML
}

step "Starting lab $lab (two clusters: cluster01, cluster02)"
if $strait lab status --lab "$lab" -o json 2>/dev/null | grep -q '"phase": "Running"'; then
	echo "lab $lab is already running"
else
	$strait lab up --lab "$lab"
fi
eval "$($strait lab env --lab "$lab")"

step "Nodes and system pods of cluster02"
kubectl --context cluster02 get nodes,pods -A -o wide

step "A 3-replica rebel-base Deployment and its Service in cluster01"
rebel_base cluster01 3
kubectl --context cluster01 -n demo rollout status deployment/rebel-base --timeout=120s
kubectl --context cluster01 -n demo get pods -o wide
kubectl --context cluster01 -n demo get endpointslices -l kubernetes.io/service-name=rebel-base

step "Real nodes: kubectl exec, logs and the node's containerd"
kubectl --context cluster01 -n demo run debug --image=strait.io/lab/debug --restart=Never --dry-run=client -o yaml |
	kubectl --context cluster01 apply -f -
kubectl --context cluster01 -n demo wait --for=condition=Ready pod/debug --timeout=120s >/dev/null
kubectl --context cluster01 -n demo exec debug -- nslookup rebel-base
kubectl --context cluster01 -n demo exec debug -- curl -s --max-time 5 http://rebel-base/
kubectl --context cluster01 -n demo logs deployment/rebel-base
kubectl --context cluster01 -n demo delete pod debug --wait=false

step "DNS in cluster01: rebel-base.demo resolved by the cluster's CoreDNS"
$strait lab exec cluster01 -- dig +short rebel-base.demo.svc.cluster.local

step "Six requests to http://rebel-base.demo/ from inside cluster01 (kube-proxy picks a pod each time)"
for _ in 1 2 3 4 5 6; do
	$strait lab exec cluster01 -- curl -s --max-time 5 --retry 10 --retry-connrefused --retry-delay 1 http://rebel-base.demo/
done

step "A pod of cluster02, reached from cluster01 by its pod IP"
kubectl --context cluster02 apply -f - <<'YAML'
apiVersion: v1
kind: Pod
metadata: {name: x-wing, namespace: default}
spec:
  containers:
  - name: x-wing
    image: strait.io/lab/rebel-base
    ports: [{containerPort: 8080}]
YAML
kubectl --context cluster02 wait --for=condition=Ready pod/x-wing --timeout=60s >/dev/null
ip=$(kubectl --context cluster02 get pod x-wing -o jsonpath='{.status.podIP}')
$strait lab exec cluster01 -- curl -s --max-time 5 --retry 10 --retry-connrefused --retry-delay 1 "http://$ip:8080/"

step "Multi-Cluster Services: export rebel-base from cluster01, call it from cluster02"
kubectl --context cluster02 create namespace demo --dry-run=client -o yaml | kubectl --context cluster02 apply -f -
kubectl --context cluster01 apply -f - <<'YAML'
apiVersion: multicluster.x-k8s.io/v1beta1
kind: ServiceExport
metadata: {name: rebel-base, namespace: demo}
YAML
for _ in $(seq 50); do
	kubectl --context cluster02 -n demo get serviceimport rebel-base >/dev/null 2>&1 && break
	sleep 0.2
done
kubectl --context cluster02 -n demo get serviceimports,endpointslices
$strait lab exec cluster02 -- dig +short rebel-base.demo.svc.clusterset.local
$strait lab exec cluster02 -- curl -s --max-time 5 --retry 10 --retry-connrefused --retry-delay 1 http://rebel-base.demo.svc.clusterset.local/
$strait status --context cluster02

step "Global Services (ClusterMesh style): rebel-base in both clusters, annotated global"
rebel_base cluster02 2
kubectl --context cluster02 -n demo rollout status deployment/rebel-base --timeout=120s
for c in cluster01 cluster02; do
	kubectl --context "$c" -n demo annotate --overwrite service rebel-base service.strait.io/global=true
done
# Wait until cluster02's endpoints are attached to cluster01's Service and kube-proxy has
# programmed them (its sync runs at most once a second), i.e. until a reply comes from there.
for _ in $(seq 100); do
	$strait lab exec cluster01 -- curl -s --max-time 2 -H 'Connection: close' $(for _ in $(seq 5); do echo http://rebel-base.demo/; done) |
		grep -q '"cluster":"cluster02"' && break
	sleep 0.2
done
echo "x-wing in cluster01 sends 20 requests to the plain name rebel-base.demo; replies per cluster:"
$strait lab exec cluster01 -- curl -s --max-time 5 -H 'Connection: close' $(for _ in $(seq 20); do echo http://rebel-base.demo/; done) |
	grep -o '"cluster":"[a-z0-9]*"' | sort | uniq -c
$strait status --context cluster01

step "Federated Services: one Service on the broker appears in every cluster; DNS finds the nearest healthy shard"
# The backends are deployed per cluster, in the federation namespace; the Service only once,
# on the broker (cluster01).
for c in cluster01 cluster02; do
	kubectl --context "$c" create namespace strait-federation --dry-run=client -o yaml | kubectl --context "$c" apply -f -
	kubectl --context "$c" -n strait-federation create deployment echo --image=strait.io/lab/echo --port=80 --dry-run=client -o yaml |
		kubectl --context "$c" apply -f -
	kubectl --context "$c" -n strait-federation rollout status deployment/echo --timeout=120s
done
kubectl --context cluster01 -n strait-federation apply -f - <<YAML
apiVersion: v1
kind: Service
metadata: {name: echo}
spec:
  type: NodePort
  selector: {app: echo}
  ports: [{name: http, port: 80}]
YAML
for _ in $(seq 100); do
	kubectl --context cluster02 -n strait-federation get service echo -o name 2>/dev/null | grep -q . && break
	sleep 0.2
done
kubectl --context cluster02 -n strait-federation get service echo
# Each cluster's CoreDNS forwards <svc>.<ns>.federation to the lab's strait dns, which answers
# with the asking cluster's own shard while it is healthy.
short=echo.strait-federation.federation
for _ in $(seq 100); do
	[ -n "$($strait lab exec cluster02 -- dig +short $short)" ] && break
	sleep 0.2
done
echo "cluster02 asks for $short (its own shard, the ClusterIP):"
$strait lab exec cluster02 -- dig +short $short
echo "cluster02's backends scaled to 0; the answer becomes its zone's, then its region's name, then cluster01's node:"
kubectl --context cluster02 -n strait-federation scale deployment echo --replicas=0
for _ in $(seq 100); do
	$strait lab exec cluster02 -- dig +short $short | grep -q '^echo\.' && break
	sleep 0.2
done
$strait lab exec cluster02 -- dig +short $short
# The lab has no load balancer, so a shard's addresses are its nodes, reached on the node port
# (the same in every cluster: members create the Service with the broker's node ports).
nodeport=$(kubectl --context cluster01 -n strait-federation get service echo -o jsonpath='{.spec.ports[0].nodePort}')
echo "curl http://$short:$nodeport/ from cluster02:"
$strait lab exec cluster02 -- curl -s --max-time 5 http://$short:$nodeport/
echo
kubectl --context cluster02 -n strait-federation scale deployment echo --replicas=1
$strait federation status --context cluster01 --domain strait.test --ttl 5s

step "Done. The lab keeps running:"
echo "  eval \"\$($strait lab env)\"      # point kubectl at it"
echo "  $strait lab status"
echo "  $strait lab down [--purge]"
