// Command custos-plugin-callback-http is an example callback plugin for custos: it
// POSTs every lifecycle event of its member, as JSON, to the URL of its
// [callback.http] section. It is built against plugin/sdk alone, as a
// vendor's plugin would be. The agent starts it; it is not meant to be run
// by hand.
//
// The section:
//
//	[callback.http]
//	url = "https://hooks.example.com/custos"  # required, http or https
//	request_timeout = "5s"                    # optional: bounds each POST
//	timeout = "30s"                           # the agent's: bounds each delivery
//	headers = { Authorization = "Bearer ..." } # optional: sent with each POST
//
// The body is one JSON object: {"action", "role", "scope", "member",
// "seq", "time"}, time in RFC 3339 with nanoseconds, in UTC. Any 2xx answer
// is success; anything else, a redirect included, is the event's failure.
// Within one process life an event is posted once: a redelivered Seq that
// was posted already is skipped. The agent redelivers the last event after
// a plugin crash, so the endpoint may see an event twice across a crash;
// (member, seq, time) identifies an event for the endpoint to skip it.
package main

import (
	"github.com/custos-ha/custos/plugin/sdk"
	"github.com/custos-ha/custos/plugin/sdk/callback"
)

// name is the plugin's name: its section is [callback.<name>].
const name = "http"

// binaryName is the binary's file name, which the agent looks for in its
// plugin directory; it names the product in the User-Agent of each POST.
const binaryName = sdk.BinaryPrefix + name

// version is the plugin's release version, set at build time with
// -ldflags "-X main.version=...".
var version = "0.0.0-dev"

func main() {
	logger := sdk.NewLogger(name)
	callback.Serve(sdk.Identity{Name: name, Version: version}, NewReceiver(logger), logger)
}
