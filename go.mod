module github.com/custos-ha/custos

go 1.26

require (
	github.com/custos-ha/custos/core v0.0.0
	github.com/custos-ha/custos/plugin/sdk v0.0.0
)

replace (
	github.com/custos-ha/custos/core => ./core
	github.com/custos-ha/custos/plugin/sdk => ./plugin/sdk
)
