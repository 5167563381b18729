# CSI conformance: the official csi-sanity suite against the plugin, in the VM tier (real
# dm-crypt), with mount and with block volumes, over the local disk source and as the wrapper. csi-sanity v5.5.0 speaks CSI spec v1.12, the
# version proto/csi.proto carries (v5.6.0 moved to v1.13).
CSI_SANITY_VERSION := v5.5.0

.PHONY: sanity sanity-tool
sanity-tool:
	@scripts/go-install-cached.sh github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity $(CSI_SANITY_VERSION) csi-sanity >/dev/null

# One VM boot for the local disk source and the wrapper (test/sanity/vm.sh); the wrapper's part
# needs the block test driver (mk/wrapper.mk). `make sanity-wrap` runs the wrapper's part alone.
sanity: deps build vm-kernel sanity-tool blockdriver
	test/vm/run.sh --timeout 4800 -- test/sanity/vm.sh $(CACHE_DIR)/bin/csi-sanity-$(CSI_SANITY_VERSION) $$(test/blockdriver/build.sh)

TEST_SUITES += sanity
