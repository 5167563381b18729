package main

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func (d *driver) NodeGetCapabilities(context.Context, *csi.NodeGetCapabilitiesRequest) (*csi.NodeGetCapabilitiesResponse, error) {
	rpcs := []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_EXPAND_VOLUME, csi.NodeServiceCapability_RPC_GET_VOLUME_STATS}
	if d.c.profile != ProfileNoStage {
		rpcs = append(rpcs, csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME)
	}
	var caps []*csi.NodeServiceCapability
	for _, t := range rpcs {
		caps = append(caps, &csi.NodeServiceCapability{Type: &csi.NodeServiceCapability_Rpc{Rpc: &csi.NodeServiceCapability_RPC{Type: t}}})
	}
	return &csi.NodeGetCapabilitiesResponse{Capabilities: caps}, nil
}

func (d *driver) NodeGetInfo(context.Context, *csi.NodeGetInfoRequest) (*csi.NodeGetInfoResponse, error) {
	return &csi.NodeGetInfoResponse{
		NodeId:             d.c.nodeID,
		MaxVolumesPerNode:  int64(d.c.maxVolumes),
		AccessibleTopology: &csi.Topology{Segments: map[string]string{topologyKey: d.c.nodeID}},
	}, nil
}

// mappedPath is where the mapped profile puts the device under the staging directory (ceph-csi
// uses <staging>/<volume id>).
func mappedPath(staging, id string) string { return filepath.Join(staging, stem(id)) }

func (d *driver) lookup(id string) (*volume, error) {
	if id == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	v, err := d.store.getVolume(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", id)
	}
	return v, nil
}

func (d *driver) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if d.c.profile == ProfileNoStage {
		return nil, status.Error(codes.Unimplemented, "this profile does not stage")
	}
	if req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "staging target path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.lookup(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	staging := req.GetStagingTargetPath()
	image := d.store.volumeImage(v.ID)
	var device string
	switch d.c.profile {
	case ProfileAttach:
		device = req.GetPublishContext()["devicePath"]
		if device == "" {
			return nil, status.Error(codes.InvalidArgument, "Device path not provided")
		}
		if backingFile(device) != image {
			return nil, status.Errorf(codes.FailedPrecondition, "%s is not volume %s's disk; is it attached?", device, v.ID)
		}
	default:
		if device, err = attach(ctx, image); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if d.c.profile == ProfileMapped {
		if err := os.MkdirAll(staging, 0o750); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		mapped := mappedPath(staging, v.ID)
		if err := makeFile(mapped); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if mounted, err := isMountPoint(mapped); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		} else if !mounted {
			if err := bindMount(ctx, device, mapped, false); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
		}
		if err := os.WriteFile(filepath.Join(staging, "image-meta.json"), []byte(`{"volume":"`+v.ID+`"}`), 0o600); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	rec, err := d.store.node(v.ID)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if !contains(rec.Staged, staging) {
		rec.Staged = append(rec.Staged, staging)
	}
	if err := d.store.putNode(v.ID, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

func (d *driver) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	if d.c.profile == ProfileNoStage {
		return nil, status.Error(codes.Unimplemented, "this profile does not stage")
	}
	if req.GetVolumeId() == "" || req.GetStagingTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and staging target path are required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	rec, err := d.store.node(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	// As csi-driver-host-path does: the CO must unpublish first.
	if len(rec.Published) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published at %v", id, rec.Published)
	}
	if d.c.profile == ProfileMapped {
		mapped := mappedPath(staging, id)
		if err := unmountAll(ctx, mapped); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := removeAll(mapped, filepath.Join(staging, "image-meta.json")); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if d.c.profile != ProfileAttach && stem(id) != "" {
		// The disk leaves the node with its last staging; with attach required the controller detaches it.
		if err := detach(ctx, d.store.volumeImage(id)); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	rec.Staged = without(rec.Staged, staging)
	if err := d.store.putNode(id, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeUnstageVolumeResponse{}, nil
}

func (d *driver) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "target path is required")
	}
	if req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume capability is required")
	}
	staging := req.GetStagingTargetPath()
	if d.c.profile != ProfileNoStage && staging == "" {
		return nil, status.Error(codes.FailedPrecondition, "staging target path is required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.lookup(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	rec, err := d.store.node(v.ID)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if d.c.profile != ProfileNoStage && !contains(rec.Staged, staging) {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s", v.ID, staging)
	}
	target := req.GetTargetPath()
	image := d.store.volumeImage(v.ID)
	var source string
	switch d.c.profile {
	case ProfileMapped:
		source = mappedPath(staging, v.ID)
	case ProfileAttach:
		source = req.GetPublishContext()["devicePath"]
		if source == "" || backingFile(source) != image {
			return nil, status.Errorf(codes.FailedPrecondition, "device %q is not volume %s's disk", source, v.ID)
		}
	default:
		if source, err = attach(ctx, image); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}

	switch d.c.hostile {
	case HostileHang:
		d.store.mu.Unlock()
		<-ctx.Done()
		d.store.mu.Lock()
		return nil, status.FromContextError(ctx.Err()).Err()
	case HostileNonBlock:
		if err := os.MkdirAll(parentOf(target), 0o750); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := os.WriteFile(target, []byte("not a block device\n"), 0o640); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	case HostileSymlink:
		device, err := attach(ctx, image)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := os.MkdirAll(parentOf(target), 0o750); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if err := os.Symlink(device, target); err != nil && !errors.Is(err, os.ErrExist) {
			return nil, status.Error(codes.Internal, err.Error())
		}
	default:
		if err := makeFile(target); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		mounted, err := isMountPoint(target)
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		if !mounted {
			if err := bindMount(ctx, source, target, req.GetReadonly()); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			}
		}
	}
	if !contains(rec.Published, target) {
		rec.Published = append(rec.Published, target)
	}
	if err := d.store.putNode(v.ID, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

func (d *driver) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetTargetPath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and target path are required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := unmountAll(ctx, target); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := removeAll(target); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	rec, err := d.store.node(id)
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	rec.Published = without(rec.Published, target)
	if d.c.profile == ProfileNoStage && len(rec.Published) == 0 && stem(id) != "" {
		if err := detach(ctx, d.store.volumeImage(id)); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := d.store.putNode(id, rec); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.NodeUnpublishVolumeResponse{}, nil
}

func (d *driver) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" || req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and volume path are required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.lookup(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(req.GetVolumePath()); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	// The "rescan": the loop device learns the file's new size.
	devices, err := loopDevices(ctx, d.store.volumeImage(v.ID))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, device := range devices {
		if _, err := command(ctx, "losetup", "--set-capacity", device); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csi.NodeExpandVolumeResponse{CapacityBytes: v.Capacity}, nil
}

func (d *driver) NodeGetVolumeStats(ctx context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	if req.GetVolumeId() == "" || req.GetVolumePath() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id and volume path are required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.lookup(req.GetVolumeId())
	if err != nil {
		return nil, err
	}
	var st unix.Stat_t
	if err := unix.Stat(req.GetVolumePath(), &st); err != nil {
		return nil, status.Errorf(codes.NotFound, "volume path %s: %v", req.GetVolumePath(), err)
	}
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: v.Capacity}}}, nil
}
