//go:build !integration

package postgres

// integration tells TestMain whether the integration tests are built in.
const integration = false
