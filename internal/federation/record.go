package federation

import (
	"net/netip"
	"slices"
	"strconv"
	"strings"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/names"
	"github.com/strait-io/strait/internal/records"
)

// A member reports its shard of a federated Service as EndpointSlices in its own broker
// namespace (RBAC lets it write there and nowhere else): the ingress addresses as endpoints,
// ready while the shard has a ready endpoint, on the ingress ports; one slice per address
// type, the IPv4 one always present so that an address-less shard is still recorded. The
// rest travels in annotations. The cluster of a record is the namespace it lives in, never
// anything the member wrote.
const (
	annotationState          = "federation.strait.io/shard-state"
	annotationReadyEndpoints = "federation.strait.io/ready-endpoints"
	annotationIngressSource  = "federation.strait.io/ingress-source"
	annotationClusterIPs     = "federation.strait.io/cluster-ips"
	annotationProblem        = "federation.strait.io/problem"
	annotationRegion         = "federation.strait.io/node-region"
	annotationZone           = "federation.strait.io/node-zone"
)

// maxRecordEndpoints is the API's limit of endpoints in one EndpointSlice.
const maxRecordEndpoints = 1000

// ShardState says whether a member's shard exists.
type ShardState string

// Shard states.
const (
	// ShardCreated, ShardAdopted: the member Service exists and Strait manages it.
	ShardCreated ShardState = "Created"
	ShardAdopted ShardState = "Adopted"
	// ShardBroker: the member cluster is the broker; the shard is the broker Service itself.
	ShardBroker ShardState = "Broker"
	// ShardPending: the member is about to create or adopt the Service.
	ShardPending ShardState = "Pending"
	// ShardConflict: a Service of that name belongs to something else (see Problem).
	ShardConflict ShardState = "Conflict"
)

// Exists reports whether the state is that of a Service serving the shard.
func (s ShardState) Exists() bool {
	return s == ShardCreated || s == ShardAdopted || s == ShardBroker
}

// ShardKey identifies a shard: a cluster's placement of a federated Service.
type ShardKey struct {
	Cluster, Namespace, Name string
}

// Shard is what a member reports about its shard of a federated Service.
type Shard struct {
	Cluster   string     `json:"cluster"`
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	State     ShardState `json:"state"`
	// ReadyEndpoints counts the ready endpoints of the member Service.
	ReadyEndpoints int     `json:"readyEndpoints"`
	Ingress        Ingress `json:"ingress"`
	// ClusterIPs are the member Service's cluster IPs, answered to clients inside it.
	ClusterIPs []netip.Addr `json:"clusterIPs,omitempty"`
	// Region and Zone are what most of the member's nodes say (topology labels), used
	// where the membership has none.
	Region  string `json:"nodeRegion,omitempty"`
	Zone    string `json:"nodeZone,omitempty"`
	Problem string `json:"problem,omitempty"`
}

// Key returns the shard's identity.
func (s Shard) Key() ShardKey {
	return ShardKey{Cluster: s.Cluster, Namespace: s.Namespace, Name: s.Name}
}

// RecordLabels are the labels of the records of namespace/name in federation fed.
func RecordLabels(fed, namespace, name string) map[string]string {
	return map[string]string{
		clusterset.ManagedByLabel:        clusterset.ManagedByValue,
		discoveryv1.LabelManagedBy:       records.EndpointSliceManagedBy,
		clusterset.ServiceProxyNameLabel: clusterset.RecordsProxyName,
		LabelFederation:                  fed,
		LabelNamespace:                   namespace,
		LabelService:                     name,
	}
}

// RecordSelector selects the records of namespace/name of federation fed.
func RecordSelector(fed, namespace, name string) labels.Selector {
	return labels.SelectorFromSet(RecordLabels(fed, namespace, name))
}

// FederationRecordSelector selects every record of federation fed.
func FederationRecordSelector(fed string) labels.Selector {
	return labels.SelectorFromSet(labels.Set{clusterset.ManagedByLabel: clusterset.ManagedByValue, LabelFederation: fed})
}

// RecordKey returns "namespace/name" of the federated Service a record belongs to.
func RecordKey(obj metav1.Object, fed string) (string, bool) {
	l := obj.GetLabels()
	if l[clusterset.ManagedByLabel] != clusterset.ManagedByValue || l[LabelFederation] != fed || l[LabelNamespace] == "" || l[LabelService] == "" {
		return "", false
	}
	return l[LabelNamespace] + "/" + l[LabelService], true
}

// RecordName names the record slice of one address type.
func RecordName(namespace, name string, t discoveryv1.AddressType) string {
	return names.Unique("federation", namespace, name, strings.ToLower(string(t)))
}

// ToRecords encodes a shard as the EndpointSlices of memberNamespace.
func ToRecords(memberNamespace, fed string, s Shard) []*discoveryv1.EndpointSlice {
	annotations := map[string]string{
		annotationState:          string(s.State),
		annotationReadyEndpoints: strconv.Itoa(s.ReadyEndpoints),
		annotationIngressSource:  string(s.Ingress.Source),
	}
	set := func(k, v string) {
		if v != "" {
			annotations[k] = v
		}
	}
	set(annotationClusterIPs, joinAddrs(s.ClusterIPs))
	set(annotationProblem, s.Problem)
	set(annotationRegion, s.Region)
	set(annotationZone, s.Zone)
	var v4, v6 []string
	for _, a := range s.Ingress.IPs {
		if a.Is4() {
			v4 = append(v4, a.String())
		} else {
			v6 = append(v6, a.String())
		}
	}
	var ports []discoveryv1.EndpointPort
	for _, p := range s.Ingress.Ports {
		ports = append(ports, discoveryv1.EndpointPort{Name: ptr.To(p.Name), Protocol: ptr.To(p.Protocol), Port: ptr.To(p.Port)})
	}
	ready := s.ReadyEndpoints > 0
	slice := func(t discoveryv1.AddressType, addrs []string) *discoveryv1.EndpointSlice {
		es := &discoveryv1.EndpointSlice{
			ObjectMeta: metav1.ObjectMeta{
				Name: RecordName(s.Namespace, s.Name, t), Namespace: memberNamespace,
				Labels: RecordLabels(fed, s.Namespace, s.Name), Annotations: annotations,
			},
			AddressType: t,
			Ports:       ports,
		}
		if len(addrs) > maxRecordEndpoints {
			addrs = addrs[:maxRecordEndpoints]
		}
		for _, a := range addrs {
			es.Endpoints = append(es.Endpoints, discoveryv1.Endpoint{
				Addresses:  []string{a},
				Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)},
			})
		}
		return es
	}
	out := []*discoveryv1.EndpointSlice{slice(discoveryv1.AddressTypeIPv4, v4)}
	if len(v6) > 0 {
		out = append(out, slice(discoveryv1.AddressTypeIPv6, v6))
	}
	if len(s.Ingress.Hostnames) > 0 {
		out = append(out, slice(discoveryv1.AddressTypeFQDN, s.Ingress.Hostnames))
	}
	return out
}

// FromRecords decodes the records of one federation into shards. The cluster is the member
// namespace a record lives in; records outside member namespaces are ignored.
func FromRecords(recs []*discoveryv1.EndpointSlice, fed string) map[ShardKey]Shard {
	out := map[ShardKey]Shard{}
	for _, r := range recs {
		cluster, ok := clusterset.ClusterIDFromNamespace(r.Namespace)
		if !ok {
			continue
		}
		l := r.Labels
		if l[LabelFederation] != fed || l[LabelNamespace] == "" || l[LabelService] == "" {
			continue
		}
		k := ShardKey{Cluster: cluster, Namespace: l[LabelNamespace], Name: l[LabelService]}
		s, seen := out[k]
		if !seen {
			a := r.Annotations
			s = Shard{
				Cluster: cluster, Namespace: k.Namespace, Name: k.Name,
				State:      ShardState(a[annotationState]),
				ClusterIPs: parseAddrs(strings.Split(a[annotationClusterIPs], ",")),
				Region:     a[annotationRegion], Zone: a[annotationZone], Problem: a[annotationProblem],
				Ingress: Ingress{Source: IngressSource(a[annotationIngressSource])},
			}
			s.ReadyEndpoints, _ = strconv.Atoi(a[annotationReadyEndpoints])
			for _, p := range r.Ports {
				if p.Port == nil {
					continue
				}
				s.Ingress.Ports = append(s.Ingress.Ports, Port{Name: ptr.Deref(p.Name, ""), Protocol: ptr.Deref(p.Protocol, corev1.ProtocolTCP), Port: *p.Port})
			}
		}
		for _, e := range r.Endpoints {
			for _, a := range e.Addresses {
				if r.AddressType == discoveryv1.AddressTypeFQDN {
					s.Ingress.Hostnames = append(s.Ingress.Hostnames, a)
				} else if ip, err := netip.ParseAddr(a); err == nil {
					s.Ingress.IPs = append(s.Ingress.IPs, ip.Unmap())
				}
			}
		}
		out[k] = s
	}
	for k, s := range out {
		s.Ingress.IPs = sortedAddrs(s.Ingress.IPs)
		s.Ingress.Hostnames = sortedStrings(s.Ingress.Hostnames)
		out[k] = s
	}
	return out
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// RecordsEqual reports whether two record slices agree on everything ToRecords sets.
func RecordsEqual(a, b *discoveryv1.EndpointSlice) bool {
	return a.AddressType == b.AddressType && mapsEqual(a.Labels, b.Labels) && mapsEqual(a.Annotations, b.Annotations) &&
		slices.EqualFunc(a.Endpoints, b.Endpoints, func(x, y discoveryv1.Endpoint) bool {
			return slices.Equal(x.Addresses, y.Addresses) && ptr.Equal(x.Conditions.Ready, y.Conditions.Ready)
		}) &&
		slices.EqualFunc(a.Ports, b.Ports, func(x, y discoveryv1.EndpointPort) bool {
			return ptr.Equal(x.Name, y.Name) && ptr.Equal(x.Protocol, y.Protocol) && ptr.Equal(x.Port, y.Port)
		})
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}
