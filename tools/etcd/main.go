// Command etcd is the etcd v3.6.16 server built from its Go module (kube-apiserver 1.37 needs
// etcd >= 3.5; Debian ships 3.4).
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
