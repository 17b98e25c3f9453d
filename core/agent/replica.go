package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/cluster"
	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/core/postgres"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// defaultReplicaMethod is Patroni's default create_replica_methods.
const defaultReplicaMethod = "basebackup"

// replicaCreator runs the configured replica methods through the replica
// plugins, in order, until one succeeds (create_replica_methods, by
// default basebackup alone).
type replicaCreator struct {
	host   *plugins.Host
	cfg    *config.Config
	pg     *postgres.Postgres
	logger hclog.Logger
}

func newReplicaCreator(host *plugins.Host, cfg *config.Config, pg *postgres.Postgres, logger hclog.Logger) *replicaCreator {
	return &replicaCreator{host: host, cfg: cfg, pg: pg, logger: logger}
}

// methods are the configured replica methods.
func (r *replicaCreator) methods() []string {
	if m := r.cfg.PostgreSQL.CreateReplicaMethods; len(m) > 0 {
		return m
	}
	return []string{defaultReplicaMethod}
}

// section is the JSON of the method's [postgresql.<method>] section.
func (r *replicaCreator) section(method string) ([]byte, error) {
	if method == defaultReplicaMethod {
		if len(r.cfg.PostgreSQL.Basebackup) == 0 {
			return nil, nil
		}
		return json.Marshal(r.cfg.PostgreSQL.Basebackup)
	}
	t, ok := r.cfg.PostgreSQL.ReplicaMethods[method]
	if !ok {
		return nil, nil
	}
	return json.Marshal(map[string]any(t))
}

// NoLeaderMethods lists the configured replica methods whose plugin says
// it can create a replica without a member to copy from
// (replica.CapNoLeader), asking each plugin once.
func (r *replicaCreator) NoLeaderMethods(ctx context.Context) []string {
	var out []string
	if m := r.methods(); len(m) == 1 && m[0] == defaultReplicaMethod {
		return nil // pg_basebackup needs a running member
	}
	if r.cfg.PostgreSQL.RecoveryConf["restore_command"] == nil {
		// A member restored without a running leader has no
		// primary_conninfo: without a restore_command it could not even
		// replay the WAL of its own backup, and would never start.
		for _, method := range r.methods() {
			if method != defaultReplicaMethod {
				r.logger.Warn("replica methods are not used without a running leader: [postgresql.recovery_conf] sets no restore_command, which a restored member needs to reach consistency", "method", method)
				break
			}
		}
		return nil
	}
	for _, method := range r.methods() {
		p, err := r.host.FindReplica(ctx, method)
		if err != nil {
			r.logger.Warn("replica method: no plugin", "method", method, "error", err)
			continue
		}
		if p.Identity.Capabilities[replica.CapNoLeader] == "true" {
			out = append(out, method)
		}
		p.Kill()
	}
	return out
}

// CreateReplica implements ReplicaCreator. With no source only the
// methods that need none are tried.
func (r *replicaCreator) CreateReplica(ctx context.Context, dataDir string, source *cluster.Member) error {
	var src *replica.Source
	methods := r.methods()
	if source == nil {
		methods = r.NoLeaderMethods(ctx)
		if len(methods) == 0 {
			return errors.New("no replica method can create a replica without a member to copy from")
		}
	} else {
		host, port := source.HostPort()
		if host == "" {
			return fmt.Errorf("clone source %s publishes no usable conn_url (%q)", source.Name, source.ConnURL)
		}
		src = &replica.Source{
			Member:   source.Name,
			Host:     host,
			Port:     port,
			DBName:   "postgres",
			User:     r.cfg.PostgreSQL.Authentication.Replication.Username,
			PassFile: r.pg.PgpassPath(),
		}
	}
	var errs []error
	for _, method := range methods {
		err := r.create(ctx, method, dataDir, src)
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.logger.Warn("replica method failed", "method", method, "error", err)
		errs = append(errs, fmt.Errorf("%s: %w", method, err))
	}
	return fmt.Errorf("every replica method failed: %w", errors.Join(errs...))
}

// create runs one replica method. A data directory that is not empty (a
// re-clone) is handed to a method whose plugin announces
// replica.keep_data (it restores over the old copy); for any other it is
// removed first, as Patroni does with its keep_data option.
func (r *replicaCreator) create(ctx context.Context, method, dataDir string, src *replica.Source) error {
	p, err := r.host.FindReplica(ctx, method)
	if err != nil {
		return err
	}
	defer p.Kill()
	creator, err := p.Replica()
	if err != nil {
		return err
	}
	section, err := r.section(method)
	if err != nil {
		return fmt.Errorf("encoding postgresql.%s: %w", method, err)
	}
	keep := false
	switch st, _ := r.pg.DataDirState(); st {
	case postgres.DirAbsent, postgres.DirEmpty:
	default:
		if p.Identity.Capabilities[replica.CapKeepData] == "true" {
			keep = true
			r.logger.Info("keeping the data directory for the method to restore over it", "method", method)
		} else if _, err := r.pg.RemoveDataDir(ctx, false); err != nil {
			return err
		}
	}
	from := "none (no_leader)"
	if src != nil {
		from = src.Member
	}
	r.logger.Info("creating replica", "method", method, "source", from)
	return creator.CreateReplica(ctx, replica.Request{
		KeepData: keep,
		Method:   method,
		Scope:    r.cfg.Scope,
		Member:   r.cfg.Name,
		DataDir:  dataDir,
		Source:   src,
		Role:     replica.RoleReplica,
		Config:   section,
		BinDir:   r.cfg.PostgreSQL.BinDir,
	}, func(p replica.Progress) {
		if p.Percent >= 0 {
			r.logger.Info("replica progress", "method", method, "percent", p.Percent, "message", p.Message)
		} else {
			r.logger.Debug("replica progress", "method", method, "message", p.Message)
		}
	})
}
