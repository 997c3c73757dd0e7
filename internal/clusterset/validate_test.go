package clusterset

import (
	"errors"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestValidateClusterID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want string // substring of the error; empty means valid
	}{
		{"cluster01", ""},
		{"a", ""},
		{"1", ""},
		{"eu-west-1", ""},
		{strings.Repeat("a", MaxClusterIDLength), ""},
		{"Foo_1", `cluster ID "Foo_1" is not a DNS-1123 label: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'`},
		{"", `cluster ID "" is not a DNS-1123 label`},
		{"-a", `cluster ID "-a" is not a DNS-1123 label`},
		{"a-", `cluster ID "a-" is not a DNS-1123 label`},
		{"a.b", `cluster ID "a.b" is not a DNS-1123 label`},
		{strings.Repeat("a", MaxClusterIDLength+1), "is 50 characters long: at most 49 are allowed, so that its broker namespace strait-member-"},
		{strings.Repeat("a", 64), "must be no more than 63 characters"},
	} {
		err := ValidateClusterID(tc.id)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("ValidateClusterID(%q) = %v, want valid", tc.id, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("ValidateClusterID(%q) = %v, want an error containing %q", tc.id, err, tc.want)
		}
	}
}

func TestClusterIDFromNamespace(t *testing.T) {
	for _, tc := range []struct {
		ns   string
		id   string
		isOK bool
	}{
		{"strait-member-cluster01", "cluster01", true},
		{MemberNamespace("a"), "a", true},
		{"strait-member-", "", false},
		{"strait-member-Bad", "", false},
		{"strait-system", "", false},
		{"default", "", false},
		{"xstrait-member-a", "", false},
	} {
		id, ok := ClusterIDFromNamespace(tc.ns)
		if id != tc.id || ok != tc.isOK {
			t.Errorf("ClusterIDFromNamespace(%q) = %q, %v; want %q, %v", tc.ns, id, ok, tc.id, tc.isOK)
		}
	}
}

func TestValidateTopologyAndClusterSet(t *testing.T) {
	if err := ValidateTopology("region", ""); err != nil {
		t.Errorf("empty region: %v", err)
	}
	if err := ValidateTopology("zone", "us-east-1a"); err != nil {
		t.Errorf("zone us-east-1a: %v", err)
	}
	if err := ValidateTopology("zone", "US East"); err == nil || !strings.Contains(err.Error(), `zone "US East" is not a DNS-1123 label`) {
		t.Errorf("zone with a space: %v", err)
	}
	if err := ValidateClusterSetName("prod.example"); err != nil {
		t.Errorf("clusterset prod.example: %v", err)
	}
	if err := ValidateClusterSetName("Prod"); err == nil || !strings.Contains(err.Error(), `clusterset name "Prod"`) {
		t.Errorf("clusterset Prod: %v", err)
	}
}

func TestNormalizeCIDRs(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want string // joined with spaces
		err  string
	}{
		{"empty", nil, "", ""},
		{"one", []string{"10.1.0.0/16"}, "10.1.0.0/16", ""},
		{"comma list and spaces", []string{"10.2.0.0/16, 10.1.0.0/16", ""}, "10.1.0.0/16 10.2.0.0/16", ""},
		{"duplicates", []string{"10.1.0.0/16", "10.1.0.0/16"}, "10.1.0.0/16", ""},
		{"contained prefixes dropped", []string{"10.1.2.0/24", "10.1.0.0/16", "10.1.3.0/24"}, "10.1.0.0/16", ""},
		{"node ranges kept", []string{"10.244.1.0/24", "10.244.0.0/24"}, "10.244.0.0/24 10.244.1.0/24", ""},
		{"dual stack, v4 first", []string{"fd00:10::/56", "10.1.0.0/16"}, "10.1.0.0/16 fd00:10::/56", ""},
		{"host bits", []string{"10.1.0.5/16"}, "", "pod CIDR 10.1.0.5/16 has host bits set; did you mean 10.1.0.0/16?"},
		{"not a CIDR", []string{"10.1.0.0"}, "", `pod CIDR "10.1.0.0" is not a CIDR`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := NormalizeCIDRs("pod", tc.in)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if s := strings.Join(got, " "); s != tc.want {
				t.Errorf("got %q, want %q", s, tc.want)
			}
		})
	}
}

func member(id string, pods, services []string) Member {
	return Member{ID: id, ClusterUID: "uid-" + id, ClusterSet: DefaultClusterSet, PodCIDRs: pods, ServiceCIDRs: services}
}

func TestCheckOverlaps(t *testing.T) {
	others := []Member{
		member("cluster01", []string{"10.1.0.0/16"}, []string{"10.101.0.0/16"}),
		member("cluster03", []string{"10.3.0.0/16", "fd00:3::/48"}, []string{"10.103.0.0/16"}),
	}
	for _, tc := range []struct {
		name    string
		joining Member
		want    []string // every overlap message part, in order; nil means no overlap
	}{
		{"disjoint", member("cluster02", []string{"10.2.0.0/16"}, []string{"10.102.0.0/16"}), nil},
		{"re-joining member is not its own conflict", member("cluster01", []string{"10.1.0.0/16"}, []string{"10.101.0.0/16"}), nil},
		{"v4 and v6 never overlap", member("cluster02", []string{"10.2.0.0/16", "fd00:2::/48"}, []string{"::ffff:10.1.0.0/112"}), nil},
		{"pod overlaps pod", member("cluster02", []string{"10.1.0.0/16"}, []string{"10.102.0.0/16"}),
			[]string{"pod CIDR 10.1.0.0/16 of cluster02 overlaps 10.1.0.0/16 of cluster01"}},
		{"wider pod overlaps narrower", member("cluster02", []string{"10.0.0.0/8"}, []string{"172.16.0.0/16"}),
			[]string{
				"pod CIDR 10.0.0.0/8 of cluster02 overlaps 10.1.0.0/16 of cluster01",
				"pod CIDR 10.0.0.0/8 of cluster02 overlaps service CIDR 10.101.0.0/16 of cluster01",
				"pod CIDR 10.0.0.0/8 of cluster02 overlaps 10.3.0.0/16 of cluster03",
				"pod CIDR 10.0.0.0/8 of cluster02 overlaps service CIDR 10.103.0.0/16 of cluster03",
			}},
		{"service overlaps pod", member("cluster02", []string{"10.2.0.0/16"}, []string{"10.3.128.0/20"}),
			[]string{"service CIDR 10.3.128.0/20 of cluster02 overlaps pod CIDR 10.3.0.0/16 of cluster03"}},
		{"v6 pod overlap", member("cluster02", []string{"10.2.0.0/16", "fd00:3:0:7::/64"}, []string{"10.102.0.0/16"}),
			[]string{"pod CIDR fd00:3:0:7::/64 of cluster02 overlaps fd00:3::/48 of cluster03"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOverlaps(tc.joining, others)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected overlap: %v", err)
				}
				return
			}
			var oe *OverlapError
			if !errors.As(err, &oe) {
				t.Fatalf("got %v, want an *OverlapError", err)
			}
			want := strings.Join(tc.want, "; ") + "; pass --allow-overlapping-cidrs if your data plane translates addresses"
			if err.Error() != want {
				t.Errorf("error\n  %s\nwant\n  %s", err, want)
			}
			if len(oe.Overlaps) != len(tc.want) {
				t.Errorf("%d overlaps, want %d", len(oe.Overlaps), len(tc.want))
			}
		})
	}
}

func TestCheckMembership(t *testing.T) {
	joined := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	c1 := member("cluster01", nil, nil)
	c1.JoinedAt = joined
	members := []Member{c1, member("cluster02", nil, nil)}
	for _, tc := range []struct {
		name    string
		joining Member
		want    string
		taken   bool
	}{
		{"new member", member("cluster03", nil, nil), "", false},
		{"same cluster re-joining", member("cluster01", nil, nil), "", false},
		{"ID of another cluster", Member{ID: "cluster01", ClusterUID: "uid-other", ClusterSet: DefaultClusterSet},
			`cluster ID "cluster01" is already used by another cluster of the clusterset (kube-system namespace uid uid-cluster01, joined 2025-01-02T03:04:05Z); choose another cluster ID`, true},
		{"member under another ID", Member{ID: "renamed", ClusterUID: "uid-cluster02", ClusterSet: DefaultClusterSet},
			`this cluster is already a member as "cluster02" (kube-system namespace uid uid-cluster02); run strait leave first`, false},
		{"other clusterset", Member{ID: "cluster03", ClusterUID: "uid-cluster03", ClusterSet: "other"},
			`the broker holds clusterset "clusterset" (member cluster01), not "other"; pass --clusterset clusterset`, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckMembership(tc.joining, members)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if errors.Is(err, ErrIDTaken) != tc.taken {
				t.Errorf("errors.Is(err, ErrIDTaken) = %v, want %v", !tc.taken, tc.taken)
			}
		})
	}
	// The only member may rename its clusterset by re-joining.
	only := []Member{member("cluster01", nil, nil)}
	renamed := member("cluster01", nil, nil)
	renamed.ClusterSet = "prod"
	if err := CheckMembership(renamed, only); err != nil {
		t.Errorf("renaming the clusterset of the only member: %v", err)
	}
}

func TestCheckLocalProperties(t *testing.T) {
	m := member("cluster02", nil, nil)
	for _, tc := range []struct {
		id, set string
		want    string
	}{
		{"", "", ""},
		{"cluster02", DefaultClusterSet, ""},
		{"cluster09", "", `this cluster already has cluster ID "cluster09" (ClusterProperty cluster.clusterset.k8s.io), not "cluster02"`},
		{"cluster02", "other", `this cluster already belongs to clusterset "other" (ClusterProperty clusterset.k8s.io)`},
	} {
		err := CheckLocalProperties(tc.id, tc.set, m)
		if (tc.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tc.want)) {
			t.Errorf("CheckLocalProperties(%q, %q) = %v, want %q", tc.id, tc.set, err, tc.want)
		}
	}
}

func TestRegistryConfigMapRoundTrip(t *testing.T) {
	m := Member{
		ID: "cluster02", ClusterSet: "prod", ClusterUID: "1234", Region: "r1", Zone: "z1",
		PodCIDRs: []string{"10.2.0.0/16", "fd00:2::/48"}, ServiceCIDRs: []string{"10.102.0.0/16"},
		Namespace: MemberNamespace("cluster02"), JoinedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
	}
	cm := registryConfigMap(m)
	if cm.Data[KeyPodCIDRs] != "10.2.0.0/16,fd00:2::/48" || cm.Data[KeyJoinedAt] != "2025-06-01T12:00:00Z" {
		t.Errorf("data %v", cm.Data)
	}
	got, err := MemberFromRegistry(cm)
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != m.ID || got.ClusterUID != m.ClusterUID || got.ClusterSet != m.ClusterSet || got.Region != m.Region || got.Zone != m.Zone ||
		strings.Join(got.PodCIDRs, ",") != strings.Join(m.PodCIDRs, ",") || strings.Join(got.ServiceCIDRs, ",") != strings.Join(m.ServiceCIDRs, ",") ||
		got.Namespace != m.Namespace || !got.JoinedAt.Equal(m.JoinedAt) {
		t.Errorf("round trip: got %+v, want %+v", got, m)
	}

	for _, tc := range []struct {
		name   string
		mutate func(*corev1.ConfigMap)
		want   string
	}{
		{"claims another ID", func(cm *corev1.ConfigMap) { cm.Data[KeyClusterID] = "cluster01" }, `has clusterID "cluster01", but its name belongs to "cluster02"`},
		{"not in the clusterset namespace", func(cm *corev1.ConfigMap) { cm.Namespace = "default" }, "ConfigMap default/member-cluster02 is not a membership record"},
		{"not a registry name", func(cm *corev1.ConfigMap) { cm.Name = "cluster02" }, "is not a membership record"},
		{"bad CIDR", func(cm *corev1.ConfigMap) { cm.Data[KeyServiceCIDRs] = "10.102.0.0" }, `service CIDR "10.102.0.0" is not a CIDR`},
		{"bad time", func(cm *corev1.ConfigMap) { cm.Data[KeyJoinedAt] = "yesterday" }, `joinedAt "yesterday" is not an RFC 3339 time`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			bad := registryConfigMap(m)
			tc.mutate(bad)
			if _, err := MemberFromRegistry(bad); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}

func node(name, region, zone string, cidrs ...string) corev1.Node {
	n := corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{}}}
	if region != "" {
		n.Labels[corev1.LabelTopologyRegion] = region
	}
	if zone != "" {
		n.Labels[corev1.LabelTopologyZone] = zone
	}
	n.Spec.PodCIDRs = cidrs
	if len(cidrs) > 0 {
		n.Spec.PodCIDR = cidrs[0]
	}
	return n
}

func TestNodeFacts(t *testing.T) {
	nodes := []corev1.Node{
		node("a", "eu", "eu-b", "10.244.1.0/24", "fd00::/64"),
		node("b", "eu", "eu-a", "10.244.0.0/24"),
		node("c", "eu", "eu-b"),
		{Spec: corev1.NodeSpec{PodCIDR: "10.244.2.0/24"}},
	}
	got, err := NormalizeCIDRs("pod", PodCIDRsFromNodes(nodes))
	if err != nil {
		t.Fatal(err)
	}
	if s := strings.Join(got, ","); s != "10.244.0.0/24,10.244.1.0/24,10.244.2.0/24,fd00::/64" {
		t.Errorf("pod CIDRs %s", s)
	}
	if r, z := TopologyFromNodes(nodes); r != "eu" || z != "eu-b" {
		t.Errorf("topology %q %q, want eu eu-b (most nodes)", r, z)
	}
	if r, z := TopologyFromNodes([]corev1.Node{node("a", "", "z2"), node("b", "", "z1")}); r != "" || z != "z1" {
		t.Errorf("tie: %q %q, want the first name", r, z)
	}
}
