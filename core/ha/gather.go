package ha

// Gathering says what the controller asks the other members before this
// cycle's decision, from what the read and the observation show, so that
// the usual leader race, switchover and failsafe keep are decided in the
// cycle that sees them: the peers' GET /patroni when the cluster has no
// leader (and this member may take part in the race) or when this member
// leads and a switchover is asked for; the /failsafe members' answer to
// POST /failsafe when failsafe mode could keep this primary while the DCS
// cannot be read, the renewal failed or the lease ran out. It may ask for more than the
// decision then uses; what it misses the decision asks for (Waiting), and
// the next cycle gathers it.
func Gathering(in Input) Gather {
	var g Gather
	if c := in.Cluster; c != nil && !in.ShuttingDown {
		switch {
		case c.Leader == nil:
			// Paused, only the candidate of a failover races, once it
			// knows the former leader no longer runs a primary.
			g.Peers = in.Config.Tags.CanFailover() && (!in.Config.Paused || c.Failover != nil && c.Failover.Candidate == in.Name)
		case c.LeaderName() == in.Name:
			g.Peers = c.Failover != nil && !c.Failover.IsEmpty()
		}
	}
	by := ActBy(in.LeaderExpiry, in.Config.TTL)
	leaseRunOut := !by.IsZero() && !in.Now.Before(by)
	if in.Config.FailsafeMode && len(in.LastFailsafe) > 0 && in.Postgres.Primary() && !in.KeyLost &&
		(in.Cluster == nil || in.RenewFailed != "" || leaseRunOut) {
		g.Failsafe = true
	}
	return g
}
