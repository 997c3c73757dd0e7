package liveness

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	clocktesting "k8s.io/utils/clock/testing"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

const lease = 15 * time.Second

// harness drives a tracker with a fake clock: members renew by writing a new token, as a
// member's agent does every heartbeat.
type harness struct {
	t     *testing.T
	clock *clocktesting.FakePassiveClock
	tr    *Tracker
	rv    int
}

func newHarness(t *testing.T, members ...string) *harness {
	h := &harness{t: t, clock: clocktesting.NewFakePassiveClock(t0)}
	h.tr = NewTracker(Config{Grace: DefaultGracePeriod}, h.clock)
	for _, m := range members {
		h.tr.ObserveLease(m, "initial-"+m, lease, false) // the informer's initial list
	}
	return h
}

func (h *harness) renew(members ...string) {
	for _, m := range members {
		h.rv++
		h.tr.ObserveLease(m, fmt.Sprint(h.rv), lease, true)
	}
}

// run advances the clock in 1 s steps for d, evaluating each second (as Run does) and
// renewing the given members every 5 s.
func (h *harness) run(d time.Duration, renewing ...string) {
	for i := time.Duration(0); i < d; i += time.Second {
		h.clock.SetTime(h.clock.Now().Add(time.Second))
		if int(h.clock.Now().Sub(t0)/time.Second)%5 == 0 {
			h.renew(renewing...)
		}
		h.tr.View()
	}
}

func (h *harness) want(states map[string]State) {
	h.t.Helper()
	v := h.tr.View()
	for id, want := range states {
		if got := v.State(id); got != want {
			h.t.Errorf("at +%s: %s is %s, want %s (%s)", h.clock.Now().Sub(t0), id, got, want, v.Summary())
		}
		if got := h.tr.State(id); got != want {
			h.t.Errorf("at +%s: State(%s) = %s, want %s", h.clock.Now().Sub(t0), id, got, want)
		}
	}
}

func TestStartHoldsUntilRenewalsAreObserved(t *testing.T) {
	h := newHarness(t, "a", "b")
	// Leases of the initial list may be hours old: nobody is judged yet.
	h.want(map[string]State{"a": Held, "b": Held})
	h.run(5*time.Second, "a")
	h.want(map[string]State{"a": Alive, "b": Held})
	// b never renews: withdrawn once a full lease period plus grace has been watched.
	h.run(19*time.Second, "a")
	h.want(map[string]State{"a": Alive, "b": Held})
	h.run(2*time.Second, "a")
	h.want(map[string]State{"a": Alive, "b": Withdrawn})
	// b renews: back at once.
	h.renew("b")
	h.want(map[string]State{"b": Alive})
}

func TestOneMissedRenewalChangesNothing(t *testing.T) {
	h := newHarness(t, "a", "b")
	h.run(30*time.Second, "a", "b")
	h.want(map[string]State{"a": Alive, "b": Alive})
	// b misses renewals for 24 s (lease 15 s + grace 10 s not yet past): still alive.
	h.run(24*time.Second, "a")
	h.want(map[string]State{"b": Alive})
	h.run(2*time.Second, "a")
	h.want(map[string]State{"b": Withdrawn})
}

// A lease created while the reader watches counts as a renewal at once.
func TestNewLeaseIsFresh(t *testing.T) {
	h := newHarness(t)
	h.tr.ObserveLease("new", "1", lease, true)
	h.want(map[string]State{"new": Alive})
}

// The writer's clock never matters: tokens are compared, never read as times. Members whose
// clocks run 10 minutes behind or ahead are judged exactly like the others.
func TestClockSkewChangesNothing(t *testing.T) {
	for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute, 0} {
		t.Run(skew.String(), func(t *testing.T) {
			h := newHarness(t)
			written := t0.Add(skew)
			for i := range 6 {
				written = written.Add(5 * time.Second)
				h.clock.SetTime(t0.Add(time.Duration(i+1) * 5 * time.Second))
				// The member writes its renewTime on its own (skewed) clock.
				h.tr.ObserveLease("skewed", written.Format(time.RFC3339Nano), lease, true)
				h.tr.View()
			}
			h.want(map[string]State{"skewed": Alive})
			// It stops: withdrawn after lease + grace on the reader's clock, whatever its
			// clock said.
			h.run(24 * time.Second)
			h.want(map[string]State{"skewed": Alive})
			h.run(2 * time.Second)
			h.want(map[string]State{"skewed": Withdrawn})
		})
	}
}

func TestBrokerOutageFreezesAndResumesWithoutABurst(t *testing.T) {
	h := newHarness(t, "a", "b", "c")
	h.run(10*time.Second, "a", "b", "c")
	h.want(map[string]State{"a": Alive, "b": Alive, "c": Alive})
	// The broker goes away: no renewal reaches anyone for two minutes.
	h.tr.BrokerUnreachable(errors.New("connection refused"))
	h.run(2 * time.Minute)
	v := h.tr.View()
	if !v.Frozen || !strings.Contains(v.FrozenReason, "unreachable") || !strings.Contains(v.FrozenReason, "connection refused") {
		t.Errorf("view during the outage: frozen=%v %q", v.Frozen, v.FrozenReason)
	}
	h.want(map[string]State{"a": Held, "b": Held, "c": Held})
	// It answers again, but the reader's watches are still backing off: no renewal is seen
	// for 40 s. That is a resync, not three deaths.
	h.tr.BrokerReachable()
	h.run(40 * time.Second)
	v = h.tr.View()
	if !v.Frozen || !strings.Contains(v.FrozenReason, "resyncing") {
		t.Errorf("after the broker returned, no renewal seen: frozen=%v %q", v.Frozen, v.FrozenReason)
	}
	h.want(map[string]State{"a": Held, "b": Held, "c": Held})
	// Renewals flow again (c died during the outage): from the first one seen, a full lease
	// period is watched before anyone is withdrawn.
	h.run(5*time.Second, "a", "b")
	v = h.tr.View()
	if v.Frozen || v.Broker.ResyncUntil.IsZero() {
		t.Errorf("renewals seen again: frozen=%v %q resyncUntil=%v", v.Frozen, v.FrozenReason, v.Broker.ResyncUntil)
	}
	h.want(map[string]State{"a": Alive, "b": Alive, "c": Held})
	h.run(24*time.Second, "a", "b")
	h.want(map[string]State{"c": Held})
	h.run(2*time.Second, "a", "b")
	h.want(map[string]State{"a": Alive, "b": Alive, "c": Withdrawn})
}

// A member withdrawn before an outage stays withdrawn through it and after it.
func TestWithdrawnStaysWithdrawnThroughAnOutage(t *testing.T) {
	h := newHarness(t, "a", "b")
	h.run(30*time.Second, "a")
	h.want(map[string]State{"b": Withdrawn})
	h.tr.BrokerUnreachable(errors.New("timeout"))
	h.run(time.Minute)
	h.want(map[string]State{"b": Withdrawn, "a": Held})
	h.tr.BrokerReachable()
	h.run(5*time.Second, "a")
	h.want(map[string]State{"b": Withdrawn, "a": Alive})
	h.run(time.Minute, "a")
	h.want(map[string]State{"b": Withdrawn, "a": Alive})
}

func TestMostMembersDeadAtOnceWithdrawsNone(t *testing.T) {
	h := newHarness(t, "a", "b", "c", "d", "e")
	h.run(10*time.Second, "a", "b", "c", "d", "e")
	// Three of five stop at once: more likely the broker's or this reader's fault.
	h.run(time.Minute, "a", "b")
	v := h.tr.View()
	if !v.Frozen || !strings.Contains(v.FrozenReason, "3 of 5 members") {
		t.Errorf("frozen=%v %q, want the disruption named", v.Frozen, v.FrozenReason)
	}
	h.want(map[string]State{"a": Alive, "b": Alive, "c": Held, "d": Held, "e": Held})
	// One of them comes back: 2 of 5 dead is a minority, they are withdrawn.
	h.run(5*time.Second, "a", "b", "c")
	h.want(map[string]State{"c": Alive, "d": Withdrawn, "e": Withdrawn})
}

// Two members: the rule needs three, so a dead peer is withdrawn.
func TestDisruptionRuleNeedsThreeMembers(t *testing.T) {
	h := newHarness(t, "a", "b")
	h.run(10*time.Second, "a", "b")
	h.run(30*time.Second, "a")
	h.want(map[string]State{"b": Withdrawn})
}

func TestRegistryDecidesWhoCounts(t *testing.T) {
	h := newHarness(t, "a", "intruder")
	h.tr.SetMembers([]string{"a", "b"})
	h.run(5*time.Second, "a", "intruder")
	v := h.tr.View()
	h.want(map[string]State{"a": Alive, "intruder": Withdrawn, "b": Held})
	for _, m := range v.Members {
		if m.ID == "intruder" && !strings.Contains(m.Reason, "registry") {
			t.Errorf("intruder reason %q", m.Reason)
		}
	}
}

func TestLeaseDurationIsCapped(t *testing.T) {
	h := newHarness(t)
	h.tr.ObserveLease("greedy", "1", 24*time.Hour, true)
	h.run(MaxLeaseDuration + DefaultGracePeriod + time.Second)
	h.want(map[string]State{"greedy": Withdrawn})
}

func TestDiff(t *testing.T) {
	a := View{Members: []Member{{ID: "x", State: Alive}, {ID: "y", State: Alive}}}
	b := View{Members: []Member{{ID: "x", State: Withdrawn, Reason: "r"}}}
	got := Diff(a, b)
	if len(got) != 2 || got[0] != (Change{ID: "x", From: Alive, To: Withdrawn, Reason: "r"}) || got[1].ID != "y" || got[1].To != Held {
		t.Errorf("Diff = %+v", got)
	}
	if d := Diff(b, b); len(d) != 0 {
		t.Errorf("Diff of equal views = %+v", d)
	}
}

func TestServe(t *testing.T) {
	for _, tc := range []struct {
		s          State
		now, serve bool
	}{
		{Alive, false, true}, {Alive, true, true},
		{Withdrawn, true, false}, {Withdrawn, false, false},
		{Held, true, true}, {Held, false, false},
	} {
		if got := tc.s.Serve(tc.now); got != tc.serve {
			t.Errorf("%s.Serve(%v) = %v", tc.s, tc.now, got)
		}
	}
}
