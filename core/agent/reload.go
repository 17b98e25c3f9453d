package agent

import (
	"context"
	"fmt"
	"os"
	"reflect"
	"strings"
	"sync"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/controller"
	"github.com/custos-ha/custos/core/postgres"
)

// settings holds the configuration in effect and applies changes to it:
// a changed dynamic configuration (from the DCS) and a reload of the TOML
// file (SIGHUP, POST /reload).
type settings struct {
	path   string
	pg     *postgres.Postgres
	logger hclog.Logger

	mu sync.Mutex
	// cfg is the local configuration in effect.
	cfg *config.Config
	// applied is the PostgreSQL configuration last handed to pg.
	applied postgres.Config
	ctrl    *controller.Controller
}

// current returns the local configuration in effect.
func (s *settings) current() *config.Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cfg
}

// applyPostgres is controller.Options.ApplyDynamic: it renders the new
// PostgreSQL configuration and reloads the server when it changed
// (reloaded says it did). Settings that need a restart show up as
// pending_restart.
func (s *settings) applyPostgres(ctx context.Context, eff config.Effective) (reloaded bool, err error) {
	pc := pgConfig(eff)
	s.mu.Lock()
	same := reflect.DeepEqual(pc, s.applied)
	s.mu.Unlock()
	if same {
		return false, nil
	}
	if err := s.pg.Reconfigure(pc); err != nil {
		return false, err
	}
	s.mu.Lock()
	s.applied = pc
	s.mu.Unlock()
	setup, ok := s.pg.LastSetup()
	if !ok {
		// Nothing rendered yet: the next start renders the new values.
		return false, nil
	}
	if err := s.pg.Configure(setup); err != nil {
		return false, err
	}
	if s.pg.IsRunning() {
		if err := s.pg.Reload(ctx); err != nil {
			return false, err
		}
		s.logger.Info("postgresql configuration changed: reloaded")
		return true, nil
	}
	return false, nil
}

// reload re-reads the configuration file. An invalid file changes nothing
// (its problems are logged and returned); settings that only take effect
// when the agent restarts are named in the log.
func (s *settings) reload(ctx context.Context) error {
	cfg, err := config.Load(s.path, os.LookupEnv)
	if err != nil {
		s.logger.Error("configuration reload refused: the file has problems; the running configuration stays", "file", s.path, "problems", err.Error())
		return fmt.Errorf("reloading %s: %w", s.path, err)
	}
	s.mu.Lock()
	old := s.cfg
	s.cfg = cfg
	ctrl := s.ctrl
	s.mu.Unlock()
	if fixed := restartOnly(old, cfg); len(fixed) > 0 {
		s.logger.Warn("configuration reloaded; these changes take effect when the agent restarts", "keys", strings.Join(fixed, ", "))
	} else {
		s.logger.Info("configuration reloaded", "file", s.path)
	}
	if ctrl == nil {
		// Run sets it before SIGHUP and POST /reload can call here.
		return fmt.Errorf("reloading %s: the HA loop has not started", s.path)
	}
	// The loop merges it with the dynamic configuration and applies the
	// result to PostgreSQL (ApplyDynamic), never while it promotes or
	// starts it.
	ctrl.SetLocal(controller.LocalSettings{Tags: tags(cfg.Tags), Config: cfg})
	return nil
}

// restartOnly lists the changed keys a reload cannot apply.
func restartOnly(old, cur *config.Config) []string {
	var keys []string
	check := func(key string, a, b any) {
		if !reflect.DeepEqual(a, b) {
			keys = append(keys, key)
		}
	}
	check("scope", old.Scope, cur.Scope)
	check("name", old.Name, cur.Name)
	check("namespace", old.Namespace, cur.Namespace)
	check("plugin_dir", old.PluginDir, cur.PluginDir)
	check("restapi", old.RESTAPI, cur.RESTAPI)
	check("dcs", fmt.Sprint(old.DCS), fmt.Sprint(cur.DCS))
	check("postgresql.data_dir", old.PostgreSQL.DataDir, cur.PostgreSQL.DataDir)
	check("postgresql.connect_address", old.PostgreSQL.ConnectAddress, cur.PostgreSQL.ConnectAddress)
	check("postgresql.bin_dir", old.PostgreSQL.BinDir, cur.PostgreSQL.BinDir)
	return keys
}
