package ctl

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/cluster"
)

type restartOptions struct {
	role      string
	any       bool
	scheduled string
	pgVersion string
	pending   bool
	timeout   string
	force     bool
}

func newRestartCommand(e *env, g *globalOptions) *cobra.Command {
	o := &restartOptions{}
	cmd := &cobra.Command{
		Use:   "restart CLUSTER [MEMBER...]",
		Short: "Restart PostgreSQL on members, now or at a scheduled time",
		Long: `Restart PostgreSQL on members through their REST API (POST /restart), as
patronictl restart does: all members with the role (-r, default any), or the
named ones. The conditions (--pg-version, --pending) are evaluated by each
member. Without --force it asks when and under which version condition, then
for confirmation.`,
		Example: `  custosctl -c custos.toml restart demo node2 --force
  custosctl -c custos.toml restart demo -r replica --pending --force
  custosctl -c custos.toml restart demo --scheduled 2030-01-01T02:00+00:00 --force`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembers(cmd.Context(), e, g, func(s *session) error { return s.restart(cmd.Context(), args[0], args[1:], o) })
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.role, "role", "r", roleAny, "restart only members with this role: "+roleHelp)
	f.BoolVar(&o.any, "any", false, "restart a single member only, picked at random")
	f.StringVar(&o.scheduled, "scheduled", "", "when: an ISO 8601 time (local time without a zone), or now")
	f.StringVar(&o.pgVersion, "pg-version", "", "restart only if the PostgreSQL version is less than this (e.g. 15.2)")
	f.BoolVar(&o.pending, "pending", false, "restart only if a changed setting needs it")
	f.StringVar(&o.timeout, "timeout", "", "fail the restart (and fail over if needed) when it takes longer (e.g. 30s)")
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point")
	return cmd
}

// runMembers opens a session for a command that acts on members.
func runMembers(ctx context.Context, e *env, g *globalOptions, fn func(*session) error) error {
	s, err := openSession(e, g)
	if err != nil {
		return err
	}
	defer s.Close()
	s.ask.forceHint = forceHint
	return fn(s)
}

func (s *session) restart(ctx context.Context, scope string, names []string, o *restartOptions) error {
	if err := checkRole(o.role); err != nil {
		return err
	}
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	members, err := s.chooseMembers(c, memberChoice{scope: scope, names: names, role: o.role, force: o.force, action: "restart"})
	if err != nil {
		return err
	}
	scheduled := o.scheduled
	if scheduled == "" && !o.force {
		example := s.now().Add(time.Hour).Format("2006-01-02T15:04")
		if scheduled, err = s.ask.askDefault("When should the restart take place (e.g. "+example+") ", "now"); err != nil {
			return err
		}
	}
	at, err := parseScheduled(scheduled)
	if err != nil {
		return err
	}
	if !o.force {
		question := fmt.Sprintf("Are you sure you want to restart members %s?", strings.Join(memberNames(members), ", "))
		abort := "Aborted restart"
		if at != nil {
			question = fmt.Sprintf("Are you sure you want to schedule restart of members %s at %s?", strings.Join(memberNames(members), ", "), pyStr(*at))
			abort = "Aborted scheduled restart"
		}
		ok, err := s.ask.confirm(question)
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("%s", abort)
		}
	}
	if o.any && len(members) > 1 {
		members = []cluster.Member{members[rand.IntN(len(members))]}
	}
	version := o.pgVersion
	if version == "" && !o.force {
		if version, err = s.ask.askDefault("Restart if the PostgreSQL version is less than provided (e.g. 9.5.2) ", ""); err != nil {
			return err
		}
	}

	req := client.RestartRequest{RestartPending: o.pending, Timeout: o.timeout}
	if version != "" {
		if err := checkPostgresVersion(version); err != nil {
			return err
		}
		req.PostgresVersion = version
	}
	if at != nil {
		if dyn, _ := dynamicOf(c); dyn.Pause {
			return fmt.Errorf("Can't schedule restart in the paused state")
		}
		req.Schedule = isoformat(*at)
	}

	out := s.e.stdout
	failed := 0
	for _, m := range members {
		if req.Schedule != "" && o.force && len(m.ScheduledRestart) > 0 {
			// --force replaces a scheduled restart.
			resp, err := s.call(ctx, m, func(ctx context.Context, url string) (client.Response, error) { return s.api.DeleteRestart(ctx, url) })
			if err != nil || resp.StatusCode >= 400 {
				s.reportFailure(m, "flush scheduled restart", resp, err)
			}
		}
		resp, err := s.call(ctx, m, func(ctx context.Context, url string) (client.Response, error) { return s.api.Restart(ctx, url, req) })
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(out, "Failed: restart for member %s, %v\n", m.Name, err)
		case resp.StatusCode == http.StatusOK:
			fmt.Fprintf(out, "Success: restart on member %s\n", m.Name)
		case resp.StatusCode == http.StatusAccepted:
			fmt.Fprintf(out, "Success: restart scheduled on member %s\n", m.Name)
		case resp.StatusCode == http.StatusConflict:
			failed++
			fmt.Fprintf(out, "Failed: another restart is already scheduled on member %s\n", m.Name)
		default:
			failed++
			fmt.Fprintf(out, "Failed: restart for member %s, status code=%d, (%s)\n", m.Name, resp.StatusCode, resp.Body)
		}
	}
	return failures("restart", failed)
}

// call sends one request to a member's REST API, bounded by
// requestTimeout.
func (s *session) call(ctx context.Context, m cluster.Member, fn func(ctx context.Context, apiURL string) (client.Response, error)) (client.Response, error) {
	if m.APIURL == "" {
		return client.Response{}, fmt.Errorf("member %s publishes no api_url", m.Name)
	}
	ctx, cancel := s.requestContext(ctx)
	defer cancel()
	return fn(ctx, m.APIURL)
}

// report prints patronictl's check_response line for an answer: "Failed:
// ..." for an error status or no answer, "Success: ..." otherwise (unless
// quiet). It reports whether the action succeeded.
func (s *session) report(m cluster.Member, action string, resp client.Response, err error, quiet bool) bool {
	if err != nil || resp.StatusCode >= 400 {
		s.reportFailure(m, action, resp, err)
		return false
	}
	if !quiet {
		fmt.Fprintf(s.e.stdout, "Success: %s for member %s\n", action, m.Name)
	}
	return true
}

func (s *session) reportFailure(m cluster.Member, action string, resp client.Response, err error) {
	if err != nil {
		fmt.Fprintf(s.e.stdout, "Failed: %s for member %s, %v\n", action, m.Name, err)
		return
	}
	fmt.Fprintf(s.e.stdout, "Failed: %s for member %s, status code=%d, (%s)\n", action, m.Name, resp.StatusCode, resp.Body)
}

// failures is the command's result after its per-member lines: a silent
// failure when some member failed (the lines said why).
func failures(action string, n int) error {
	if n == 0 {
		return nil
	}
	return silentError{fmt.Sprintf("%s failed on %d member(s)", action, n)}
}

// checkPostgresVersion accepts Patroni's forms of --pg-version: X.Y or
// X.Y.Z.
func checkPostgresVersion(v string) error {
	parts := strings.Split(v, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return fmt.Errorf("Invalid PostgreSQL version format: X.Y or X.Y.Z is accepted: %s", v)
	}
	for _, p := range parts {
		if _, err := strconv.ParseUint(p, 10, 16); err != nil {
			return fmt.Errorf("Invalid PostgreSQL version: %s", v)
		}
	}
	return nil
}

type reloadOptions struct {
	role  string
	force bool
}

func newReloadCommand(e *env, g *globalOptions) *cobra.Command {
	o := &reloadOptions{}
	cmd := &cobra.Command{
		Use:   "reload CLUSTER [MEMBER...]",
		Short: "Make members re-read their configuration file",
		Long: `Make members re-read their configuration file (POST /reload, the same as SIGHUP),
as patronictl reload does: all members with the role (-r, default any), or the
named ones, after confirmation unless --force.`,
		Example: `  custosctl -c custos.toml reload demo --force`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembers(cmd.Context(), e, g, func(s *session) error { return s.reload(cmd.Context(), args[0], args[1:], o) })
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.role, "role", "r", roleAny, "reload only members with this role: "+roleHelp)
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point")
	return cmd
}

func (s *session) reload(ctx context.Context, scope string, names []string, o *reloadOptions) error {
	if err := checkRole(o.role); err != nil {
		return err
	}
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	members, err := s.chooseMembers(c, memberChoice{scope: scope, names: names, role: o.role, force: o.force, action: "reload", confirm: true})
	if err != nil {
		return err
	}
	dyn, _ := dynamicOf(c)
	out := s.e.stdout
	failed := 0
	for _, m := range members {
		resp, err := s.call(ctx, m, s.api.Reload)
		switch {
		case err != nil:
			failed++
			fmt.Fprintf(out, "Failed: reload for member %s, %v\n", m.Name, err)
		case resp.StatusCode == http.StatusOK:
			fmt.Fprintf(out, "No changes to apply on member %s\n", m.Name)
		case resp.StatusCode == http.StatusAccepted:
			fmt.Fprintf(out, "Reload request received for member %s and will be processed within %d seconds\n", m.Name, int64(dyn.LoopWait))
		default:
			failed++
			fmt.Fprintf(out, "Failed: reload for member %s, status code=%d, (%s)\n", m.Name, resp.StatusCode, resp.Body)
		}
	}
	return failures("reload", failed)
}

type reinitOptions struct {
	force      bool
	wait       bool
	fromLeader bool
}

func newReinitCommand(e *env, g *globalOptions) *cobra.Command {
	o := &reinitOptions{}
	cmd := &cobra.Command{
		Use:   "reinit CLUSTER [MEMBER...]",
		Short: "Wipe replicas and clone them again",
		Long: `Reinitialize replicas (POST /reinitialize), as patronictl reinit does: each named
member wipes its data directory and clones it again through its replica
methods. Without member names it asks which one. --wait follows each member
until it is no longer creating a replica.`,
		Example: `  custosctl -c custos.toml reinit demo node3 --force --wait`,
		Args:    cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembers(cmd.Context(), e, g, func(s *session) error { return s.reinit(cmd.Context(), args[0], args[1:], o) })
		},
	}
	f := cmd.Flags()
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point, and cancel a running action of the member")
	f.BoolVar(&o.wait, "wait", false, "wait until the reinitialization completes")
	f.BoolVar(&o.fromLeader, "from-leader", false, "clone from the leader, not from a clonefrom member")
	return cmd
}

func (s *session) reinit(ctx context.Context, scope string, names []string, o *reinitOptions) error {
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	members, err := s.chooseMembers(c, memberChoice{scope: scope, names: names, role: roleReplica, force: o.force, action: "reinitialize", pickOne: true, confirm: true})
	if err != nil {
		return err
	}
	var waiting []cluster.Member
	failed := 0
	for _, m := range members {
		req := client.ReinitializeRequest{Force: o.force, FromLeader: o.fromLeader}
		for {
			resp, err := s.call(ctx, m, func(ctx context.Context, url string) (client.Response, error) {
				return s.api.Reinitialize(ctx, url, req)
			})
			if s.report(m, "reinitialize", resp, err, false) {
				if o.wait {
					waiting = append(waiting, m)
				}
				break
			}
			if err == nil && !req.Force && strings.HasSuffix(resp.Body, " already in progress") {
				again, err := s.ask.confirm("Do you want to cancel it and reinitialize anyway?")
				if err != nil {
					return err
				}
				if again {
					req.Force = true
					continue
				}
			}
			failed++
			break
		}
	}
	if err := s.waitReinit(ctx, waiting); err != nil {
		return err
	}
	return failures("reinitialize", failed)
}

// waitReinit polls the members' /patroni until none is creating a replica
// any more.
func (s *session) waitReinit(ctx context.Context, waiting []cluster.Member) error {
	out := s.e.stdout
	shown := ""
	for len(waiting) > 0 {
		if names := strings.Join(memberNames(waiting), ", "); names != shown {
			fmt.Fprintf(out, "Waiting for reinitialize to complete on: %s\n", names)
			shown = names
		}
		if err := sleep(ctx, s.pollInterval(defaultPollInterval)); err != nil {
			return err
		}
		var still []cluster.Member
		for _, m := range waiting {
			st, err := s.api.GetStatus(ctx, m.APIURL)
			if err == nil && st.State != "creating replica" {
				fmt.Fprintf(out, "Reinitialize is completed on: %s\n", m.Name)
				continue
			}
			still = append(still, m)
		}
		waiting = still
	}
	return nil
}

// Targets of flush.
const (
	flushRestart    = "restart"
	flushSwitchover = "switchover"
)

type flushOptions struct {
	role  string
	force bool
}

func newFlushCommand(e *env, g *globalOptions) *cobra.Command {
	o := &flushOptions{}
	cmd := &cobra.Command{
		Use:   "flush CLUSTER [MEMBER...] restart|switchover",
		Short: "Cancel scheduled restarts or a scheduled switchover",
		Long: `Cancel scheduled events, as patronictl flush does: "restart" cancels the
scheduled restarts of the members (DELETE /restart), "switchover" the scheduled
switchover (DELETE /switchover, asked of the leader first; when no member
answers, /failover is cleared in the DCS directly).`,
		Example: `  custosctl -c custos.toml flush demo restart --force
  custosctl -c custos.toml flush demo switchover`,
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 2 {
				return usageError{fmt.Errorf("give the cluster and what to flush (restart or switchover)")}
			}
			if t := args[len(args)-1]; t != flushRestart && t != flushSwitchover {
				return usageError{fmt.Errorf("invalid target %q: choose from restart, switchover", t)}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			return runMembers(cmd.Context(), e, g, func(s *session) error {
				return s.flush(cmd.Context(), args[0], args[1:len(args)-1], args[len(args)-1], o)
			})
		},
	}
	f := cmd.Flags()
	f.StringVarP(&o.role, "role", "r", roleAny, "flush only members with this role: "+roleHelp)
	f.BoolVar(&o.force, "force", false, "do not ask for confirmation at any point")
	return cmd
}

func (s *session) flush(ctx context.Context, scope string, names []string, what string, o *flushOptions) error {
	if err := checkRole(o.role); err != nil {
		return err
	}
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	out := s.e.stdout
	if what == flushRestart {
		members, err := s.chooseMembers(c, memberChoice{scope: scope, names: names, role: o.role, force: o.force, action: "flush", confirm: true})
		if err != nil {
			return err
		}
		failed := 0
		for _, m := range members {
			if len(m.ScheduledRestart) == 0 {
				fmt.Fprintf(out, "No scheduled restart for member %s\n", m.Name)
				continue
			}
			resp, err := s.call(ctx, m, s.api.DeleteRestart)
			if !s.report(m, "flush scheduled restart", resp, err, false) {
				failed++
			}
		}
		return failures("flush", failed)
	}

	if c.Failover == nil || c.Failover.ScheduledAt == nil {
		fmt.Fprintln(out, "No pending scheduled switchover")
		return nil
	}
	for _, m := range leaderFirst(c) {
		resp, err := s.call(ctx, m, s.api.DeleteSwitchover)
		if err != nil {
			fmt.Fprintf(s.e.stderr, "Warning: member %s is not accessible: %v\n", m.Name, err)
			continue
		}
		switch resp.StatusCode {
		case http.StatusOK:
			fmt.Fprintf(out, "Success: %s\n", resp.Body)
			return nil
		case http.StatusNotFound:
			fmt.Fprintf(out, "Failed: %s\n", resp.Body)
			return silentError{"flush failed"}
		}
		fmt.Fprintf(out, "Failed: member=%s, status_code=%d, (%s)\n", m.Name, resp.StatusCode, resp.Body)
	}
	fmt.Fprintf(out, "%s Could not find any accessible member of cluster %s\n", timestamp(s.now()), scope)
	return s.writeFailover(ctx, scope, []byte("{}"), c.Failover.Version)
}
