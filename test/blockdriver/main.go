// Command blockdriver is a CSI driver that serves block volumes backed by sparse files on loop
// devices, with behaviour profiles copied from real drivers (see README.md). It stands in for a
// cloud's driver in cloak's wrapper tests and must itself pass csi-sanity in block mode.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Profile is how the driver's node side behaves, each after real drivers (README.md).
type Profile string

const (
	// ProfileBind: NodeStage attaches the disk but leaves nothing at the staging path; NodePublish
	// bind-mounts the device node onto the target file (EBS, GCE PD, Azure Disk, Cinder).
	ProfileBind Profile = "bind"
	// ProfileMapped: NodeStage maps the device to a file under the staging directory and writes
	// metadata there; NodePublish bind-mounts that file (Ceph RBD).
	ProfileMapped Profile = "mapped"
	// ProfileAttach: attach required. ControllerPublish attaches the disk and returns the device
	// path in publish_context, which NodeStage needs (EBS's devicePath).
	ProfileAttach Profile = "attach"
	// ProfileNoStage: no STAGE_UNSTAGE_VOLUME; NodePublish attaches and binds, NodeUnpublish detaches.
	ProfileNoStage Profile = "nostage"
)

// Hostile is a misbehaviour for cloak's hostile-inner tests; "" behaves.
type Hostile string

const (
	HostileNone     Hostile = ""
	HostileNonBlock Hostile = "non-block" // NodePublish writes a regular file at the target
	HostileSymlink  Hostile = "symlink"   // NodePublish puts a symlink to the device (outside the tree) at the target
	HostileHang     Hostile = "hang"      // NodePublish never answers (until the caller gives up)
	HostileData     Hostile = "data"      // CreateVolume makes disks that already hold an ext4 filesystem
)

type config struct {
	endpoint string
	nodeID   string
	stateDir string
	name     string
	profile  Profile
	hostile  Hostile
	capacity int64
	// Disks one node can have attached (NodeGetInfo, enforced by ControllerPublish).
	maxVolumes int
}

func main() {
	var c config
	var profile, hostile string
	flag.StringVar(&c.endpoint, "endpoint", "unix:///tmp/blockdriver.sock", "unix socket to serve on")
	flag.StringVar(&c.nodeID, "node-id", "", "this node's id (default: the host name)")
	flag.StringVar(&c.stateDir, "state-dir", "", "where volumes, snapshots and bookkeeping live (required)")
	flag.StringVar(&c.name, "driver-name", "block.test.cloak.dev", "the CSI driver name")
	flag.StringVar(&profile, "profile", string(ProfileBind), "bind | mapped | attach | nostage")
	flag.StringVar(&hostile, "hostile", "", "non-block | symlink | hang | data (default: none)")
	flag.Int64Var(&c.capacity, "capacity", 64<<30, "total capacity GetCapacity reports, in bytes")
	flag.IntVar(&c.maxVolumes, "max-volumes-per-node", 8, "disks a node can have attached (the attach profile enforces it)")
	flag.Parse()
	c.profile = Profile(profile)
	c.hostile = Hostile(hostile)
	switch c.profile {
	case ProfileBind, ProfileMapped, ProfileAttach, ProfileNoStage:
	default:
		log.Fatalf("unknown --profile %q", profile)
	}
	switch c.hostile {
	case HostileNone, HostileNonBlock, HostileSymlink, HostileHang, HostileData:
	default:
		log.Fatalf("unknown --hostile %q", hostile)
	}
	if c.stateDir == "" {
		log.Fatal("--state-dir is required")
	}
	if c.nodeID == "" {
		host, err := os.Hostname()
		if err != nil {
			log.Fatal(err)
		}
		c.nodeID = host
	}
	if err := run(c); err != nil {
		log.Fatal(err)
	}
}

func run(c config) error {
	d, err := newDriver(c)
	if err != nil {
		return err
	}
	path, ok := strings.CutPrefix(c.endpoint, "unix://")
	if !ok {
		return fmt.Errorf("--endpoint must be unix:///path, not %q", c.endpoint)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	_ = os.Remove(path)
	listener, err := net.Listen("unix", path)
	if err != nil {
		return err
	}
	server := grpc.NewServer(grpc.UnaryInterceptor(logCalls))
	csi.RegisterIdentityServer(server, d)
	csi.RegisterControllerServer(server, d)
	csi.RegisterNodeServer(server, d)

	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-signals
		server.Stop()
	}()
	log.Printf("blockdriver %s serving on %s: profile %s, node %s, hostile %q", c.name, c.endpoint, c.profile, c.nodeID, c.hostile)
	return server.Serve(listener)
}

// logCalls logs one line per call: method, outcome, duration. Never the request (secrets).
func logCalls(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	started := time.Now()
	resp, err := handler(ctx, req)
	log.Printf("call %s %s %dms", info.FullMethod, status.Code(err), time.Since(started).Milliseconds())
	if err != nil {
		log.Printf("  error: %v", err)
	}
	return resp, err
}
