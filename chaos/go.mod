module github.com/custos-ha/custos/chaos

go 1.26.7

require (
	github.com/custos-ha/custos/core v0.0.0
	github.com/custos-ha/custos/testkit v0.0.0
	github.com/jackc/pgx/v5 v5.7.6
)

require (
	github.com/fatih/color v1.13.0 // indirect
	github.com/hashicorp/go-hclog v1.6.3 // indirect
	github.com/jackc/pgpassfile v1.0.0 // indirect
	github.com/jackc/pgservicefile v0.0.0-20240606120523-5a60cdf6a761 // indirect
	github.com/mattn/go-colorable v0.1.12 // indirect
	github.com/mattn/go-isatty v0.0.17 // indirect
	golang.org/x/crypto v0.58.0 // indirect
	golang.org/x/sys v0.49.0 // indirect
	golang.org/x/text v0.43.0 // indirect
)

replace (
	github.com/custos-ha/custos/core => ../core
	github.com/custos-ha/custos/plugin/sdk => ../plugin/sdk
	github.com/custos-ha/custos/testkit => ../testkit
)
