# syntax=docker/dockerfile:1
#
# cloak's one image: `cloak csi` (the CSI plugin), `cloak keyservice`, `cloak netd` and the
# `cloak keys` tool, chosen by the container's first argument (manifests/ sets it).
#
#   docker build -t <registry>/cloak:0.1.0 .
#
# Node 24 (the version package.json's `node` devDependency pins) on Debian 12 slim. Debian 12,
# as the machine the tests run on: test/deploy checks, with that machine's dpkg database, that
# every program the code runs comes from a package installed below or from the base image.

ARG NODE_IMAGE=node:24.21.0-bookworm-slim

# ---- build: TypeScript → dist/ -------------------------------------------------------------
FROM ${NODE_IMAGE} AS build
WORKDIR /src
COPY package.json package-lock.json ./
# --ignore-scripts: the `node` devDependency's install script would download a second Node;
# this image has one. protobufjs's script only prints a notice.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY proto/ proto/
COPY scripts/gen-proto-types.mjs scripts/
COPY cmd/ cmd/
COPY lib/ lib/
COPY csi/ csi/
COPY keyservice/ keyservice/
COPY netd/ netd/
# Called directly, not through `npm run`: node_modules/.bin/node is that devDependency's
# launcher, which --ignore-scripts left without its binary.
RUN node scripts/gen-proto-types.mjs && node node_modules/typescript/bin/tsc -p tsconfig.json

# ---- runtime ---------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# What the code runs (lib/exec Commands) and the init process:
#   cryptsetup-bin  cryptsetup (LUKS2 format, open, resize, erase checks)
#   e2fsprogs       mkfs.ext4, resize2fs          xfsprogs  mkfs.xfs, xfs_growfs
#   mount           mount, umount, losetup        util-linux  blkid, blockdev, fsfreeze
#   wireguard-tools wg                            wireguard-go  the userspace WireGuard
#   iproute2        ip                            nftables  nft (netd's strict mode)
#   tini            PID 1: reaps wireguard-go's and the tools' exited children, forwards signals
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      cryptsetup-bin \
      e2fsprogs \
      xfsprogs \
      util-linux \
      mount \
      wireguard-tools \
      wireguard-go \
      iproute2 \
      nftables \
      tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/cloak
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
# The .proto files are loaded at run time (lib/proto.ts), from beside package.json.
COPY proto/*.proto proto/loader-options.json proto/
COPY --from=build /src/dist/ dist/
ENV NODE_ENV=production
# Root by default: the node plugin (dm-crypt, mounts) and netd (NET_ADMIN) need it; the key
# service's pod runs it as an unprivileged user (manifests/base/keyservice.yaml).
ENTRYPOINT ["/usr/bin/tini", "--", "node", "/opt/cloak/dist/cmd/cloak.js"]
CMD ["help"]
