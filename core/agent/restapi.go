package agent

import (
	"context"
	"errors"

	"github.com/custos-ha/custos/core/api"
	"github.com/custos-ha/custos/core/config"
)

// listenRESTAPI opens the REST API's socket with its certificate, key, CA
// file and allowlist loaded. Run calls it before anything else starts: a
// member whose REST API cannot serve is invisible to health checks and to
// its peers' leader race, so it must not start PostgreSQL or take the
// leader key. A setting that is wrong comes back as a configuration
// problem naming its key and file line.
func listenRESTAPI(ctx context.Context, cfg *config.Config) (*api.Listener, error) {
	ln, err := api.Listen(ctx, serverConfig(cfg), cfg.RESTAPI.Listen)
	var ke *api.KeyError
	if errors.As(err, &ke) {
		return nil, config.Problems{cfg.ProblemAt(ke.Key, ke.Err.Error())}
	}
	return ln, err
}
