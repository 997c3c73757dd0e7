// Package liveness decides, for one reader of the broker (an agent, strait dns, the
// federation status writer), whether each member of the clusterset is alive. It is the one
// liveness model every path uses, and it follows the node lifecycle controller:
//
//   - Freshness is judged on the reader's own clock only. The reader notes when it observed a
//     member's heartbeat Lease change; the renewTime the member wrote (on its own clock) is an
//     opaque token, never subtracted from the reader's clock, so clock skew changes nothing.
//   - While the reader cannot reach the broker, and for a full lease period after it can
//     again (or after the reader starts), nothing is withdrawn: a frozen or incomplete view
//     of the broker must not look like members dying.
//   - A member is withdrawn once no renewal was observed for its lease duration plus a grace
//     period, and returns as soon as a renewal is observed again.
//   - In a clusterset of three or more, when most members look dead at once the fault is
//     more likely the broker's or the reader's: no one more is withdrawn, and the view says so.
//
// A member's verdict has three values. Alive and Withdrawn are decisions; Held means "no
// decision": whoever acts on it keeps what it has (serves what it served, withholds what it
// withheld). The package is pure: callers feed it lease observations and broker errors.
package liveness

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/utils/clock"
)

// LeaseName is the name of a member's heartbeat Lease in its broker namespace.
const LeaseName = "strait-agent"

// Defaults. A member renews every DefaultHeartbeatInterval and its lease lasts three
// renewals, so one missed renewal changes nothing; with the grace period a member is
// withdrawn 25 s after the last renewal the reader saw.
const (
	DefaultHeartbeatInterval = 5 * time.Second
	DefaultGracePeriod       = 10 * time.Second
	// DefaultLeaseDuration is assumed for a lease that does not say.
	DefaultLeaseDuration = 3 * DefaultHeartbeatInterval
	// MaxLeaseDuration caps what a member may claim, so no record outlives its member by
	// more than that.
	MaxLeaseDuration = 5 * time.Minute
	// DisruptionMinMembers is the clusterset size from which "most members dead at once"
	// is taken for a fault of the broker or the reader.
	DisruptionMinMembers = 3
)

// State is a member's verdict.
type State string

// States.
const (
	// Alive: a renewal was observed within the lease duration plus grace.
	Alive State = "Alive"
	// Held: no decision can be made now (the reader just started, the broker is
	// unreachable or resyncing, most members look dead at once). Keep what you have.
	Held State = "Held"
	// Withdrawn: no renewal observed for longer than the lease duration plus grace.
	Withdrawn State = "Withdrawn"
)

// Serve says whether a member's contribution is served given its verdict and whether it is
// served now: Alive serves, Withdrawn does not, Held keeps the current answer.
func (s State) Serve(servedNow bool) bool {
	switch s {
	case Alive:
		return true
	case Withdrawn:
		return false
	}
	return servedNow
}

// Config tunes the tracker.
type Config struct {
	// Grace is how long after its lease duration a member without an observed renewal is
	// still kept.
	Grace time.Duration
}

// Member is one member's verdict.
type Member struct {
	ID    string `json:"id"`
	State State  `json:"state"`
	// LastRenewalObserved is when this reader last saw the member's lease change, on the
	// reader's clock; zero when it never has since it started.
	LastRenewalObserved time.Time `json:"lastRenewalObserved,omitzero"`
	// Reason explains the verdict, for status and events.
	Reason string `json:"reason"`
}

// Broker is the reader's view of the broker's reachability.
type Broker struct {
	Reachable bool `json:"reachable"`
	// Since is when the current reachability began (reader's clock).
	Since time.Time `json:"since,omitzero"`
	// Error is the last error while unreachable.
	Error string `json:"error,omitempty"`
	// ResyncUntil: after the reader starts or the broker returns, withdrawals resume only
	// once a full lease period has been watched.
	ResyncUntil time.Time `json:"resyncUntil,omitzero"`
}

// View is the tracker's verdicts at one moment.
type View struct {
	Now    time.Time `json:"now"`
	Broker Broker    `json:"broker"`
	// Frozen is true when no member may be withdrawn now; Reason says why.
	Frozen       bool   `json:"frozen"`
	FrozenReason string `json:"frozenReason,omitempty"`
	// Members by ID, sorted.
	Members []Member `json:"members"`
}

// State returns a member's verdict in the view; a member the view does not know is Held.
func (v View) State(id string) State {
	for _, m := range v.Members {
		if m.ID == id {
			return m.State
		}
	}
	return Held
}

// Change is a verdict that changed between two evaluations.
type Change struct {
	ID       string
	From, To State
	Reason   string
}

type member struct {
	token      string        // the lease's renewal as the member wrote it; compared, never read as a time
	observed   time.Time     // when the token last changed, reader's clock; zero: never
	duration   time.Duration // the lease duration the member declares, capped
	withdrawn  bool          // the last decision was to withdraw
	registered bool
	hasLease   bool
}

// Tracker holds one reader's observations. It is safe for concurrent use.
type Tracker struct {
	cfg   Config
	clock clock.PassiveClock

	mu      sync.Mutex
	started time.Time
	resumed time.Time // last time renewals were seen flowing again after an outage
	// resyncing: the broker answers again but no lease renewal has been seen since, so the
	// reader's watches may still be catching up (client-go retries a refused watch with a
	// backoff of up to a minute): withdraw no one until a renewal shows they flow.
	resyncing bool
	reachable bool
	since     time.Time
	lastErr   string
	// registry: when set, only registered members count (see SetMembers).
	registry bool
	members  map[string]*member
	// listeners are called by Run when verdicts change.
	listeners []func(View, []Change)
	// states are the verdicts of the last View.
	states map[string]State
}

// State returns a member's verdict as of the last evaluation (Run evaluates every
// interval); Held before the first one and for members it does not know.
func (t *Tracker) State(id string) State {
	t.mu.Lock()
	defer t.mu.Unlock()
	if s, ok := t.states[id]; ok {
		return s
	}
	return Held
}

// OnChange registers fn to be called by Run with the view whenever a verdict or the
// freeze changed.
func (t *Tracker) OnChange(fn func(View, []Change)) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.listeners = append(t.listeners, fn)
}

// NewTracker returns a tracker whose observation window starts now.
func NewTracker(cfg Config, clk clock.PassiveClock) *Tracker {
	if clk == nil {
		clk = clock.RealClock{}
	}
	if cfg.Grace < 0 {
		cfg.Grace = 0
	}
	now := clk.Now()
	return &Tracker{cfg: cfg, clock: clk, started: now, resumed: now, since: now, reachable: true, members: map[string]*member{}}
}

func (t *Tracker) get(id string) *member {
	m := t.members[id]
	if m == nil {
		m = &member{duration: DefaultLeaseDuration}
		t.members[id] = m
	}
	return m
}

// ObserveLease records what the reader sees of a member's lease: token is its renewal as
// written (any string that changes on every renewal), duration the lease duration it
// declares (0: the default). fresh is false for objects of an informer's initial list: a
// lease seen for the first time then may be hours old, so only a change counts as a
// renewal; a lease created while the reader watches counts at once.
func (t *Tracker) ObserveLease(id, token string, duration time.Duration, fresh bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	m := t.get(id)
	if duration <= 0 {
		duration = DefaultLeaseDuration
	}
	m.duration = min(duration, MaxLeaseDuration)
	seen := m.hasLease
	m.hasLease = true
	if token == m.token && seen {
		return
	}
	m.token = token
	if seen || fresh {
		now := t.clock.Now()
		m.observed = now
		if t.resyncing && t.reachable {
			t.resyncing, t.resumed = false, now
		}
	}
}

// ForgetLease records that a member's lease was deleted. Its window goes on from the last
// renewal observed: a deleted lease is not a renewal, and not a death either.
func (t *Tracker) ForgetLease(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if m := t.members[id]; m != nil {
		m.hasLease = false
		m.token = ""
	}
}

// SetMembers declares the registered members (the membership registry on the broker).
// From the first call on, only they get verdicts and count for the disruption rule; anyone
// else is Withdrawn with a reason saying it is not a member.
func (t *Tracker) SetMembers(ids []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.registry = true
	set := map[string]bool{}
	for _, id := range ids {
		set[id] = true
		t.get(id).registered = true
	}
	for id, m := range t.members {
		if !set[id] {
			m.registered = false
		}
	}
}

// BrokerUnreachable records a failed request or watch to the broker.
func (t *Tracker) BrokerUnreachable(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err != nil {
		t.lastErr = err.Error()
	}
	if t.reachable {
		t.reachable = false
		t.since = t.clock.Now()
	}
}

// BrokerReachable records a successful request to the broker. Coming back from
// unreachable starts a resync: nothing is withdrawn until a lease renewal has been seen
// again (the reader's watches flow) and, from then, a full lease period has been watched.
func (t *Tracker) BrokerReachable() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.reachable {
		now := t.clock.Now()
		t.reachable, t.since, t.resumed, t.resyncing = true, now, now, true
		t.lastErr = ""
	}
}

// View computes every verdict now. Withdrawals are decided here and remembered (a member
// withdrawn stays so until it renews), so the tracker must be evaluated regularly: Run does.
func (t *Tracker) View() View {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock.Now()
	window := t.started
	if t.resumed.After(window) {
		window = t.resumed
	}
	v := View{Now: now, Broker: Broker{Reachable: t.reachable, Since: t.since, Error: t.lastErr}}

	ids := make([]string, 0, len(t.members))
	for id, m := range t.members {
		if !t.registry || m.registered || m.hasLease {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)

	// A member is expired when no renewal was observed within its lease duration plus
	// grace, counted from its last observed renewal or, if later, from when the reader
	// started or the broker came back.
	expired := map[string]bool{}
	counted, dead := 0, 0
	var resyncUntil time.Time
	for _, id := range ids {
		m := t.members[id]
		if t.registry && !m.registered {
			continue
		}
		from := window
		if m.observed.After(from) {
			from = m.observed
		}
		deadline := from.Add(m.duration + t.cfg.Grace)
		if w := window.Add(m.duration + t.cfg.Grace); w.After(resyncUntil) {
			resyncUntil = w
		}
		counted++
		if now.After(deadline) {
			expired[id] = true
			dead++
		}
	}
	if now.Before(resyncUntil) {
		v.Broker.ResyncUntil = resyncUntil
	}

	switch {
	case !t.reachable:
		v.Frozen = true
		v.FrozenReason = fmt.Sprintf("the broker is unreachable since %s", t.since.UTC().Format(time.RFC3339))
		if t.lastErr != "" {
			v.FrozenReason += ": " + t.lastErr
		}
	case t.resyncing:
		v.Frozen = true
		v.FrozenReason = fmt.Sprintf("resyncing: the broker answers again since %s, but no lease renewal has been seen since", t.since.UTC().Format(time.RFC3339))
	case counted >= DisruptionMinMembers && dead*2 > counted:
		v.Frozen = true
		v.FrozenReason = fmt.Sprintf("%d of %d members stopped renewing their leases at once; the fault is likely the broker's or this reader's, so none is withdrawn", dead, counted)
	}

	for _, id := range ids {
		m := t.members[id]
		out := Member{ID: id, LastRenewalObserved: m.observed}
		switch {
		case t.registry && !m.registered:
			out.State, out.Reason = Withdrawn, "not in the clusterset's membership registry"
		case !expired[id] && !m.observed.IsZero() && !m.observed.Before(window):
			out.State, out.Reason = Alive, "lease renewal observed"
			m.withdrawn = false
		case !expired[id] && m.withdrawn:
			// Withdrawn before a restart of the window (the broker came back): it stays
			// withdrawn until a renewal is observed.
			out.State, out.Reason = Withdrawn, "no lease renewal observed since it was withdrawn"
		case !expired[id]:
			out.State, out.Reason = Held, "no lease renewal observed yet since "+window.UTC().Format(time.RFC3339)
		case m.withdrawn:
			out.State, out.Reason = Withdrawn, "no lease renewal observed within the lease duration and grace period"
		case v.Frozen:
			out.State, out.Reason = Held, "no lease renewal observed within the lease duration and grace period, but withdrawals are frozen: "+v.FrozenReason
		default:
			m.withdrawn = true
			out.State, out.Reason = Withdrawn, "no lease renewal observed within the lease duration and grace period"
		}
		v.Members = append(v.Members, out)
	}
	t.states = make(map[string]State, len(v.Members))
	for _, m := range v.Members {
		t.states[m.ID] = m.State
	}
	return v
}

// Diff lists the verdicts that differ between two views (a member new in next counts as
// coming from Held).
func Diff(prev, next View) []Change {
	var out []Change
	for _, m := range next.Members {
		if from := prev.State(m.ID); from != m.State {
			out = append(out, Change{ID: m.ID, From: from, To: m.State, Reason: m.Reason})
		}
	}
	for _, m := range prev.Members {
		if !slices.ContainsFunc(next.Members, func(n Member) bool { return n.ID == m.ID }) && m.State != Held {
			out = append(out, Change{ID: m.ID, From: m.State, To: Held, Reason: "no longer known"})
		}
	}
	return out
}

// Summary is a one-line description of a view, for logs and status.
func (v View) Summary() string {
	counts := map[State][]string{}
	for _, m := range v.Members {
		counts[m.State] = append(counts[m.State], m.ID)
	}
	var parts []string
	for _, s := range []State{Alive, Held, Withdrawn} {
		if ids := counts[s]; len(ids) > 0 {
			parts = append(parts, fmt.Sprintf("%s: %s", strings.ToLower(string(s)), strings.Join(slices.Sorted(slices.Values(ids)), ",")))
		}
	}
	s := strings.Join(parts, "; ")
	if v.Frozen {
		s += " (frozen: " + v.FrozenReason + ")"
	}
	return s
}

// Run evaluates the tracker every interval until done is closed, and calls the OnChange
// listeners with the view whenever a verdict or the freeze changed.
func (t *Tracker) Run(done <-chan struct{}, interval time.Duration) {
	ticker := time.NewTicker(interval)
	defer ticker.Stop()
	var last View
	for first := true; ; first = false {
		v := t.View()
		if changes := Diff(last, v); first || len(changes) > 0 || v.FrozenReason != last.FrozenReason {
			last = v
			t.mu.Lock()
			listeners := slices.Clone(t.listeners)
			t.mu.Unlock()
			for _, fn := range listeners {
				fn(v, changes)
			}
		}
		select {
		case <-done:
			return
		case <-ticker.C:
		}
	}
}

// Published is a reader's view as it writes it for others to read (the agent keeps it in
// its member cluster for `strait status`): times are on the writer's clock, so readers
// compare them with WrittenAt only, never with their own clock.
type Published struct {
	// WrittenAt is when the view was taken.
	WrittenAt time.Time `json:"writtenAt"`
	// Identity names the writer (the agent replica).
	Identity string `json:"identity,omitempty"`
	View
}

// Age says how long before the view was written t was, "never" for a zero time.
func (p Published) Age(t time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return p.WrittenAt.Sub(t).Round(time.Second).String()
}

// ViewConfigMap and ViewKey: where an agent publishes its view in its member cluster's
// strait-system namespace.
const (
	ViewConfigMap = "strait-agent-view"
	ViewKey       = "view.json"
)
