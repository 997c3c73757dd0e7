package globalservice

import (
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	discoveryv1 "k8s.io/api/discovery/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func svc(annotations map[string]string, ports ...corev1.ServicePort) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Name: "rebel-base", Namespace: "demo", Annotations: annotations},
		Spec:       corev1.ServiceSpec{Ports: ports},
	}
}

func TestOptionsOf(t *testing.T) {
	tests := []struct {
		name        string
		annotations map[string]string
		want        Options
		problem     bool
	}{
		{"plain Service", nil, Options{Shared: true, Affinity: AffinityNone}, false},
		{"strait global", map[string]string{AnnotationGlobal: "true"}, Options{Global: true, Shared: true, Affinity: AffinityNone}, false},
		{"cilium global, not shared, local", map[string]string{CiliumGlobal: "true", CiliumShared: "false", CiliumAffinity: "local"},
			Options{Global: true, Shared: false, Affinity: AffinityLocal}, false},
		{"strait wins over cilium", map[string]string{AnnotationGlobal: "false", CiliumGlobal: "true"}, Options{Shared: true, Affinity: AffinityNone}, false},
		{"case and spaces", map[string]string{AnnotationGlobal: " TRUE ", AnnotationAffinity: "Local"}, Options{Global: true, Shared: true, Affinity: AffinityLocal}, false},
		{"remote is reported", map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "remote"}, Options{Global: true, Shared: true, Affinity: AffinityNone}, true},
		{"unknown affinity", map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "nearest"}, Options{Global: true, Shared: true, Affinity: AffinityNone}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := OptionsOf(svc(tt.annotations))
			if (got.Problem != "") != tt.problem {
				t.Errorf("problem = %q, want one: %v", got.Problem, tt.problem)
			}
			got.Problem = ""
			if got != tt.want {
				t.Errorf("OptionsOf = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func remoteSlice(ready bool, ports ...discoveryv1.EndpointPort) *discoveryv1.EndpointSlice {
	return &discoveryv1.EndpointSlice{
		AddressType: discoveryv1.AddressTypeIPv4,
		Endpoints:   []discoveryv1.Endpoint{{Addresses: []string{"10.2.0.5"}, Conditions: discoveryv1.EndpointConditions{Ready: ptr.To(ready)}}},
		Ports:       ports,
	}
}

func port(name string, p int32, proto corev1.Protocol) discoveryv1.EndpointPort {
	return discoveryv1.EndpointPort{Name: ptr.To(name), Port: ptr.To(p), Protocol: ptr.To(proto)}
}

func TestDesired(t *testing.T) {
	http := corev1.ServicePort{Name: "http", Port: 80}
	remotes := []Remote{{Cluster: "cluster02", Slices: []*discoveryv1.EndpointSlice{remoteSlice(true, port("http", 8080, corev1.ProtocolTCP))}}}
	tests := []struct {
		name       string
		svc        *corev1.Service
		localReady int
		remotes    []Remote
		wantSlices int
		wantPorts  int
		conflicts  int
	}{
		{"not global", svc(nil, http), 0, remotes, 0, 0, 0},
		{"none serves remote with local ready", svc(map[string]string{AnnotationGlobal: "true"}, http), 2, remotes, 1, 1, 0},
		{"local with local ready serves nothing remote", svc(map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "local"}, http), 1, remotes, 0, 0, 0},
		{"local without local ready serves remote", svc(map[string]string{AnnotationGlobal: "true", AnnotationAffinity: "local"}, http), 0, remotes, 1, 1, 0},
		{"a port the local Service lacks is not routed", svc(map[string]string{AnnotationGlobal: "true"}, corev1.ServicePort{Name: "grpc", Port: 9090}), 0, remotes, 0, 0, 0},
		{"same name, other protocol is a conflict", svc(map[string]string{AnnotationGlobal: "true"}, corev1.ServicePort{Name: "http", Port: 80, Protocol: corev1.ProtocolUDP}), 0, remotes, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			slices, conflicts := Desired(tt.svc, OptionsOf(tt.svc), tt.localReady, tt.remotes)
			if len(slices) != tt.wantSlices || len(conflicts) != tt.conflicts {
				t.Fatalf("got %d slices, conflicts %v; want %d slices, %d conflicts", len(slices), conflicts, tt.wantSlices, tt.conflicts)
			}
			for _, s := range slices {
				if len(s.Ports) != tt.wantPorts {
					t.Errorf("ports %v", s.Ports)
				}
				if s.Labels[discoveryv1.LabelServiceName] != "rebel-base" || s.Labels["multicluster.kubernetes.io/source-cluster"] != "cluster02" {
					t.Errorf("labels %v: the slice must belong to the local Service and name its source", s.Labels)
				}
				if !strings.HasPrefix(s.Name, "global-rebel-base-cluster02-ipv4-") || len(s.Name) > 63 {
					t.Errorf("name %q", s.Name)
				}
			}
		})
	}
}
