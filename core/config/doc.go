// Package config loads, defaults, overrides from the environment and
// validates the custos agent configuration.
//
// The file is TOML with Patroni's section and key names, so that a
// patroni.yml maps over one to one: top-level scope, namespace, name and
// plugin_dir; [restapi], [ctl], [log], [bootstrap] (whose [bootstrap.dcs]
// seeds the dynamic configuration), [postgresql], [watchdog], [tags], exactly
// one [dcs.<name>] section that is handed to the DCS plugin as JSON, any
// number of [callback.<name>] sections handed to callback plugins the same
// way (less their timeout key, which the agent reads), and optional
// [plugins.<dir name>] checksums.
//
// Precedence is defaults < file < environment (CUSTOS_<SECTION>_<KEY>,
// mirroring PATRONI_*). Validation reports every problem at once, each with
// its key path and file line, as [Problems].
//
// The package also owns the dynamic configuration ([Dynamic]): the value
// stored in the DCS "config" key, with Patroni's JSON key names, defaults
// and limits. Unknown keys in it are kept, as Patroni keeps them. Every
// reader decodes /config with [ParseDynamicOver], which keeps the value in
// effect for a key it refuses. [Merge] is the one place where the dynamic
// configuration and the local one meet: it returns the [Effective]
// settings, local over dynamic except where every member must agree.
//
// Secrets (passwords, key file passphrases) are held in [Secret], which
// redacts itself whenever it is printed or marshalled for a log.
package config
