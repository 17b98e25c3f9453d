package ctl

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk/dcs"
)

// Actions of switchover and failover, in patronictl's words.
const (
	actionSwitchover = "switchover"
	actionFailover   = "failover"
)

// forceHint is what a question's error suggests to a script.
const forceHint = "pass --force to run without questions"

type switchoverOptions struct {
	leader, primary, master string
	candidate               string
	scheduled               string
	force                   bool
}

func newSwitchoverCommand(e *env, g *globalOptions) *cobra.Command {
	o := &switchoverOptions{}
	cmd := &cobra.Command{
		Use:   "switchover [CLUSTER]",
		Short: "Switch the leader over to a replica, now or at a scheduled time",
		Long: `Switch the leader over to a replica, as patronictl switchover does: the leader
demotes gracefully (a checkpoint, then a fast shutdown) and the candidate (or the
healthiest replica) takes over. Without --force it asks for the leader, the
candidate and the time, then for confirmation.

The request goes to the leader's REST API (POST /switchover); if the API cannot
be reached, the request is written to the DCS's /failover key directly and the
leader acts on it in its next cycle.`,
		Example: `  custosctl -c custos.toml switchover --candidate node2 --force
  custosctl -c custos.toml switchover demo --leader node1 --scheduled 2030-01-01T02:00+00:00`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			leader := firstNonEmpty(o.leader, o.primary, o.master)
			return runFailover(cmd.Context(), e, g, actionSwitchover, args, leader, o.candidate, o.scheduled, o.force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.leader, "leader", "", "the name of the current leader")
	f.StringVar(&o.primary, "primary", "", "the name of the current leader (same as --leader)")
	f.StringVar(&o.master, "master", "", "the name of the current leader (Patroni 3.0.2's name)")
	_ = f.MarkHidden("master")
	f.StringVar(&o.candidate, "candidate", "", "the member to switch over to (default: the healthiest replica)")
	f.StringVar(&o.scheduled, "scheduled", "", "when: an ISO 8601 time (e.g. 2030-01-01T02:00+00:00; local time without a zone), or now")
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point")
	return cmd
}

type failoverOptions struct {
	candidate string
	force     bool
}

func newFailoverCommand(e *env, g *globalOptions) *cobra.Command {
	o := &failoverOptions{}
	cmd := &cobra.Command{
		Use:   "failover [CLUSTER]",
		Short: "Fail over to a named replica, with or without a leader",
		Long: `Fail over to a named replica, as patronictl 4.x failover does: it works without a
healthy leader too. The request goes to the leader's REST API (POST /failover),
or to the candidate's when the cluster has no leader; if the API cannot be
reached, it is written to the DCS's /failover key directly.`,
		Example: `  custosctl -c custos.toml failover --candidate node3 --force`,
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runFailover(cmd.Context(), e, g, actionFailover, args, "", o.candidate, "", o.force)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.candidate, "candidate", "", "the member to fail over to")
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point")
	return cmd
}

func runFailover(ctx context.Context, e *env, g *globalOptions, action string, args []string, leader, candidate, scheduled string, force bool) error {
	s, err := openSession(e, g)
	if err != nil {
		return err
	}
	defer s.Close()
	s.ask.forceHint = forceHint
	scope, err := s.clusterName(args)
	if err != nil {
		return err
	}
	return s.failover(ctx, scope, action, leader, candidate, scheduled, force)
}

// failover is patronictl's _do_failover_or_switchover: check the request
// against the cluster, ask what was not given, send it to the leader (or
// the candidate) and print the answer and the cluster after it.
func (s *session) failover(ctx context.Context, scope, action, leader, candidate, scheduled string, force bool) error {
	out := s.e.stdout
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "Current cluster topology")
	if err := s.printMembers(scope, c); err != nil {
		return err
	}
	dyn, _ := dynamicOf(c)
	current := c.LeaderName()
	if action == actionSwitchover && current == "" {
		return fmt.Errorf("This cluster has no leader")
	}
	if leader == "" {
		if force || action == actionFailover {
			leader = current
		} else {
			label := "Primary"
			if dyn.StandbyCluster != nil {
				label = "Standby Leader"
			}
			if leader, err = s.ask.askDefault(label, current); err != nil {
				return err
			}
		}
	}
	if leader != "" && current != "" && leader != current {
		return fmt.Errorf("Member %s is not the leader of cluster %s", leader, scope)
	}

	var candidates []string
	for _, m := range c.Members {
		if m.Name != leader && m.Tags.CanFailover() {
			candidates = append(candidates, m.Name)
		}
	}
	slices.Sort(candidates)
	if len(candidates) == 0 {
		return fmt.Errorf("No candidates found to %s to", action)
	}
	if candidate == "" && !force {
		if candidate, err = s.ask.askDefault("Candidate "+pyList(candidates), ""); err != nil {
			return err
		}
	}
	if action == actionFailover && candidate == "" {
		return fmt.Errorf("Failover could be performed only to a specific candidate")
	}
	if candidate != "" && candidate == leader {
		if action == actionSwitchover {
			return fmt.Errorf("Switchover target and source are the same.")
		}
		return fmt.Errorf("Member %s is already the leader of cluster %s", candidate, scope)
	}
	if candidate != "" && !slices.Contains(candidates, candidate) {
		return fmt.Errorf("Member %s does not exist in cluster %s or is tagged as nofailover", candidate, scope)
	}

	var at *time.Time
	if action == actionSwitchover {
		if scheduled == "" && !force {
			example := s.now().Add(time.Hour).Format("2006-01-02T15:04")
			if scheduled, err = s.ask.askDefault("When should the switchover take place (e.g. "+example+" ) ", "now"); err != nil {
				return err
			}
		}
		if at, err = parseScheduled(scheduled); err != nil {
			return err
		}
		if at != nil && dyn.Pause {
			return fmt.Errorf("Can't schedule switchover in the paused state")
		}
	}

	if !force && action == actionFailover && dyn.SynchronousMode != config.SyncOff && dyn.StandbyCluster == nil && !c.IsSync(candidate) {
		ok, err := s.ask.confirm(fmt.Sprintf("Are you sure you want to failover to the asynchronous node %s?", candidate))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("Aborting %s", action)
		}
	}
	if !force {
		demote := ""
		if leader != "" {
			demote = ", demoting current leader " + leader
		}
		question := fmt.Sprintf("Are you sure you want to %s cluster %s%s?", action, scope, demote)
		abort := "Aborting " + action
		if at != nil {
			question = fmt.Sprintf("Are you sure you want to schedule %s of cluster %s at %s%s?", action, scope, isoformat(*at), demote)
			abort = "Aborting scheduled " + action
		}
		ok, err := s.ask.confirm(question)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s", abort)
		}
	}

	target := c.Member(candidate)
	if c.Leader != nil {
		target = &c.Leader.Member
	}
	resp, err := s.sendFailover(ctx, action, target, leader, candidate, at)
	if err != nil {
		fmt.Fprintf(s.e.stderr, "Warning: %v\n", err)
		fmt.Fprintf(out, "%s Could not %s using the REST API, falling back to DCS\n", timestamp(s.now()), action)
		f := cluster.Failover{Leader: leader, Candidate: candidate, ScheduledAt: at}
		if err := s.writeFailover(ctx, scope, f.Marshal(), ""); err != nil {
			return err
		}
		return s.printMembers(scope, c)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		fmt.Fprintf(out, "%s failed, details: %d, %s\n", titleWord(action), resp.StatusCode, resp.Body)
		return silentError{action + " failed"}
	}
	if after, err := s.read(ctx, scope); err == nil {
		c = after
	} else {
		fmt.Fprintf(s.e.stderr, "Warning: %v\n", err)
	}
	fmt.Fprintf(out, "%s %s\n", timestamp(s.now()), resp.Body)
	return s.printMembers(scope, c)
}

// sendFailover posts the request to the member; an error means no answer
// came (the member is unknown, has no api_url or cannot be reached).
func (s *session) sendFailover(ctx context.Context, action string, m *cluster.Member, leader, candidate string, at *time.Time) (client.Response, error) {
	if m == nil {
		return client.Response{}, fmt.Errorf("no member to send the %s to", action)
	}
	if m.APIURL == "" {
		return client.Response{}, fmt.Errorf("member %s publishes no api_url", m.Name)
	}
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	if action == actionFailover {
		return s.api.Failover(ctx, m.APIURL, client.FailoverRequest{Candidate: candidate})
	}
	req := client.SwitchoverRequest{Leader: leader, Candidate: candidate}
	if at != nil {
		req.ScheduledAt = isoformat(*at)
	}
	return s.api.Switchover(ctx, m.APIURL, req)
}

// writeFailover writes /failover in the DCS: unconditionally when version
// is empty, else only over that version.
func (s *session) writeFailover(ctx context.Context, scope string, value []byte, version string) error {
	b, err := s.backend(ctx, scope)
	if err != nil {
		return err
	}
	wctx, cancel := s.writeContext(ctx)
	defer cancel()
	if version == "" {
		err = b.Set(wctx, dcs.KeyFailover, value)
	} else {
		_, err = b.CompareAndSet(wctx, dcs.KeyFailover, value, version)
	}
	if err != nil {
		return fmt.Errorf("writing /failover of cluster %s: %w", scope, err)
	}
	return nil
}

// dynamicOf reads the cluster's dynamic configuration with the agents'
// decoder (config.ParseDynamicOver). custosctl has no configuration in
// effect to fall back on: an absent /config, and each value it gets wrong,
// read as the default. ok is false when /config is absent.
func dynamicOf(c *cluster.Cluster) (dyn config.Dynamic, ok bool) {
	if c.Config == nil {
		return config.DefaultDynamic(), false
	}
	dyn, _ = config.ParseDynamicOver(c.Config.Data, config.DefaultDynamic())
	return dyn, true
}

// scheduledLayouts are the forms --scheduled accepts: ISO 8601 with or
// without seconds, fractions and zone, T or space between date and time.
var scheduledLayouts = []string{
	"2006-01-02T15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999Z0700", "2006-01-02T15:04:05.999999999Z07",
	"2006-01-02T15:04Z07:00", "2006-01-02T15:04Z0700", "2006-01-02T15:04Z07",
	"2006-01-02T15:04:05.999999999", "2006-01-02T15:04", "2006-01-02",
}

// parseScheduled parses --scheduled: nil for "" and "now"; a time without
// a zone is local time, as patronictl takes it.
func parseScheduled(s string) (*time.Time, error) {
	s = strings.TrimSpace(s)
	if s == "" || s == "now" {
		return nil, nil
	}
	iso := s
	if len(iso) > 10 && iso[10] == ' ' {
		iso = iso[:10] + "T" + iso[11:]
	}
	iso = strings.Replace(iso, " ", "", 1) // "10:00 +02:00"
	for _, layout := range scheduledLayouts {
		if t, err := time.ParseInLocation(layout, iso, time.Local); err == nil {
			return &t, nil
		}
	}
	return nil, fmt.Errorf("Unable to parse scheduled timestamp (%s). It should be in an unambiguous format (e.g. ISO 8601)", s)
}

// isoformat writes a time as Python's datetime.isoformat(): microseconds
// only when not zero, the offset as +hh:mm.
func isoformat(t time.Time) string {
	if t.Nanosecond()/1000 == 0 {
		return t.Format("2006-01-02T15:04:05-07:00")
	}
	return t.Format("2006-01-02T15:04:05.000000-07:00")
}

// pyStr writes a time as Python's str(datetime): isoformat with a space.
func pyStr(t time.Time) string { return strings.Replace(isoformat(t), "T", " ", 1) }

// pyList writes names as Python prints a list of strings.
func pyList(names []string) string {
	quoted := make([]string, len(names))
	for i, n := range names {
		quoted[i] = "'" + n + "'"
	}
	return "[" + strings.Join(quoted, ", ") + "]"
}

// titleWord capitalises a word ("switchover" -> "Switchover").
func titleWord(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
