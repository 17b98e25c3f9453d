package agent

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/custos-ha/custos/core/config"
	"github.com/custos-ha/custos/plugin/sdk"
)

// validateTimeout bounds starting the DCS plugin to check its section.
const validateTimeout = 30 * time.Second

// validateConfig checks a configuration file and the DCS plugin's section
// (through the plugin's Validate, which connects nowhere) without binding
// a port or needing a running server. Every problem is printed.
func validateConfig(path, exe string, stdout, stderr io.Writer) int {
	cfg, err := config.Load(path, os.LookupEnv)
	if err != nil {
		printProblems(stderr, path, err)
		return exitFailure
	}
	probs := validateDCSSection(cfg, exe)
	if len(probs) > 0 {
		printProblems(stderr, path, probs)
		return exitFailure
	}
	fmt.Fprintf(stdout, "%s: configuration is valid\n", path)
	return exitOK
}

func validateDCSSection(cfg *config.Config, exe string) config.Problems {
	ctx, cancel := context.WithTimeout(context.Background(), validateTimeout)
	defer cancel()
	section := "dcs." + cfg.DCSName()
	host, err := newHost(cfg, exe, hclog.NewNullLogger())
	if err != nil {
		return config.Problems{{Path: "plugins", Message: err.Error()}}
	}
	defer host.Shutdown()
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
