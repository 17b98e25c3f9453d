package ctl

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"

	"github.com/spf13/cobra"

	"github.com/custos-ha/custos/core/agent"
	"github.com/custos-ha/custos/core/api/client"
)

func newVersionCommand(e *env, g *globalOptions) *cobra.Command {
	return &cobra.Command{
		Use:   "version [CLUSTER [MEMBER...]]",
		Short: "Print custosctl's version, and the members' agent and PostgreSQL versions",
		Long: `Print custosctl's version; with a cluster, also each member's agent and
PostgreSQL versions from its REST API (GET /patroni), as patronictl version
does. Patroni members show as "Patroni X.Y.Z".`,
		Example: `  custosctl version
  custosctl -c custos.toml version demo`,
		RunE: func(cmd *cobra.Command, args []string) error {
			fmt.Fprintf(e.stdout, "custosctl version %s\n", agent.Version)
			if len(args) == 0 {
				return nil
			}
			fmt.Fprintln(e.stdout)
			s, err := openSession(e, g)
			if err != nil {
				return err
			}
			defer s.Close()
			return s.versions(cmd.Context(), args[0], args[1:])
		},
	}
}

// statusVersions is what version reads from /patroni.
type statusVersions struct {
	ServerVersion int `json:"server_version"`
	Patroni       struct {
		Version string `json:"version"`
	} `json:"patroni"`
	Custos *struct {
		Version string `json:"version"`
	} `json:"custos"`
}

func (s *session) versions(ctx context.Context, scope string, names []string) error {
	c, err := s.read(ctx, scope)
	if err != nil {
		return err
	}
	out := s.e.stdout
	for _, m := range c.Members {
		if m.APIURL == "" || len(names) > 0 && !slices.Contains(names, m.Name) {
			continue
		}
		resp, err := s.call(ctx, m, func(ctx context.Context, url string) (client.Response, error) {
			ctx, cancel := context.WithTimeout(ctx, client.StatusTimeout)
			defer cancel()
			return s.api.Do(ctx, http.MethodGet, url, client.EndpointPatroni, nil)
		})
		var v statusVersions
		if err == nil && resp.StatusCode != http.StatusOK {
			err = fmt.Errorf("status code %d, (%s)", resp.StatusCode, resp.Body)
		}
		if err == nil {
			err = json.Unmarshal([]byte(resp.Body), &v)
		}
		if err != nil {
			fmt.Fprintf(out, "%s: failed to get version: %v\n", m.Name, err)
			continue
		}
		agentVersion := "Patroni " + v.Patroni.Version
		switch {
		case v.Custos != nil && v.Custos.Version != "":
			agentVersion = "custos " + v.Custos.Version
		case v.Custos != nil:
			agentVersion = "custos (Patroni " + v.Patroni.Version + ")"
		}
		pg := ""
		if v.ServerVersion > 0 {
			pg = " PostgreSQL " + formatPGVersion(v.ServerVersion)
		}
		fmt.Fprintf(out, "%s: %s%s\n", m.Name, agentVersion, pg)
	}
	return nil
}

// formatPGVersion writes server_version_num as PostgreSQL's version:
// 90624 -> 9.6.24, 150004 -> 15.4.
func formatPGVersion(v int) string {
	if v < 100000 {
		return fmt.Sprintf("%d.%d.%d", v/10000, v/100%100, v%100)
	}
	return fmt.Sprintf("%d.%d", v/10000, v%100)
}
