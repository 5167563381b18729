# Sourced by every Go build of the project (bash). One module and build cache outside the work
# tree, so that CI's fresh clone on the same machine reuses it and a new machine fills it; the
# installed Go toolchain only (no download); static binaries.
CACHE_DIR=${CACHE_DIR:-/var/cache/cloak}
GO=${GO:-/usr/local/go/bin/go}
export GOMODCACHE=${CLOAK_GOMODCACHE:-$CACHE_DIR/go/mod}
export GOCACHE=${CLOAK_GOCACHE:-$CACHE_DIR/go/build}
export GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0
