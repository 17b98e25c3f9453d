// Package importrule holds the test that keeps the import direction one
// way: cmd -> core -> plugin/sdk, plugins -> plugin/sdk. The SDK imports no
// core package and only the libraries a plugin vendor should need; a plugin
// imports neither core nor another plugin.
package importrule
