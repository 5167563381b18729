# CSI conformance: the official csi-sanity suite against the plugin, in the VM tier (real
# dm-crypt), with mount and with block volumes. csi-sanity v5.5.0 speaks CSI spec v1.12, the
# version proto/csi.proto carries (v5.6.0 moved to v1.13).
CSI_SANITY_VERSION := v5.5.0

.PHONY: sanity sanity-tool
sanity-tool:
	@scripts/go-install-cached.sh github.com/kubernetes-csi/csi-test/v5/cmd/csi-sanity $(CSI_SANITY_VERSION) csi-sanity >/dev/null

sanity: deps build vm-kernel sanity-tool
	test/vm/run.sh --timeout 2400 -- test/sanity/run.sh $(CACHE_DIR)/bin/csi-sanity-$(CSI_SANITY_VERSION)

TEST_SUITES += sanity
