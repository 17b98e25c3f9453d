// Package client is the typed client of the REST API of custos and Patroni
// members, used by the agent in the leader race (GET /patroni of every peer)
// and by custosctl. It decodes the status documents of custos and of
// Patroni 3.0.2 and 4.x alike, and every error names the URL that failed.
//
// The mutating calls (switchover, failover, restart, reinitialize, reload,
// PATCH/PUT /config and their DELETEs) send Patroni's JSON bodies and return
// the status code and body text of any answer, so that custosctl can print
// the server's own messages as patronictl does.
package client
