package nodesim

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apiequality "k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/version"
	"k8s.io/client-go/util/retry"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

const (
	// InstanceType is the node.kubernetes.io/instance-type label of every lab node.
	InstanceType = "strait-lab"
	// FallbackKubeletVersion is reported when the API server's version is unknown or unusable.
	FallbackKubeletVersion = "v0.0.0-strait-lab"

	nodeLeaseNamespace = corev1.NamespaceNodeLease
	// minLeaseDuration is the kubelet's default node lease duration.
	minLeaseDuration = 40 * time.Second
	runtimeVersion   = "strait-lab://0.0.0"
)

// ownedNodeConditions are the node conditions the simulator sets, in the order it adds them.
var ownedNodeConditions = []corev1.NodeConditionType{
	corev1.NodeReady, corev1.NodeMemoryPressure, corev1.NodeDiskPressure, corev1.NodePIDPressure,
}

// nodeLabels are the labels the simulator keeps on its Node; other labels are left alone.
func (s *Simulator) nodeLabels() map[string]string {
	l := map[string]string{
		corev1.LabelHostname:           s.cfg.NodeName,
		corev1.LabelOSStable:           "linux",
		corev1.LabelArchStable:         runtime.GOARCH,
		corev1.LabelInstanceTypeStable: InstanceType,
	}
	if s.cfg.Region != "" {
		l[corev1.LabelTopologyRegion] = s.cfg.Region
	}
	if s.cfg.Zone != "" {
		l[corev1.LabelTopologyZone] = s.cfg.Zone
	}
	return l
}

// kubeletVersion asks the API server for its version, so the Node looks like a kubelet of
// the same release; binaries built without version stamps report a useless one.
func (s *Simulator) lookupKubeletVersion(ctx context.Context) string {
	info, err := s.client.Discovery().ServerVersion()
	if err != nil {
		klog.FromContext(ctx).V(2).Info("Using fallback kubelet version", "reason", err.Error())
		return FallbackKubeletVersion
	}
	v, err := version.ParseSemantic(info.GitVersion)
	if err != nil || v.Major() == 0 && v.Minor() == 0 {
		return FallbackKubeletVersion
	}
	return info.GitVersion
}

// desiredNodeStatus is the status the simulator reports for its Node. It starts from the
// current status so conditions and fields owned by others survive, and keeps transition
// times of conditions whose status did not change.
func desiredNodeStatus(cur corev1.NodeStatus, cfg validated, kubeletVer string, now metav1.Time) corev1.NodeStatus {
	st := *cur.DeepCopy()
	st.Addresses = []corev1.NodeAddress{
		{Type: corev1.NodeInternalIP, Address: cfg.nodeAddr.String()},
		{Type: corev1.NodeHostName, Address: cfg.NodeName},
	}
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    resource.MustParse("8"),
		corev1.ResourceMemory: resource.MustParse("32Gi"),
		corev1.ResourcePods:   resource.MustParse("250"),
	}
	st.Capacity = capacity
	st.Allocatable = capacity.DeepCopy()
	st.NodeInfo.KubeletVersion = kubeletVer
	st.NodeInfo.OperatingSystem = "linux"
	st.NodeInfo.Architecture = runtime.GOARCH
	st.NodeInfo.ContainerRuntimeVersion = runtimeVersion

	want := map[corev1.NodeConditionType]corev1.NodeCondition{
		corev1.NodeReady:          {Status: corev1.ConditionTrue, Reason: "KubeletReady", Message: "strait lab node simulator is posting ready status"},
		corev1.NodeMemoryPressure: {Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available"},
		corev1.NodeDiskPressure:   {Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure"},
		corev1.NodePIDPressure:    {Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available"},
	}
	set := func(prev *corev1.NodeCondition, typ corev1.NodeConditionType) corev1.NodeCondition {
		c := want[typ]
		c.Type = typ
		c.LastHeartbeatTime = now
		c.LastTransitionTime = now
		if prev != nil && prev.Status == c.Status {
			c.LastTransitionTime = prev.LastTransitionTime
		}
		return c
	}
	conds := make([]corev1.NodeCondition, 0, len(cur.Conditions)+len(want))
	seen := map[corev1.NodeConditionType]bool{}
	for i := range cur.Conditions {
		typ := cur.Conditions[i].Type
		if _, owned := want[typ]; owned {
			if !seen[typ] {
				seen[typ] = true
				conds = append(conds, set(&cur.Conditions[i], typ))
			}
			continue
		}
		conds = append(conds, *cur.Conditions[i].DeepCopy())
	}
	for _, typ := range ownedNodeConditions {
		if !seen[typ] {
			conds = append(conds, set(nil, typ))
		}
	}
	st.Conditions = conds
	return st
}

// nodeStatusEqual reports whether two node statuses differ only in condition timestamps.
func nodeStatusEqual(a, b corev1.NodeStatus) bool {
	strip := func(s corev1.NodeStatus) corev1.NodeStatus {
		s = *s.DeepCopy()
		for i := range s.Conditions {
			s.Conditions[i].LastHeartbeatTime = metav1.Time{}
			s.Conditions[i].LastTransitionTime = metav1.Time{}
		}
		return s
	}
	return apiequality.Semantic.DeepEqual(strip(a), strip(b))
}

// readyHeartbeat is the last heartbeat of the node's Ready condition, zero if there is none.
func readyHeartbeat(st corev1.NodeStatus) time.Time {
	for _, c := range st.Conditions {
		if c.Type == corev1.NodeReady {
			return c.LastHeartbeatTime.Time
		}
	}
	return time.Time{}
}

// errPodCIDRConflict marks a Node whose pod CIDR differs from the configured one; the field
// is immutable, so retrying cannot help.
var errPodCIDRConflict = errors.New("node pod CIDR conflicts with the configured one")

// registerNode creates the Node or brings an existing one to the desired labels, pod CIDR
// and status, as the kubelet does on start.
func (s *Simulator) registerNode(ctx context.Context) (*corev1.Node, error) {
	nodes := s.client.CoreV1().Nodes()
	cidr := s.cfg.podCIDR.String()
	node, err := nodes.Get(ctx, s.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		fresh := &corev1.Node{
			ObjectMeta: metav1.ObjectMeta{Name: s.cfg.NodeName, Labels: s.nodeLabels()},
			Spec:       corev1.NodeSpec{PodCIDR: cidr, PodCIDRs: []string{cidr}},
			Status:     desiredNodeStatus(corev1.NodeStatus{}, s.cfg, s.kubeletVersion, metav1.Now()),
		}
		node, err = nodes.Create(ctx, fresh, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			node, err = nodes.Get(ctx, s.cfg.NodeName, metav1.GetOptions{})
		}
	}
	if err != nil {
		return nil, fmt.Errorf("get or create node %s: %w", s.cfg.NodeName, err)
	}
	if node.Spec.PodCIDR != "" && node.Spec.PodCIDR != cidr {
		return nil, fmt.Errorf("node %s has pod CIDR %s, config says %s: %w", s.cfg.NodeName, node.Spec.PodCIDR, cidr, errPodCIDRConflict)
	}

	node, err = s.writeNode(ctx, node, func(node *corev1.Node) (*corev1.Node, error) {
		want := node.DeepCopy()
		if want.Labels == nil {
			want.Labels = map[string]string{}
		}
		for k, v := range s.nodeLabels() {
			want.Labels[k] = v
		}
		if want.Spec.PodCIDR == "" {
			want.Spec.PodCIDR = cidr
			want.Spec.PodCIDRs = []string{cidr}
		}
		if apiequality.Semantic.DeepEqual(want.ObjectMeta, node.ObjectMeta) && apiequality.Semantic.DeepEqual(want.Spec, node.Spec) {
			return nil, nil
		}
		return nodes.Update(ctx, want, metav1.UpdateOptions{})
	})
	if err != nil {
		return nil, fmt.Errorf("update node %s: %w", s.cfg.NodeName, err)
	}
	return s.updateNodeStatus(ctx, node, true)
}

// updateNodeStatus writes the desired node status when it differs from node's or when force
// is set; force refreshes the heartbeats.
func (s *Simulator) updateNodeStatus(ctx context.Context, node *corev1.Node, force bool) (*corev1.Node, error) {
	node, err := s.writeNode(ctx, node, func(node *corev1.Node) (*corev1.Node, error) {
		want := desiredNodeStatus(node.Status, s.cfg, s.kubeletVersion, metav1.Now())
		if !force && nodeStatusEqual(want, node.Status) {
			return nil, nil
		}
		upd := node.DeepCopy()
		upd.Status = want
		return s.client.CoreV1().Nodes().UpdateStatus(ctx, upd, metav1.UpdateOptions{})
	})
	if err != nil {
		return nil, fmt.Errorf("update status of node %s: %w", s.cfg.NodeName, err)
	}
	return node, nil
}

// writeNode runs write on node, retrying on conflicts with the node read again; write
// returns the node the API server returned, or nil when there was nothing to write. It
// returns the latest node.
func (s *Simulator) writeNode(ctx context.Context, node *corev1.Node, write func(*corev1.Node) (*corev1.Node, error)) (*corev1.Node, error) {
	err := retry.RetryOnConflict(retry.DefaultRetry, func() error {
		updated, err := write(node)
		if apierrors.IsConflict(err) {
			if fresh, getErr := s.client.CoreV1().Nodes().Get(ctx, s.cfg.NodeName, metav1.GetOptions{}); getErr == nil {
				node = fresh
			}
		}
		if err != nil {
			return err
		}
		if updated != nil {
			node = updated
		}
		return nil
	})
	return node, err
}

// heartbeat renews the node Lease and refreshes the node status when it drifted or its
// Ready heartbeat is older than twice the interval, well inside the 4x the controller
// tolerates. A Node deleted behind the simulator's back is registered again.
func (s *Simulator) heartbeat(ctx context.Context) error {
	node, err := s.client.CoreV1().Nodes().Get(ctx, s.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		klog.FromContext(ctx).Info("Node disappeared, registering it again")
		node, err = s.registerNode(ctx)
	}
	if err != nil {
		return fmt.Errorf("get node %s: %w", s.cfg.NodeName, err)
	}
	var errs []error
	if err := s.renewLease(ctx, node); err != nil {
		errs = append(errs, err)
	}
	stale := time.Since(readyHeartbeat(node.Status)) >= 2*s.cfg.HeartbeatInterval
	if _, err := s.updateNodeStatus(ctx, node, stale); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// renewLease creates or renews the node's Lease in kube-node-lease, the cheap heartbeat the
// node-lifecycle controller watches.
func (s *Simulator) renewLease(ctx context.Context, node *corev1.Node) error {
	leases := s.client.CoordinationV1().Leases(nodeLeaseNamespace)
	duration := max(minLeaseDuration, 4*s.cfg.HeartbeatInterval)
	want := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(s.cfg.NodeName),
		LeaseDurationSeconds: ptr.To(int32(duration / time.Second)),
		RenewTime:            ptr.To(metav1.NewMicroTime(time.Now())),
	}
	owner := metav1.OwnerReference{APIVersion: "v1", Kind: "Node", Name: node.Name, UID: node.UID}
	lease, err := leases.Get(ctx, s.cfg.NodeName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		lease = &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: s.cfg.NodeName, Namespace: nodeLeaseNamespace},
			Spec:       want,
		}
		if node.UID != "" {
			lease.OwnerReferences = []metav1.OwnerReference{owner}
		}
		if _, err := leases.Create(ctx, lease, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("create lease %s/%s: %w", nodeLeaseNamespace, s.cfg.NodeName, err)
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("get lease %s/%s: %w", nodeLeaseNamespace, s.cfg.NodeName, err)
	}
	upd := lease.DeepCopy()
	upd.Spec.HolderIdentity = want.HolderIdentity
	upd.Spec.LeaseDurationSeconds = want.LeaseDurationSeconds
	upd.Spec.RenewTime = want.RenewTime
	if node.UID != "" && !slices.ContainsFunc(upd.OwnerReferences, func(r metav1.OwnerReference) bool { return r.UID == node.UID }) {
		upd.OwnerReferences = []metav1.OwnerReference{owner}
	}
	if _, err := leases.Update(ctx, upd, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("renew lease %s/%s: %w", nodeLeaseNamespace, s.cfg.NodeName, err)
	}
	return nil
}
