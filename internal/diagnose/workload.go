package diagnose

import (
	"encoding/json"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/utils/ptr"
	mcsv1beta1 "sigs.k8s.io/mcs-api/pkg/apis/v1beta1"
)

// Label marks everything the check creates, and the role of its pods.
const (
	RoleLabel = "diagnose.strait.io/role"
	EchoRole  = "echo"
	ProbeRole = "probe"
)

var labels = map[string]string{"app.kubernetes.io/name": "strait-diagnose", "app.kubernetes.io/managed-by": "strait-diagnose"}

func meta(name string, extra map[string]string) metav1.ObjectMeta {
	l := map[string]string{}
	for k, v := range labels {
		l[k] = v
	}
	for k, v := range extra {
		l[k] = v
	}
	return metav1.ObjectMeta{Name: name, Namespace: Namespace, Labels: l}
}

// NamespaceObject is the check's namespace in every member.
func NamespaceObject() *corev1.Namespace {
	m := meta(Namespace, nil)
	m.Namespace = ""
	return &corev1.Namespace{ObjectMeta: m}
}

// Owns reports whether ns is a namespace diagnose made (it carries diagnose's labels), so a
// namespace of the same name that someone else made is never deleted.
func Owns(ns *corev1.Namespace) bool {
	for k, v := range labels {
		if ns.Labels[k] != v {
			return false
		}
	}
	return true
}

// EchoPod answers HTTP with the member's cluster ID.
func EchoPod(image, clusterID string) *corev1.Pod {
	p := pod("echo", image, EchoRole, []string{"diagnose", "echo", "--cluster-id", clusterID, "--port", "8080"})
	c := &p.Spec.Containers[0]
	c.Ports = []corev1.ContainerPort{{Name: "http", ContainerPort: EchoPort}}
	c.ReadinessProbe = &corev1.Probe{
		ProbeHandler:  corev1.ProbeHandler{HTTPGet: &corev1.HTTPGetAction{Path: "/", Port: intstr.FromInt32(EchoPort)}},
		PeriodSeconds: 2,
	}
	return p
}

// EchoService is the member's exported Service in front of its echo pod.
func EchoService(clusterID string) *corev1.Service {
	return &corev1.Service{
		ObjectMeta: meta(ServiceName(clusterID), nil),
		Spec: corev1.ServiceSpec{
			Selector: map[string]string{RoleLabel: EchoRole},
			Ports:    []corev1.ServicePort{{Name: "http", Port: ServicePort, TargetPort: intstr.FromInt32(EchoPort), Protocol: corev1.ProtocolTCP}},
		},
	}
}

// Export exports the member's Service to the clusterset.
func Export(clusterID string) *mcsv1beta1.ServiceExport {
	return &mcsv1beta1.ServiceExport{ObjectMeta: meta(ServiceName(clusterID), nil)}
}

// ProbePod tries every target once and prints one Answer per line.
func ProbePod(image string, targets []Target) (*corev1.Pod, error) {
	data, err := json.Marshal(targets)
	if err != nil {
		return nil, err
	}
	p := pod("probe", image, ProbeRole, []string{"diagnose", "probe"})
	p.Spec.RestartPolicy = corev1.RestartPolicyNever
	p.Spec.Containers[0].Env = []corev1.EnvVar{{Name: TargetsEnv, Value: string(data)}}
	return p, nil
}

// pod is a pod of Strait's image that meets the restricted Pod Security Standard.
func pod(name, image, role string, args []string) *corev1.Pod {
	return &corev1.Pod{
		ObjectMeta: meta(name, map[string]string{RoleLabel: role}),
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken:  ptr.To(false),
			TerminationGracePeriodSeconds: ptr.To(int64(1)),
			SecurityContext: &corev1.PodSecurityContext{
				RunAsNonRoot: ptr.To(true), RunAsUser: ptr.To(int64(65532)),
				SeccompProfile: &corev1.SeccompProfile{Type: corev1.SeccompProfileTypeRuntimeDefault},
			},
			Containers: []corev1.Container{{
				Name: name, Image: image, Args: args,
				ImagePullPolicy: corev1.PullIfNotPresent,
				SecurityContext: &corev1.SecurityContext{
					AllowPrivilegeEscalation: ptr.To(false), ReadOnlyRootFilesystem: ptr.To(true),
					Capabilities: &corev1.Capabilities{Drop: []corev1.Capability{"ALL"}},
				},
			}},
		},
	}
}
