package supervisor

import (
	"context"
	"fmt"
	"net"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"

	"github.com/strait-io/strait/internal/agent"
	"github.com/strait-io/strait/internal/clusterset"
	"github.com/strait-io/strait/internal/externalservice/probe"
	"github.com/strait-io/strait/internal/lab/netns"
	"github.com/strait-io/strait/internal/lab/plan"
	"github.com/strait-io/strait/internal/lab/state"
)

// Broker returns the cluster that holds the lab's clusterset: the first one.
func Broker(l *plan.Lab) plan.Cluster { return l.Clusters[0] }

// joinClusterset joins every cluster to the clusterset whose broker is the first cluster,
// exactly as `strait join` does, starts each cluster's agent, then strait dns, which reads
// the federation the agents keep on the broker.
func (s *Supervisor) joinClusterset(ctx context.Context) error {
	broker := Broker(s.lab)
	brokerCfg := state.RESTConfig(s.dir.Cluster(broker.Name), broker, state.Admin)
	// Agents in pods reach the broker at its node address (the lab's API forwarder), not
	// at the host's loopback.
	brokerServer := ""
	if s.agentPods {
		brokerServer = state.NodeAPIServerURL(broker)
	}
	for _, c := range s.lab.Clusters {
		t0 := time.Now()
		_, err := clusterset.Join(ctx, clusterset.JoinOptions{
			Member:       state.RESTConfig(s.dir.Cluster(c.Name), c, state.Admin),
			Broker:       brokerCfg,
			BrokerServer: brokerServer,
			MemberName:   c.Name,
			BrokerName:   broker.Name,
			ClusterID:    c.ID,
			Region:       c.Region,
			Zone:         c.Zone,
		})
		if err != nil {
			return fmt.Errorf("joining cluster %s to the clusterset: %w", c.Name, err)
		}
		s.event(c.Name, "joined the clusterset as %s, broker %s (%s)", c.ID, broker.Name, time.Since(t0).Round(100*time.Millisecond))
		if err := s.installAgent(ctx, c, c.Name == broker.Name); err != nil {
			return err
		}
	}
	for _, c := range s.lab.Clusters {
		cl := s.clusters[c.Name]
		spec := runs(agentRunner(s.dir.Cluster(c.Name).Kubeconfig(state.Agent), c))
		if s.agentPods {
			kube, err := kubernetes.NewForConfig(state.RESTConfig(s.dir.Cluster(c.Name), c, state.Admin))
			if err != nil {
				return err
			}
			spec = agentPodsTask(kube, cl.stopping.Load)
		}
		cl.startTask(Agent, spec)
		wctx, cancel := context.WithTimeout(ctx, startTimeout)
		err := wait.PollUntilContextCancel(wctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
			return cl.checker.agent(ctx) == nil, nil
		})
		cancel()
		if err != nil {
			return fmt.Errorf("the strait agent of cluster %s did not become ready: %w", c.Name, err)
		}
		s.event(c.Name, "%s is up", Agent)
	}
	return s.startLabDNS(ctx, brokerCfg)
}

// agentRunner runs a cluster's agent in the supervisor, restarting it after an error (the
// broker down, leadership lost) as a Deployment would. kubeconfig is the agent's own, as
// the chart's ServiceAccount.
func agentRunner(kubeconfig string, c plan.Cluster) func(context.Context) error {
	cfg := agent.DefaultConfig()
	cfg.Kubeconfig = kubeconfig
	cfg.MetricsAddress = net.JoinHostPort("127.0.0.1", fmt.Sprint(c.Ports.AgentMetrics))
	cfg.HealthAddress = net.JoinHostPort("127.0.0.1", fmt.Sprint(c.Ports.AgentHealth))
	cfg.Identity = "lab-" + c.Name
	// The cluster's addresses live in its network namespace, not in the supervisor's: the
	// health checks of ExternalService targets dial from there, as an in-cluster agent would.
	cfg.Prober = probe.Prober{Dialer: netns.Dialer{Namespace: c.Namespace}}
	return restarting(Agent, c.Name, func(ctx context.Context) error {
		a, err := agent.New(ctx, cfg)
		if err != nil {
			return err
		}
		return a.Run(ctx)
	})
}

// restartDelay is how long an in-process component that stopped waits before it starts
// again.
const restartDelay = 2 * time.Second

// restarting runs an in-process component until ctx ends, starting it again restartDelay
// after it returns early, as the kubelet restarts a pod. Each run gets a context of its own,
// ended when it returns, so whatever it started (informers, listeners) stops with it.
func restarting(component, cluster string, run func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		logger := klog.FromContext(ctx).WithValues("component", component, "cluster", cluster)
		for {
			rctx, cancel := context.WithCancel(ctx)
			err := run(rctx)
			cancel()
			if ctx.Err() != nil {
				return nil
			}
			logger.Error(err, "Component stopped; restarting", "delay", restartDelay)
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(restartDelay):
			}
		}
	}
}

// StopComponent stops one component of a cluster (e.g. the agent, or the broker's API
// server), to try how the rest copes.
func (s *Supervisor) StopComponent(cluster, component string) error {
	c, ok := s.clusters[cluster]
	if !ok {
		return fmt.Errorf("the lab has no cluster %q", cluster)
	}
	if err := c.stopComponent(component); err != nil {
		return err
	}
	s.event(cluster, "%s stopped on request", component)
	return nil
}

// StartComponent starts a stopped component again and waits until it is healthy.
func (s *Supervisor) StartComponent(ctx context.Context, cluster, component string) error {
	c, ok := s.clusters[cluster]
	if !ok {
		return fmt.Errorf("the lab has no cluster %q", cluster)
	}
	if err := c.startComponent(ctx, component); err != nil {
		return err
	}
	s.event(cluster, "%s started on request", component)
	return nil
}
