// Package client is the typed client of the REST API of custos and Patroni
// members, used by the agent in the leader race (GET /patroni of every peer)
// and by custosctl. It decodes the status documents of custos and of
// Patroni 3.0.2 and 4.x alike, and every error names the URL that failed.
package client
