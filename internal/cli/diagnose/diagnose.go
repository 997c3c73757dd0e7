// Package diagnose implements `strait diagnose`: it proves each link of the clusterset's
// chain for every member and every pair of members, like `cilium connectivity test
// --multi-cluster` or `subctl diagnose`, by reading what the members and the broker hold
// and by running a small test workload of Strait's own image in every member. The verdicts
// and fixes come from internal/diagnose; this package gathers and deploys.
package diagnose

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	mcsclient "sigs.k8s.io/mcs-api/pkg/client/clientset/versioned"

	"github.com/strait-io/strait/internal/cli/output"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/diagnose"
	"github.com/strait-io/strait/internal/kubeconfig"
	"github.com/strait-io/strait/internal/liveness"
	"github.com/strait-io/strait/internal/liveness/leasewatch"
)

// options are the command's flags.
type options struct {
	kube          *kubeconfig.Flags
	contexts      []string
	image         string
	timeout       time.Duration
	keep          bool
	allowInsecure bool
	brokerServer  string
	format        string
	progress      io.Writer
}

// New returns the `diagnose` command.
func New() *cobra.Command {
	o := &options{}
	cmd := &cobra.Command{
		Use:   "diagnose",
		Short: "Prove every link of the clusterset, per member and per pair of members, and name the fix of each broken one",
		Long: "strait diagnose checks, for every member: that it joined, that an agent leads and renews,\n" +
			"that its heartbeat reaches the broker, that the agent sees the broker, and that CoreDNS\n" +
			"serves clusterset.local. It then runs a test workload of Strait's image in the namespace\n" +
			diagnose.Namespace + " of every member (an echo pod, its Service exported as diag-<cluster ID>,\n" +
			"and a probe pod), and proves from a pod of every member that every member's Service\n" +
			"resolves under clusterset.local and answers at its ClusterSet IP and at a pod IP.\n" +
			"The namespace is removed afterwards unless --keep is given. The exit status is 1 when\n" +
			"a check failed.",
		Example: "  strait diagnose --contexts cluster01,cluster02 --image registry.example/strait:v0.3.0\n" +
			"  strait diagnose -o json",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := output.Validate(o.format); err != nil {
				return err
			}
			if o.brokerServer != "" {
				if err := clusterset.ValidateBrokerServer(o.brokerServer); err != nil {
					return fmt.Errorf("--broker-server: %w", err)
				}
			}
			if o.timeout <= 0 {
				return fmt.Errorf("--timeout %s: must be positive, e.g. 3m", o.timeout)
			}
			if c := cmd.Flags().Lookup("context").Value.String(); c != "" {
				o.contexts = append(o.contexts, c)
			}
			o.progress = cmd.ErrOrStderr()
			report, err := o.run(cmd.Context())
			if err != nil {
				return err
			}
			w := cmd.OutOrStdout()
			if ok, err := output.Structured(w, o.format, report); ok {
				if err == nil && !report.OK() {
					return &output.ExitError{Code: 1}
				}
				return err
			}
			print(w, report)
			if !report.OK() {
				return &output.ExitError{Code: 1}
			}
			return nil
		},
	}
	o.kube = kubeconfig.AddFlags(cmd, kubeconfig.Options{Cluster: "one member (adds to --contexts)"})
	fl := cmd.Flags()
	fl.StringSliceVar(&o.contexts, "contexts", nil, "kubeconfig contexts of the members to check (default: every context of the kubeconfig that has joined a clusterset)")
	fl.StringVar(&o.image, "image", "", "image of the test pods: Strait's own (default: the image of the strait-agent Deployment in strait-system)")
	fl.DurationVar(&o.timeout, "timeout", 3*time.Minute, "how long to wait for the test pods and the imports")
	fl.BoolVar(&o.keep, "keep", false, "keep the "+diagnose.Namespace+" namespaces afterwards, to look into them")
	fl.BoolVar(&o.allowInsecure, "allow-insecure-broker", false, "accept a stored broker credential that skips TLS verification (labs only)")
	fl.StringVar(&o.brokerServer, "broker-server", "", clusterset.BrokerServerOverrideUsage)
	output.AddFlag(cmd, &o.format, true)
	cmd.AddCommand(newEcho(), newProbe())
	return cmd
}

// member is one member under diagnosis.
type member struct {
	name   string
	id     string
	kube   kubernetes.Interface
	mcs    mcsclient.Interface
	broker kubernetes.Interface // nil when the member's broker credential could not be read
	image  string

	leader, heartbeat [2]*coordinationv1.Lease
	echoIP            string
	ready             bool
}

func (o *options) say(format string, a ...any) {
	fmt.Fprintf(o.progress, "diagnose: "+format+"\n", a...)
}

func (o *options) run(ctx context.Context) (*diagnose.Report, error) {
	report := &diagnose.Report{}
	members, err := o.members(ctx, report)
	if err != nil {
		return nil, err
	}
	// The leases are read twice, a heartbeat period and more apart: a renewal is a new
	// resourceVersion seen by this reader, never a timestamp compared with this clock.
	window := 2*liveness.DefaultHeartbeatInterval + 2*time.Second
	o.say("watching the agents' leases for %s", window)
	readLeases(ctx, members, 0)
	watched := time.Now()

	for _, m := range members {
		o.coreDNS(ctx, m, report)
	}
	o.say("starting the test workload in %d members", len(members))
	var deployed []*member
	for _, m := range members {
		if err := o.deploy(ctx, m); err != nil {
			report.Add(diagnose.Result{Check: diagnose.CheckWorkload, Cluster: m.name, Status: diagnose.Failed, Detail: err.Error(),
				Fix: "let your user create namespaces, pods, Services and ServiceExports in " + m.name})
			continue
		}
		deployed = append(deployed, m)
	}
	if !o.keep {
		defer o.cleanup(members)
	}

	if d := window - time.Since(watched); d > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(d):
		}
	}
	readLeases(ctx, members, 1)
	for _, m := range members {
		report.Add(diagnose.Renewal(diagnose.CheckAgent, m.name, "the leader lease strait-system/strait-agent", m.leader[0], m.leader[1], window.String(), diagnose.AgentFix(m.name)))
		if m.broker == nil {
			report.Add(diagnose.Skip(diagnose.CheckHeartbeat, m.name, "", "the member's broker credential could not be read"))
		} else {
			report.Add(diagnose.Renewal(diagnose.CheckHeartbeat, m.name, "the member lease on the broker", m.heartbeat[0], m.heartbeat[1], window.String(), diagnose.HeartbeatFix(m.name)))
		}
		view, err := leasewatch.ReadView(ctx, m.kube)
		if err != nil {
			report.Add(diagnose.Result{Check: diagnose.CheckBroker, Cluster: m.name, Status: diagnose.Failed, Detail: err.Error(), Fix: diagnose.AgentFix(m.name)})
		} else {
			report.Add(diagnose.BrokerView(m.name, view))
		}
	}

	deadline := time.Now().Add(o.timeout)
	o.say("waiting for the echo pods to be ready (up to %s)", o.timeout)
	o.waitEcho(ctx, deployed, deadline, report)
	var ready []*member
	for _, m := range deployed {
		if m.ready {
			ready = append(ready, m)
		}
	}
	o.say("waiting for every member to import every member's Service")
	targets := o.waitImports(ctx, deployed, ready, deadline, report)
	o.say("probing from a pod of every member")
	o.probe(ctx, deployed, ready, targets, deadline, report)
	return report, nil
}

// members connects to every context and judges whether it joined. Contexts taken by
// default (not named with --contexts) that have not joined are left out with a note.
func (o *options) members(ctx context.Context, report *diagnose.Report) ([]*member, error) {
	names := o.contexts
	explicit := len(names) > 0
	if !explicit {
		var err error
		if names, err = o.kube.Contexts(); err != nil {
			return nil, err
		}
	}
	var members []*member
	for _, name := range names {
		// A malformed kubeconfig is the user's to mend before anything is checked.
		brokerServer, err := o.kube.BrokerServer(name, o.brokerServer)
		if err != nil {
			return nil, err
		}
		m, err := o.connect(ctx, name, brokerServer)
		switch {
		case err != nil && !explicit:
			o.say("context %s left out: %v", name, err)
			continue
		case err != nil:
			report.Add(diagnose.Joined(name, "", err))
			continue
		}
		report.Add(diagnose.Joined(name, m.id, nil))
		members = append(members, m)
	}
	if len(members) == 0 && !explicit {
		return nil, fmt.Errorf("no context of the kubeconfig has joined a clusterset; name them with --contexts")
	}
	return members, nil
}

// connect reads one member; brokerServer, if not empty, is where it reaches the broker
// instead of the stored URL.
func (o *options) connect(ctx context.Context, name, brokerServer string) (*member, error) {
	cfg, err := o.kube.ContextConfig(name)
	if err != nil {
		return nil, err
	}
	m := &member{name: name}
	if m.kube, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if m.mcs, err = mcsclient.NewForConfig(cfg); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	rctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if m.id, err = clusterset.LocalClusterID(rctx, dyn); err != nil {
		return nil, err
	}
	if bc, err := clusterset.BrokerRESTConfig(rctx, m.kube, o.allowInsecure); err == nil {
		if brokerServer != "" {
			bc.Host = brokerServer
		}
		m.broker, _ = kubernetes.NewForConfig(bc)
	}
	m.image = o.image
	if m.image == "" {
		d, err := m.kube.AppsV1().Deployments(clusterset.SystemNamespace).Get(rctx, "strait-agent", metav1.GetOptions{})
		if err == nil && len(d.Spec.Template.Spec.Containers) > 0 {
			m.image = d.Spec.Template.Spec.Containers[0].Image
		}
	}
	return m, nil
}

// readLeases reads every member's leader lease and member lease into slot i.
func readLeases(ctx context.Context, members []*member, i int) {
	for _, m := range members {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		if l, err := m.kube.CoordinationV1().Leases(clusterset.SystemNamespace).Get(rctx, "strait-agent", metav1.GetOptions{}); err == nil {
			m.leader[i] = l
		}
		if m.broker != nil {
			if l, err := m.broker.CoordinationV1().Leases(clusterset.MemberNamespace(m.id)).Get(rctx, liveness.LeaseName, metav1.GetOptions{}); err == nil {
				m.heartbeat[i] = l
			}
		}
		cancel()
	}
}

// coreDNS judges the member's CoreDNS configuration and RBAC.
func (o *options) coreDNS(ctx context.Context, m *member, report *diagnose.Report) {
	cm, err := m.kube.CoreV1().ConfigMaps(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{})
	if err != nil && !apierrors.IsNotFound(err) {
		report.Add(diagnose.Result{Check: diagnose.CheckCoreDNS, Cluster: m.name, Status: diagnose.Failed,
			Detail: "reading kube-system/coredns: " + err.Error(), Fix: "let your user read ConfigMaps in kube-system"})
		return
	}
	found := err == nil
	corefile := ""
	if found {
		corefile = cm.Data["Corefile"]
	}
	report.Add(diagnose.CoreDNS(m.name, corefile, found, canListImports(ctx, m.kube)))
}

// canListImports asks whether CoreDNS's identity may list ServiceImports: its
// ServiceAccount kube-system/coredns where there is one. Nil when that cannot be told.
func canListImports(ctx context.Context, kube kubernetes.Interface) *bool {
	if _, err := kube.CoreV1().ServiceAccounts(metav1.NamespaceSystem).Get(ctx, "coredns", metav1.GetOptions{}); err != nil {
		return nil
	}
	sar := &authorizationv1.SubjectAccessReview{Spec: authorizationv1.SubjectAccessReviewSpec{
		User:   "system:serviceaccount:kube-system:coredns",
		Groups: []string{"system:serviceaccounts", "system:serviceaccounts:kube-system"},
		ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: "list", Group: "multicluster.x-k8s.io", Resource: "serviceimports",
		},
	}}
	res, err := kube.AuthorizationV1().SubjectAccessReviews().Create(ctx, sar, metav1.CreateOptions{})
	if err != nil {
		return nil
	}
	return &res.Status.Allowed
}

// deploy (re)creates the member's test workload.
func (o *options) deploy(ctx context.Context, m *member) error {
	if m.image == "" {
		return fmt.Errorf("no image for the test pods: %s runs no strait-agent Deployment in %s to take it from; give --image (Strait's image, as the agent runs it)",
			m.name, clusterset.SystemNamespace)
	}
	if err := deleteNamespace(ctx, m.kube, o.timeout); err != nil {
		return err
	}
	if _, err := m.kube.CoreV1().Namespaces().Create(ctx, diagnose.NamespaceObject(), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating namespace %s: %w", diagnose.Namespace, err)
	}
	if _, err := m.kube.CoreV1().Pods(diagnose.Namespace).Create(ctx, diagnose.EchoPod(m.image, m.id), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the echo pod: %w", err)
	}
	if _, err := m.kube.CoreV1().Services(diagnose.Namespace).Create(ctx, diagnose.EchoService(m.id), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the echo Service: %w", err)
	}
	if _, err := m.mcs.MulticlusterV1beta1().ServiceExports(diagnose.Namespace).Create(ctx, diagnose.Export(m.id), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("exporting the echo Service: %w", err)
	}
	return nil
}

// deleteOwnNamespace deletes the check's namespace if diagnose made it (the UID read is the
// one deleted), and refuses a namespace of that name that someone else made.
func deleteOwnNamespace(ctx context.Context, kube kubernetes.Interface) error {
	ns, err := kube.CoreV1().Namespaces().Get(ctx, diagnose.Namespace, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading namespace %s: %w", diagnose.Namespace, err)
	}
	if !diagnose.Owns(ns) {
		return fmt.Errorf("namespace %s exists but was not made by strait diagnose (it lacks the label app.kubernetes.io/managed-by=strait-diagnose), so it is left alone: "+
			"diagnose needs that namespace for its test pods; move what is in it elsewhere and delete it, then run diagnose again", diagnose.Namespace)
	}
	err = kube.CoreV1().Namespaces().Delete(ctx, diagnose.Namespace, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &ns.UID}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil // gone already, or replaced since it was read: the caller's create tells which
	}
	if err != nil {
		return fmt.Errorf("deleting namespace %s: %w", diagnose.Namespace, err)
	}
	return nil
}

// deleteNamespace deletes the check's namespace of an earlier run and waits until it is
// gone.
func deleteNamespace(ctx context.Context, kube kubernetes.Interface, timeout time.Duration) error {
	if err := deleteOwnNamespace(ctx, kube); err != nil {
		return err
	}
	err := wait.PollUntilContextTimeout(ctx, time.Second, timeout, true, func(ctx context.Context) (bool, error) {
		_, err := kube.CoreV1().Namespaces().Get(ctx, diagnose.Namespace, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
	if err != nil {
		return fmt.Errorf("the namespace %s of an earlier run is still being deleted after %s", diagnose.Namespace, timeout)
	}
	return nil
}

func (o *options) cleanup(members []*member) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, m := range members {
		if err := deleteOwnNamespace(ctx, m.kube); err != nil {
			o.say("%s: %v", m.name, err)
		}
	}
}

// waitEcho waits for every echo pod to be ready, and fails those that are not by the
// deadline with what their pod says (an image that cannot be pulled, ...).
func (o *options) waitEcho(ctx context.Context, members []*member, deadline time.Time, report *diagnose.Report) {
	for _, m := range members {
		var last *corev1.Pod
		err := wait.PollUntilContextTimeout(ctx, time.Second, time.Until(deadline), true, func(ctx context.Context) (bool, error) {
			p, err := m.kube.CoreV1().Pods(diagnose.Namespace).Get(ctx, "echo", metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			last = p
			if p.Status.PodIP == "" {
				return false, nil
			}
			for _, c := range p.Status.Conditions {
				if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			report.Add(diagnose.Result{Check: diagnose.CheckWorkload, Cluster: m.name, Status: diagnose.Failed,
				Detail: "the echo pod is not ready: " + podProblem(last),
				Fix:    fmt.Sprintf("kubectl --context %s -n %s describe pod echo; the image %s must be pullable in %s (--image, or load it into the nodes)", m.name, diagnose.Namespace, m.image, m.name)})
			continue
		}
		m.echoIP, m.ready = last.Status.PodIP, true
		report.Add(diagnose.Result{Check: diagnose.CheckWorkload, Cluster: m.name, Status: diagnose.Passed, Detail: "echo pod ready at " + m.echoIP})
	}
}

// podProblem says why a pod is not ready, from its status.
func podProblem(p *corev1.Pod) string {
	if p == nil {
		return "it was not found"
	}
	for _, cs := range append(p.Status.InitContainerStatuses, p.Status.ContainerStatuses...) {
		if w := cs.State.Waiting; w != nil && w.Reason != "" {
			return strings.TrimSpace(w.Reason + " " + w.Message)
		}
		if t := cs.State.Terminated; t != nil {
			return fmt.Sprintf("its container exited %d: %s %s", t.ExitCode, t.Reason, t.Message)
		}
	}
	for _, c := range p.Status.Conditions {
		if c.Status != corev1.ConditionTrue && c.Message != "" {
			return fmt.Sprintf("%s: %s", c.Type, c.Message)
		}
	}
	return "phase " + string(p.Status.Phase)
}

// waitImports waits until every deployed member imports every ready member's Service
// with an IP, and returns the targets each member's probe tries.
func (o *options) waitImports(ctx context.Context, deployed, ready []*member, deadline time.Time, report *diagnose.Report) map[string][]diagnose.Target {
	targets := map[string][]diagnose.Target{}
	for _, from := range deployed {
		for _, to := range ready {
			name := diagnose.ServiceName(to.id)
			var ip string
			err := wait.PollUntilContextTimeout(ctx, time.Second, time.Until(deadline), true, func(ctx context.Context) (bool, error) {
				si, err := from.mcs.MulticlusterV1beta1().ServiceImports(diagnose.Namespace).Get(ctx, name, metav1.GetOptions{})
				if err != nil || len(si.Spec.IPs) == 0 {
					return false, nil
				}
				ip = si.Spec.IPs[0]
				return true, nil
			})
			if err != nil {
				report.Add(diagnose.Result{Check: diagnose.CheckImport, Cluster: from.name, Peer: to.name, Status: diagnose.Failed,
					Detail: fmt.Sprintf("no ServiceImport %s/%s with an IP in %s after %s", diagnose.Namespace, name, from.name, o.timeout),
					Fix:    fmt.Sprintf("strait status --context %s (is %s alive to it?); kubectl --context %s -n %s get serviceexport %s -o yaml (its conditions)", from.name, to.name, to.name, diagnose.Namespace, name)})
				continue
			}
			report.Add(diagnose.Result{Check: diagnose.CheckImport, Cluster: from.name, Peer: to.name, Status: diagnose.Passed, Detail: fmt.Sprintf("%s imported at %s", name, ip)})
			targets[from.name] = append(targets[from.name], diagnose.Target{
				Cluster: to.name, ID: to.id, Name: name + "." + diagnose.Namespace + ".svc." + diagnose.ClusterSetZone,
				ClusterSetIP: ip, PodIP: to.echoIP,
			})
		}
	}
	return targets
}

// probe runs the probe pod of every member with targets, in parallel, and judges what
// each saw.
func (o *options) probe(ctx context.Context, deployed, ready []*member, targets map[string][]diagnose.Target, deadline time.Time, report *diagnose.Report) {
	var mu sync.Mutex
	var wg sync.WaitGroup
	results := map[string][]diagnose.Result{}
	for _, m := range deployed {
		if len(targets[m.name]) == 0 {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			res := o.probeFrom(ctx, m, targets[m.name], deadline)
			mu.Lock()
			results[m.name] = res
			mu.Unlock()
		}()
	}
	wg.Wait()
	for _, m := range deployed {
		report.Add(results[m.name]...)
	}
}

func (o *options) probeFrom(ctx context.Context, m *member, targets []diagnose.Target, deadline time.Time) []diagnose.Result {
	failAll := func(detail, fix string) []diagnose.Result {
		var out []diagnose.Result
		for _, t := range targets {
			out = append(out, diagnose.Result{Check: diagnose.CheckDNS, Cluster: m.name, Peer: t.Cluster, Status: diagnose.Failed, Detail: detail, Fix: fix})
		}
		return out
	}
	pod, err := diagnose.ProbePod(m.image, targets)
	if err != nil {
		return failAll(err.Error(), "")
	}
	if _, err := m.kube.CoreV1().Pods(diagnose.Namespace).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		return failAll("creating the probe pod: "+err.Error(), "let your user create pods in "+m.name)
	}
	var last *corev1.Pod
	err = wait.PollUntilContextTimeout(ctx, time.Second, time.Until(deadline)+time.Minute, true, func(ctx context.Context) (bool, error) {
		p, err := m.kube.CoreV1().Pods(diagnose.Namespace).Get(ctx, "probe", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		last = p
		return p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed, nil
	})
	if err != nil {
		return failAll("the probe pod did not finish: "+podProblem(last), fmt.Sprintf("kubectl --context %s -n %s describe pod probe", m.name, diagnose.Namespace))
	}
	logs, err := m.kube.CoreV1().Pods(diagnose.Namespace).GetLogs("probe", &corev1.PodLogOptions{}).DoRaw(ctx)
	if err != nil {
		return failAll("reading the probe pod's log: "+err.Error(), "let your user read pods/log in "+m.name)
	}
	answers := map[string]diagnose.Answer{}
	sc := bufio.NewScanner(strings.NewReader(string(logs)))
	for sc.Scan() {
		var a diagnose.Answer
		if json.Unmarshal(sc.Bytes(), &a) == nil && a.Cluster != "" {
			answers[a.Cluster] = a
		}
	}
	var out []diagnose.Result
	for _, t := range targets {
		a, ok := answers[t.Cluster]
		if !ok {
			out = append(out, diagnose.Result{Check: diagnose.CheckDNS, Cluster: m.name, Peer: t.Cluster, Status: diagnose.Failed,
				Detail: fmt.Sprintf("the probe pod printed no answer for %s: %q", t.Cluster, strings.TrimSpace(string(logs))),
				Fix:    fmt.Sprintf("kubectl --context %s -n %s logs probe", m.name, diagnose.Namespace)})
			continue
		}
		out = append(out, diagnose.Pair(m.name, t, a)...)
	}
	return out
}

// print writes the report as a table, then the fix of every failure.
func print(w io.Writer, r *diagnose.Report) {
	tw := output.NewTable(w)
	fmt.Fprintln(tw, "CLUSTER\tPEER\tCHECK\tSTATUS\tDETAIL")
	for _, x := range r.Results {
		peer := x.Peer
		if peer == "" {
			peer = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", x.Cluster, peer, x.Check, x.Status, x.Detail)
	}
	_ = tw.Flush()
	fmt.Fprintf(w, "\n%d passed, %d failed, %d skipped\n", r.Passed, r.Failed, r.Skipped)
	for _, x := range r.Results {
		if x.Status != diagnose.Failed || x.Fix == "" {
			continue
		}
		where := x.Cluster
		if x.Peer != "" {
			where += " -> " + x.Peer
		}
		fmt.Fprintf(w, "\nFIX %s (%s): %s\n", where, x.Check, x.Fix)
	}
}

// newEcho is the echo pod's command.
func newEcho() *cobra.Command {
	var id string
	var port int
	cmd := &cobra.Command{
		Use:    "echo",
		Short:  "Answer HTTP with this cluster's ID (the echo pod of strait diagnose)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if id == "" {
				return errors.New("--cluster-id is required")
			}
			srv := &http.Server{Addr: net.JoinHostPort("", strconv.Itoa(port)), Handler: diagnose.Echo(id), ReadHeaderTimeout: 5 * time.Second}
			go func() {
				<-cmd.Context().Done()
				_ = srv.Close()
			}()
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&id, "cluster-id", "", "the cluster ID to answer with")
	cmd.Flags().IntVar(&port, "port", diagnose.EchoPort, "port to listen on")
	return cmd
}

// newProbe is the probe pod's command: it tries the targets in $STRAIT_DIAGNOSE_TARGETS
// and prints one JSON answer per line.
func newProbe() *cobra.Command {
	return &cobra.Command{
		Use:    "probe",
		Short:  "Try the clusterset names, ClusterSet IPs and pod IPs of the targets (the probe pod of strait diagnose)",
		Hidden: true,
		Args:   cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var targets []diagnose.Target
			if err := json.Unmarshal([]byte(os.Getenv(diagnose.TargetsEnv)), &targets); err != nil {
				return fmt.Errorf("$%s: %w", diagnose.TargetsEnv, err)
			}
			p := diagnose.NewProber()
			answers := make([]diagnose.Answer, len(targets))
			var wg sync.WaitGroup
			for i, t := range targets {
				wg.Add(1)
				go func() {
					defer wg.Done()
					answers[i] = p.Probe(cmd.Context(), t, 5)
				}()
			}
			wg.Wait()
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, a := range answers {
				if err := enc.Encode(a); err != nil {
					return err
				}
			}
			return nil
		},
	}
}
