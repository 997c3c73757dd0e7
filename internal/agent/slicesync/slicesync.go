// Package slicesync keeps a set of EndpointSlices equal to a desired set: it creates the
// missing, updates the changed and deletes the extra ones, and writes nothing when they
// already agree. Every reconciler of the agent that owns slices (MCS records, imports,
// global Services) uses it, so they all share one notion of "changed".
package slicesync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"maps"
	"sort"
	"strconv"

	discoveryv1 "k8s.io/api/discovery/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/strait-io/strait/internal/agent/patch"
)

// Client is the part of the EndpointSlice client Sync needs.
type Client interface {
	Create(ctx context.Context, s *discoveryv1.EndpointSlice, opts metav1.CreateOptions) (*discoveryv1.EndpointSlice, error)
	Patch(ctx context.Context, name string, pt types.PatchType, data []byte, opts metav1.PatchOptions, subresources ...string) (*discoveryv1.EndpointSlice, error)
	Delete(ctx context.Context, name string, opts metav1.DeleteOptions) error
}

// Same reports whether a slice the agent has (from its cache, possibly Slim) agrees with
// the one it wants on everything the agent sets.
func Same(have, want *discoveryv1.EndpointSlice) bool {
	if have.AddressType != want.AddressType || !equality.Semantic.DeepEqual(have.Labels, want.Labels) {
		return false
	}
	if d, ok := have.Annotations[annotationDigest]; ok {
		return d == Digest(want)
	}
	return equality.Semantic.DeepEqual(have.Endpoints, want.Endpoints) && equality.Semantic.DeepEqual(have.Ports, want.Ports)
}

// annotationDigest holds, in the agent's informer cache only (Slim), the digest of the
// endpoints and ports dropped from a slice. It is never written to an API server: slices
// are written with patches of the fields the agent sets (Fields), which leave it out.
const annotationDigest = "strait.io/cached-endpoints-digest"

// annotationReady holds, beside annotationDigest, how many of the dropped endpoints were
// ready, for the agent's metrics (ReadyEndpoints). Cache-only, like the digest.
const annotationReady = "strait.io/cached-ready-endpoints"

// Slim is for the transform of the agent's member informers: it replaces the endpoints and
// ports of a slice the agent wrote from the broker's records (imported and global slices;
// the records themselves when the member is also the broker) by their digest. The agent
// holds those endpoints once already, in its broker cache; of its own copy it only ever
// asks whether it is still what it wants (Same).
func Slim(s *discoveryv1.EndpointSlice) {
	if _, ok := s.Annotations[annotationDigest]; ok {
		return
	}
	d := Digest(s)
	a := make(map[string]string, len(s.Annotations)+2)
	maps.Copy(a, s.Annotations)
	a[annotationDigest] = d
	a[annotationReady] = strconv.Itoa(ReadyEndpoints(s))
	s.Annotations, s.Endpoints, s.Ports = a, nil, nil
}

// ReadyEndpoints counts the ready endpoints of a slice, Slim or not; an endpoint without a
// ready condition is ready, as for kube-proxy.
func ReadyEndpoints(s *discoveryv1.EndpointSlice) int {
	if v, ok := s.Annotations[annotationReady]; ok {
		n, _ := strconv.Atoi(v)
		return n
	}
	n := 0
	for _, ep := range s.Endpoints {
		if ep.Conditions.Ready == nil || *ep.Conditions.Ready {
			n++
		}
	}
	return n
}

// Digest sums up the endpoints and ports of a slice; empty and absent lists and maps
// count as the same, as they do for Semantic.DeepEqual (the API server stores them alike).
func Digest(s *discoveryv1.EndpointSlice) string {
	eps := make([]discoveryv1.Endpoint, 0, len(s.Endpoints))
	for _, ep := range s.Endpoints {
		if len(ep.Addresses) == 0 {
			ep.Addresses = nil
		}
		if len(ep.DeprecatedTopology) == 0 {
			ep.DeprecatedTopology = nil
		}
		if h := ep.Hints; h != nil && len(h.ForZones) == 0 && len(h.ForNodes) == 0 {
			ep.Hints = &discoveryv1.EndpointHints{}
		}
		eps = append(eps, ep)
	}
	ports := s.Ports
	if len(ports) == 0 {
		ports = nil
	}
	b, _ := json.Marshal(struct {
		E []discoveryv1.Endpoint     `json:"e"`
		P []discoveryv1.EndpointPort `json:"p"`
	}{eps, ports})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:16])
}

// Sync makes have (the slices the caller owns, from its cache) equal to want.
func Sync(ctx context.Context, c Client, have, want []*discoveryv1.EndpointSlice) error {
	wanted := map[string]*discoveryv1.EndpointSlice{}
	for _, w := range want {
		wanted[w.Name] = w
	}
	for _, h := range have {
		w, ok := wanted[h.Name]
		if !ok {
			if err := c.Delete(ctx, h.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &h.UID}}); err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
				return err
			}
			continue
		}
		delete(wanted, h.Name)
		if Same(h, w) {
			continue
		}
		if err := update(ctx, c, h, w); err != nil {
			return err
		}
	}
	names := make([]string, 0, len(wanted))
	for n := range wanted {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		if _, err := c.Create(ctx, wanted[n], metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return err
		}
	}
	return nil
}

// update writes want over have with a merge patch of the fields the agent sets: computed
// from a cache that lags behind (the agent's own previous write, or a watch outage), it
// still applies, where an update would be refused for its stale resourceVersion.
func update(ctx context.Context, c Client, have, want *discoveryv1.EndpointSlice) error {
	p, err := patch.Merge(Fields(have), Fields(want))
	if err != nil || p == nil {
		return err
	}
	_, err = c.Patch(ctx, have.Name, types.MergePatchType, p, metav1.PatchOptions{})
	return err
}

// Fields are the fields of a slice the agent sets, for patch.Merge.
func Fields(s *discoveryv1.EndpointSlice) patch.Fields {
	return patch.Fields{"metadata": patch.Meta(s.Labels, nil), "endpoints": s.Endpoints, "ports": s.Ports}
}

// Mirror copies the endpoints of local slices into one slice per address type, endpoints
// sorted by address and ports by name so an unchanged set is never rewritten. Node names
// and target references are dropped: they mean nothing in another cluster. meta names and
// labels the slice of each address type. Slices for which skip returns true are ignored.
func Mirror(local []*discoveryv1.EndpointSlice, skip func(*discoveryv1.EndpointSlice) bool, meta func(discoveryv1.AddressType) metav1.ObjectMeta) []*discoveryv1.EndpointSlice {
	byType := map[discoveryv1.AddressType]*discoveryv1.EndpointSlice{}
	ports := map[discoveryv1.AddressType]map[string]discoveryv1.EndpointPort{}
	for _, s := range local {
		if skip != nil && skip(s) {
			continue
		}
		out, ok := byType[s.AddressType]
		if !ok {
			out = &discoveryv1.EndpointSlice{ObjectMeta: meta(s.AddressType), AddressType: s.AddressType}
			byType[s.AddressType] = out
			ports[s.AddressType] = map[string]discoveryv1.EndpointPort{}
		}
		for _, ep := range s.Endpoints {
			c := ep.DeepCopy()
			c.NodeName, c.TargetRef = nil, nil
			out.Endpoints = append(out.Endpoints, *c)
		}
		for _, p := range s.Ports {
			key := ""
			if p.Name != nil {
				key = *p.Name
			}
			ports[s.AddressType][key] = *p.DeepCopy()
		}
	}
	var result []*discoveryv1.EndpointSlice
	for t, s := range byType {
		sort.Slice(s.Endpoints, func(i, j int) bool { return s.Endpoints[i].Addresses[0] < s.Endpoints[j].Addresses[0] })
		keys := make([]string, 0, len(ports[t]))
		for k := range ports[t] {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			s.Ports = append(s.Ports, ports[t][k])
		}
		result = append(result, s)
	}
	sort.Slice(result, func(i, j int) bool { return result[i].Name < result[j].Name })
	return result
}
