// Package e2e holds the end-to-end tests of the custos agent: several
// custos processes (built from this checkout) with their PostgreSQL servers
// against one real etcd, driven from outside the way an operator or a
// failure would drive them (signals, SQL, the REST API, the DCS, Patroni's
// own patronictl). The tests carry the build tag `integration`; the package
// has no code of its own.
package e2e
