package policy

import (
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func ns(name string, annotations map[string]string) *corev1.Namespace {
	return &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name, Annotations: annotations}}
}

func TestExport(t *testing.T) {
	tests := []struct {
		name      string
		namespace string
		ns        *corev1.Namespace
		want      bool
	}{
		{"ordinary namespace", "demo", ns("demo", nil), true},
		{"kube-system refused", "kube-system", ns("kube-system", nil), false},
		{"default refused", "default", nil, false},
		{"default allowed by annotation", "default", ns("default", map[string]string{AnnotationAllowExport: "true"}), true},
		{"annotation must say true", "default", ns("default", map[string]string{AnnotationAllowExport: "yes"}), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			msg, ok := Export(tt.namespace, tt.ns)
			if ok != tt.want {
				t.Errorf("Export(%s) = %v (%s), want %v", tt.namespace, ok, msg, tt.want)
			}
			if !ok && msg == "" {
				t.Error("a refusal must say why")
			}
		})
	}
}

func TestImportHonoursAllowedClusters(t *testing.T) {
	team := ns("payments", map[string]string{AnnotationAllowedClusters: "cluster01, cluster02"})
	tests := []struct {
		cluster string
		ns      *corev1.Namespace
		want    bool
	}{
		{"cluster01", team, true},
		{"cluster02", team, true},
		{"cluster03", team, false},
		{"cluster03", ns("payments", nil), true},
		{"cluster03", nil, true},
	}
	for _, tt := range tests {
		msg, ok := Import("payments", tt.cluster, tt.ns)
		if ok != tt.want {
			t.Errorf("Import(payments, %s) = %v (%s), want %v", tt.cluster, ok, msg, tt.want)
		}
	}
	if _, ok := Import("kube-system", "cluster01", ns("kube-system", nil)); ok {
		t.Error("kube-system imports allowed without the annotation")
	}
}
