# What the CSI plugin's host tests need beyond the tree: kubelet's own plugin manager
# (test/pluginwatcher, built from k8s.io/kubernetes and cached under $(CACHE_DIR)/bin) for the
# registration test; Debian's nodejs (a Node older than cloak's) and strace for the command
# line's tests (test/host/cli: the refusal of an old Node, the fsyncs of `cloak keys init`).
APT_PACKAGES += nodejs strace

.PHONY: pluginwatcher
pluginwatcher:
	@GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/pluginwatcher/build.sh >/dev/null

test-host: pluginwatcher
