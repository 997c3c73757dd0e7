// Package status computes what `strait status` shows from what the broker holds (members,
// their exports and the conflicts between them) and from the agent's published view of
// the members' liveness: a one-shot command cannot observe leases being renewed, and must
// not judge a member by comparing its clock with the reader's. It is pure; the command
// gathers the objects.
package status

import (
	"sort"
	"time"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/globalservice"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/mcs"
	"github.com/strait-io/strait/internal/records"
)

// Status of the clusterset as seen from one member.
type Status struct {
	Cluster         string `json:"cluster"`
	ClusterID       string `json:"clusterID"`
	Broker          string `json:"broker"`
	BrokerReachable bool   `json:"brokerReachable"`
	BrokerError     string `json:"brokerError,omitempty"`
	// Agent is the member's agent's view of the clusterset (nil when it published none).
	Agent     *AgentView      `json:"agent,omitempty"`
	Members   []Member        `json:"members"`
	Imports   int             `json:"imports"`
	Conflicts []ServiceStatus `json:"conflicts,omitempty"`
	// GlobalServices lists this cluster's global Services and what they receive.
	GlobalServices []GlobalService `json:"globalServices,omitempty"`
}

// GlobalService is one of this cluster's global Services.
type GlobalService struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Shared    bool     `json:"shared"`
	Affinity  string   `json:"affinity"`
	Clusters  []string `json:"remoteClusters,omitempty"` // members that publish endpoints for it
	Problems  []string `json:"problems,omitempty"`       // port conflicts, annotation problems
}

// AgentView is what the agent says of the clusterset, as of WrittenAt (its clock).
type AgentView struct {
	WrittenAt time.Time `json:"writtenAt"`
	Identity  string    `json:"identity,omitempty"`
	// BrokerReachable is the agent's own view; BrokerSince when that began.
	BrokerReachable bool      `json:"brokerReachable"`
	BrokerSince     time.Time `json:"brokerSince,omitzero"`
	BrokerError     string    `json:"brokerError,omitempty"`
	// Frozen: the agent withdraws nothing now, for FrozenReason.
	Frozen       bool   `json:"frozen"`
	FrozenReason string `json:"frozenReason,omitempty"`
}

// Member is one member's line.
type Member struct {
	ID     string `json:"id"`
	Region string `json:"region,omitempty"`
	Zone   string `json:"zone,omitempty"`
	// State is the agent's verdict (Alive, Held, Withdrawn), Unknown without its view.
	State string `json:"state"`
	// Alive is State == Alive.
	Alive bool `json:"alive"`
	// LastRenewal is how long before the view was written (at its last change) the agent last
	// saw the member's lease renewed ("never" since it started, "-" without its view).
	LastRenewal string `json:"lastRenewal"`
	Reason      string `json:"reason,omitempty"`
	Exports     int    `json:"exports"`
	Conflicts   int    `json:"conflicts"`
}

// Unknown is a member's state when the agent published no view.
const Unknown = "Unknown"

// ServiceStatus names a Service whose exports conflict.
type ServiceStatus struct {
	Namespace string              `json:"namespace"`
	Name      string              `json:"name"`
	Winner    string              `json:"winner"`
	Conflicts map[string][]string `json:"conflicts"` // cluster -> reasons
}

// View turns the agent's published view into its status line.
func View(p *liveness.Published) *AgentView {
	if p == nil {
		return nil
	}
	return &AgentView{
		WrittenAt: p.WrittenAt, Identity: p.Identity,
		BrokerReachable: p.Broker.Reachable, BrokerSince: p.Broker.Since, BrokerError: p.Broker.Error,
		Frozen: p.Frozen, FrozenReason: p.FrozenReason,
	}
}

// Build computes the members' lines and the conflicts. view is the agent's published view
// of the members' liveness; nil leaves every member Unknown.
func Build(members []clusterset.Member, view *liveness.Published, recs []*mcsv1beta1.ServiceImport) ([]Member, []ServiceStatus) {
	byID := map[string]*Member{}
	var out []Member
	for _, m := range members {
		line := Member{ID: m.ID, Region: m.Region, Zone: m.Zone, State: Unknown, LastRenewal: "-"}
		if view != nil {
			line.State, line.LastRenewal = string(liveness.Held), "never"
			for _, v := range view.Members {
				if v.ID == m.ID {
					line.State, line.Reason, line.LastRenewal = string(v.State), v.Reason, view.Age(v.LastRenewalObserved)
				}
			}
		}
		line.Alive = line.State == string(liveness.Alive)
		out = append(out, line)
	}
	for i := range out {
		byID[out[i].ID] = &out[i]
	}
	services := map[string][]mcs.Export{}
	for _, r := range recs {
		e, ok := records.FromServiceImport(r)
		if !ok {
			continue
		}
		if m := byID[e.Cluster]; m != nil {
			m.Exports++
		}
		key := e.Namespace + "/" + e.Name
		services[key] = append(services[key], e)
	}
	var conflicts []ServiceStatus
	var groups [][]mcs.Export
	for _, exports := range services {
		// Exports through addresses and through Ingress hosts are imported apart, and
		// conflict only within their kind.
		addresses, hosts := mcs.SplitByHost(exports)
		groups = append(groups, addresses, hosts)
	}
	for _, exports := range groups {
		if len(exports) == 0 {
			continue
		}
		res, err := mcs.Aggregate(exports[0].Namespace, exports[0].Name, exports)
		if err != nil || len(res.Conflicts) == 0 {
			continue
		}
		ss := ServiceStatus{Namespace: exports[0].Namespace, Name: exports[0].Name, Winner: res.Winner, Conflicts: map[string][]string{}}
		for cluster, cs := range res.Conflicts {
			for _, c := range cs {
				ss.Conflicts[cluster] = append(ss.Conflicts[cluster], string(c.Reason))
			}
			if m := byID[cluster]; m != nil {
				m.Conflicts++
			}
		}
		conflicts = append(conflicts, ss)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	sort.Slice(conflicts, func(i, j int) bool {
		return conflicts[i].Namespace+"/"+conflicts[i].Name < conflicts[j].Namespace+"/"+conflicts[j].Name
	})
	return out, conflicts
}

// GlobalServices describes the cluster's global Services from its Services and the
// members' global records on the broker.
func GlobalServices(cluster string, services []corev1.Service, recs []discoveryv1.EndpointSlice) []GlobalService {
	var out []GlobalService
	for i := range services {
		svc := &services[i]
		opts := globalservice.OptionsOf(svc)
		if !opts.Global {
			continue
		}
		gs := GlobalService{Namespace: svc.Namespace, Name: svc.Name, Shared: opts.Shared, Affinity: string(opts.Affinity)}
		if opts.Problem != "" {
			gs.Problems = append(gs.Problems, opts.Problem)
		}
		byCluster := map[string][]*discoveryv1.EndpointSlice{}
		for j := range recs {
			r := &recs[j]
			key, ok := globalservice.RecordKey(r)
			member, isMember := clusterset.ClusterIDFromNamespace(r.Namespace)
			if ok && isMember && member != cluster && key == svc.Namespace+"/"+svc.Name {
				byCluster[member] = append(byCluster[member], r)
			}
		}
		var remotes []globalservice.Remote
		for c, slices := range byCluster {
			remotes = append(remotes, globalservice.Remote{Cluster: c, Slices: slices})
			gs.Clusters = append(gs.Clusters, c)
		}
		sort.Strings(gs.Clusters)
		all := opts
		all.Affinity = globalservice.AffinityNone
		_, conflicts := globalservice.Desired(svc, all, 0, remotes)
		sort.Strings(conflicts)
		gs.Problems = append(gs.Problems, conflicts...)
		out = append(out, gs)
	}
	return out
}
