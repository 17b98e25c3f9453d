package kube

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
)

// bootstrapStates are the member states during which bootstrap_labels are
// set: bootstrapping a new cluster or creating a replica.
var bootstrapStates = map[string]bool{
	"initializing new cluster":        true,
	"running custom bootstrap script": true,
	"starting after custom bootstrap": true,
	"creating replica":                true,
}

// memberLabels returns the label changes a member's data calls for, as
// Patroni sets them on the Pod: role_label is leader_label_value for a
// primary, standby_leader_label_value for a standby leader,
// follower_label_value for a running replica, the role itself for another
// running role, and removed otherwise; tmp_role_label carries the 3.x role
// (master for a leader); bootstrap_labels are there while bootstrapping. The
// data is read for its role and state only; the plugin decides nothing.
func memberLabels(cfg *Config, data []byte) map[string]*string {
	var m struct {
		Role  string `json:"role"`
		State string `json:"state"`
	}
	_ = json.Unmarshal(data, &m) // a value that is not a member JSON has no role
	var role, tmp *string
	str := func(s string) *string { return &s }
	switch {
	case m.Role == "primary" || m.Role == "master":
		role, tmp = str(cfg.LeaderLabelValue), str("master")
	case m.Role == "standby_leader":
		role, tmp = str(cfg.StandbyLeaderLabelValue), str("master")
	case m.State == "running" && m.Role == "replica":
		role, tmp = str(cfg.FollowerLabelValue), str(m.Role)
	case m.State == "running" && m.Role != "":
		role, tmp = str(m.Role), str(m.Role)
	}
	out := map[string]*string{cfg.RoleLabel: role}
	if cfg.TmpRoleLabel != "" {
		out[cfg.TmpRoleLabel] = tmp
	}
	bootstrapping := bootstrapStates[m.State]
	for k, v := range cfg.BootstrapLabels {
		if bootstrapping {
			out[k] = &v
		} else {
			out[k] = nil
		}
	}
	return out
}

// TouchMember writes this member's record: the data in the status
// annotation, renewTime = now (so that every touch renews the record for
// readers' clocks), and the role labels. With member_store = "pod" the
// record is on the Pod named after the member, which must exist (Patroni's
// layout); otherwise on the ConfigMap <scope>-member-<name>, created when
// missing.
func (b *Backend) TouchMember(ctx context.Context, data []byte) error {
	c, err := b.connection()
	if err != nil {
		return err
	}
	if err := checkValue("member "+c.member, data); err != nil {
		return err
	}
	ctx, cancel := c.opContext(ctx)
	defer cancel()
	status, renew := string(data), formatTime(time.Now())
	ch := &change{
		annotations: map[string]*string{annStatus: &status, annMemberRenewTime: &renew},
		labels:      memberLabels(c.cfg, data),
	}
	if c.memberStore == MemberStorePod {
		patch, err := ch.mergePatch("")
		if err != nil {
			return err
		}
		err = c.call(ctx, func(ctx context.Context) error {
			_, err := c.members.patch(ctx, c.member, patch)
			return err
		})
		switch {
		case apierrors.IsNotFound(err):
			return fmt.Errorf("writing member %s: Pod %s/%s not found: with member_store = %q the agent must run in the Pod named after its member",
				c.member, c.namespace, c.member, MemberStorePod)
		case err != nil:
			return storeErr(ctx, "writing member "+c.member+" to "+describe(c.members, c.namespace, c.member), err)
		}
	} else {
		for k, v := range c.labelChange() {
			ch.labels[k] = v
		}
		name := c.layout.memberObjectName(c.member)
		if _, err := c.upsert(ctx, c.members, name, ch); err != nil {
			return storeErr(ctx, "writing member "+c.member+" to "+describe(c.members, c.namespace, name), err)
		}
	}
	c.ensureConfigService(ctx)
	return nil
}
