// Package sdk is the public contract between the custos agent and its
// plugins: the go-plugin handshake, protocol versions, the identity call
// every plugin serves, configuration errors with key paths, and the mapping
// of contract errors onto gRPC status codes. One subpackage per plugin kind
// (dcs, ...) holds that kind's Go interface, its gRPC client and server, and
// a conformance kit; package section decodes a plugin's configuration
// section the same way for every plugin.
//
// This module never imports the agent's core packages: a vendor builds a
// plugin against plugin/sdk alone.
package sdk
