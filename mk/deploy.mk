# Deployment: manifests/ (kustomize), the Dockerfile, and their tests (test/deploy) against a real
# kube-apiserver and kube-controller-manager (test/apiserver) with the real CSI sidecars
# (test/deploy/sidecars), all built from their Go modules and cached under $(CACHE_DIR)/bin.
# See manifests/README.md.

# What the image installs, so that test/deploy can map every program the code runs to its
# Debian package on this machine (tini is the image's init); tcpdump for the network demo.
APT_PACKAGES += cryptsetup-bin e2fsprogs xfsprogs util-linux mount wireguard-tools wireguard-go \
	iproute2 nftables tini tcpdump

.PHONY: deploy-deps test-deploy demo-network

# kube-apiserver, etcd, kubectl, kube-controller-manager; external-provisioner, -resizer and
# -snapshotter at the versions the manifests pin. No-ops when cached.
deploy-deps: deps-apt
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/apiserver/build.sh kubectl kube-controller-manager
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/deploy/sidecars/build.sh

# Its own vitest project (test/deploy/vitest.config.ts): test-host does not run these again.
test-deploy: deps build deploy-deps
	vitest run --config test/deploy/vitest.config.ts

TEST_SUITES += test-deploy

# Two nodes in network namespaces with netd, a message from pod to pod, and the capture on the
# wire (demo/network.sh). `make demo` runs it after the storage demo.
demo-network: deps build apiserver
	demo/network.sh
