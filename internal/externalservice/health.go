package externalservice

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/strait-io/strait/api/v1alpha1"
	"github.com/strait-io/strait/internal/externalservice/probe"
)

// State is the health of one target, as the results of its checks came in.
type State struct {
	Health v1alpha1.TargetHealth
	// Successes and Failures count the latest results in a row.
	Successes, Failures int32
	// Message is the error of the latest failed check.
	Message string
	// Reason is ReasonHealthCheckRefused when the latest check was not run because its
	// target is an address the agent does not probe.
	Reason string
}

// NewState is a target's state before its first check.
func NewState() State { return State{Health: v1alpha1.HealthUnknown} }

// Observe adds one check result (err nil for a pass). A target that is not known to be
// unhealthy turns Unhealthy after UnhealthyThreshold failures in a row; an unhealthy one
// turns Healthy after HealthyThreshold passes in a row. A target not yet checked counts as
// healthy at its first pass, so a new ExternalService serves at once.
//
// A check the prober refused (probe.ErrRefused: the target is, or resolves to, a
// loopback, link-local or metadata address the agent may not probe) takes the target out
// at once, with the reason: nothing vouches for it, and a refusal does not go away by
// itself.
func Observe(s State, err error, hc v1alpha1.HealthCheck) State {
	s.Reason = ""
	if errors.Is(err, probe.ErrRefused) {
		s.Successes = 0
		s.Failures++
		s.Message, s.Reason, s.Health = err.Error(), v1alpha1.ReasonHealthCheckRefused, v1alpha1.HealthUnhealthy
		return s
	}
	if err == nil {
		s.Failures, s.Message = 0, ""
		s.Successes++
		if s.Health != v1alpha1.HealthUnhealthy || s.Successes >= hc.HealthyThreshold {
			s.Health = v1alpha1.HealthHealthy
		}
		return s
	}
	s.Successes = 0
	s.Failures++
	s.Message = err.Error()
	if s.Failures >= hc.UnhealthyThreshold {
		s.Health = v1alpha1.HealthUnhealthy
	}
	return s
}

// TargetStatuses lists the status of every target in spec order. Health is Unchecked
// without a health check; previous keeps the transition times of unchanged targets.
func TargetStatuses(spec v1alpha1.ExternalServiceSpec, health map[string]State, previous []v1alpha1.TargetStatus, now metav1.Time) []v1alpha1.TargetStatus {
	prev := map[string]v1alpha1.TargetStatus{}
	for _, p := range previous {
		prev[p.Address] = p
	}
	var out []v1alpha1.TargetStatus
	for _, t := range spec.Targets {
		addr := TargetAddress(spec, t)
		st := v1alpha1.TargetStatus{Address: addr, Health: v1alpha1.HealthUnchecked}
		if spec.HealthCheck != nil {
			s, ok := health[addr]
			if !ok {
				s = NewState()
			}
			st.Health = s.Health
			if s.Health != v1alpha1.HealthHealthy {
				st.Message, st.Reason = s.Message, s.Reason
			}
		}
		if p, ok := prev[addr]; ok && p.Health == st.Health {
			st.LastTransitionTime = p.LastTransitionTime
		} else {
			st.LastTransitionTime = &now
		}
		out = append(out, st)
	}
	return out
}

// HealthOf reduces target statuses to what Plan needs.
func HealthOf(statuses []v1alpha1.TargetStatus) Health {
	h := Health{}
	for _, s := range statuses {
		h[s.Address] = s.Health
	}
	return h
}

// ReadyCondition is the Ready condition of an ExternalService whose objects are written in
// mode, given its targets' statuses. LastTransitionTime is left for the caller.
func ReadyCondition(es *v1alpha1.ExternalService, mode v1alpha1.ServiceMode, statuses []v1alpha1.TargetStatus) metav1.Condition {
	c := metav1.Condition{Type: v1alpha1.ConditionReady, ObservedGeneration: es.Generation}
	var used, unknown, refused int
	var failing []string
	for _, s := range statuses {
		if Used(s.Health) {
			used++
		} else {
			failing = append(failing, s.Address+": "+s.Message)
		}
		if s.Health == v1alpha1.HealthUnknown {
			unknown++
		}
		if s.Reason == v1alpha1.ReasonHealthCheckRefused {
			refused++
		}
	}
	sort.Strings(failing)
	what := fmt.Sprintf("Service %s", es.Name)
	if mode == v1alpha1.ModeExternalName && len(es.Spec.Targets) > 0 {
		what = fmt.Sprintf("ExternalName Service %s -> %s", es.Name, es.Spec.Targets[0].Hostname)
	}
	switch {
	case used == 0 && refused > 0:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonHealthCheckRefused
		c.Message = fmt.Sprintf("%s is written but no target is in use; %d of %d are not probed: %s", what, refused, len(statuses), strings.Join(failing, "; "))
	case used == 0:
		c.Status, c.Reason = metav1.ConditionFalse, v1alpha1.ReasonNoHealthyTargets
		c.Message = fmt.Sprintf("%s is written but no target passes its health check: %s", what, strings.Join(failing, "; "))
	case unknown == len(statuses):
		c.Status, c.Reason = metav1.ConditionUnknown, v1alpha1.ReasonProbing
		c.Message = fmt.Sprintf("%s is written; the first health checks are running", what)
	default:
		c.Status, c.Reason = metav1.ConditionTrue, v1alpha1.ReasonReady
		c.Message = fmt.Sprintf("%s is written; %d of %d targets in use", what, used, len(statuses))
		if len(failing) > 0 {
			c.Message += "; failing: " + strings.Join(failing, "; ")
		}
	}
	return c
}

// NotReadyCondition is the Ready condition when nothing could be written.
func NotReadyCondition(es *v1alpha1.ExternalService, reason, message string) metav1.Condition {
	return metav1.Condition{
		Type: v1alpha1.ConditionReady, Status: metav1.ConditionFalse, ObservedGeneration: es.Generation,
		Reason: reason, Message: message,
	}
}
