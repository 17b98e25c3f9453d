package plugins

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/bootstrap"
	"github.com/custos-ha/custos/plugin/sdk/replica"
)

// FindDCS starts the DCS plugin whose identity says name (the <name> of a
// [dcs.<name>] section) and kind dcs. It tries the conventional binary
// custos-plugin-dcs-<name> first and, when that is missing or turns out to
// be another plugin, asks the identity of every other binary in the
// directory. The error when none fits lists what each binary said.
//
// A conventional binary that cannot start (checksum, permissions, protocol
// version) is an error of its own: the operator meant that binary.
func (h *Host) FindDCS(ctx context.Context, name string) (*Plugin, error) {
	return h.find(ctx, "dcs plugin "+fmt.Sprintf("%q", name), sdk.KindDCS+"-"+name, func(id sdk.Identity) bool {
		return id.Name == name && id.Serves(sdk.KindDCS)
	})
}

// FindReplica starts the replica plugin serving the replica method (one of
// create_replica_methods): the conventional binary
// custos-plugin-replica-<method> first, then any plugin of kind replica
// announcing the method in its capabilities.
func (h *Host) FindReplica(ctx context.Context, method string) (*Plugin, error) {
	return h.find(ctx, "replica plugin for method "+fmt.Sprintf("%q", method), sdk.KindReplica+"-"+method, func(id sdk.Identity) bool {
		return id.Serves(sdk.KindReplica) && slices.Contains(replica.Methods(id.Capabilities), method)
	})
}

// OpenReplica finds the replica plugin of the method and returns its
// creator and a function that stops the plugin process.
func (h *Host) OpenReplica(ctx context.Context, method string) (*replica.Client, func(), error) {
	p, err := h.FindReplica(ctx, method)
	if err != nil {
		return nil, nil, err
	}
	c, err := p.Replica()
	if err != nil {
		p.Kill()
		return nil, nil, err
	}
	return c, p.Kill, nil
}

// FindBootstrap starts the bootstrap plugin serving the bootstrap method
// ([bootstrap] method): the conventional binary
// custos-plugin-bootstrap-<method> first, then any plugin of kind bootstrap
// announcing the method in its capabilities.
func (h *Host) FindBootstrap(ctx context.Context, method string) (*Plugin, error) {
	return h.find(ctx, "bootstrap plugin for method "+fmt.Sprintf("%q", method), sdk.KindBootstrap+"-"+method, func(id sdk.Identity) bool {
		return id.Serves(sdk.KindBootstrap) && slices.Contains(bootstrap.Methods(id.Capabilities), method)
	})
}

// OpenBootstrap finds the bootstrap plugin of the method and returns its
// creator, its identity's capabilities and a function that stops the
// plugin process.
func (h *Host) OpenBootstrap(ctx context.Context, method string) (*bootstrap.Client, map[string]string, func(), error) {
	p, err := h.FindBootstrap(ctx, method)
	if err != nil {
		return nil, nil, nil, err
	}
	c, err := p.Bootstrap()
	if err != nil {
		p.Kill()
		return nil, nil, nil, err
	}
	return c, p.Identity.Capabilities, p.Kill, nil
}

// find launches the conventional binary, then the others, until one's
// identity matches.
func (h *Host) find(ctx context.Context, what, conventional string, match func(sdk.Identity) bool) (*Plugin, error) {
	bins, err := h.Discover()
	if err != nil {
		return nil, fmt.Errorf("finding %s: %w", what, err)
	}
	ordered := make([]Binary, 0, len(bins))
	for _, b := range bins {
		if b.Name == conventional {
			ordered = append([]Binary{b}, ordered...)
		} else {
			ordered = append(ordered, b)
		}
	}
	var found []string
	for _, b := range ordered {
		p, err := h.Launch(ctx, b)
		if err != nil {
			if b.Name == conventional || ctx.Err() != nil {
				return nil, fmt.Errorf("finding %s: %w", what, err)
			}
			found = append(found, fmt.Sprintf("%s%s: %v", sdk.BinaryPrefix, b.Name, err))
			continue
		}
		if match(p.Identity) {
			return p, nil
		}
		found = append(found, fmt.Sprintf("%s%s: %s", sdk.BinaryPrefix, b.Name, p.Identity))
		p.Kill()
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no %s in %s: it holds no %s* executables (expected %s%s)",
			what, h.dir, sdk.BinaryPrefix, sdk.BinaryPrefix, conventional)
	}
	return nil, fmt.Errorf("no %s in %s (expected %s%s); found: %s",
		what, h.dir, sdk.BinaryPrefix, conventional, strings.Join(found, "; "))
}

// OpenDCS finds the DCS plugin named name (see FindDCS) and supervises it.
// The caller Configures the returned backend and Closes it.
func (h *Host) OpenDCS(ctx context.Context, name string) (*SupervisedDCS, error) {
	p, err := h.FindDCS(ctx, name)
	if err != nil {
		return nil, err
	}
	s, err := h.SuperviseDCS(p)
	if err != nil {
		p.Kill()
		return nil, err
	}
	return s, nil
}
