package ha

import (
	"strings"
	"time"

	"github.com/custos-ha/custos/core/cluster"
)

// Config is what Decide needs of the configuration: the dynamic settings in
// effect and this member's local ones.
type Config struct {
	// PermanentSlots are the dynamic configuration's slots; IgnoreSlots
	// its ignore_slots.
	PermanentSlots []cluster.SlotSpec
	IgnoreSlots    []cluster.SlotMatcher
	// KeepMemberSlots: every failover-eligible replica keeps a slot for
	// every other member (member_slots_ttl > 0, Patroni 4), so a promoted
	// member has them ready.
	KeepMemberSlots bool

	TTL                  time.Duration
	LoopWait             time.Duration
	RetryTimeout         time.Duration
	MaximumLagOnFailover int64
	PrimaryStartTimeout  time.Duration
	CheckTimeline        bool
	Paused               bool
	UseSlots             bool

	UsePgRewind                            bool
	RemoveDataDirectoryOnRewindFailure     bool
	RemoveDataDirectoryOnDivergedTimelines bool

	// Synchronous replication: SyncMode is "off", "on" (priority,
	// FIRST n) or "quorum" (ANY n).
	SyncMode   string
	SyncStrict bool
	// FailsafeMode keeps a primary running while the DCS is down as long
	// as every other member in /failsafe accepts its POST /failsafe.
	FailsafeMode         bool
	SyncNodeCount        int
	MaximumLagOnSyncNode int64

	// Tags are this member's tags.
	Tags cluster.Tags
	// CloneWithoutLeader: a configured replica method can create this
	// member's data without a running member to copy from (a restore from
	// a backup: the no_leader capability).
	CloneWithoutLeader bool
	// StandbyCluster: /config sets standby_cluster, which custos does not
	// run yet; a member then never promotes nor bootstraps a cluster
	// (a standby cluster's member must not become a second primary).
	StandbyCluster bool
}

// Synchronous modes (Config.SyncMode).
const (
	SyncOff    = "off"
	SyncOn     = "on"
	SyncQuorum = "quorum"
)

// Replication is one walsender of the local primary (pg_stat_replication):
// ApplicationName is the standby's member name.
type Replication struct {
	ApplicationName string
	State           string
	SyncState       string
	FlushLSN        int64
}

// DataDir is the state of the local data directory.
type DataDir int

// Data directory states.
const (
	DataDirUnknown DataDir = iota
	// DataDirEmpty: absent or empty; a bootstrap or clone may create it.
	DataDirEmpty
	// DataDirInitialized: holds a PostgreSQL cluster.
	DataDirInitialized
	// DataDirBroken: present but unusable (not a directory, wrong owner,
	// garbage); nothing is started and nothing is wiped automatically.
	DataDirBroken
)

func (d DataDir) String() string {
	switch d {
	case DataDirEmpty:
		return "empty"
	case DataDirInitialized:
		return "initialized"
	case DataDirBroken:
		return "broken"
	}
	return "unknown"
}

// pg_control "Database cluster state" values Decide cares about.
const (
	ControlInProduction       = "in production"
	ControlShutDown           = "shut down"
	ControlShutDownInRecovery = "shut down in recovery"
	ControlShuttingDown       = "shutting down"
	ControlInCrashRecovery    = "in crash recovery"
	ControlInArchiveRecovery  = "in archive recovery"
	ControlStartingUp         = "starting up"
	ControlUnknown            = ""
)

// Postgres is the observation of the local PostgreSQL.
type Postgres struct {
	DataDir DataDir
	// Problem explains a broken data dir or a failed observation.
	Problem string
	// SysID is the database system identifier from pg_control.
	SysID string
	// ControlState is pg_control's "Database cluster state".
	ControlState string
	// CheckpointLSN is pg_control's latest checkpoint location.
	CheckpointLSN int64
	// MinRecoveryEnd is pg_control's minimum recovery ending location.
	MinRecoveryEnd int64
	// ControlTimeline is the newest timeline pg_control knows: the larger of
	// the latest checkpoint's and the minimum recovery ending location's.
	ControlTimeline int
	// BackupLabel: the data directory holds a backup_label (a fresh clone
	// or a rewound directory not started yet).
	BackupLabel bool

	// Running: the postmaster process is alive.
	Running bool
	// Ready: it accepts connections and was queried this cycle.
	Ready      bool
	InRecovery bool
	Timeline   int
	// LSN is the current WAL position (primary) or max(received, replayed).
	LSN int64
	// Upstream is the member the replica is configured to follow, "" for
	// none.
	Upstream  string
	Streaming bool
	// ServerVersion is server_version_num of the running server.
	ServerVersion int
	// PendingRestart: a changed setting waits for a restart.
	PendingRestart bool
	// Replication lists the standbys streaming from this primary.
	Replication []Replication
	// SyncStandbyNames is the running synchronous_standby_names.
	SyncStandbyNames string
	// Slots are the positions of the replication slots: restart_lsn of a
	// physical slot, confirmed_flush_lsn of a logical one.
	Slots map[string]int64
	// History is the local timeline history (where this server left each
	// earlier timeline), read while it is stopped or does not stream; nil
	// when not read.
	History []TimelineSwitch
}

// TimelineSwitch is one line of a timeline history: the server left
// Timeline at LSN.
type TimelineSwitch struct {
	Timeline int
	LSN      int64
}

// Primary reports whether PostgreSQL runs as a primary.
func (p Postgres) Primary() bool { return p.Running && p.Ready && !p.InRecovery }

// Peer is another member's answer to GET /patroni, gathered by the
// controller when Decide asks for it.
type Peer struct {
	Name string
	// Reachable: it answered with its WAL positions. Answered: its agent
	// answered at all (PostgreSQL may be down: no positions).
	Reachable bool
	Answered  bool
	// Primary: it says it runs a primary (role primary/master or a WAL
	// location without received/replayed positions).
	Primary          bool
	Running          bool
	LSN              int64
	Timeline         int
	NoFailover       bool
	FailoverPriority int
	WatchdogFailed   bool
}

// Busy describes an action that runs in the background.
type Busy struct {
	Kind  Kind
	Since time.Time
}

// Outcome is the result of an action that finished since the last cycle.
type Outcome struct {
	Kind Kind
	// Err is empty on success.
	Err string
	// Hook names the hook script that refused the action before it began
	// ("pre_promote"); Err says why.
	Hook string
	At   time.Time
}

// Memory is what Decide remembers between cycles; it returns the new value
// in every Decision and gets it back in the next Input.
type Memory struct {
	// Bootstrapping: this member won the initialize race and has not yet
	// published the new cluster.
	Bootstrapping bool
	// CrashedAt is when PostgreSQL was found down while this member held
	// the leader key as a primary.
	CrashedAt time.Time
	// RewindFailed: a pg_rewind failed; it is not retried until the data
	// directory changes.
	RewindFailed bool
	// Demoted: this member stopped a primary and has not started as a
	// replica since.
	Demoted bool
	// Rewound: pg_rewind succeeded; the next start follows the leader
	// without another divergence check.
	Rewound bool
	// HandOff: a switchover's graceful demote finished; the leader key is
	// to be released.
	HandOff bool
	// HandOffFailed says why the last switchover's demote failed; the
	// leader clears /failover.
	HandOffFailed string
	// ScheduledRestart is the planned restart, if any.
	ScheduledRestart *ScheduledRestart
	// ManagesSyncNames: synchronous_standby_names is set by the HA loop
	// (synchronous mode); it is given back when the mode is turned off.
	ManagesSyncNames bool
	// QuorumAddedAt is the primary's WAL position when each standby
	// (lower-cased name) joined synchronous_standby_names in quorum mode.
	QuorumAddedAt map[string]int64
	// Crashed: the postmaster exited without this member stopping it, and
	// has not been started since. StartFailed: the last start failed.
	Crashed     bool
	StartFailed bool
	// Role is the role this member last had ("primary", "replica",
	// "demoted", ...): a stopped member keeps publishing it.
	Role string
	// FailsafeKept is when this primary last stayed primary on its
	// members' acknowledgement with the DCS down (failsafe mode); zero
	// once the DCS answers.
	FailsafeKept time.Time
	// DataTimeline is the timeline this member's data last ran on, and
	// DataTimelineOf the member that started it: this one when it ran as
	// a primary on it, the leader it streamed it from otherwise (0 and ""
	// when not known, or since the data directory was replaced). Another
	// member that promoted onto the same timeline number wrote different
	// WAL under it: the two diverged, whatever the switch points say.
	DataTimeline   int
	DataTimelineOf string
	// FormerTimeline is the timeline the data ran on before this member's
	// last promotion, and FormerTimelineOf the member that started it (0
	// and "" when not known). The /history this member writes as the new
	// leader names that member for the switch onto it: two promotions
	// onto one timeline number at one switch point look alike otherwise.
	FormerTimeline   int
	FormerTimelineOf string
	// PromoteRefusedAt is when pre_promote last refused this member's
	// promotion: it stays out of the leader race for ttl after.
	PromoteRefusedAt time.Time
	// BootstrapFailed is the error of a bootstrap of this process that
	// failed. Such a member does not race for /initialize again: the
	// same failure (initdb missing, a bad option) would repeat at once,
	// woken by its own /initialize writes. It may still clone.
	BootstrapFailed string
}

// Input is one observation of the world.
type Input struct {
	// Now is the time of the decision: after the DCS read and the
	// observation of PostgreSQL, so that a read that hung counts.
	Now  time.Time
	Name string
	// APIURL and ConnURL are this member's published addresses.
	Config Config

	// Cluster is the DCS view; nil when the DCS could not be read.
	Cluster *cluster.Cluster
	// DCSError says why the DCS could not be read.
	DCSError string
	// DCSLastSeen is when the DCS was last read successfully (the start
	// of that read).
	DCSLastSeen time.Time

	// LeaderExpiry is when the leader key this member holds expires
	// unless renewed again, counted from before the last successful
	// acquire or renewal request was sent; zero when this member did not
	// acquire or renew it (or no longer counts on it).
	LeaderExpiry time.Time
	// RenewFailed says why the renewal of the leader key failed in the
	// last cycle; "" when it did not fail. KeyLost: the DCS answered that
	// the key is not this member's any more (taken or deleted).
	RenewFailed string
	KeyLost     bool

	// Watchdog is the state of this member's watchdog.
	Watchdog Watchdog

	Postgres Postgres

	// Busy is the background action in progress, if any.
	Busy *Busy
	// Outcome is the background action that finished since the last cycle.
	Outcome *Outcome

	// Peers are the other members' answers, when PeersFetched: gathered in
	// this cycle, after the DCS read, because the last decision asked.
	Peers        []Peer
	PeersFetched bool

	// PostmasterExited: the postmaster exited since the last cycle, and
	// not because this member stopped it.
	PostmasterExited bool

	// ShuttingDown: the agent was asked to stop.
	ShuttingDown bool

	// Request is an operator's request taken in by this cycle.
	Request *Request

	// LastFailsafe is /failsafe as last read (kept while the DCS is down).
	LastFailsafe cluster.Failsafe
	// FailsafeAcks are the members' answers to this primary's POST
	// /failsafe, when FailsafeChecked: asked in this cycle, after a DCS
	// read that failed, because the last decision asked.
	FailsafeAcks    map[string]bool
	FailsafeChecked bool
	// FailsafeHeartbeat is when a primary last reached this replica with
	// POST /failsafe.
	FailsafeHeartbeat time.Time

	Memory Memory
}

// RequestKind names an operator request.
type RequestKind string

// Operator requests (REST API, custosctl).
const (
	RequestRestart       RequestKind = "restart"
	RequestCancelRestart RequestKind = "cancel_restart"
	RequestReinitialize  RequestKind = "reinitialize"
)

// Request is an operator's request, from the mutating REST endpoints
// (POST /restart, /reinitialize and the like).
type Request struct {
	Kind RequestKind
	// Restart conditions: Role ("primary", "replica", "standby_leader";
	// empty = any), PostgresVersion (restart only if the running
	// server_version_num is lower; 0 = any), RestartPending (only if a
	// setting waits for a restart).
	Role            string
	PostgresVersion int
	RestartPending  bool
	// Timeout bounds the restart's start (0: pg_ctl_timeout).
	Timeout time.Duration
	// Schedule, when set, plans the restart instead of running it.
	Schedule *time.Time
	// Force cancels a background action in progress (reinitialize).
	Force bool
	// FromLeader clones from the leader even when a clonefrom member exists.
	FromLeader bool
}

// ReplyStatus tells the requester what became of a request.
type ReplyStatus int

// Reply statuses; the REST API maps them onto Patroni's codes.
const (
	// ReplyDone: done already (e.g. a scheduled restart deleted).
	ReplyDone ReplyStatus = iota + 1
	// ReplyStarted: the action runs; for a restart the requester waits
	// for its outcome.
	ReplyStarted
	// ReplyScheduled: planned for later.
	ReplyScheduled
	// ReplyRefused: conditions not met (Message says which).
	ReplyRefused
	// ReplyConflict: something else of the kind is already planned or
	// running.
	ReplyConflict
	// ReplyNotFound: nothing to act on (no scheduled restart).
	ReplyNotFound
)

// Reply answers a Request.
type Reply struct {
	Status  ReplyStatus
	Message string
}

// ScheduledRestart is a restart planned for later; it lives in memory
// only (a restarted agent forgets it, as Patroni) and is published in the
// member key.
type ScheduledRestart struct {
	At              time.Time
	Role            string
	PostgresVersion int
	RestartPending  bool
	Timeout         time.Duration
}

// Kind names an action.
type Kind string

// Actions. The controller executes a Decision's actions in order and stops
// at the first that fails; long ones (marked async) run in the background and
// come back as an Outcome.
const (
	// ActAcquireLeader creates the leader key (create-only).
	ActAcquireLeader Kind = "acquire_leader"
	// ActRenewLeader renews the leader key and publishes /status.
	ActRenewLeader Kind = "renew_leader"
	// ActReleaseLeader deletes the leader key if it is mine.
	ActReleaseLeader Kind = "release_leader"
	// ActRaceInitialize creates /initialize with "" (create-only).
	ActRaceInitialize Kind = "race_initialize"
	// ActWriteInitialize writes the local system identifier to /initialize
	// (compare-and-set on the version read, or create-only when absent).
	ActWriteInitialize Kind = "write_initialize"
	// ActCancelInitialize deletes /initialize after a failed bootstrap.
	ActCancelInitialize Kind = "cancel_initialize"
	// ActWriteConfig seeds /config from bootstrap.dcs.
	ActWriteConfig Kind = "write_config"
	// ActWriteHistory writes /history from the local timeline history.
	ActWriteHistory Kind = "write_history"
	// ActBootstrap (async) runs initdb and starts the new primary.
	ActBootstrap Kind = "bootstrap"
	// ActCreateReplica (async) clones the data directory from Member.
	ActCreateReplica Kind = "create_replica"
	// ActStart (async) starts PostgreSQL, as a primary or following Member.
	ActStart Kind = "start"
	// ActStop stops PostgreSQL with Mode (smart, fast, immediate).
	ActStop Kind = "stop"
	// ActPromote (async) promotes the local replica.
	ActPromote Kind = "promote"
	// ActFollow points the running replica at Member ("" for none).
	ActFollow Kind = "follow"
	// ActRewind (async) runs pg_rewind against Member.
	ActRewind Kind = "rewind"
	// ActRemoveDataDir wipes the data directory.
	ActRemoveDataDir Kind = "remove_data_dir"
	// ActSyncSlots makes the replication slots match Slots.
	ActSyncSlots Kind = "sync_slots"
	// ActTouchMember publishes this member's key. It runs even when an
	// earlier action of the decision failed.
	ActTouchMember Kind = "touch_member"
	// ActCancel cancels the background action in progress.
	ActCancel Kind = "cancel"
	// ActDemote (async) is the graceful demote of a switchover: checkpoint,
	// fast stop, and a short wait for Member (the candidate, "" for any) to
	// receive the shutdown checkpoint. The leader key is released by the
	// next decision.
	ActDemote Kind = "demote"
	// ActClearFailover resets /failover to {} (compare-and-set on the
	// version read).
	ActClearFailover Kind = "clear_failover"
	// ActRestart (async) stops PostgreSQL (fast) and starts it again in
	// the same role; Timeout bounds the start.
	ActRestart Kind = "restart"
	// ActReinitialize (async) stops PostgreSQL, wipes the data directory
	// and clones it again from Member.
	ActReinitialize Kind = "reinitialize"
	// ActSetSyncStandbyNames sets synchronous_standby_names to Value and
	// reloads; a nil Value gives it back to the configuration.
	ActSetSyncStandbyNames Kind = "set_synchronous_standby_names"
	// ActWriteSync writes /sync = {leader: me, sync_standby: Members,
	// quorum: Quorum} (compare-and-set on the version read; create-only
	// when absent).
	ActWriteSync Kind = "write_sync"
	// ActDeleteSync deletes /sync (compare-and-set on the version read).
	ActDeleteSync Kind = "delete_sync"
	// ActSetFailsafe writes /failsafe = Failsafe.
	ActSetFailsafe Kind = "set_failsafe"
	// ActArmWatchdog arms the watchdog (timeout ttl - safety_margin); the
	// controller feeds it on every renewal of the leader key from then on.
	ActArmWatchdog Kind = "arm_watchdog"
	// ActDisarmWatchdog disarms it (the magic close).
	ActDisarmWatchdog Kind = "disarm_watchdog"
)

// Async reports whether the action runs in the background.
func (k Kind) Async() bool {
	switch k {
	case ActBootstrap, ActCreateReplica, ActStart, ActPromote, ActRewind, ActDemote, ActRestart, ActReinitialize:
		return true
	}
	return false
}

// Stop modes.
const (
	StopSmart     = "smart"
	StopFast      = "fast"
	StopImmediate = "immediate"
)

// Action is one step for the controller.
type Action struct {
	Kind Kind
	// Member is the clone source, upstream or rewind source.
	Member string
	// Mode is the stop mode.
	Mode string
	// AsPrimary: start as a primary (ActStart).
	AsPrimary bool
	// Slots is the slot plan (ActSyncSlots).
	Slots *cluster.SlotPlan
	// Timeout bounds a restart's start.
	Timeout time.Duration
	// Value is synchronous_standby_names (ActSetSyncStandbyNames); nil
	// gives the setting back to the configuration.
	Value *string
	// Members and Quorum are the /sync content (ActWriteSync).
	Members []string
	Quorum  int
	// Failsafe is the /failsafe content (ActSetFailsafe).
	Failsafe cluster.Failsafe
	// Status is the /status content written after a renewal
	// (ActRenewLeader).
	Status *cluster.Status
	// Timeline, with Member, is the timeline this member's data ran on
	// before its promotion and the member that started it
	// (ActWriteHistory): /history's line for the switch onto it names
	// that member.
	Timeline int
}

// Gather names what the controller asks the other members before the next
// decision.
type Gather struct {
	// Peers: every other member's GET /patroni answer (Input.Peers), for
	// the leader race or a switchover.
	Peers bool
	// Failsafe: POST /failsafe to every other member /failsafe lists
	// (Input.FailsafeAcks), when the next DCS read fails too; a primary
	// kept by failsafe mode asks again before each decision.
	Failsafe bool
}

// Decision is what Decide returns.
type Decision struct {
	Actions []Action
	// Reason says in one line what this cycle does and why.
	Reason string
	// Gather is what the controller fetches from the other members before
	// the next decision (Decide is called once a cycle; what it lacks is
	// gathered for the next one).
	Gather Gather
	// Waiting: this decision waits for what Gather names (it lacked it):
	// the next cycle runs at once.
	Waiting bool
	// Memory is what to remember for the next cycle.
	Memory Memory
	// Reply answers Input.Request, when there was one.
	Reply *Reply
}

// Stops reports whether the decision stops PostgreSQL.
func (d Decision) Stops() bool {
	for _, a := range d.Actions {
		if a.Kind == ActStop {
			return true
		}
	}
	return false
}

// ActionNames lists the actions for a log line: each kind, with its member
// and stop mode in parentheses.
func ActionNames(actions []Action) string {
	names := make([]string, 0, len(actions))
	for _, a := range actions {
		n := string(a.Kind)
		if a.Member != "" {
			n += "(" + a.Member + ")"
		}
		if a.Mode != "" {
			n += "(" + a.Mode + ")"
		}
		names = append(names, n)
	}
	return strings.Join(names, ",")
}
