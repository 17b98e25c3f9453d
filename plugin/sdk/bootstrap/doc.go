// Package bootstrap is the contract of custos bootstrap plugins: the
// Creator interface a plugin implements to create a new cluster's data
// directory (restoring a backup, cloning another cluster; initdb itself is
// built into the agent), its gRPC client and server, the sentinel errors,
// the recovery target a restore aims at, and the Result that tells the
// host how to start the new cluster.
//
// A plugin serves one or more bootstrap methods, the names users give in
// bootstrap.method; each method's configuration is the JSON of its
// [bootstrap.<method>] section. The identity announces the methods under
// CapMethods, and those that restore to a recovery target under
// CapTargets.
//
// The data directory rules are the replica kind's: a plugin claims its
// target with replica.ClaimDataDir (absent or empty, else
// ErrDataDirNotEmpty), puts it back as found with DataDir.Reset on
// failure, and runs its tools with replica.RunCommand so that a cancelled
// creation leaves no process behind. The host owns the recovery settings:
// the plugin leaves none in the data directory (RemoveRecoveryConfig) and
// returns the restore_command it needs in the Result; the host starts the
// new cluster with RecoveryParameters.
//
// A plugin binary's main calls Serve; the conformance kit in
// bootstraptest checks a Creator against this contract, in process and
// through its built binary.
package bootstrap
