package nodesim

import (
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"
)

func testPod(mutate ...func(*corev1.Pod)) *corev1.Pod {
	p := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Namespace: "ns", Name: "web", UID: "uid-1"},
		Spec: corev1.PodSpec{
			NodeName:   "node-a",
			Containers: []corev1.Container{{Name: "app", Image: "example/app:1"}},
		},
	}
	for _, m := range mutate {
		m(p)
	}
	return p
}

func condition(st corev1.PodStatus, typ corev1.PodConditionType) *corev1.PodCondition {
	for i := range st.Conditions {
		if st.Conditions[i].Type == typ {
			return &st.Conditions[i]
		}
	}
	return nil
}

func TestDesiredStatus(t *testing.T) {
	now := metav1.NewTime(time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC))
	type want struct {
		podIP           string
		ready           corev1.ConditionStatus
		readyReason     string
		containersReady corev1.ConditionStatus
		containers      []string
		initContainers  []string
	}
	tests := []struct {
		name  string
		pod   *corev1.Pod
		podIP string
		want  want
	}{
		{
			name:  "ready",
			pod:   testPod(),
			podIP: "10.1.0.2",
			want:  want{podIP: "10.1.0.2", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue, containers: []string{"app"}},
		},
		{
			name: "annotation makes it unready",
			pod: testPod(func(p *corev1.Pod) {
				p.Annotations = map[string]string{ReadyAnnotation: "false"}
			}),
			podIP: "10.1.0.2",
			want: want{podIP: "10.1.0.2", ready: corev1.ConditionFalse, readyReason: ReasonNotReady,
				containersReady: corev1.ConditionFalse, containers: []string{"app"}},
		},
		{
			name: "annotation other than false keeps it ready",
			pod: testPod(func(p *corev1.Pod) {
				p.Annotations = map[string]string{ReadyAnnotation: "true"}
			}),
			podIP: "10.1.0.2",
			want:  want{podIP: "10.1.0.2", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue, containers: []string{"app"}},
		},
		{
			name:  "host network pod has the node IP",
			pod:   testPod(func(p *corev1.Pod) { p.Spec.HostNetwork = true }),
			podIP: "192.168.50.10",
			want:  want{podIP: "192.168.50.10", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue, containers: []string{"app"}},
		},
		{
			name: "multi-container",
			pod: testPod(func(p *corev1.Pod) {
				p.Spec.Containers = append(p.Spec.Containers, corev1.Container{Name: "sidecar", Image: "example/proxy:2"})
			}),
			podIP: "10.1.0.3",
			want:  want{podIP: "10.1.0.3", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue, containers: []string{"app", "sidecar"}},
		},
		{
			name: "init containers completed and sidecar running",
			pod: testPod(func(p *corev1.Pod) {
				p.Spec.InitContainers = []corev1.Container{
					{Name: "setup", Image: "example/setup:1"},
					{Name: "mesh", Image: "example/mesh:1", RestartPolicy: ptr.To(corev1.ContainerRestartPolicyAlways)},
				}
			}),
			podIP: "10.1.0.4",
			want: want{podIP: "10.1.0.4", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue,
				containers: []string{"app"}, initContainers: []string{"setup", "mesh"}},
		},
		{
			name: "unmet readiness gate",
			pod: testPod(func(p *corev1.Pod) {
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
			}),
			podIP: "10.1.0.5",
			want: want{podIP: "10.1.0.5", ready: corev1.ConditionFalse, readyReason: reasonReadinessGates,
				containersReady: corev1.ConditionTrue, containers: []string{"app"}},
		},
		{
			name: "met readiness gate",
			pod: testPod(func(p *corev1.Pod) {
				p.Spec.ReadinessGates = []corev1.PodReadinessGate{{ConditionType: "example.com/lb"}}
				p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/lb", Status: corev1.ConditionTrue}}
			}),
			podIP: "10.1.0.5",
			want:  want{podIP: "10.1.0.5", ready: corev1.ConditionTrue, containersReady: corev1.ConditionTrue, containers: []string{"app"}},
		},
	}
	const nodeIP = "192.168.50.10"
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := desiredStatus(tt.pod, tt.podIP, nodeIP, now)
			if got.Phase != corev1.PodRunning {
				t.Errorf("phase = %q, want Running", got.Phase)
			}
			if got.PodIP != tt.want.podIP || len(got.PodIPs) != 1 || got.PodIPs[0].IP != tt.want.podIP {
				t.Errorf("podIP = %q, podIPs = %v, want %s", got.PodIP, got.PodIPs, tt.want.podIP)
			}
			if got.HostIP != nodeIP || len(got.HostIPs) != 1 || got.HostIPs[0].IP != nodeIP {
				t.Errorf("hostIP = %q, hostIPs = %v, want %s", got.HostIP, got.HostIPs, nodeIP)
			}
			if got.StartTime == nil || !got.StartTime.Equal(&now) {
				t.Errorf("startTime = %v, want %v", got.StartTime, now)
			}
			for typ, status := range map[corev1.PodConditionType]corev1.ConditionStatus{
				corev1.PodScheduled:    corev1.ConditionTrue,
				corev1.PodInitialized:  corev1.ConditionTrue,
				corev1.ContainersReady: tt.want.containersReady,
				corev1.PodReady:        tt.want.ready,
			} {
				c := condition(got, typ)
				if c == nil || c.Status != status {
					t.Errorf("condition %s = %+v, want status %s", typ, c, status)
				}
			}
			if c := condition(got, corev1.PodReady); c != nil && c.Reason != tt.want.readyReason {
				t.Errorf("Ready reason = %q, want %q", c.Reason, tt.want.readyReason)
			}
			if tt.want.containersReady == corev1.ConditionFalse {
				if c := condition(got, corev1.ContainersReady); c.Reason != ReasonNotReady {
					t.Errorf("ContainersReady reason = %q, want %q", c.Reason, ReasonNotReady)
				}
			}
			checkContainers(t, tt.pod, got.ContainerStatuses, tt.want.containers, tt.want.containersReady == corev1.ConditionTrue)
			if len(got.InitContainerStatuses) != len(tt.want.initContainers) {
				t.Fatalf("initContainerStatuses = %d, want %d", len(got.InitContainerStatuses), len(tt.want.initContainers))
			}
			for i, cs := range got.InitContainerStatuses {
				if cs.Name != tt.want.initContainers[i] {
					t.Errorf("initContainerStatuses[%d].name = %q, want %q", i, cs.Name, tt.want.initContainers[i])
				}
				sidecar := tt.pod.Spec.InitContainers[i].RestartPolicy != nil
				if sidecar && cs.State.Running == nil || !sidecar && (cs.State.Terminated == nil || cs.State.Terminated.ExitCode != 0) {
					t.Errorf("initContainerStatuses[%d].state = %+v", i, cs.State)
				}
			}
			// Applying the result again must change nothing: steady state writes nothing.
			again := tt.pod.DeepCopy()
			again.Status = got
			later := metav1.NewTime(now.Add(time.Hour))
			if next := desiredStatus(again, tt.podIP, nodeIP, later); !podStatusEqual(next, got) {
				t.Errorf("desiredStatus is not idempotent:\nfirst:  %+v\nsecond: %+v", got, next)
			}
		})
	}
}

func checkContainers(t *testing.T, pod *corev1.Pod, got []corev1.ContainerStatus, names []string, ready bool) {
	t.Helper()
	if len(got) != len(names) {
		t.Fatalf("containerStatuses = %d, want %d", len(got), len(names))
	}
	for i, cs := range got {
		if cs.Name != names[i] {
			t.Errorf("containerStatuses[%d].name = %q, want %q", i, cs.Name, names[i])
		}
		if cs.Ready != ready || cs.Started == nil || !*cs.Started || cs.RestartCount != 0 {
			t.Errorf("container %s: ready=%v started=%v restarts=%d, want ready=%v started", cs.Name, cs.Ready, cs.Started, cs.RestartCount, ready)
		}
		if cs.State.Running == nil || cs.State.Running.StartedAt.IsZero() {
			t.Errorf("container %s state = %+v, want running with startedAt", cs.Name, cs.State)
		}
		if want := "strait-lab://" + string(pod.UID) + "/" + cs.Name; cs.ContainerID != want {
			t.Errorf("container %s containerID = %q, want %q", cs.Name, cs.ContainerID, want)
		}
		if cs.Image != pod.Spec.Containers[i].Image || cs.ImageID == "" {
			t.Errorf("container %s image = %q imageID = %q", cs.Name, cs.Image, cs.ImageID)
		}
	}
}

func TestDesiredStatusKeepsTimestampsAndForeignFields(t *testing.T) {
	t0 := metav1.NewTime(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC))
	t1 := metav1.NewTime(t0.Add(time.Hour))
	pod := testPod(func(p *corev1.Pod) {
		p.Status.QOSClass = corev1.PodQOSBestEffort
		p.Status.Conditions = []corev1.PodCondition{{Type: "example.com/custom", Status: corev1.ConditionTrue, Reason: "Other"}}
	})
	first := desiredStatus(pod, "10.1.0.2", "192.168.50.10", t0)
	pod.Status = first
	pod.Annotations = map[string]string{ReadyAnnotation: "false"}
	second := desiredStatus(pod, "10.1.0.2", "192.168.50.10", t1)

	if second.QOSClass != corev1.PodQOSBestEffort {
		t.Errorf("qosClass = %q, want it kept", second.QOSClass)
	}
	if c := condition(second, "example.com/custom"); c == nil || c.Reason != "Other" {
		t.Errorf("foreign condition = %+v, want it kept", c)
	}
	if !second.StartTime.Equal(&t0) {
		t.Errorf("startTime = %v, want %v kept", second.StartTime, t0)
	}
	if c := condition(second, corev1.PodScheduled); !c.LastTransitionTime.Equal(&t0) {
		t.Errorf("unchanged PodScheduled transition = %v, want %v", c.LastTransitionTime, t0)
	}
	if c := condition(second, corev1.PodReady); !c.LastTransitionTime.Equal(&t1) {
		t.Errorf("flipped Ready transition = %v, want %v", c.LastTransitionTime, t1)
	}
	if got := second.ContainerStatuses[0].State.Running.StartedAt; !got.Equal(&t0) {
		t.Errorf("container startedAt = %v, want %v kept", got, t0)
	}
	if podStatusEqual(first, second) {
		t.Error("statuses that differ in readiness compare equal")
	}
}

func TestSchedulable(t *testing.T) {
	tests := []struct {
		name string
		pod  *corev1.Pod
		want bool
	}{
		{"unscheduled default scheduler", testPod(func(p *corev1.Pod) { p.Spec.NodeName = ""; p.Spec.SchedulerName = corev1.DefaultSchedulerName }), true},
		{"unscheduled no scheduler name", testPod(func(p *corev1.Pod) { p.Spec.NodeName = "" }), true},
		{"already bound", testPod(), false},
		{"other scheduler", testPod(func(p *corev1.Pod) { p.Spec.NodeName = ""; p.Spec.SchedulerName = "custom" }), false},
		{"scheduling gate", testPod(func(p *corev1.Pod) {
			p.Spec.NodeName = ""
			p.Spec.SchedulingGates = []corev1.PodSchedulingGate{{Name: "example.com/wait"}}
		}), false},
		{"being deleted", testPod(func(p *corev1.Pod) { p.Spec.NodeName = ""; p.DeletionTimestamp = ptr.To(metav1.Now()) }), false},
	}
	for _, tt := range tests {
		if got := schedulable(tt.pod); got != tt.want {
			t.Errorf("%s: schedulable = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func TestTCPPorts(t *testing.T) {
	pod := testPod(func(p *corev1.Pod) {
		p.Spec.Containers = []corev1.Container{
			{Name: "a", Ports: []corev1.ContainerPort{{ContainerPort: 8080}, {ContainerPort: 53, Protocol: corev1.ProtocolUDP}}},
			{Name: "b", Ports: []corev1.ContainerPort{{ContainerPort: 80, Protocol: corev1.ProtocolTCP}, {ContainerPort: 8080}}},
		}
	})
	got := tcpPorts(pod)
	if len(got) != 2 || got[0] != 80 || got[1] != 8080 {
		t.Errorf("tcpPorts = %v, want [80 8080]", got)
	}
}
