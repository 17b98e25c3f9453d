module github.com/custos-ha/custos/testkit

go 1.26.7
