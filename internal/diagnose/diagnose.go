// Package diagnose judges each link of a clusterset's chain, the way `strait diagnose`
// proves them: per member, that it joined, that an agent leads and renews, that the member's
// heartbeat reaches the broker, that the agent sees the broker, and that CoreDNS serves
// clusterset.local; per pair of members, that a pod of one resolves the other's exported
// Service under clusterset.local and reaches it through its ClusterSet IP and at a pod IP.
// It is pure: the command gathers the objects and runs the probes, this package says what
// passed, what failed and the fix for each failure.
package diagnose

import (
	"fmt"
	"slices"
	"strings"

	coordinationv1 "k8s.io/api/coordination/v1"

	"github.com/strait-io/strait/internal/doctor"
	"github.com/strait-io/strait/internal/liveness"
)

// Status is the verdict on one link.
type Status string

// The verdicts. Skipped: a link that could not be tried because one before it failed.
const (
	Passed  Status = "ok"
	Failed  Status = "FAIL"
	Skipped Status = "skipped"
)

// The checks, in the order of the chain.
const (
	CheckJoined       = "joined"
	CheckAgent        = "agent leader"
	CheckHeartbeat    = "member lease"
	CheckBroker       = "broker seen by agent"
	CheckCoreDNS      = "coredns"
	CheckWorkload     = "test workload"
	CheckImport       = "import"
	CheckDNS          = "clusterset.local from a pod"
	CheckClusterSetIP = "clusterset IP from a pod"
	CheckPodIP        = "pod IP from a pod"
)

// Result is the verdict on one link: of a member (Peer empty) or from Cluster to Peer.
type Result struct {
	Check   string `json:"check"`
	Cluster string `json:"cluster"`
	Peer    string `json:"peer,omitempty"`
	Status  Status `json:"status"`
	Detail  string `json:"detail"`
	Fix     string `json:"fix,omitempty"`
}

// Report is every result, in the order they were added.
type Report struct {
	Results []Result `json:"results"`
	Passed  int      `json:"passed"`
	Failed  int      `json:"failed"`
	Skipped int      `json:"skipped"`
}

// Add records a result and counts it.
func (r *Report) Add(res ...Result) {
	for _, x := range res {
		switch x.Status {
		case Passed:
			r.Passed++
		case Failed:
			r.Failed++
		default:
			r.Skipped++
		}
		r.Results = append(r.Results, x)
	}
}

// OK reports whether nothing failed.
func (r *Report) OK() bool { return r.Failed == 0 }

// Failing reports whether a check of cluster has failed (so links after it are skipped).
func (r *Report) Failing(cluster string, checks ...string) bool {
	return slices.ContainsFunc(r.Results, func(x Result) bool {
		return x.Cluster == cluster && x.Peer == "" && x.Status == Failed &&
			(len(checks) == 0 || slices.Contains(checks, x.Check))
	})
}

func pass(check, cluster, detail string) Result {
	return Result{Check: check, Cluster: cluster, Status: Passed, Detail: detail}
}

func fail(check, cluster, detail, fix string) Result {
	return Result{Check: check, Cluster: cluster, Status: Failed, Detail: detail, Fix: fix}
}

// Skip is a link not tried, and why.
func Skip(check, cluster, peer, why string) Result {
	return Result{Check: check, Cluster: cluster, Peer: peer, Status: Skipped, Detail: why}
}

// Joined judges the cluster's ID (err from reading it).
func Joined(cluster, id string, err error) Result {
	if err != nil {
		return fail(CheckJoined, cluster, err.Error(),
			fmt.Sprintf("join it: strait join --context %s --broker-context <broker>", cluster))
	}
	return pass(CheckJoined, cluster, "cluster ID "+id)
}

// Renewal judges a lease read twice, window apart: it is renewed when the second read has
// another resourceVersion. Only what this reader observed counts, never the lease's own
// timestamps against this machine's clock (the failure model's rule).
func Renewal(check, cluster, what string, first, second *coordinationv1.Lease, window string, fix string) Result {
	switch {
	case first == nil || second == nil:
		return fail(check, cluster, what+" does not exist", fix)
	case second.ResourceVersion == first.ResourceVersion:
		holder := ""
		if second.Spec.HolderIdentity != nil && *second.Spec.HolderIdentity != "" {
			holder = " (last holder " + *second.Spec.HolderIdentity + ")"
		}
		return fail(check, cluster, fmt.Sprintf("%s was not renewed in %s%s", what, window, holder), fix)
	}
	holder := "renewed"
	if second.Spec.HolderIdentity != nil && *second.Spec.HolderIdentity != "" {
		holder = "held and renewed by " + *second.Spec.HolderIdentity
	}
	return pass(check, cluster, what+" "+holder)
}

// AgentFix is the fix for an agent that does not lead.
func AgentFix(cluster string) string {
	return fmt.Sprintf("start the agent: kubectl --context %s -n strait-system get deploy,pods (scale strait-agent to 1 or more replicas) and read its logs", cluster)
}

// HeartbeatFix is the fix for a member lease not renewed on the broker.
func HeartbeatFix(cluster string) string {
	return fmt.Sprintf("the agent cannot renew on the broker: strait status --context %s, and the agent's logs for broker errors (an expired credential is renewed by re-running strait join)", cluster)
}

// BrokerView judges the agent's published view of the broker (nil: none published).
func BrokerView(cluster string, view *liveness.Published) Result {
	switch {
	case view == nil:
		return fail(CheckBroker, cluster, "the agent published no view (ConfigMap strait-system/"+liveness.ViewConfigMap+" missing)",
			AgentFix(cluster))
	case !view.Broker.Reachable:
		return fail(CheckBroker, cluster, "the agent cannot reach the broker: "+view.Broker.Error,
			fmt.Sprintf("check the route and firewall from %s to the broker's API server, and the credential: strait status --context %s", cluster, cluster))
	case view.Frozen:
		return fail(CheckBroker, cluster, "the agent has frozen withdrawals: "+view.FrozenReason,
			"most members stopped renewing at once: strait status shows which; fix their agents or the network between them and the broker")
	}
	return pass(CheckBroker, cluster, "reachable, withdrawals not frozen")
}

// ClusterSetZone is the zone of multi-cluster Services.
const ClusterSetZone = "clusterset.local"

// CoreDNS judges CoreDNS's configuration: its Corefile (found false when there is no
// kube-system/coredns ConfigMap), and whether its identity may list ServiceImports (nil:
// unknown).
func CoreDNS(cluster string, corefile string, found bool, canList *bool) Result {
	fix := fmt.Sprintf("add `multicluster %s` to the kubernetes block of the Corefile (kubectl --context %s -n kube-system edit configmap coredns), with %s among the block's zones, and let CoreDNS list and watch serviceimports.multicluster.x-k8s.io", ClusterSetZone, cluster, ClusterSetZone)
	if !found {
		return Skip(CheckCoreDNS, cluster, "", "no ConfigMap kube-system/coredns to read; the resolution from a pod below tells whether clusterset.local works")
	}
	cf, err := doctor.ReadCorefile(corefile, nil)
	switch {
	case err != nil:
		return fail(CheckCoreDNS, cluster, err.Error(), fix)
	case !slices.Contains(cf.Multicluster, ClusterSetZone):
		return fail(CheckCoreDNS, cluster, "the Corefile has no `multicluster "+ClusterSetZone+"` in its kubernetes block", fix)
	case !slices.Contains(cf.Zones, ClusterSetZone):
		return fail(CheckCoreDNS, cluster, "the kubernetes block does not serve the zone "+ClusterSetZone+" (its zones: "+strings.Join(cf.Zones, ", ")+")", fix)
	case canList != nil && !*canList:
		return fail(CheckCoreDNS, cluster, "CoreDNS may not list serviceimports", fix)
	}
	return pass(CheckCoreDNS, cluster, "the Corefile serves "+ClusterSetZone+" from ServiceImports")
}
