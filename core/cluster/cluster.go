package cluster

import (
	"bytes"
	"fmt"
	"sort"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Leader is the holder of the leader key.
type Leader struct {
	Name    string
	Version string
	Session string
	// Member is the leader's member value; empty (only Name set) when the
	// leader has no member key.
	Member Member
}

// Raw is a stored value kept as bytes with its version.
type Raw struct {
	Data    []byte
	Version string
}

// Cluster is one node's view of the whole cluster (Patroni's read model).
type Cluster struct {
	// Initialize is the system identifier; nil when the key is absent, ""
	// while a bootstrap is in progress.
	Initialize        *string
	InitializeVersion string
	// Config is the raw /config value; nil when absent.
	Config   *Raw
	Leader   *Leader
	Members  []Member
	Failover *Failover
	Sync     *SyncState
	History  History
	// HasHistory tells an absent /history from an empty one.
	HasHistory bool
	Status     Status
	Failsafe   Failsafe
	// Malformed maps each key whose value does not parse ("initialize",
	// "leader", "failover", "sync", "history", "status", "failsafe",
	// "members/<name>"; see the Key constants) to the problem. FromDCS
	// gives such a key the reading its comment names; Decide looks here to
	// tell an unreadable value from an absent one and reads it the safe way.
	Malformed map[string]string
}

// FromDCS decodes a raw DCS read. A malformed value never fails the whole
// read: it is named in Cluster.Malformed and in the problems returned (for
// the caller to log and publish), and read as follows so that nothing
// unsafe follows from it:
//   - initialize: kept as read, but SysID is "" (no system identifier known);
//   - leader: a Leader with an empty Name (the key is held, by nobody known);
//   - members/<name>: a member with no data (not running, no api_url);
//   - sync: an empty SyncState with the version read (for compare-and-set);
//   - failover, history, status, failsafe: absent.
//
// Decide reads the flags in Malformed to refuse what an absent value would
// allow (docs/dcs-values.md).
func FromDCS(raw *dcs.Cluster) (*Cluster, []error) {
	c := &Cluster{}
	var problems []error
	bad := func(key, reading string, err error) {
		if c.Malformed == nil {
			c.Malformed = map[string]string{}
		}
		c.Malformed[key] = err.Error()
		problems = append(problems, fmt.Errorf("malformed /%s, read as %s: %w", key, reading, err))
	}
	if raw == nil {
		return c, nil
	}
	if raw.Initialize != nil {
		s := string(bytes.TrimSpace(raw.Initialize.Data))
		c.Initialize = &s
		c.InitializeVersion = raw.Initialize.Version
		if s != "" && !ValidSysID(s) {
			bad(KeyInitialize, "no system identifier known", fmt.Errorf("initialize: %q is not a system identifier", truncate(s)))
		}
	}
	if raw.Config != nil {
		c.Config = &Raw{Data: raw.Config.Data, Version: raw.Config.Version}
	}
	for _, rm := range raw.Members {
		m, err := ParseMember(rm.Name, rm.Data)
		if err != nil {
			bad(MemberKey(rm.Name), "a member with no data", err)
		}
		m.Version, m.Session = rm.Version, rm.Session
		c.Members = append(c.Members, m)
	}
	sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
	if raw.Leader != nil {
		l := &Leader{Name: raw.Leader.Name, Version: raw.Leader.Version, Session: raw.Leader.Session}
		if err := validLeaderName(raw.Leader.Name); err != nil {
			// Held, but by no member anybody can name: nobody races,
			// nobody follows it, a running primary is not its holder.
			l.Name = ""
			bad(KeyLeader, "held by an unknown member", err)
		}
		l.Member = Member{Name: l.Name}
		if m := c.Member(l.Name); m != nil && l.Name != "" {
			l.Member = *m
		}
		c.Leader = l
	}
	if raw.Failover != nil {
		f, err := ParseFailover(raw.Failover.Data)
		if err != nil {
			bad(KeyFailover, "no switchover or failover requested", err)
		} else {
			f.Version = raw.Failover.Version
			c.Failover = &f
		}
	}
	if raw.Sync != nil {
		s, err := ParseSyncState(raw.Sync.Data)
		if err != nil {
			bad(KeySync, "no synchronous standby known", err)
			s = SyncState{}
		}
		s.Version = raw.Sync.Version
		c.Sync = &s
	}
	if raw.History != nil {
		h, err := ParseHistory(raw.History.Data)
		if err != nil {
			bad(KeyHistory, "timeline history unknown", err)
		} else {
			c.History, c.HasHistory = h, true
		}
	}
	if raw.Status != nil {
		s, err := ParseStatus(raw.Status.Data)
		if err != nil {
			bad(KeyStatus, "leader position unknown", err)
		} else {
			c.Status = s
		}
	}
	if raw.Failsafe != nil {
		f, err := ParseFailsafe(raw.Failsafe.Data)
		if err != nil {
			bad(KeyFailsafe, "no member listed", err)
		} else {
			c.Failsafe = f
		}
	}
	for _, o := range raw.Omitted {
		c.omitted(o, bad)
	}
	return c, problems
}

// omitted reads a value the plugin left out of the read for its size as a
// present value that does not parse: an absent leader key would start a
// leader race, an absent /sync would turn synchronous mode off.
func (c *Cluster) omitted(o dcs.OmittedValue, bad func(key, reading string, err error)) {
	err := fmt.Errorf("%s: %d bytes, too large to be read", o.Path, o.Size)
	switch name, member := strings.CutPrefix(o.Path, dcs.MembersPath); {
	case member:
		if c.Member(name) == nil {
			c.Members = append(c.Members, Member{Name: name})
			sort.Slice(c.Members, func(i, j int) bool { return c.Members[i].Name < c.Members[j].Name })
		}
		bad(MemberKey(name), "a member with no data", err)
	case o.Path == KeyLeader:
		c.Leader = &Leader{}
		bad(KeyLeader, "held by an unknown member", err)
	case o.Path == KeyInitialize:
		unknown := ""
		c.Initialize = &unknown
		bad(KeyInitialize, "no system identifier known", err)
	case o.Path == string(dcs.KeyConfig):
		// Not JSON: the controller keeps the configuration in effect.
		c.Config = &Raw{Data: []byte("(too large to be read)")}
		bad(string(dcs.KeyConfig), "the configuration in effect kept", err)
	case o.Path == KeySync:
		c.Sync = &SyncState{}
		bad(KeySync, "no synchronous standby known", err)
	case o.Path == KeyFailover:
		bad(KeyFailover, "no switchover or failover requested", err)
	case o.Path == KeyHistory:
		c.History, c.HasHistory = nil, false
		bad(KeyHistory, "timeline history unknown", err)
	case o.Path == KeyStatus:
		c.Status = Status{}
		bad(KeyStatus, "leader position unknown", err)
	case o.Path == KeyFailsafe:
		c.Failsafe = nil
		bad(KeyFailsafe, "no member listed", err)
	default:
		bad(o.Path, "left out", err)
	}
}

// Member returns the member with the name, or nil.
func (c *Cluster) Member(name string) *Member {
	for i := range c.Members {
		if c.Members[i].Name == name {
			return &c.Members[i]
		}
	}
	return nil
}

// LeaderName is the leader's name, "" when unlocked.
func (c *Cluster) LeaderName() string {
	if c.Leader == nil {
		return ""
	}
	return c.Leader.Name
}

// IsLocked reports whether some member holds the leader key.
func (c *Cluster) IsLocked() bool { return c.Leader != nil }

// Timeline is the cluster's timeline from /history: the last line's
// timeline + 1, 1 for an empty history, 0 when absent.
func (c *Cluster) Timeline() int {
	if !c.HasHistory {
		return 0
	}
	if len(c.History) == 0 {
		return 1
	}
	return c.History[len(c.History)-1].Timeline + 1
}

// SysID is the system identifier from /initialize, "" when unknown (absent,
// a bootstrap in progress, or malformed).
func (c *Cluster) SysID() string {
	if c.Initialize == nil || c.IsMalformed(KeyInitialize) {
		return ""
	}
	return *c.Initialize
}

// IsSync reports whether the member is listed in /sync.
func (c *Cluster) IsSync(name string) bool { return c.Sync != nil && c.Sync.Matches(name) }

// LagOf is the member's lag behind the leader's last known position in
// bytes (never below 0), and false when unknown.
func (c *Cluster) LagOf(m Member) (int64, bool) {
	if m.XLogLocation == nil || c.Status.Optime == 0 {
		return 0, false
	}
	lag := c.Status.Optime - *m.XLogLocation
	if lag < 0 {
		lag = 0
	}
	return lag, true
}
