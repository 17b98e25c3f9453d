//go:build !unix

package replicatest

import "testing"

// PostgresUser is the OS user PostgreSQL runs as.
const PostgresUser = "postgres"

// RunAsPostgres returns m.Run(): there is no root to step down from here.
func RunAsPostgres(m *testing.M) int { return m.Run() }
