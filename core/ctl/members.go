package ctl

import (
	"fmt"
	"slices"
	"strings"

	"github.com/custos-ha/custos/core/cluster"
)

// Roles of -r/--role, patronictl's choices ("master" is Patroni 3.0.2's
// name of the primary).
const (
	roleLeader        = "leader"
	rolePrimary       = "primary"
	roleMaster        = "master"
	roleStandbyLeader = "standby-leader"
	roleReplica       = "replica"
	roleStandby       = "standby"
	roleAny           = "any"
)

var roleChoices = []string{roleLeader, rolePrimary, roleStandbyLeader, roleReplica, roleStandby, roleAny, roleMaster}

// roleHelp lists the choices in a flag's help.
var roleHelp = strings.Join(roleChoices[:len(roleChoices)-1], ", ")

// checkRole rejects a -r value patronictl does not know.
func checkRole(role string) error {
	if role == "" || slices.Contains(roleChoices, role) {
		return nil
	}
	return usageError{fmt.Errorf("invalid role %q: choose from %s", role, roleHelp)}
}

// membersWithRole are the members a role selects, as patronictl's
// get_all_members: the leader for leader/primary/standby-leader (primary
// only when it is not a standby leader, standby-leader only when it is
// one), the other members for replica/standby, everyone for any. The
// leader comes as its member (with empty data when it has no member key).
func membersWithRole(c *cluster.Cluster, role string) []cluster.Member {
	switch role {
	case roleLeader, rolePrimary, roleMaster, roleStandbyLeader:
		if c.Leader == nil || c.Leader.Name == "" {
			return nil
		}
		standby := c.Leader.Member.Role == cluster.RoleStandbyLeader
		if (role == rolePrimary || role == roleMaster) && standby || role == roleStandbyLeader && !standby {
			return nil
		}
		return []cluster.Member{c.Leader.Member}
	case roleReplica, roleStandby:
		var out []cluster.Member
		for _, m := range c.Members {
			if m.Name != c.LeaderName() {
				out = append(out, m)
			}
		}
		return out
	}
	return slices.Clone(c.Members)
}

// leaderFirst lists the members with an api_url, the leader first: where
// patronictl sends cluster-wide requests (pause, resume, flush).
func leaderFirst(c *cluster.Cluster) []cluster.Member {
	var out []cluster.Member
	leader := ""
	if c.Leader != nil && c.Leader.Member.APIURL != "" {
		leader = c.Leader.Name
		out = append(out, c.Leader.Member)
	}
	for _, m := range c.Members {
		if m.APIURL != "" && m.Name != leader {
			out = append(out, m)
		}
	}
	return out
}

func memberNames(members []cluster.Member) []string {
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	return names
}

// memberChoice is a per-member command's choice of members.
type memberChoice struct {
	scope string
	names []string
	role  string
	force bool
	// action is the verb of the questions ("restart", "reinitialize").
	action string
	// pickOne: with no names, ask which member rather than taking them
	// all (reinit).
	pickOne bool
	// confirm asks "Are you sure...?" before returning.
	confirm bool
}

// chooseMembers prints the member table and returns the members a command
// acts on, as patronictl's get_members: the named ones among those the
// role selects, or all of them (reinit asks which one), then asks for
// confirmation unless forced.
func (s *session) chooseMembers(c *cluster.Cluster, mc memberChoice) ([]cluster.Member, error) {
	selected := membersWithRole(c, mc.role)
	candidates := memberNames(selected)
	if len(mc.names) == 0 && len(candidates) == 0 {
		return nil, fmt.Errorf("%s cluster doesn't have any members", mc.scope)
	}
	if err := s.printMembers(mc.scope, c); err != nil {
		return nil, err
	}

	var names []string
	switch {
	case len(mc.names) > 0:
		for _, n := range mc.names {
			if slices.Contains(candidates, n) && !slices.Contains(names, n) {
				names = append(names, n)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("No %s among provided members", mc.role)
		}
	case !mc.pickOne:
		names = candidates
	}
	if len(names) == 0 {
		if mc.force {
			return nil, usageError{fmt.Errorf("name the members to %s", mc.action)}
		}
		answer, err := s.ask.askDefault(fmt.Sprintf("Which member do you want to %s [%s]?", mc.action, strings.Join(candidates, ", ")), "")
		if err != nil {
			return nil, err
		}
		names = []string{answer}
	}
	for _, n := range names {
		if !slices.Contains(candidates, n) {
			return nil, fmt.Errorf("%s is not a member of cluster", n)
		}
	}
	var members []cluster.Member
	for _, m := range selected {
		if slices.Contains(names, m.Name) {
			members = append(members, m)
		}
	}
	if mc.confirm && !mc.force {
		ok, err := s.ask.confirm(fmt.Sprintf("Are you sure you want to %s members %s?", mc.action, strings.Join(memberNames(members), ", ")))
		if err != nil {
			return nil, err
		}
		if !ok {
			return nil, fmt.Errorf("Aborted %s", mc.action)
		}
	}
	return members, nil
}
