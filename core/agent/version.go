package agent

// Version is custos's own release version.
var Version = "0.1.0-dev"

// WireVersion is the Patroni version custos presents in member keys and in
// /patroni: Patroni nodes and tools parse it to decide which features a
// member has, and custos speaks Patroni 4.1's wire format. custos's own
// version is published beside it in /patroni's "custos" object.
const WireVersion = "4.1.4"
