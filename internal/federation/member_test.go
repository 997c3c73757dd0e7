package federation

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"

	"github.com/strait-io/strait/internal/clusterset"
)

const fed = "fed"

// brokerService is a federated Service as the broker's API server stores it (defaults set,
// its own cluster IP and node ports allocated).
func brokerService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: "web", Generation: 3,
			Labels:      map[string]string{"app": "web"},
			Annotations: map[string]string{"team": "shop", AnnotationTTL: "30", corev1.LastAppliedConfigAnnotation: "{}"}},
		Spec: corev1.ServiceSpec{
			Type:                          corev1.ServiceTypeLoadBalancer,
			Selector:                      map[string]string{"app": "web"},
			ClusterIP:                     "10.96.0.5",
			ClusterIPs:                    []string{"10.96.0.5"},
			IPFamilies:                    []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:                ptr.To(corev1.IPFamilyPolicySingleStack),
			SessionAffinity:               corev1.ServiceAffinityNone,
			ExternalTrafficPolicy:         corev1.ServiceExternalTrafficPolicyCluster,
			InternalTrafficPolicy:         ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			AllocateLoadBalancerNodePorts: ptr.To(true),
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromString("http"), NodePort: 30001},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, TargetPort: intstr.FromInt32(53), NodePort: 30002},
			},
		},
	}
}

// userService is a member's own Service of the same name, existing before federation.
func userService() *corev1.Service {
	return &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: DefaultNamespace, Name: "web", UID: "u1", Labels: map[string]string{"owner": "me"}},
		Spec: corev1.ServiceSpec{
			Type:                  corev1.ServiceTypeNodePort,
			Selector:              map[string]string{"app": "old"},
			ClusterIP:             "10.200.0.9",
			ClusterIPs:            []string{"10.200.0.9"},
			IPFamilies:            []corev1.IPFamily{corev1.IPv4Protocol},
			IPFamilyPolicy:        ptr.To(corev1.IPFamilyPolicySingleStack),
			SessionAffinity:       corev1.ServiceAffinityNone,
			ExternalTrafficPolicy: corev1.ServiceExternalTrafficPolicyCluster,
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyCluster),
			Ports:                 []corev1.ServicePort{{Name: "web", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), NodePort: 31080}},
		},
	}
}

// applyDefaults does what a member's API server does on create: allocate the cluster IP and
// node ports.
func applyDefaults(svc *corev1.Service) *corev1.Service {
	out := svc.DeepCopy()
	out.UID = "created"
	if out.Spec.ClusterIP == "" {
		out.Spec.ClusterIP, out.Spec.ClusterIPs = "10.200.0.77", []string{"10.200.0.77"}
	}
	out.Spec.IPFamilies = []corev1.IPFamily{corev1.IPv4Protocol}
	out.Spec.IPFamilyPolicy = ptr.To(corev1.IPFamilyPolicySingleStack)
	for i := range out.Spec.Ports {
		if out.Spec.Ports[i].NodePort == 0 {
			out.Spec.Ports[i].NodePort = int32(32000 + i)
		}
	}
	return out
}

func withLabels(svc *corev1.Service, kv ...string) *corev1.Service {
	out := svc.DeepCopy()
	if out.Labels == nil {
		out.Labels = map[string]string{}
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out.Labels[kv[i]] = kv[i+1]
	}
	return out
}

func TestPlan(t *testing.T) {
	created := applyDefaults(MemberService(brokerService(), nil, fed))
	adopted := MemberService(brokerService(), userService(), fed)
	deleting := brokerService()
	deleting.DeletionTimestamp = ptr.To(metav1.Now())
	onlyOther := brokerService()
	onlyOther.Annotations[AnnotationClusters] = "c9"
	invalid := brokerService()
	invalid.Annotations[AnnotationClusters] = "c1,NOT VALID"
	changed := brokerService()
	changed.Spec.Selector = map[string]string{"app": "web2"}
	mcsDerived := withLabels(userService(), clusterset.ManagedByLabel, clusterset.ManagedByValue)
	otherFed := withLabels(userService(), clusterset.ManagedByLabel, clusterset.ManagedByValue, LabelFederation, "other")
	emptySel := brokerService()
	emptySel.Annotations[AnnotationClusters] = " , "
	localDeleting := created.DeepCopy()
	localDeleting.DeletionTimestamp = ptr.To(metav1.Now())

	for _, tc := range []struct {
		name     string
		in       PlanInput
		want     Action
		isBroker bool
	}{
		{name: "absent: create", in: PlanInput{Broker: brokerService()}, want: ActionCreate},
		{name: "user's Service: adopt", in: PlanInput{Broker: brokerService(), Local: userService()}, want: ActionAdopt},
		{name: "created and in line: nothing", in: PlanInput{Broker: brokerService(), Local: created}, want: ActionNone},
		{name: "adopted and in line: nothing", in: PlanInput{Broker: brokerService(), Local: adopted}, want: ActionNone},
		{name: "broker spec changed: update", in: PlanInput{Broker: changed, Local: created}, want: ActionUpdate},
		{name: "broker Service gone: delete what was created", in: PlanInput{Local: created}, want: ActionDelete},
		{name: "broker Service gone: release what was adopted, never delete it", in: PlanInput{Local: adopted}, want: ActionRelease},
		{name: "deselected: release what was adopted", in: PlanInput{Broker: onlyOther, Local: adopted}, want: ActionRelease},
		{name: "empty selection: an error, nothing deleted", in: PlanInput{Broker: emptySel, Local: created}, want: ActionNone},
		{name: "empty selection: nothing released", in: PlanInput{Broker: emptySel, Local: adopted}, want: ActionNone},
		{name: "broker Service being deleted: delete", in: PlanInput{Broker: deleting, Local: created}, want: ActionDelete},
		{name: "deselected: delete", in: PlanInput{Broker: onlyOther, Local: created}, want: ActionDelete},
		{name: "deselected: a user's Service stays", in: PlanInput{Broker: onlyOther, Local: userService()}, want: ActionNone},
		{name: "broker gone: a user's Service stays", in: PlanInput{Local: userService()}, want: ActionNone},
		{name: "broker gone: another component's Service stays", in: PlanInput{Local: mcsDerived}, want: ActionNone},
		{name: "another Strait component's Service: conflict", in: PlanInput{Broker: brokerService(), Local: mcsDerived}, want: ActionConflict},
		{name: "another federation's Service: conflict", in: PlanInput{Broker: brokerService(), Local: otherFed}, want: ActionConflict},
		{name: "invalid selection: nothing, not even a delete", in: PlanInput{Broker: invalid, Local: created}, want: ActionNone},
		{name: "local being deleted: wait", in: PlanInput{Broker: brokerService(), Local: localDeleting}, want: ActionNone},
		{name: "this cluster is the broker: never written", in: PlanInput{Broker: brokerService(), Local: brokerService(), LocalIsBroker: true}, want: ActionNone},
		{name: "this cluster is the broker, Service gone: nothing", in: PlanInput{Local: created, LocalIsBroker: true}, want: ActionNone},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.in.Federation, tc.in.Cluster = fed, "c1"
			d := Plan(tc.in)
			if d.Action != tc.want {
				t.Fatalf("action %s (%s), want %s", d.Action, d.Reason, tc.want)
			}
			switch d.Action {
			case ActionCreate, ActionAdopt, ActionUpdate:
				if d.Desired == nil || d.Desired.Labels[clusterset.ManagedByLabel] != clusterset.ManagedByValue || d.Desired.Labels[LabelFederation] != fed {
					t.Errorf("desired Service lacks Strait's labels: %+v", d.Desired)
				}
			case ActionConflict:
				if d.Reason == "" {
					t.Error("a conflict needs a reason")
				}
			case ActionRelease:
				if d.Desired == nil || d.Desired.Labels[clusterset.ManagedByLabel] != "" || d.Desired.Labels[LabelFederation] != "" || d.Desired.Labels[LabelAdopted] != "" {
					t.Errorf("released Service keeps Strait's labels: %+v", d.Desired)
				}
				if d.Desired.Spec.ClusterIP != tc.in.Local.Spec.ClusterIP || d.Desired.Name != tc.in.Local.Name {
					t.Errorf("released Service changed: %+v", d.Desired)
				}
			}
		})
	}
}

func TestAdoptionKeepsAllocationsAndAlignsSpec(t *testing.T) {
	b, u := brokerService(), userService()
	got := MemberService(b, u, fed)
	if got.Spec.ClusterIP != "10.200.0.9" || len(got.Spec.ClusterIPs) != 1 || got.Spec.ClusterIPs[0] != "10.200.0.9" {
		t.Errorf("cluster IP %q %v: the member's must be kept", got.Spec.ClusterIP, got.Spec.ClusterIPs)
	}
	if got.Spec.Type != corev1.ServiceTypeLoadBalancer || got.Spec.Selector["app"] != "web" || len(got.Spec.Ports) != 2 {
		t.Errorf("spec not in line with the broker: %+v", got.Spec)
	}
	// Node ports are the broker's, so the port DNS clients were given reaches every shard.
	if got.Spec.Ports[0].NodePort != 30001 || got.Spec.Ports[1].NodePort != 30002 {
		t.Errorf("node ports %d, %d; want the broker's 30001, 30002", got.Spec.Ports[0].NodePort, got.Spec.Ports[1].NodePort)
	}
	if got.Labels[LabelAdopted] != "true" || got.Labels["owner"] != "me" || got.Labels["app"] != "web" {
		t.Errorf("labels %v: adopted, the member's and the broker's", got.Labels)
	}
	if got.Annotations["team"] != "shop" || got.Annotations[AnnotationTTL] != "" || got.Annotations[corev1.LastAppliedConfigAnnotation] != "" {
		t.Errorf("annotations %v: the broker's, without Strait's and kubectl's", got.Annotations)
	}
	if u.Labels[LabelAdopted] != "" || u.Spec.Type != corev1.ServiceTypeNodePort {
		t.Error("MemberService modified its input")
	}
	// Running the plan again on what the API server stored changes nothing.
	if d := Plan(PlanInput{Federation: fed, Cluster: "c1", Broker: b, Local: applyDefaults(got)}); d.Action != ActionNone {
		t.Errorf("second round: %s", d.Action)
	}
}

// A member refuses a broker node port that is taken there: it keeps its own for that port
// only, records the refusal, and plans no further write for it.
func TestRefusedNodePortKeepsTheMembersOwn(t *testing.T) {
	b, u := brokerService(), userService()
	want := WithRefusedNodePorts(MemberService(b, u, fed), u, []int32{30001})
	if want.Spec.Ports[0].NodePort != 31080 || want.Spec.Ports[1].NodePort != 30002 {
		t.Errorf("node ports %d, %d; want the member's 31080 for the refused 30001, the broker's 30002", want.Spec.Ports[0].NodePort, want.Spec.Ports[1].NodePort)
	}
	if want.Annotations[AnnotationRefusedNodePorts] != "30001" {
		t.Errorf("annotation %q", want.Annotations[AnnotationRefusedNodePorts])
	}
	again := MemberService(b, applyDefaults(want), fed)
	if again.Spec.Ports[0].NodePort != 31080 {
		t.Errorf("a refused port is tried again: %d", again.Spec.Ports[0].NodePort)
	}
	if d := Plan(PlanInput{Federation: fed, Cluster: "c1", Broker: b, Local: applyDefaults(want)}); d.Action != ActionNone {
		t.Errorf("after a refusal the plan is %s, want None", d.Action)
	}
	if r := Released(want); r.Annotations[AnnotationRefusedNodePorts] != "" {
		t.Error("a released Service keeps Strait's annotation")
	}
}

func TestCreatedServiceLeavesAllocationToTheMember(t *testing.T) {
	got := MemberService(brokerService(), nil, fed)
	if got.Spec.ClusterIP != "" || got.Spec.ClusterIPs != nil || got.Spec.IPFamilies != nil || got.Spec.IPFamilyPolicy != nil {
		t.Errorf("allocations copied from the broker: %+v", got.Spec)
	}
	for i, p := range got.Spec.Ports {
		if p.NodePort != brokerService().Spec.Ports[i].NodePort {
			t.Errorf("node port %d, want the broker's %d", p.NodePort, brokerService().Spec.Ports[i].NodePort)
		}
	}
	if got.Labels[LabelAdopted] != "" {
		t.Error("a created Service is not adopted")
	}
	headless := brokerService()
	headless.Spec.Type, headless.Spec.ClusterIP = corev1.ServiceTypeClusterIP, corev1.ClusterIPNone
	if got := MemberService(headless, nil, fed); got.Spec.ClusterIP != corev1.ClusterIPNone || got.Spec.ExternalTrafficPolicy != "" {
		t.Errorf("headless: %+v", got.Spec)
	}
	ext := brokerService()
	ext.Spec = corev1.ServiceSpec{Type: corev1.ServiceTypeExternalName, ExternalName: "db.example.com"}
	if got := MemberService(ext, userService(), fed); got.Spec.ClusterIP != "" || got.Spec.ExternalName != "db.example.com" || got.Spec.InternalTrafficPolicy != nil {
		t.Errorf("ExternalName: %+v", got.Spec)
	}
}

func TestTypeChangeToClusterIPDropsNodePorts(t *testing.T) {
	b := brokerService()
	b.Spec.Type = corev1.ServiceTypeClusterIP
	b.Spec.ExternalTrafficPolicy, b.Spec.AllocateLoadBalancerNodePorts = "", nil
	got := MemberService(b, userService(), fed)
	for _, p := range got.Spec.Ports {
		if p.NodePort != 0 {
			t.Errorf("ClusterIP Service with node port %d", p.NodePort)
		}
	}
	if got.Spec.ExternalTrafficPolicy != "" {
		t.Error("ClusterIP Service with an external traffic policy")
	}
}

func TestInLineIgnoresUnrelatedFields(t *testing.T) {
	have := applyDefaults(MemberService(brokerService(), nil, fed))
	have.Labels["extra"] = "kept"
	have.Annotations["extra"] = "kept"
	have.Status.LoadBalancer.Ingress = []corev1.LoadBalancerIngress{{IP: "1.2.3.4"}}
	have.CreationTimestamp = metav1.NewTime(time.Now())
	if !InLine(have, MemberService(brokerService(), have, fed)) {
		t.Error("extra labels, annotations and status must not make a Service out of line")
	}
	b := brokerService()
	b.Labels["app"] = "web-v2"
	if InLine(have, MemberService(b, have, fed)) {
		t.Error("a changed broker label must")
	}
}
