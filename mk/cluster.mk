# The cluster tier (test/cluster, see test/cluster/README.md): a real Kubernetes cluster on this
# machine — etcd, kube-apiserver, kube-controller-manager and kube-scheduler in a network
# namespace, each node a VM-tier guest running containerd, runc, the bridge CNI and kubelet —
# and what a cluster admin does with cloak on it.

# openssl for the cluster's certificates, jq for the image archives, busybox for the pods' image,
# nft for kube-proxy.
APT_PACKAGES += openssl jq busybox-static e2fsprogs iproute2 nftables

.PHONY: cluster-deps test-cluster

# kubelet, kube-proxy, kube-scheduler (and the control plane) from test/apiserver's module;
# containerd from test/cluster/runtime; runc and the CNI plugins unpacked from Debian's packages;
# the sidecars (test/deploy/sidecars); the pause, busybox and sidecar images; cloak's image
# (make image). All cached under $(CACHE_DIR); no-ops when cached.
cluster-deps: deps-apt image
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/apiserver/build.sh kubectl kube-controller-manager kube-scheduler kubelet kube-proxy
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/cluster/runtime/build.sh
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/deploy/sidecars/build.sh
	CACHE_DIR=$(CACHE_DIR) test/cluster/images.sh

test-cluster: deps build vm-kernel cluster-deps
	vitest run --config test/cluster/vitest.config.ts

TEST_SUITES += test-cluster
