package agent

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/api/client"
	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/ha"
	"github.com/custos-ha/custos/core/postgres"
)

// pgConfig maps the configuration in effect onto core/postgres.
func pgConfig(eff config.Effective) postgres.Config {
	cfg := eff.Local
	p := cfg.PostgreSQL
	binNames := map[string]string{}
	for name, v := range map[string]string{
		postgres.BinPgCtl: p.BinName.PGCtl, postgres.BinInitdb: p.BinName.Initdb, postgres.BinPgControlData: p.BinName.PGControlData,
		postgres.BinPgBasebackup: p.BinName.PGBasebackup, postgres.BinPostgres: p.BinName.Postgres, postgres.BinPgIsready: p.BinName.PGIsReady,
		postgres.BinPgRewind: p.BinName.PGRewind,
	} {
		if v != "" {
			binNames[name] = v
		}
	}
	return postgres.Config{
		Scope:                              cfg.Scope,
		Name:                               cfg.Name,
		DataDir:                            p.DataDir,
		BinDir:                             p.BinDir,
		BinName:                            binNames,
		Listen:                             p.Listen,
		ConnectAddress:                     p.ConnectAddress,
		Superuser:                          credentials(p.Authentication.Superuser),
		Replication:                        credentials(p.Authentication.Replication),
		Rewind:                             credentials(p.Authentication.Rewind),
		Parameters:                         eff.PostgreSQL.Parameters,
		RecoveryConf:                       eff.PostgreSQL.RecoveryConf,
		PgHBA:                              eff.PostgreSQL.PgHBA,
		PgIdent:                            eff.PostgreSQL.PgIdent,
		Pgpass:                             p.PGPass,
		PgCtlTimeout:                       p.PGCtlTimeout,
		UsePgRewind:                        eff.PostgreSQL.UsePgRewind,
		RemoveDataDirectoryOnRewindFailure: p.RemoveDataDirectoryOnRewindFailure,
		InitdbOptions:                      cfg.Bootstrap.Initdb.Args(),
		UseSlots:                           eff.PostgreSQL.UseSlots,
	}
}

// programsRun are the PostgreSQL programs the agent itself runs.
var programsRun = []string{postgres.BinPostgres, postgres.BinPgCtl, postgres.BinInitdb, postgres.BinPgControlData}

// checkPrograms finds the PostgreSQL programs the agent runs, so that a
// wrong bin_dir stops the agent at start with an error that says so,
// instead of failing every bootstrap and start later.
func checkPrograms(c postgres.Config) error {
	var missing []string
	for _, name := range programsRun {
		file := name
		if o := c.BinName[name]; o != "" {
			file = o
		}
		if c.BinDir != "" && !filepath.IsAbs(file) {
			file = filepath.Join(c.BinDir, file)
		}
		if _, err := exec.LookPath(file); err != nil {
			missing = append(missing, filepath.Base(file))
		}
	}
	if len(missing) == 0 {
		return nil
	}
	where := c.BinDir
	if where == "" {
		where = "the PATH (bin_dir is not set)"
	}
	return fmt.Errorf("no %s in %s: install PostgreSQL or set bin_dir to its bin directory", strings.Join(missing, ", "), where)
}

func credentials(a config.PGAuth) postgres.Credentials {
	ssl := map[string]string{}
	for k, v := range map[string]string{
		"sslmode": a.SSLMode, "sslkey": a.SSLKey, "sslpassword": a.SSLPassword.Value(), "sslcert": a.SSLCert,
		"sslrootcert": a.SSLRootCert, "sslcrl": a.SSLCRL, "sslcrldir": a.SSLCRLDir, "sslnegotiation": a.SSLNegotiation,
		"gssencmode": a.GSSEncMode, "channel_binding": a.ChannelBinding,
	} {
		if v != "" {
			ssl[k] = v
		}
	}
	return postgres.Credentials{Username: a.Username, Password: a.Password.Value(), SSL: ssl}
}

// tags turns the configured tags into the published ones.
func tags(t config.Tags) cluster.Tags {
	out := cluster.Tags{
		NoFailover: t.NoFailover, NoLoadBalance: t.NoLoadBalance, CloneFrom: t.CloneFrom,
		ReplicateFrom: t.ReplicateFrom, NoSync: t.NoSync, NoStream: t.NoStream, Custom: t.Custom,
	}
	if t.FailoverPriority != 1 {
		p := t.FailoverPriority
		out.FailoverPriority = &p
	}
	if t.SyncPriority != 1 {
		p := t.SyncPriority
		out.SyncPriority = &p
	}
	return out
}

// apiURL is the member's api_url: Patroni's /patroni on the REST API's
// connect address.
func apiURL(cfg *config.Config) string {
	scheme := "http"
	if cfg.RESTAPI.CertFile != "" {
		scheme = "https"
	}
	u := url.URL{Scheme: scheme, Host: cfg.RESTAPI.ConnectAddress, Path: "/patroni"}
	return u.String()
}

func serverConfig(cfg *config.Config) api.ServerConfig {
	r := cfg.RESTAPI
	return api.ServerConfig{
		Username: r.Authentication.Username, Password: r.Authentication.Password.Value(),
		CertFile: r.CertFile, KeyFile: r.KeyFile, KeyFilePassword: r.KeyFilePassword.Value(), CAFile: r.CAFile, VerifyClient: r.VerifyClient,
		Allowlist: r.Allowlist, AllowlistIncludeMembers: r.AllowlistIncludeMembers,
		HTTPExtraHeaders: r.HTTPExtraHeaders, HTTPSExtraHeaders: r.HTTPSExtraHeaders,
		RequestQueueSize: r.RequestQueueSize,
	}
}

// clientOptions are the credentials for talking to other members: [ctl],
// falling back to [restapi] as Patroni does.
func clientOptions(cfg *config.Config) client.Options {
	auth := cfg.Ctl.Authentication
	if auth.Username == "" {
		auth = cfg.RESTAPI.Authentication
	}
	return client.Options{
		Username: auth.Username, Password: auth.Password.Value(),
		CACert: cfg.Ctl.CACert, CertFile: cfg.Ctl.CertFile, KeyFile: cfg.Ctl.KeyFile, KeyFilePassword: cfg.Ctl.KeyFilePassword.Value(),
		Insecure: cfg.Ctl.Insecure,
	}
}

// peers asks other members through their REST API.
type peers struct{ c *client.Client }

// Failsafe implements controller.Peers: POST /failsafe, accepted with 200.
func (p peers) Failsafe(ctx context.Context, name, apiURL string, me cluster.Member) error {
	resp, err := p.c.Failsafe(ctx, apiURL, client.FailsafeRequest{Name: me.Name, ConnURL: me.ConnURL, APIURL: me.APIURL})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("member %s answered %d %s", name, resp.StatusCode, resp.Body)
	}
	return nil
}

func (p peers) Status(ctx context.Context, m cluster.Member) (ha.Peer, error) {
	st, err := p.c.GetStatus(ctx, m.APIURL)
	if err != nil {
		return ha.Peer{Name: m.Name}, err
	}
	if st.XLog == nil {
		// As Patroni (_MemberStatus.from_api_response): a status without
		// WAL positions (PostgreSQL down or not answering) counts as an
		// unreachable node, not as a primary by its last known role.
		return ha.Peer{Name: m.Name, Answered: true}, fmt.Errorf("member %s reports no WAL position (state %q)", m.Name, st.State)
	}
	peer := ha.Peer{
		Name:           m.Name,
		Reachable:      true,
		Answered:       true,
		Primary:        st.IsPrimary(),
		Running:        st.IsRunning(),
		LSN:            st.WALPosition(),
		Timeline:       st.Timeline,
		NoFailover:     !st.Tags.CanFailover(),
		WatchdogFailed: st.WatchdogFailed,
	}
	peer.FailoverPriority = st.Tags.Priority()
	return peer, nil
}

// livePositions reads the WAL positions GET /patroni reports.
func livePositions(pg *postgres.Postgres) func(context.Context) (api.Positions, error) {
	return func(ctx context.Context) (api.Positions, error) {
		rec, wal, received, replayed, err := pg.Positions(ctx)
		if errors.Is(err, postgres.ErrNotRunning) {
			return api.Positions{}, api.ErrNotRunning
		}
		if err != nil {
			return api.Positions{}, err
		}
		return api.Positions{InRecovery: rec, Location: int64(wal), Received: int64(received), Replayed: int64(replayed)}, nil
	}
}
