package supervisor

import (
	"context"
	"sync"
	"time"

	"github.com/strait-io/strait/internal/lab/state"
)

// Status is what `strait lab status` shows.
type Status struct {
	Lab        string          `json:"lab"`
	Phase      string          `json:"phase"`
	Error      string          `json:"error,omitempty"`
	Started    time.Time       `json:"started,omitzero"`
	Supervisor int             `json:"supervisorPID,omitempty"`
	Kubeconfig string          `json:"kubeconfig"`
	Clusters   []ClusterStatus `json:"clusters"`
	Events     []Event         `json:"events,omitempty"`
}

// ClusterStatus describes one cluster.
type ClusterStatus struct {
	Name         string            `json:"name"`
	ID           string            `json:"id"`
	Region       string            `json:"region"`
	Zone         string            `json:"zone"`
	APIServer    string            `json:"apiServer"`
	Netns        string            `json:"netns"`
	NodeIP       string            `json:"nodeIP"`
	PodCIDR      string            `json:"podCIDR"`
	ServiceCIDR  string            `json:"serviceCIDR"`
	DNSServiceIP string            `json:"dnsServiceIP"`
	Healthy      bool              `json:"healthy"`
	Components   []ComponentStatus `json:"components"`
}

// ComponentStatus describes one component of a cluster.
type ComponentStatus struct {
	Name    string `json:"name"`
	State   string `json:"state"` // NotStarted, Running, Exited
	PID     int    `json:"pid,omitempty"`
	Healthy bool   `json:"healthy"`
	Detail  string `json:"detail,omitempty"`
	Log     string `json:"log,omitempty"`
}

// Component states.
const (
	StateNotStarted = "NotStarted"
	StateRunning    = "Running"
	StateExited     = "Exited"
)

// statusTimeout bounds each live health check of `lab status`.
const statusTimeout = 3 * time.Second

func (c *cluster) status(ctx context.Context) ClusterStatus {
	p := c.plan
	cs := ClusterStatus{
		Name: p.Name, ID: p.ID, Region: p.Region, Zone: p.Zone,
		APIServer: state.APIServerURL(p), Netns: p.Namespace, NodeIP: p.NodeIP,
		PodCIDR: p.PodCIDR, ServiceCIDR: p.ServiceCIDR, DNSServiceIP: p.DNSServiceIP,
	}
	checks := c.checks()
	cs.Components = make([]ComponentStatus, len(c.components))
	var wg sync.WaitGroup
	for i, name := range c.components {
		comp := ComponentStatus{Name: name, State: StateNotStarted}
		c.mu.Lock()
		proc, task := c.procs[name], c.inproc[name]
		c.mu.Unlock()
		switch {
		case proc != nil:
			comp.PID, comp.Log, comp.State = proc.Pid(), proc.Spec.LogFile, StateRunning
			if !proc.Running() {
				comp.State, comp.PID = StateExited, 0
				if err := proc.ExitError(); err != nil {
					comp.Detail = err.Error()
				}
			}
		case task != nil:
			comp.State = StateRunning
			if !task.running() {
				comp.State = StateExited
				if task.err != nil {
					comp.Detail = task.err.Error()
				}
			}
		}
		cs.Components[i] = comp
		if comp.State != StateRunning {
			continue
		}
		check := checks[name]
		if check == nil {
			cs.Components[i].Healthy = true
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cctx, cancel := context.WithTimeout(ctx, statusTimeout)
			defer cancel()
			if err := check(cctx); err != nil {
				cs.Components[i].Detail = err.Error()
				return
			}
			cs.Components[i].Healthy = true
		}()
	}
	wg.Wait()
	cs.Healthy = true
	for _, comp := range cs.Components {
		cs.Healthy = cs.Healthy && comp.Healthy
	}
	return cs
}
