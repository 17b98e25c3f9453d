// Package importrule holds the test that keeps the import direction one
// way: cmd -> core -> plugin/sdk, plugins -> plugin/sdk. The SDK imports no
// core package and only the libraries a plugin vendor should need; a plugin
// imports neither core nor another plugin. The testkit module (test
// servers, polling) is for tests and the benchmark: the _test files of
// core and the plugins may import it, no package custos, custosctl or a
// plugin links may, and testkit imports no other custos module.
package importrule
