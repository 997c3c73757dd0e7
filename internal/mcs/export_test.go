package mcs

import (
	"reflect"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

func service(mutate func(*corev1.Service)) *corev1.Service {
	svc := &corev1.Service{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "hello"},
		Spec: corev1.ServiceSpec{
			Type:      corev1.ServiceTypeClusterIP,
			ClusterIP: "10.96.0.10",
			Ports: []corev1.ServicePort{
				{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, TargetPort: intstr.FromInt32(8080), AppProtocol: ptr.To("http")},
				{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53, NodePort: 30053},
			},
			SessionAffinity:       corev1.ServiceAffinityClientIP,
			SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](10800)}},
			InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
			TrafficDistribution:   ptr.To("PreferClose"),
			IPFamilies:            []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol},
		},
	}
	if mutate != nil {
		mutate(svc)
	}
	return svc
}

func TestExportFromService(t *testing.T) {
	se := &mcsv1beta1.ServiceExport{
		ObjectMeta: metav1.ObjectMeta{Namespace: "demo", Name: "hello"},
		Spec: mcsv1beta1.ServiceExportSpec{
			ExportedLabels:      map[string]string{"app": "hello"},
			ExportedAnnotations: map[string]string{"example.com/team": "a"},
		},
	}
	svc := service(nil)
	got := ExportFromService("cluster01", svc, se)
	want := Export{
		Cluster:   "cluster01",
		Namespace: "demo",
		Name:      "hello",
		Type:      mcsv1beta1.ClusterSetIP,
		Ports: []mcsv1beta1.ServicePort{
			{Name: "http", Protocol: corev1.ProtocolTCP, Port: 80, AppProtocol: ptr.To("http")},
			{Name: "dns", Protocol: corev1.ProtocolUDP, Port: 53},
		},
		SessionAffinity:       corev1.ServiceAffinityClientIP,
		SessionAffinityConfig: &corev1.SessionAffinityConfig{ClientIP: &corev1.ClientIPConfig{TimeoutSeconds: ptr.To[int32](10800)}},
		InternalTrafficPolicy: ptr.To(corev1.ServiceInternalTrafficPolicyLocal),
		TrafficDistribution:   ptr.To("PreferClose"),
		IPFamilies:            []corev1.IPFamily{corev1.IPv6Protocol, corev1.IPv4Protocol},
		Labels:                map[string]string{"app": "hello"},
		Annotations:           map[string]string{"example.com/team": "a"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ExportFromService:\n got %+v\nwant %+v", got, want)
	}
	if err := got.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}

	// The export owns its data: the informer cache's objects must not change under it.
	*svc.Spec.Ports[0].AppProtocol = "changed"
	*svc.Spec.SessionAffinityConfig.ClientIP.TimeoutSeconds = 1
	*svc.Spec.TrafficDistribution = "changed"
	svc.Spec.IPFamilies[0] = "changed"
	se.Spec.ExportedLabels["app"] = "changed"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("export aliases the Service or ServiceExport: %+v", got)
	}
}

func TestExportFromServiceHeadlessAndDefaults(t *testing.T) {
	svc := service(func(s *corev1.Service) {
		s.Spec.ClusterIP = corev1.ClusterIPNone
		s.Spec.Ports = []corev1.ServicePort{{Port: 5432}}
		s.Spec.SessionAffinity = ""
		s.Spec.SessionAffinityConfig = nil
	})
	got := ExportFromService("cluster02", svc, nil)
	if got.Type != mcsv1beta1.Headless {
		t.Errorf("type = %q, want Headless", got.Type)
	}
	if want := []mcsv1beta1.ServicePort{{Protocol: corev1.ProtocolTCP, Port: 5432}}; !reflect.DeepEqual(got.Ports, want) {
		t.Errorf("ports = %+v, want %+v", got.Ports, want)
	}
	if got.SessionAffinity != corev1.ServiceAffinityNone {
		t.Errorf("sessionAffinity = %q, want None", got.SessionAffinity)
	}
	if got.Labels != nil || got.Annotations != nil {
		t.Errorf("labels/annotations without a ServiceExport: %v %v", got.Labels, got.Annotations)
	}
	if !got.Created.IsZero() {
		t.Errorf("Created = %v, want zero (the broker assigns it)", got.Created)
	}
}

func TestPortsFromServiceEmpty(t *testing.T) {
	if p := PortsFromService(nil); p != nil {
		t.Errorf("PortsFromService(nil) = %v", p)
	}
	if p := PortsFromService(service(func(s *corev1.Service) { s.Spec.Ports = nil })); p != nil {
		t.Errorf("no ports = %v", p)
	}
}

func TestConflictCondition(t *testing.T) {
	none := ConflictCondition(nil, 7)
	if none.Type != "Conflict" || none.Status != metav1.ConditionFalse || none.Reason != "NoConflicts" || none.ObservedGeneration != 7 {
		t.Errorf("no conflicts: %+v", none)
	}

	res, err := Aggregate("demo", "hello", []Export{
		exp("cluster01", 0),
		exp("cluster02", 1, withType(headless), withPorts(port("http", 81))),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := ConflictCondition(res.Conflicts["cluster02"], 3)
	if c.Status != metav1.ConditionTrue || c.Reason != "PortConflict,TypeConflict" || c.ObservedGeneration != 3 {
		t.Errorf("conflicts: %+v", c)
	}
	for _, s := range []string{"ports: ", "type: this export has Headless"} {
		if !strings.Contains(c.Message, s) {
			t.Errorf("message %q does not contain %q", c.Message, s)
		}
	}

	// Repeated reasons collapse; an overlong message is cut to the API limit.
	long := strings.Repeat("x", maxConditionMessage)
	c = ConflictCondition([]Conflict{
		{Reason: mcsv1beta1.ServiceExportReasonLabelsConflict, Field: "exportedLabels", Message: long},
		{Reason: mcsv1beta1.ServiceExportReasonLabelsConflict, Field: "exportedLabels", Message: "y"},
	}, 1)
	if c.Reason != "LabelsConflict" || len(c.Message) > maxConditionMessage {
		t.Errorf("reason %q, message length %d", c.Reason, len(c.Message))
	}

	// meta.SetStatusCondition stamps the transition time the pure function leaves out.
	var conds []metav1.Condition
	meta.SetStatusCondition(&conds, c)
	if conds[0].LastTransitionTime.IsZero() {
		t.Errorf("SetStatusCondition left no transition time")
	}
}

func TestValidCondition(t *testing.T) {
	tests := []struct {
		name   string
		svc    *corev1.Service
		status metav1.ConditionStatus
		reason mcsv1beta1.ServiceExportConditionReason
	}{
		{"no service", nil, metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonNoService},
		{"external name", service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeExternalName }), metav1.ConditionFalse, mcsv1beta1.ServiceExportReasonInvalidServiceType},
		{"cluster IP", service(nil), metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid},
		{"headless", service(func(s *corev1.Service) { s.Spec.ClusterIP = corev1.ClusterIPNone }), metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid},
		{"load balancer", service(func(s *corev1.Service) { s.Spec.Type = corev1.ServiceTypeLoadBalancer }), metav1.ConditionTrue, mcsv1beta1.ServiceExportReasonValid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ValidCondition(tt.svc, 2)
			if c.Type != "Valid" || c.Status != tt.status || c.Reason != string(tt.reason) || c.ObservedGeneration != 2 || c.Message == "" {
				t.Errorf("got %+v, want status %s reason %s", c, tt.status, tt.reason)
			}
		})
	}
}
