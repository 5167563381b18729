# The master secret under a KMS (keyservice/kek, keyservice/README.md). Its unit tests run in
# test-unit, its host tests (test/host/keyservice/kms*.test.ts) in test-host and the overlay's
# (test/deploy/kms-overlay.test.ts) in test-deploy, all found by location. The host tests run a
# real KMS v2 plugin: test/kms-plugin, k8s.io/kms's gRPC service over a SoftHSM2 token, built
# with cgo from its Go modules and cached under $(CACHE_DIR)/bin (test/kms-plugin/build.sh);
# one of them also points the real kube-apiserver at it (the apiserver target, mk/netd.mk).

# softhsm2 for the token; gcc and libc6-dev for cgo (miekg/pkcs11 dlopens the PKCS#11 module).
APT_PACKAGES += softhsm2 gcc libc6-dev

.PHONY: kms-plugin
# A no-op when cached; about a minute from cold Go caches on 2 cores.
kms-plugin: deps-apt
	GO=$(GO) CACHE_DIR=$(CACHE_DIR) test/kms-plugin/build.sh >/dev/null

test-host: kms-plugin apiserver
