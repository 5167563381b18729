# cloak's image without Docker: `make image` writes it as an OCI archive (scripts/image/build.sh:
# mmdebstrap of Debian 12 with the packages the Dockerfile installs, Node 24 from the npm `node`
# package, `npm ci --omit=dev`, the compiled sources), reproducibly, under
# $(CACHE_DIR)/image/cloak-<version>-<inputs>.oci.tar, and prints the path. IMAGE_OUT=<file>
# also copies it there. `docker load`, `podman load`, `ctr images import` and
# `skopeo copy oci-archive:<file> docker://<registry>/cloak:<version>` read it. The Dockerfile
# builds the same image for those who have Docker (test/deploy/image.test.ts keeps them in step).
APT_PACKAGES += mmdebstrap jq binutils

.PHONY: image
image: deps-apt gen
	scripts/image/build.sh

# test/deploy/image.test.ts reads the archive (its configuration, its Debian layer's packages).
test-deploy: image
