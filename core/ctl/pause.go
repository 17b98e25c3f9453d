package ctl

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/cluster"
)

func newPauseCommand(e *env, g *globalOptions, pause bool) *cobra.Command {
	var wait, force bool
	name, short, long := "pause", "Put the cluster in maintenance mode: no automatic failover",
		`Put the cluster in maintenance mode, as patronictl pause does: the agents stop
acting on their own (no automatic start, stop, promotion or demotion) until
resume. The change is a PATCH /config {"pause": true} sent to the first member
that answers, the leader first. --wait waits until every member's key shows it.`
	waitHelp := "wait until every member has paused"
	if !pause {
		name, short, long = "resume", "Take the cluster out of maintenance mode",
			`Take the cluster out of maintenance mode, as patronictl resume does: a PATCH
/config {"pause": null} sent to the first member that answers, the leader
first. --wait waits until every member's key shows it.

Paused, nothing stops a primary that does not hold the leader key (its
watchdog is disarmed, its agent leaves it alone). Resumed, the other members
race for the free key and one of them promotes while that primary still
runs. So resume refuses while a member's key shows a running primary and
that member does not hold the leader key; --force resumes anyway.`
		waitHelp = "wait until every member has resumed"
	}
	cmd := &cobra.Command{
		Use:     name + " [CLUSTER]",
		Short:   short,
		Long:    long,
		Example: "  custosctl -c custos.toml " + name + " --wait",
		Args:    cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			scope, err := s.clusterName(args)
			if err != nil {
				return err
			}
			return s.togglePause(cmd.Context(), scope, pause, wait, force)
		},
	}
	cmd.Flags().BoolVar(&wait, "wait", false, waitHelp)
	if !pause {
		cmd.Flags().BoolVar(&force, "force", false, "resume although a running primary does not hold the leader key")
	}
	return cmd
}

// pauseWord is "pause" or "resume", as patronictl's messages say it.
func pauseWord(pause bool) string {
	if pause {
		return "pause"
	}
	return "resume"
}

func pausedWord(pause bool) string {
	if pause {
		return "paused"
	}
	return "resumed"
}

// togglePause is patronictl's toggle_pause.
func (s *session) togglePause(ctx context.Context, scope string, pause, wait, force bool) error {
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	dyn, _ := dynamicOf(c)
	if dyn.Pause == pause {
		if pause {
			return errors.New("Cluster is already paused")
		}
		return errors.New("Cluster is not paused")
	}
	if !pause && !force {
		if m := primaryWithoutKey(c); m != "" {
			return fmt.Errorf("member %s runs as a primary but does not hold the leader key (held by %q): resuming would let another member promote while it runs; let it take the key or stop it first, or resume with --force", m, c.LeaderName())
		}
	}
	patch := map[string]any{"pause": nil}
	if pause {
		patch["pause"] = true
	}
	out := s.e.stdout
	for _, m := range leaderFirst(c) {
		resp, err := s.call(ctx, m, func(ctx context.Context, url string) (client.Response, error) {
			return s.api.PatchConfig(ctx, url, patch)
		})
		if err != nil {
			fmt.Fprintf(s.e.stderr, "Warning: member %s is not accessible: %v\n", m.Name, err)
			continue
		}
		if resp.StatusCode != http.StatusOK {
			fmt.Fprintf(out, "Failed: %s cluster management status code=%d, (%s)\n", pauseWord(pause), resp.StatusCode, resp.Body)
			return silentError{pauseWord(pause) + " failed"}
		}
		if wait {
			return s.waitPause(ctx, scope, pause, c, dyn.LoopWait.Duration())
		}
		fmt.Fprintf(out, "Success: cluster management is %s\n", pausedWord(pause))
		return nil
	}
	return errors.New("Can not find accessible cluster member")
}

// primaryWithoutKey names a member whose key shows a running primary while
// it does not hold the leader key; "" when there is none.
func primaryWithoutKey(c *cluster.Cluster) string {
	for _, m := range c.Members {
		if m.IsRunning() && cluster.IsPrimaryRole(m.Role) && !strings.EqualFold(m.Name, c.LeaderName()) {
			return m.Name
		}
	}
	return ""
}

// waitPause re-reads the cluster for loop_wait+1 seconds until every
// member that had an api_url shows the new pause state in its key, as
// patronictl's wait_until_pause_is_applied. Members that did not update
// their key at all in that time (down, most likely) are not waited for.
func (s *session) waitPause(ctx context.Context, scope string, pause bool, before *cluster.Cluster, loopWait time.Duration) error {
	out := s.e.stdout
	fmt.Fprintf(out, "'%s' request sent, waiting until it is recognized by all nodes\n", pauseWord(pause))
	old := map[string]string{}
	for _, m := range before.Members {
		if m.APIURL != "" {
			old[m.Name] = m.Version
		}
	}
	window := loopWait + time.Second
	deadline := time.Now().Add(window)
	var c *cluster.Cluster
	for {
		var err error
		if c, err = s.read(ctx, scope); err != nil {
			return err
		}
		done := true
		for _, m := range c.Members {
			if _, ok := old[m.Name]; ok && m.Pause != pause {
				done = false
			}
		}
		if done {
			break
		}
		if !time.Now().Before(deadline) {
			var remaining []string
			for _, m := range c.Members {
				if v, ok := old[m.Name]; ok && m.Pause != pause && v != m.Version {
					remaining = append(remaining, m.Name)
				}
			}
			if len(remaining) > 0 {
				fmt.Fprintf(out, "%s members didn't recognized pause state after %d seconds\n", strings.Join(remaining, ", "), int64(window/time.Second)-1)
				return silentError{"pause state not recognized"}
			}
			break
		}
		if err := sleep(ctx, s.pollInterval(pausePollInterval)); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "Success: cluster management is %s\n", pausedWord(pause))
	return nil
}
