// Package bootstraptest is the conformance kit of bootstrap plugins.
// RunConformance checks a bootstrap.Creator against the contract of
// bootstrap.Creator: Validate accepts the method's sections and refuses an
// unknown key by its path; a new cluster fills an absent or empty
// directory, with progress, a usable Result and no recovery configuration
// of its own; a recovery target is honoured by the methods that announce
// it and refused by the others; a non-empty directory, an unknown method
// and a refused section are refused with nothing touched; a failure, a
// cancellation and an ended context leave no data and no process behind;
// errors keep their meaning across the wire.
//
// With Setup.BinDir set, every cluster the kit creates is started the way
// the host starts it (bootstrap.RecoveryParameters: archive recovery with
// the plugin's restore_command and the target, then promotion) and must
// come up as a primary. PostgreSQL refuses to run as root: call
// replicatest.RunAsPostgres from TestMain.
//
// Reference is the reference Creator that passes the kit: a method that
// writes placeholder files (no PostgreSQL needed), and one that clones a
// running cluster with pg_basebackup. A plugin runs the kit against its
// real backend, in process and through its built binary (LaunchBinary).
package bootstraptest
