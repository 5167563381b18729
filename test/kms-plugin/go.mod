// cloak's KMS v2 test plugin: Kubernetes' own KMS v2 gRPC service (k8s.io/kms/pkg/service) over a
// PKCS#11 token (SoftHSM2 in the tests), built by test/kms-plugin/build.sh. See main.go.
module cloak.dev/test/kms-plugin

go 1.24.0

require (
	github.com/miekg/pkcs11 v1.1.2
	google.golang.org/grpc v1.72.1
	k8s.io/kms v0.34.4
)

require (
	golang.org/x/net v0.38.0 // indirect
	golang.org/x/sys v0.31.0 // indirect
	golang.org/x/text v0.23.0 // indirect
	google.golang.org/genproto/googleapis/rpc v0.0.0-20250303144028-a0af3efb3deb // indirect
	google.golang.org/protobuf v1.36.5 // indirect
)
