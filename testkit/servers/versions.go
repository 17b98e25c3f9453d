package servers

// Versions of the servers .ci/build-servers builds from the wrapper modules
// in tools/ (TestVersionsMatchTools keeps them in step with those go.mod
// files, which name the releases once).
const (
	ConsulVersion = "1.22.5"
	KubeVersion   = "1.37.1"
	Etcd36Version = "3.6.16"
)
