// Command kube-apiserver is kube-apiserver v1.37.1 built from its Go module, so that the
// Kubernetes DCS plugin's tests run against a real API server without Docker or a download.
package main

import (
	"os"

	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register" // JSON log format, as upstream's main registers it
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
)

func main() {
	os.Exit(cli.Run(app.NewAPIServerCommand()))
}
