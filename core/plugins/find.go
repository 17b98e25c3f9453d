package plugins

import (
	"context"
	"fmt"
	"strings"

	"github.com/custos-ha/custos/plugin/sdk"
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
	bins, err := h.Discover()
	if err != nil {
		return nil, fmt.Errorf("finding dcs plugin %q: %w", name, err)
	}
	conventional := sdk.KindDCS + "-" + name
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
				return nil, fmt.Errorf("finding dcs plugin %q: %w", name, err)
			}
			found = append(found, fmt.Sprintf("%s%s: %v", sdk.BinaryPrefix, b.Name, err))
			continue
		}
		if p.Identity.Name == name && p.Identity.Serves(sdk.KindDCS) {
			return p, nil
		}
		found = append(found, fmt.Sprintf("%s%s: %s", sdk.BinaryPrefix, b.Name, p.Identity))
		p.Kill()
	}
	if len(found) == 0 {
		return nil, fmt.Errorf("no dcs plugin named %q in %s: it holds no %s* executables (expected %s%s)",
			name, h.dir, sdk.BinaryPrefix, sdk.BinaryPrefix, conventional)
	}
	return nil, fmt.Errorf("no dcs plugin named %q in %s (expected %s%s); found: %s",
		name, h.dir, sdk.BinaryPrefix, conventional, strings.Join(found, "; "))
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
