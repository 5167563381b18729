// The block test driver (see README.md): a CSI driver serving block volumes on loop devices,
// built like the real cloud drivers (the CSI spec's Go bindings and grpc-go), sharing no code
// with cloak. test/blockdriver/build.sh builds it.
module cloak.dev/test/blockdriver

go 1.26.0

require (
	github.com/container-storage-interface/spec v1.12.0
	golang.org/x/sys v0.43.0
	google.golang.org/grpc v1.82.0
	google.golang.org/protobuf v1.36.11
)

require (
	golang.org/x/net v0.53.0 // indirect
	golang.org/x/text v0.36.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20260414002931-afd174a4e478 // indirect
)
