# The wrapper (csi/wrap/, see README.md "The wrapper"): cloak in front of any CSI driver that
# serves block volumes. Its tests run against the block test driver (test/blockdriver, Go,
# cached under $(CACHE_DIR)/bin by content hash):
#   - unit: csi/wrap/*.test.ts (in test-unit);
#   - the driver's own csi-sanity in every profile, on this host's loop devices (test-blockdriver);
#   - the VM tier's test/vm/wrap (in test-vm's one boot): lifecycle, crash-resume, hostile drivers;
#   - csi-sanity against cloak in wrapper mode, mount and block, profiles bind and attach (in
#     the sanity tier's one boot, mk/sanity.mk; alone: sanity-wrap);
#   - test/deploy/wrap.test.ts: the real provisioner, attacher, resizer and snapshotter (in test-deploy).
# `make test-wrapper` runs all of them and nothing else.

.PHONY: blockdriver test-blockdriver sanity-wrap test-wrapper

blockdriver:
	@test/blockdriver/build.sh >/dev/null

test-blockdriver: blockdriver sanity-tool
	test/sanity/wrap.sh driver $(CACHE_DIR)/bin/csi-sanity-$(CSI_SANITY_VERSION) $$(test/blockdriver/build.sh)

# The wrapper's part of the sanity tier alone: one VM boot for both profiles, each with mount
# and block volumes.
sanity-wrap: deps build vm-kernel sanity-tool blockdriver
	test/vm/run.sh --timeout 3600 -- test/sanity/wrap.sh cloak $(CACHE_DIR)/bin/csi-sanity-$(CSI_SANITY_VERSION) $$(test/blockdriver/build.sh)

# The VM tier and the deployment tests run the wrapper's files with everything else; the
# storage benchmark measures a stage through the wrapper against the block driver alone.
test-vm: blockdriver
test-deploy: blockdriver
bench-storage: blockdriver

TEST_SUITES += test-blockdriver

test-wrapper: deps build vm-kernel blockdriver deploy-deps
	vitest run --project unit csi/wrap lib/errors.test.ts
	$(MAKE) --no-print-directory test-blockdriver
	test/vm/run.sh --timeout 3000 -- npm run --silent test:vm-inner -- test/vm/wrap
	$(MAKE) --no-print-directory sanity-wrap
	vitest run --config test/deploy/vitest.config.ts test/deploy/wrap
