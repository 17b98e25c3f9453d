// Package kubetest starts a throwaway etcd 3.6 and kube-apiserver 1.37 for
// the Kubernetes plugin's integration tests: the binaries .ci/build-kube
// builds into ${CUSTOS_CACHE:-$HOME/.cache/custos}/bin (or those named by
// CUSTOS_ETCD36_BIN and CUSTOS_KUBE_APISERVER_BIN), loopback ports picked at
// run time, token authentication and AlwaysAllow authorization, and a
// kubeconfig for the clients.
package kubetest
