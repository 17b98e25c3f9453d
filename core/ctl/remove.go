package ctl

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"
)

// removeConfirmation is what remove wants typed, patronictl's sentence.
const removeConfirmation = "Yes I am aware"

func newRemoveCommand(e *env, g *globalOptions) *cobra.Command {
	var format string
	cmd := &cobra.Command{
		Use:   "remove CLUSTER",
		Short: "Remove everything the DCS holds about a cluster",
		Long: `Remove every key of the cluster from the DCS (its leader and member keys, /config,
/history...), as patronictl remove does. It shows the members, then asks for the
cluster name, for "Yes I am aware", and, while the cluster has a leader, for
the leader's name. There is no --force: the answers may come from a pipe.`,
		Example: `  custosctl -c custos.toml remove demo`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkFormat(format); err != nil {
				return err
			}
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			ctx, scope := cmd.Context(), args[0]
			c, err := s.read(ctx, scope)
			if err != nil {
				return err
			}
			if err := newListing(scope, c, false).write(s.e.stdout, format); err != nil {
				return err
			}
			answer, err := s.ask.ask("Please confirm the cluster name to remove", nil)
			if err != nil {
				return err
			}
			if answer != scope {
				return errors.New("Cluster names specified do not match")
			}
			answer, err = s.ask.ask(fmt.Sprintf("You are about to remove all information in DCS for %s, please type: %q", scope, removeConfirmation), nil)
			if err != nil {
				return err
			}
			if answer != removeConfirmation {
				return fmt.Errorf("You did not exactly type %q", removeConfirmation)
			}
			if leader := c.LeaderName(); leader != "" {
				answer, err = s.ask.ask("This cluster currently is healthy. Please specify the leader name to continue", nil)
				if err != nil {
					return err
				}
				if answer != leader {
					return errors.New("You did not specify the current leader of the cluster")
				}
			}
			b, err := s.backend(ctx, scope)
			if err != nil {
				return err
			}
			wctx, cancel := s.writeContext(ctx)
			defer cancel()
			if err := b.DeleteCluster(wctx); err != nil {
				return fmt.Errorf("removing cluster %s: %w", scope, err)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&format, "format", "f", formatPretty, "format of the member table: pretty, tsv, json or yaml")
	return cmd
}
