package ctl

import (
	"errors"
	"fmt"
	"time"

	"github.com/custos-ha/custos/core/config"
)

// Environment variables custosctl reads.
const (
	// EnvConfigFile is the default of -c/--config-file.
	EnvConfigFile = "CUSTOSCTL_CONFIG_FILE"
	// EnvDCSURL is the default of -d/--dcs-url (patronictl's DCS_URL).
	EnvDCSURL = "DCS_URL"
	// EnvLogLevel sets the level of custosctl's own log lines and its
	// plugins' (default warn).
	EnvLogLevel = "CUSTOSCTL_LOG_LEVEL"
)

// globalOptions are the options given before the command.
type globalOptions struct {
	configFile string
	dcsURL     string
	pluginDir  string
	insecure   bool
}

// target is where custosctl reads clusters from: the DCS plugin, its
// configuration and the defaults the configuration file gives.
type target struct {
	// cfg is the loaded agent configuration, nil without -c.
	cfg *config.Config
	// sectionFromConfig tells that the plugin section is cfg's own [dcs.*]
	// section, so problems the plugin reports map onto file lines.
	sectionFromConfig bool
	// scope is the default cluster name, "" when unknown.
	scope     string
	namespace string
	plugin    string
	section   []byte
	pluginDir string
	checksums map[string]string
	// ttl and retryTimeout are handed to the plugin's Configure; custosctl
	// writes nothing, so the TTL only has to be valid.
	ttl          time.Duration
	retryTimeout time.Duration
	// insecure skips TLS verification towards the REST API (-k or
	// [ctl] insecure); list does not call the REST API.
	insecure bool
}

// errNoDCS says how to tell custosctl where the DCS is.
var errNoDCS = errors.New("no DCS to read: give -c/--config-file (a custos agent configuration; env " + EnvConfigFile +
	") or -d/--dcs-url (e.g. etcd3://127.0.0.1:2379; env " + EnvDCSURL + ")")

// resolve turns the global options (and their environment defaults) into a
// target. executable is custosctl's path: plugins/ beside it is the
// default plugin directory, the same rule as the agent's.
func (g *globalOptions) resolve(lookupEnv func(string) (string, bool), executable string) (*target, error) {
	configFile, dcsURL := g.configFile, g.dcsURL
	if configFile == "" {
		configFile, _ = lookupEnv(EnvConfigFile)
	}
	if dcsURL == "" {
		dcsURL, _ = lookupEnv(EnvDCSURL)
	}
	if configFile == "" && dcsURL == "" {
		return nil, errNoDCS
	}

	dyn := config.DefaultDynamic()
	t := &target{namespace: config.DefaultNamespace, insecure: g.insecure, checksums: map[string]string{}}
	if configFile != "" {
		cfg, err := config.Load(configFile, lookupEnv)
		if err != nil {
			return nil, configError(configFile, err)
		}
		section, err := cfg.DCSConfigJSON()
		if err != nil {
			return nil, err
		}
		t.cfg, t.sectionFromConfig = cfg, true
		t.scope, t.namespace = cfg.Scope, cfg.Namespace
		t.plugin, t.section = cfg.DCSName(), section
		t.pluginDir = cfg.PluginDirFor(executable)
		t.insecure = t.insecure || cfg.Ctl.Insecure
		for name, p := range cfg.Plugins {
			if p.SHA256 != "" {
				t.checksums[name] = p.SHA256
			}
		}
		dyn = cfg.Dynamic()
	} else {
		t.pluginDir = config.DefaultPluginDir(executable)
	}
	if dcsURL != "" {
		u, err := ParseDCSURL(dcsURL)
		if err != nil {
			return nil, err
		}
		t.plugin, t.section, t.sectionFromConfig = u.Plugin, u.SectionJSON(), false
		if u.Namespace != "" {
			t.namespace = u.Namespace
		}
	}
	if g.pluginDir != "" {
		t.pluginDir = g.pluginDir
	}
	t.ttl, t.retryTimeout = dyn.TTL.Duration(), dyn.RetryTimeout.Duration()
	return t, nil
}

// clusterNames returns the clusters a command works on: the arguments, or
// the configuration's scope.
func (t *target) clusterNames(args []string) ([]string, error) {
	if len(args) > 0 {
		return args, nil
	}
	if t.scope == "" {
		return nil, usageError{errors.New("no cluster name: give one, or use -c with a configuration that sets scope")}
	}
	return []string{t.scope}, nil
}

// configError prints a configuration's problems one per line.
func configError(path string, err error) error {
	var probs config.Problems
	if errors.As(err, &probs) {
		msg := fmt.Sprintf("%s: %d problem(s):", path, len(probs))
		for _, p := range probs {
			msg += "\n  " + p.String()
		}
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %w", path, err)
}
