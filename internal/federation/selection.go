package federation

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/strait-io/strait/internal/clusterset"
)

// Selection is the set of member clusters a broker Service is placed in.
type Selection struct {
	// All is true when the Service has no AnnotationClusters: every member, including
	// those that join later.
	All bool
	// Clusters are the named clusters, sorted and unique, when All is false; never empty.
	Clusters []string
}

// ParseSelection reads AnnotationClusters. A malformed value (an entry that is not a valid
// cluster ID) is an error, and callers then do nothing for the Service: guessing what a
// typo meant could place or remove shards nobody asked for. So is a value that names no
// cluster: an emptied annotation must not remove the Service from every member at once.
func ParseSelection(svc *corev1.Service) (Selection, error) {
	v, ok := svc.Annotations[AnnotationClusters]
	if !ok {
		return Selection{All: true}, nil
	}
	var out []string
	for _, part := range strings.Split(v, ",") {
		id := strings.TrimSpace(part)
		if id == "" {
			continue
		}
		if err := clusterset.ValidateClusterID(id); err != nil {
			return Selection{}, fmt.Errorf("annotation %s: %w", AnnotationClusters, err)
		}
		out = append(out, id)
	}
	if len(out) == 0 {
		return Selection{}, fmt.Errorf("annotation %s=%q names no cluster; name the clusters (\"a,b\"), or remove the annotation to place the Service in every member", AnnotationClusters, v)
	}
	slices.Sort(out)
	return Selection{Clusters: slices.Compact(out)}, nil
}

// Selects reports whether the selection includes cluster.
func (s Selection) Selects(cluster string) bool {
	if s.All {
		return true
	}
	_, found := slices.BinarySearch(s.Clusters, cluster)
	return found
}

// Resolve returns the selected members (in the order of members) and the selected cluster
// IDs that are not members.
func (s Selection) Resolve(members []clusterset.Member) (selected []clusterset.Member, unknown []string) {
	known := map[string]bool{}
	for _, m := range members {
		known[m.ID] = true
		if s.Selects(m.ID) {
			selected = append(selected, m)
		}
	}
	if !s.All {
		for _, id := range s.Clusters {
			if !known[id] {
				unknown = append(unknown, id)
			}
		}
	}
	return selected, unknown
}

// maxTTL is the largest TTL RFC 2181 allows.
const maxTTL = (1<<31 - 1) * time.Second

// ParseTTL reads AnnotationTTL: a Go duration ("90s", "5m") or a number of seconds, whole
// seconds, at least 1s. It returns 0 when the annotation is absent.
func ParseTTL(svc *corev1.Service) (time.Duration, error) {
	v, ok := svc.Annotations[AnnotationTTL]
	if !ok {
		return 0, nil
	}
	v = strings.TrimSpace(v)
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n < 1 || n > int64(maxTTL/time.Second) {
			return 0, fmt.Errorf("annotation %s %q: a TTL is 1 to %d seconds", AnnotationTTL, v, int64(maxTTL/time.Second))
		}
		d = time.Duration(n) * time.Second
	} else {
		d, err = time.ParseDuration(v)
		if err != nil {
			return 0, fmt.Errorf("annotation %s %q: not a duration (e.g. 30s) or a number of seconds", AnnotationTTL, v)
		}
	}
	if d < time.Second || d > maxTTL || d%time.Second != 0 {
		return 0, fmt.Errorf("annotation %s %q: a TTL is whole seconds, 1s to %s", AnnotationTTL, v, maxTTL)
	}
	return d, nil
}
