// Package cluster holds the value types of a custos cluster as every node
// sees it (Cluster, Member, Leader, Failover, SyncState, History, Status)
// and their codecs for Patroni's exact DCS value formats. It turns the
// opaque bytes of a dcs.Cluster into typed values and back; malformed values
// are reported, never fatal.
package cluster
