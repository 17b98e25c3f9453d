module github.com/custos-ha/custos/plugins/dcs-zookeeper

go 1.26

require github.com/custos-ha/custos/plugin/sdk v0.0.0

replace github.com/custos-ha/custos/plugin/sdk => ../../plugin/sdk
