package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/core/plugins"
	"github.com/custos-ha/custos/plugin/sdk"
)

// validateTimeout bounds starting the plugins of the configuration (the DCS
// plugin, each callback plugin) to check their sections.
const validateTimeout = 30 * time.Second

// validateConfig checks a configuration file, the DCS plugin's section and
// each [callback.<name>] section (through the plugins' Validate, which
// connects nowhere) without binding a port or needing a running server.
// Every problem is printed.
func validateConfig(path, exe string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		printProblems(stderr, path, err)
		return exitFailure
	}
	probs := validatePluginSections(cfg, exe)
	if len(probs) > 0 {
		printProblems(stderr, path, probs)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return exitOK
}

// validatePluginSections has each plugin of the configuration check its
// section.
func validatePluginSections(cfg *config.Config, exe string) config.Problems {
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	host, err := newHost(cfg, exe, hclog.NewNullLogger())
	if err != nil {
		return config.Problems{{Path: "plugins", Message: err.Error()}}
	}
	defer host.Shutdown()
	probs := validateDCSSection(ctx, cfg, host)
	for _, name := range cfg.CallbackNames() {
		probs = append(probs, validateCallbackSection(ctx, cfg, host, name)...)
	}
	return append(probs, validateBootstrapPlugin(ctx, cfg, host)...)
}

// validateBootstrapPlugin has the bootstrap plugin serving the configured
// method check its [bootstrap.<method>] section, when the section has no
// command (it then names a plugin); nil otherwise.
func validateBootstrapPlugin(ctx context.Context, cfg *config.Config, host *plugins.Host) config.Problems {
	name := cfg.Bootstrap.Method
	m, ok := cfg.Bootstrap.Methods[name]
	if name == "" || name == config.DefaultBootstrapMethod || !ok || m.Command != "" {
		return nil
	}
	key := "bootstrap." + name
	problem := func(msg string) config.Problems { return config.Problems{cfg.ProblemAt(key, msg)} }
	p, err := host.FindBootstrap(ctx, name)
	if err != nil {
		return problem(fmt.Sprintf("no command, and no bootstrap plugin serves method %q: %v", name, err))
	}
	defer p.Kill()
	creator, err := p.Bootstrap()
	if err != nil {
		return problem(err.Error())
	}
	section, err := json.Marshal(map[string]any(m.Params))
	if err != nil {
		return problem(err.Error())
	}
	err = creator.Validate(ctx, name, section)
	var cfgErr *sdk.ConfigError
	switch {
	case errors.As(err, &cfgErr):
		var out config.Problems
		for _, pr := range cfgErr.Problems {
			out = append(out, cfg.ProblemAt(key+"."+pr.Path, pr.Message))
		}
		return out
	case err != nil:
		return problem(fmt.Sprintf("plugin validation failed: %v", err))
	}
	return nil
}

func validateDCSSection(ctx context.Context, cfg *config.Config, host *plugins.Host) config.Problems {
	section := "dcs." + cfg.DCSName()
	p, err := host.FindDCS(ctx, cfg.DCSName())
	if err != nil {
		return config.Problems{{Path: section, Message: err.Error()}}
	}
	defer p.Kill()
	backend, err := p.DCS()
	if err != nil {
		return config.Problems{{Path: section, Message: err.Error()}}
	}
	data, err := cfg.DCSConfigJSON()
	if err != nil {
		return config.Problems{{Path: section, Message: err.Error()}}
	}
	err = backend.Validate(ctx, data)
	var cfgErr *sdk.ConfigError
	switch {
	case errors.As(err, &cfgErr):
		return dcsProblems(cfg, cfgErr)
	case err != nil:
		return config.Problems{{Path: section, Message: fmt.Sprintf("plugin validation failed: %v", err)}}
	}
	return nil
}

// validateCallbackSection has the callback plugin named name check its
// [callback.<name>] section (the host's timeout key left out).
func validateCallbackSection(ctx context.Context, cfg *config.Config, host *plugins.Host, name string) config.Problems {
	problem := func(msg string) config.Problems {
		return config.Problems{cfg.CallbackProblem(name, "", msg)}
	}
	p, err := host.FindCallback(ctx, name)
	if err != nil {
		return problem(err.Error())
	}
	defer p.Kill()
	receiver, err := p.Callback()
	if err != nil {
		return problem(err.Error())
	}
	data, err := cfg.Callback[name].ConfigJSON()
	if err != nil {
		return problem(err.Error())
	}
	err = receiver.Validate(ctx, data)
	var cfgErr *sdk.ConfigError
	switch {
	case errors.As(err, &cfgErr):
		var out config.Problems
		for _, pr := range cfgErr.Problems {
			out = append(out, cfg.CallbackProblem(name, pr.Path, pr.Message))
		}
		return out
	case err != nil:
		return problem(fmt.Sprintf("plugin validation failed: %v", err))
	}
	return nil
}
