# netd, the WireGuard mesh agent (netd/, see netd/README.md). Its unit tests run in test-unit;
# its scenarios run in test-host (test/host/netd: wireguard-go in a netns testbed) and test-vm
# (test/vm/netd: kernel WireGuard), both against a real kube-apiserver and etcd built from
# their Go modules by test/apiserver/build.sh and cached under $(CACHE_DIR)/bin.

# wg and wireguard-go for the data plane, nft for strict mode, tcpdump for the captures that
# prove encryption, openssl for the test cluster's certificates, iperf3 for the benchmarks.
APT_PACKAGES += wireguard-tools wireguard-go nftables iproute2 tcpdump openssl iperf3

.PHONY: apiserver netd-deps test-netd

# kube-apiserver, etcd and kubectl (the manifests' tests use kubectl). A no-op when cached;
# from nothing (cold Go caches) about 5 minutes on 2 cores, kube-apiserver being most of it.
apiserver:
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/apiserver/build.sh kubectl

netd-deps: deps-apt apiserver

# The host and VM tiers run netd's scenarios, so they need what those use.
test-host: netd-deps
test-vm: netd-deps

# Just netd: unit tests, then the host and VM scenarios (vitest filters by path).
test-netd: deps build netd-deps vm-kernel
	vitest run --project unit netd
	vitest run --project host test/host/netd
	test/vm/run.sh -- npm run --silent test:vm-inner -- test/vm/netd
