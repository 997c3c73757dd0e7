package mcs

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type R = mcsv1beta1.ServiceExportConditionReason

const (
	portC     = mcsv1beta1.ServiceExportReasonPortConflict
	typeC     = mcsv1beta1.ServiceExportReasonTypeConflict
	affC      = mcsv1beta1.ServiceExportReasonSessionAffinityConflict
	affCfgC   = mcsv1beta1.ServiceExportReasonSessionAffinityConfigConflict
	itpC      = mcsv1beta1.ServiceExportReasonInternalTrafficPolicyConflict
	tdC       = mcsv1beta1.ServiceExportReasonTrafficDistributionConflict
	famC      = mcsv1beta1.ServiceExportReasonIPFamilyConflict
	labelsC   = mcsv1beta1.ServiceExportReasonLabelsConflict
	annotsC   = mcsv1beta1.ServiceExportReasonAnnotationsConflict
	clusterIP = mcsv1beta1.ClusterSetIP
	headless  = mcsv1beta1.Headless
)

func port(name string, n int32) mcsv1beta1.ServicePort {
	return mcsv1beta1.ServicePort{Name: name, Protocol: corev1.ProtocolTCP, Port: n}
}

// exp returns a typical ClusterSetIP export of demo/hello from cluster, created age
// seconds after t0, changed by the options.
func exp(cluster string, age int, opts ...func(*Export)) Export {
	e := Export{
		Cluster:               cluster,
		Created:               t0.Add(time.Duration(age) * time.Second),
		Namespace:             "demo",
		Name:                  "hello",
		Type:                  clusterIP,
		Ports:                 []mcsv1beta1.ServicePort{port("http", 80)},
		SessionAffinity:       corev1.ServiceAffinityNone,
		InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
		IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
	}
	for _, o := range opts {
		o(&e)
	}
	return e
}

func withHost(h string) func(*Export) {
	return func(e *Export) { e.Host = h }
}

func withType(t mcsv1beta1.ServiceImportType) func(*Export) {
	return func(e *Export) { e.Type = t }
}

func withPorts(ps ...mcsv1beta1.ServicePort) func(*Export) {
	return func(e *Export) { e.Ports = ps }
}

// wantImport is the import of a single default export, changed by the options.
func wantImport(clusters []string, opts ...func(*Import)) Import {
	im := Import{
		Namespace:             "demo",
		Name:                  "hello",
		Type:                  clusterIP,
		Ports:                 []mcsv1beta1.ServicePort{port("http", 80)},
		SessionAffinity:       corev1.ServiceAffinityNone,
		InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
		IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
		Clusters:              clusters,
	}
	for _, o := range opts {
		o(&im)
	}
	return im
}

// reasons flattens Result.Conflicts to cluster -> reasons for comparison.
func reasons(r Result) map[string][]R {
	out := map[string][]R{}
	for c, cs := range r.Conflicts {
		for _, cf := range cs {
			out[c] = append(out[c], cf.Reason)
		}
	}
	return out
}

func TestAggregate(t *testing.T) {
	timeout := func(s int32) *corev1.SessionAffinityConfig {
		return &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To(s)}}
	}
	tests := []struct {
		name    string
		exports []Export
		winner  string
		want    Import
		// conflicts by cluster; clusters absent here must have none.
		conflicts map[string][]R
		// messages: substrings expected in the Conflict messages of a cluster.
		messages map[string][]string
	}{
		{
			name:    "single export",
			exports: []Export{exp("cluster01", 0)},
			winner:  "cluster01",
			want:    wantImport([]string{"cluster01"}),
		},
		{
			name:    "two identical exports",
			exports: []Export{exp("cluster02", 5), exp("cluster01", 9)},
			winner:  "cluster02",
			want:    wantImport([]string{"cluster01", "cluster02"}),
		},
		{
			name: "different ingress hosts: the oldest host is used, both are marked",
			exports: []Export{
				exp("cluster01", 10, withHost("web.east.example")),
				exp("cluster02", 5, withHost("web.west.example")),
			},
			winner: "cluster02",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Host = "web.west.example"
			}),
			conflicts: map[string][]R{"cluster01": {ReasonHostConflict}, "cluster02": {ReasonHostConflict}},
			messages: map[string][]string{
				"cluster01": {"host: this export has web.east.example, the oldest export has web.west.example"},
			},
		},
		{
			name: "type conflict: the oldest wins, both are marked",
			exports: []Export{
				exp("cluster01", 10),
				exp("cluster02", 5, withType(headless)),
			},
			winner: "cluster02",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Type = headless
			}),
			conflicts: map[string][]R{"cluster01": {typeC}, "cluster02": {typeC}},
			messages: map[string][]string{
				"cluster01": {`type: this export has ClusterSetIP, the oldest export has Headless`, "(cluster cluster02) is used"},
				"cluster02": {"this export is the oldest", "clusters cluster01 export a different value"},
			},
		},
		{
			name: "disjoint ports: union, not identical so PortConflict on both",
			exports: []Export{
				exp("cluster01", 0, withPorts(port("https", 443))),
				exp("cluster02", 1, withPorts(port("http", 80), port("metrics", 9090))),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{port("http", 80), port("https", 443), port("metrics", 9090)}
			}),
			conflicts: map[string][]R{"cluster01": {portC}, "cluster02": {portC}},
			messages: map[string][]string{
				"cluster01": {"union [http:80/TCP, https:443/TCP, metrics:9090/TCP]"},
				"cluster02": {"not identical across clusters cluster01, cluster02"},
			},
		},
		{
			name: "same port name with another number: the oldest definition wins, both marked",
			exports: []Export{
				exp("cluster01", 0, withPorts(port("http", 8080), port("grpc", 9000))),
				exp("cluster02", -30, withPorts(port("http", 80))),
			},
			winner: "cluster02",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{port("http", 80), port("grpc", 9000)}
			}),
			conflicts: map[string][]R{"cluster01": {portC}, "cluster02": {portC}},
			messages: map[string][]string{
				"cluster01": {"http:8080/TCP loses to http:80/TCP of cluster cluster02"},
				"cluster02": {"http:80/TCP wins over http:8080/TCP of cluster cluster01"},
			},
		},
		{
			name: "same protocol and number under another name: the oldest wins",
			exports: []Export{
				exp("cluster01", 0, withPorts(port("http", 80))),
				exp("cluster02", 1, withPorts(port("web", 80), port("https", 443))),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{port("http", 80), port("https", 443)}
			}),
			conflicts: map[string][]R{"cluster01": {portC}, "cluster02": {portC}},
			messages:  map[string][]string{"cluster02": {"web:80/TCP loses to http:80/TCP of cluster cluster01"}},
		},
		{
			name: "same number with another protocol is a distinct port",
			exports: []Export{
				exp("cluster01", 0, withPorts(port("dns", 53))),
				exp("cluster02", 1, withPorts(mcsv1beta1.ServicePort{Name: "dns-udp", Protocol: corev1.ProtocolUDP, Port: 53})),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{port("dns", 53), {Name: "dns-udp", Protocol: corev1.ProtocolUDP, Port: 53}}
			}),
			conflicts: map[string][]R{"cluster01": {portC}, "cluster02": {portC}},
		},
		{
			name: "appProtocol difference on the same port conflicts",
			exports: []Export{
				exp("cluster01", 0, withPorts(mcsv1beta1.ServicePort{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, AppProtocol: ptr.To("kubernetes.io/h2c")})),
				exp("cluster02", 1),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, AppProtocol: ptr.To("kubernetes.io/h2c")}}
			}),
			conflicts: map[string][]R{"cluster01": {portC}, "cluster02": {portC}},
		},
		{
			name: "defaults are not conflicts: empty protocol is TCP, empty affinity is None, port order is irrelevant",
			exports: []Export{
				exp("cluster01", 0, withPorts(port("http", 80), port("https", 443))),
				exp("cluster02", 1, withPorts(mcsv1beta1.ServicePort{Name: "https", Port: 443}, mcsv1beta1.ServicePort{Name: "http", Port: 80}), func(e *Export) {
					e.SessionAffinity = ""
				}),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Ports = []mcsv1beta1.ServicePort{port("http", 80), port("https", 443)}
			}),
		},
		{
			name: "equal creation times: the lower cluster ID wins",
			exports: []Export{
				exp("cluster-b", 0, withType(headless)),
				exp("cluster-a", 0),
				exp("cluster-c", 0, withType(headless)),
			},
			winner:    "cluster-a",
			want:      wantImport([]string{"cluster-a", "cluster-b", "cluster-c"}),
			conflicts: map[string][]R{"cluster-a": {typeC}, "cluster-b": {typeC}, "cluster-c": {typeC}},
			messages: map[string][]string{
				"cluster-a": {"clusters cluster-b, cluster-c export a different value"},
				"cluster-b": {"the oldest export's value (cluster cluster-a) is used"},
			},
		},
		{
			name: "one dissenter among three: every export is marked",
			exports: []Export{
				exp("cluster01", 0),
				exp("cluster02", 1),
				exp("cluster03", 2, func(e *Export) { e.InternalTrafficPolicy = ptr.To(corev1.ServiceInternalTrafficPolicyLocal) }),
			},
			winner:    "cluster01",
			want:      wantImport([]string{"cluster01", "cluster02", "cluster03"}),
			conflicts: map[string][]R{"cluster01": {itpC}, "cluster02": {itpC}, "cluster03": {itpC}},
			messages: map[string][]string{
				"cluster02": {"clusters cluster03 export a value other than the oldest export's (cluster cluster01), which this export shares"},
				"cluster03": {`internalTrafficPolicy: this export has "Local", the oldest export has "Cluster"`},
			},
		},
		{
			name: "labels and annotations conflicts name the differing keys",
			exports: []Export{
				exp("cluster01", 0, func(e *Export) {
					e.Labels = map[string]string{"app": "hello", "tier": "web"}
					e.Annotations = map[string]string{"example.com/owner": "team-a"}
				}),
				exp("cluster02", 1, func(e *Export) {
					e.Labels = map[string]string{"app": "hello", "tier": "api", "extra": "x"}
					e.Annotations = map[string]string{"example.com/owner": "team-a"}
				}),
				exp("cluster03", 2, func(e *Export) {
					e.Labels = map[string]string{"app": "hello", "tier": "web"}
				}),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02", "cluster03"}, func(im *Import) {
				im.Labels = map[string]string{"app": "hello", "tier": "web"}
				im.Annotations = map[string]string{"example.com/owner": "team-a"}
			}),
			conflicts: map[string][]R{
				"cluster01": {labelsC, annotsC},
				"cluster02": {labelsC, annotsC},
				"cluster03": {labelsC, annotsC},
			},
			messages: map[string][]string{
				"cluster02": {"exportedLabels: this export differs from the oldest export on keys extra, tier"},
				"cluster03": {"exportedAnnotations: this export differs from the oldest export on keys example.com/owner"},
			},
		},
		{
			name: "empty and nil label maps are equal",
			exports: []Export{
				exp("cluster01", 0, func(e *Export) { e.Labels = map[string]string{} }),
				exp("cluster02", 1),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Labels = map[string]string{}
			}),
		},
		{
			name: "session affinity and its config",
			exports: []Export{
				exp("cluster01", 0, func(e *Export) {
					e.SessionAffinity = corev1.ServiceAffinityClientIP
					e.SessionAffinityConfig = timeout(10800)
				}),
				exp("cluster02", 1, func(e *Export) {
					e.SessionAffinity = corev1.ServiceAffinityClientIP
					e.SessionAffinityConfig = timeout(60)
				}),
				exp("cluster03", 2),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02", "cluster03"}, func(im *Import) {
				im.SessionAffinity = corev1.ServiceAffinityClientIP
				im.SessionAffinityConfig = timeout(10800)
			}),
			conflicts: map[string][]R{
				"cluster01": {affC, affCfgC},
				"cluster02": {affC, affCfgC},
				"cluster03": {affC, affCfgC},
			},
			messages: map[string][]string{
				"cluster02": {"sessionAffinityConfig: this export has clientIP.timeoutSeconds=60, the oldest export has clientIP.timeoutSeconds=10800"},
				"cluster03": {"sessionAffinity: this export has None, the oldest export has ClientIP"},
			},
		},
		{
			name: "traffic distribution",
			exports: []Export{
				exp("cluster01", 0),
				exp("cluster02", 1, func(e *Export) { e.TrafficDistribution = ptr.To("PreferClose") }),
			},
			winner:    "cluster01",
			want:      wantImport([]string{"cluster01", "cluster02"}),
			conflicts: map[string][]R{"cluster01": {tdC}, "cluster02": {tdC}},
			messages:  map[string][]string{"cluster02": {`this export has "PreferClose", the oldest export has <unset>`}},
		},
		{
			name: "IP families compare as sets; the oldest order is kept",
			exports: []Export{
				exp("cluster01", 0, func(e *Export) { e.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol} }),
				exp("cluster02", 1, func(e *Export) { e.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol} }),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol}
			}),
		},
		{
			name: "IP family conflict",
			exports: []Export{
				exp("cluster01", 0),
				exp("cluster02", 1, func(e *Export) { e.IPFamilies = []corev1.IPFamily{corev1.IPv6Protocol} }),
			},
			winner:    "cluster01",
			want:      wantImport([]string{"cluster01", "cluster02"}),
			conflicts: map[string][]R{"cluster01": {famC}, "cluster02": {famC}},
			messages:  map[string][]string{"cluster02": {"ipFamilies: this export has [IPv6], the oldest export has [IPv4]"}},
		},
		{
			name: "several conflicts are reported in a fixed order",
			exports: []Export{
				exp("cluster01", 0),
				exp("cluster02", 1, withType(headless), withPorts(port("http", 81)), func(e *Export) {
					e.Labels = map[string]string{"a": "b"}
				}),
			},
			winner: "cluster01",
			want:   wantImport([]string{"cluster01", "cluster02"}),
			conflicts: map[string][]R{
				"cluster01": {portC, typeC, labelsC},
				"cluster02": {portC, typeC, labelsC},
			},
		},
		{
			name: "headless without ports",
			exports: []Export{
				exp("cluster01", 0, withType(headless), withPorts()),
				exp("cluster02", 1, withType(headless), withPorts()),
			},
			winner: "cluster01",
			want: wantImport([]string{"cluster01", "cluster02"}, func(im *Import) {
				im.Type = headless
				im.Ports = nil
			}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Aggregate("demo", "hello", tt.exports)
			if err != nil {
				t.Fatalf("Aggregate: %v", err)
			}
			if got.Winner != tt.winner {
				t.Errorf("winner = %q, want %q", got.Winner, tt.winner)
			}
			if !reflect.DeepEqual(got.Import, tt.want) {
				t.Errorf("import:\n got %+v\nwant %+v", got.Import, tt.want)
			}
			wantConflicts := tt.conflicts
			if wantConflicts == nil {
				wantConflicts = map[string][]R{}
			}
			if r := reasons(got); !reflect.DeepEqual(r, wantConflicts) {
				t.Errorf("conflict reasons = %v, want %v", r, wantConflicts)
			}
			for cluster, subs := range tt.messages {
				var msgs []string
				for _, c := range got.Conflicts[cluster] {
					msgs = append(msgs, c.Message)
				}
				all := strings.Join(msgs, "\n")
				for _, s := range subs {
					if !strings.Contains(all, s) {
						t.Errorf("messages of %s do not contain %q:\n%s", cluster, s, all)
					}
				}
			}
			for cluster, cs := range got.Conflicts {
				for _, c := range cs {
					if !strings.HasPrefix(c.Message, c.Field+": ") {
						t.Errorf("%s: message %q does not start with its field %q", cluster, c.Message, c.Field)
					}
				}
			}
		})
	}
}

// The result must not depend on the order in which records were listed: every member
// lists the broker on its own and must write the same ServiceImport.
func TestAggregateOrderIndependent(t *testing.T) {
	exports := []Export{
		exp("cluster01", 3, withPorts(port("http", 8080), port("grpc", 9000))),
		exp("cluster02", 1, withPorts(port("http", 80), port("admin", 9000))),
		exp("cluster03", 1, withType(headless), withPorts(port("web", 80), port("https", 443)), func(e *Export) {
			e.Labels = map[string]string{"x": "y"}
		}),
		exp("cluster04", 2, withPorts(mcsv1beta1.ServicePort{Name: "https", Port: 443}), func(e *Export) {
			e.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol, corev1.IPv6Protocol}
			e.TrafficDistribution = ptr.To("PreferClose")
		}),
		exp("cluster05", 1, withPorts(port("metrics", 9090))),
	}
	want, err := Aggregate("demo", "hello", exports)
	if err != nil {
		t.Fatal(err)
	}
	if want.Winner != "cluster02" {
		t.Fatalf("winner = %q, want cluster02", want.Winner)
	}
	wantPorts := []mcsv1beta1.ServicePort{port("http", 80), port("https", 443), port("admin", 9000), port("metrics", 9090)}
	if !reflect.DeepEqual(want.Import.Ports, wantPorts) {
		t.Fatalf("ports = %v, want %v", want.Import.Ports, wantPorts)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 200 {
		shuffled := slices.Clone(exports)
		rng.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		got, err := Aggregate("demo", "hello", shuffled)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("shuffle %d gives a different result:\n got %+v\nwant %+v", i, got, want)
		}
	}
}

// One member's bad export is dropped with its reason; a good export from another member
// still makes the import, exactly as if the bad one did not exist.
func TestAggregateDropsBadExports(t *testing.T) {
	tests := []struct {
		name string
		bad  []Export
		want string
	}{
		{"other name", []Export{exp("cluster02", 0, func(e *Export) { e.Name = "other" })}, "is for demo/other, not demo/hello"},
		{"other namespace", []Export{exp("cluster02", 0, func(e *Export) { e.Namespace = "x" })}, "is for x/hello"},
		{"duplicate cluster", []Export{exp("cluster02", 0), exp("cluster02", 1)}, `cluster "cluster02" has 2 records of demo/hello`},
		{"invalid cluster", []Export{exp("Cluster_1", 0)}, "cluster:"},
		{"unknown type", []Export{exp("cluster02", 0, withType("LoadBalancer"))}, "type:"},
		{"no type", []Export{exp("cluster02", 0, withType(""))}, "type:"},
		{"port out of range", []Export{exp("cluster02", 0, withPorts(port("http", 0)))}, "out of range"},
		{"bad protocol", []Export{exp("cluster02", 0, withPorts(mcsv1beta1.ServicePort{Name: "x", Protocol: "ICMP", Port: 1}))}, "unsupported protocol"},
		{"duplicate port name", []Export{exp("cluster02", 0, withPorts(port("http", 80), port("http", 81)))}, "duplicate name"},
		{"duplicate port number", []Export{exp("cluster02", 0, withPorts(port("a", 80), port("b", 80)))}, "duplicate protocol and number"},
		{"invalid label", []Export{exp("cluster02", 0, func(e *Export) { e.Labels = map[string]string{"bad key!": "v"} })}, "exportedLabels"},
		{"invalid label value", []Export{exp("cluster02", 0, func(e *Export) { e.Labels = map[string]string{"k": strings.Repeat("v", 64)} })}, "exportedLabels"},
		{"invalid annotation", []Export{exp("cluster02", 0, func(e *Export) { e.Annotations = map[string]string{"/x": "v"} })}, "exportedAnnotations"},
		{"invalid affinity", []Export{exp("cluster02", 0, func(e *Export) { e.SessionAffinity = "Sticky" })}, "sessionAffinity"},
		{"IP as host", []Export{exp("cluster02", 0, withHost("192.168.0.199"))}, `host: "192.168.0.199" is an IP address`},
		{"wildcard host", []Export{exp("cluster02", 0, withHost("*.abc.com"))}, "is not a valid DNS name"},
		{"host too long", []Export{exp("cluster02", 0, withHost(strings.Repeat("a.", 127)+"com"))}, "must be no more than 253 characters"},
	}
	good := exp("cluster01", 0)
	want, err := Aggregate("demo", "hello", []Export{good})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Aggregate("demo", "hello", append(slices.Clone(tt.bad), good))
			if err != nil {
				t.Fatalf("a bad export blocked the good one: %v", err)
			}
			if len(got.Dropped) != 1 || !strings.Contains(got.Dropped[0].Reason, tt.want) {
				t.Fatalf("dropped = %+v, want one entry containing %q", got.Dropped, tt.want)
			}
			if got.Dropped[0].Cluster != tt.bad[0].Cluster {
				t.Errorf("dropped cluster = %q, want %q", got.Dropped[0].Cluster, tt.bad[0].Cluster)
			}
			got.Dropped = nil
			if !reflect.DeepEqual(got, want) {
				t.Errorf("the good export's import changed:\n got %+v\nwant %+v", got, want)
			}
			// Alone, the bad export makes no import.
			if res, err := Aggregate("demo", "hello", tt.bad); !errors.Is(err, ErrNoExports) || len(res.Dropped) == 0 {
				t.Errorf("Aggregate(bad only) = %+v, %v; want ErrNoExports with the drop", res, err)
			}
		})
	}
	if _, err := Aggregate("demo", "hello", nil); !errors.Is(err, ErrNoExports) {
		t.Errorf("Aggregate(nil) = %v, want ErrNoExports", err)
	}
}

// The result shares no memory with the input: the agent keeps both in caches.
func TestAggregateDoesNotAlias(t *testing.T) {
	in := []Export{exp("cluster01", 0, func(e *Export) {
		e.Ports = []mcsv1beta1.ServicePort{{Name: "http", Port: 80, AppProtocol: ptr.To("http")}}
		e.Labels = map[string]string{"a": "b"}
		e.SessionAffinityConfig = &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](5)}}
	})}
	res, err := Aggregate("demo", "hello", in)
	if err != nil {
		t.Fatal(err)
	}
	res.Import.Labels["a"] = "changed"
	*res.Import.Ports[0].AppProtocol = "changed"
	*res.Import.SessionAffinityConfig.ClientIP.TimeoutSeconds = 1
	*res.Import.InternalTrafficPolicy = "changed"
	res.Import.IPFamilies[0] = "changed"
	e := in[0]
	if e.Labels["a"] != "b" || *e.Ports[0].AppProtocol != "http" || *e.SessionAffinityConfig.ClientIP.TimeoutSeconds != 5 ||
		*e.InternalTrafficPolicy != corev1.ServiceInternalTrafficPolicyCluster || e.IPFamilies[0] != corev1.IPv4Protocol {
		t.Errorf("changing the result changed the input: %+v", e)
	}
	if e.Ports[0].Protocol != "" {
		t.Errorf("Aggregate normalized the caller's port in place: %+v", e.Ports[0])
	}
}

func TestSplitByHost(t *testing.T) {
	pods, ingress := exp("cluster01", 0), exp("cluster02", 0, withHost("abc.com"))
	addresses, hosts := SplitByHost([]Export{ingress, pods})
	if len(addresses) != 1 || addresses[0].Cluster != "cluster01" || len(hosts) != 1 || hosts[0].Cluster != "cluster02" {
		t.Fatalf("SplitByHost = %v, %v; want cluster01 by address and cluster02 by host", addresses, hosts)
	}
}
