package main

import (
	"context"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

const (
	mib = int64(1) << 20
	// A volume without a size gets a GiB, as most clouds' default.
	defaultSize = int64(1) << 30
	// Sizes are rounded up to whole MiB, as clouds round (to GiB): callers must not assume an exact size.
	granularity = mib
	topologyKey = "topology.blockdriver.test/node"
)

type driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer
	csi.UnimplementedNodeServer
	c     config
	store *store
}

func newDriver(c config) (*driver, error) {
	s, err := newStore(c.stateDir)
	if err != nil {
		return nil, err
	}
	return &driver{c: c, store: s}, nil
}

// ---- Identity -------------------------------------------------------------------------------

func (d *driver) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: d.c.name, VendorVersion: "0.1.0"}, nil
}

func (d *driver) GetPluginCapabilities(context.Context, *csi.GetPluginCapabilitiesRequest) (*csi.GetPluginCapabilitiesResponse, error) {
	service := func(t csi.PluginCapability_Service_Type) *csi.PluginCapability {
		return &csi.PluginCapability{Type: &csi.PluginCapability_Service_{Service: &csi.PluginCapability_Service{Type: t}}}
	}
	return &csi.GetPluginCapabilitiesResponse{Capabilities: []*csi.PluginCapability{
		service(csi.PluginCapability_Service_CONTROLLER_SERVICE),
		service(csi.PluginCapability_Service_VOLUME_ACCESSIBILITY_CONSTRAINTS),
		{Type: &csi.PluginCapability_VolumeExpansion_{VolumeExpansion: &csi.PluginCapability_VolumeExpansion{Type: csi.PluginCapability_VolumeExpansion_ONLINE}}},
	}}, nil
}

func (d *driver) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return &csi.ProbeResponse{Ready: wrapperspb.Bool(true)}, nil
}

// ---- Controller -----------------------------------------------------------------------------

func (d *driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	rpcs := []csi.ControllerServiceCapability_RPC_Type{
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_VOLUME,
		csi.ControllerServiceCapability_RPC_LIST_VOLUMES,
		csi.ControllerServiceCapability_RPC_GET_CAPACITY,
		csi.ControllerServiceCapability_RPC_CREATE_DELETE_SNAPSHOT,
		csi.ControllerServiceCapability_RPC_LIST_SNAPSHOTS,
		csi.ControllerServiceCapability_RPC_CLONE_VOLUME,
		csi.ControllerServiceCapability_RPC_EXPAND_VOLUME,
		csi.ControllerServiceCapability_RPC_GET_VOLUME,
	}
	if d.c.profile == ProfileAttach {
		rpcs = append(rpcs,
			csi.ControllerServiceCapability_RPC_PUBLISH_UNPUBLISH_VOLUME,
			csi.ControllerServiceCapability_RPC_LIST_VOLUMES_PUBLISHED_NODES,
			csi.ControllerServiceCapability_RPC_PUBLISH_READONLY)
	}
	var caps []*csi.ControllerServiceCapability
	for _, t := range rpcs {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{Rpc: &csi.ControllerServiceCapability_RPC{Type: t}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// checkCapabilities accepts block volumes in single-node modes only: this driver serves raw disks.
func checkCapabilities(caps []*csi.VolumeCapability) error {
	if len(caps) == 0 {
		return status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	for _, c := range caps {
		if c.GetBlock() == nil {
			return status.Error(codes.InvalidArgument, "this driver serves block volumes only")
		}
		switch c.GetAccessMode().GetMode() {
		case csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER, csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY:
		default:
			return status.Errorf(codes.InvalidArgument, "access mode %s is not supported", c.GetAccessMode().GetMode())
		}
	}
	return nil
}

func nodes(v *volume) []string {
	var out []string
	for n := range v.Published {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func roundUp(n int64) int64 { return (n + granularity - 1) / granularity * granularity }

func sizeFor(r *csi.CapacityRange) (int64, error) {
	required, limit := r.GetRequiredBytes(), r.GetLimitBytes()
	if required < 0 || limit < 0 {
		return 0, status.Error(codes.OutOfRange, "negative sizes")
	}
	if limit > 0 && required > limit {
		return 0, status.Error(codes.OutOfRange, "required_bytes exceeds limit_bytes")
	}
	size := required
	if size == 0 {
		size = defaultSize
		if limit > 0 && limit < size {
			size = limit
		}
	}
	size = roundUp(size)
	if limit > 0 && size > limit {
		return 0, status.Errorf(codes.OutOfRange, "no whole MiB between %d and %d", required, limit)
	}
	return size, nil
}

func (d *driver) toVolume(v *volume) *csi.Volume {
	out := &csi.Volume{
		VolumeId:      v.ID,
		CapacityBytes: v.Capacity,
		VolumeContext: map[string]string{"blockdriver.test/profile": string(d.c.profile), "blockdriver.test/node": d.c.nodeID},
		AccessibleTopology: []*csi.Topology{{Segments: map[string]string{topologyKey: d.c.nodeID}}},
	}
	if v.SourceSnapshot != "" {
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: v.SourceSnapshot}}}
	} else if v.SourceVolume != "" {
		out.ContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: v.SourceVolume}}}
	}
	return out
}

func (d *driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	if req.GetName() == "" {
		return nil, status.Error(codes.InvalidArgument, "name is required")
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	for key := range req.GetParameters() {
		// Strict, as EBS is: an unknown parameter is an error, so a key cloak should have kept
		// to itself fails the call.
		if key != "type" && !strings.HasPrefix(key, "csi.storage.k8s.io/") {
			return nil, status.Errorf(codes.InvalidArgument, "invalid parameter key %s for CreateVolume", key)
		}
	}
	if t := req.GetAccessibilityRequirements(); t != nil && len(t.GetRequisite()) > 0 {
		ok := false
		for _, topo := range t.GetRequisite() {
			if n, has := topo.GetSegments()[topologyKey]; !has || n == d.c.nodeID {
				ok = true
			}
		}
		if !ok {
			return nil, status.Errorf(codes.ResourceExhausted, "this driver provisions on node %s only", d.c.nodeID)
		}
	}
	size, err := sizeFor(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()

	var source *volume
	var snap *snapshot
	sourceImage := ""
	if src := req.GetVolumeContentSource(); src != nil {
		if s := src.GetSnapshot(); s != nil {
			if snap, err = d.store.getSnapshot(s.GetSnapshotId()); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			} else if snap == nil {
				return nil, status.Errorf(codes.NotFound, "snapshot %s does not exist", s.GetSnapshotId())
			}
			sourceImage = d.store.snapshotImage(snap.ID)
			if req.GetCapacityRange() == nil {
				size = snap.Size
			} else if size < snap.Size {
				return nil, status.Errorf(codes.OutOfRange, "snapshot %s is %d bytes; the volume cannot be smaller", snap.ID, snap.Size)
			}
		} else if v := src.GetVolume(); v != nil {
			if source, err = d.store.getVolume(v.GetVolumeId()); err != nil {
				return nil, status.Error(codes.Internal, err.Error())
			} else if source == nil {
				return nil, status.Errorf(codes.NotFound, "volume %s does not exist", v.GetVolumeId())
			}
			sourceImage = d.store.volumeImage(source.ID)
			if req.GetCapacityRange() == nil {
				size = source.Capacity
			} else if size < source.Capacity {
				return nil, status.Errorf(codes.OutOfRange, "volume %s is %d bytes; a clone cannot be smaller", source.ID, source.Capacity)
			}
		}
	}

	all, err := d.store.volumes()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, v := range all {
		if v.Name != req.GetName() {
			continue
		}
		r := req.GetCapacityRange()
		sameSource := (snap != nil && v.SourceSnapshot == snap.ID) || (source != nil && v.SourceVolume == source.ID) || (snap == nil && source == nil && v.SourceSnapshot == "" && v.SourceVolume == "")
		if !sameSource || v.Capacity < r.GetRequiredBytes() || (r.GetLimitBytes() > 0 && v.Capacity > r.GetLimitBytes()) {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with different properties", req.GetName())
		}
		return &csi.CreateVolumeResponse{Volume: d.toVolume(v)}, nil
	}

	v := &volume{ID: newVolumeID(d.c.nodeID), Name: req.GetName(), Capacity: size}
	if snap != nil {
		v.SourceSnapshot = snap.ID
	}
	if source != nil {
		v.SourceVolume = source.ID
	}
	image := d.store.volumeImage(v.ID)
	if sourceImage != "" {
		if _, err := command(ctx, "cp", "--sparse=always", sourceImage, image); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	} else if f, err := os.OpenFile(image, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	} else {
		f.Close()
	}
	if err := os.Truncate(image, size); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if d.c.hostile == HostileData && sourceImage == "" {
		if _, err := command(ctx, "mkfs.ext4", "-q", "-F", image); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	if err := d.store.putVolume(v); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateVolumeResponse{Volume: d.toVolume(v)}, nil
}

func (d *driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.store.getVolume(req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return &csi.DeleteVolumeResponse{}, nil
	}
	if len(v.Published) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is attached to %v", v.ID, v.Published)
	}
	devices, err := loopDevices(ctx, d.store.volumeImage(v.ID))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if len(devices) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is in use on the node (%v)", v.ID, devices)
	}
	if err := d.store.deleteVolume(v.ID); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteVolumeResponse{}, nil
}

func (d *driver) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	if d.c.profile != ProfileAttach {
		return nil, status.Error(codes.Unimplemented, "this profile needs no attach")
	}
	if req.GetVolumeId() == "" || req.GetNodeId() == "" || req.GetVolumeCapability() == nil {
		return nil, status.Error(codes.InvalidArgument, "volume id, node id and capability are required")
	}
	if err := checkCapabilities([]*csi.VolumeCapability{req.GetVolumeCapability()}); err != nil {
		return nil, err
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.store.getVolume(req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
	}
	if req.GetNodeId() != d.c.nodeID {
		return nil, status.Errorf(codes.NotFound, "node %s does not exist", req.GetNodeId())
	}
	if readOnly, published := v.Published[req.GetNodeId()]; published && readOnly != req.GetReadonly() {
		return nil, status.Errorf(codes.AlreadyExists, "volume %s is attached to %s with readonly=%t", v.ID, req.GetNodeId(), readOnly)
	} else if !published {
		all, err := d.store.volumes()
		if err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		attached := 0
		for _, other := range all {
			if _, on := other.Published[req.GetNodeId()]; on {
				attached++
			}
		}
		if attached >= d.c.maxVolumes {
			return nil, status.Errorf(codes.ResourceExhausted, "node %s has %d disks attached, its limit", req.GetNodeId(), attached)
		}
	}
	device, err := attach(ctx, d.store.volumeImage(v.ID))
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if _, published := v.Published[req.GetNodeId()]; !published {
		if v.Published == nil {
			v.Published = map[string]bool{}
		}
		v.Published[req.GetNodeId()] = req.GetReadonly()
		if err := d.store.putVolume(v); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	return &csi.ControllerPublishVolumeResponse{PublishContext: map[string]string{"devicePath": device}}, nil
}

func (d *driver) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	if d.c.profile != ProfileAttach {
		return nil, status.Error(codes.Unimplemented, "this profile needs no attach")
	}
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.store.getVolume(req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return &csi.ControllerUnpublishVolumeResponse{}, nil
	}
	// A cloud detaches a disk that is still mounted on the node (forcibly); a loop device
	// cannot go while it is held. Either way cloak must have released it first.
	if err := detach(ctx, d.store.volumeImage(v.ID)); err != nil {
		return nil, status.Error(codes.FailedPrecondition, err.Error())
	}
	delete(v.Published, req.GetNodeId())
	if err := d.store.putVolume(v); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}

func (d *driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, status.Error(codes.InvalidArgument, "volume capabilities are required")
	}
	d.store.mu.Lock()
	v, err := d.store.getVolume(req.GetVolumeId())
	d.store.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: err.Error()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
		MutableParameters:  req.GetMutableParameters(),
	}}, nil
}

// page returns entries [start, start+max) of n, with the next token ("" at the end); tokens are
// decimal offsets, and a token that is not one is Aborted, as the spec says.
func page(n int, maxEntries int32, token string) (int, int, string, error) {
	start := 0
	if token != "" {
		t, err := strconv.Atoi(token)
		if err != nil || t < 0 || t > n {
			return 0, 0, "", status.Errorf(codes.Aborted, "invalid starting token %q", token)
		}
		start = t
	}
	if maxEntries < 0 {
		return 0, 0, "", status.Error(codes.InvalidArgument, "max_entries must not be negative")
	}
	end := n
	if maxEntries > 0 && start+int(maxEntries) < n {
		end = start + int(maxEntries)
	}
	next := ""
	if end < n {
		next = strconv.Itoa(end)
	}
	return start, end, next, nil
}

func (d *driver) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	d.store.mu.Lock()
	all, err := d.store.volumes()
	d.store.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	start, end, next, err := page(len(all), req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for _, v := range all[start:end] {
		entry := &csi.ListVolumesResponse_Entry{Volume: d.toVolume(v)}
		if d.c.profile == ProfileAttach {
			entry.Status = &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: nodes(v)}
		}
		resp.Entries = append(resp.Entries, entry)
	}
	return resp, nil
}

func (d *driver) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	d.store.mu.Lock()
	v, err := d.store.getVolume(req.GetVolumeId())
	d.store.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
	}
	return &csi.ControllerGetVolumeResponse{Volume: d.toVolume(v), Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: nodes(v)}}, nil
}

func (d *driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	if t := req.GetAccessibleTopology(); t != nil {
		if n, has := t.GetSegments()[topologyKey]; has && n != d.c.nodeID {
			return &csi.GetCapacityResponse{}, nil
		}
	}
	if len(req.GetVolumeCapabilities()) > 0 {
		if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
			return nil, err
		}
	}
	d.store.mu.Lock()
	all, err := d.store.volumes()
	d.store.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	free := d.c.capacity
	for _, v := range all {
		free -= v.Capacity
	}
	if free < 0 {
		free = 0
	}
	return &csi.GetCapacityResponse{AvailableCapacity: free, MaximumVolumeSize: wrapperspb.Int64(free), MinimumVolumeSize: wrapperspb.Int64(granularity)}, nil
}

func (d *driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	if req.GetVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "volume id is required")
	}
	if req.GetCapacityRange() == nil {
		return nil, status.Error(codes.InvalidArgument, "capacity range is required")
	}
	size, err := sizeFor(req.GetCapacityRange())
	if err != nil {
		return nil, err
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	v, err := d.store.getVolume(req.GetVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetVolumeId())
	}
	if size > v.Capacity {
		if err := os.Truncate(d.store.volumeImage(v.ID), size); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
		v.Capacity = size
		if err := d.store.putVolume(v); err != nil {
			return nil, status.Error(codes.Internal, err.Error())
		}
	}
	// The node sees the new size only after NodeExpandVolume's rescan (losetup -c), as on Azure.
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: v.Capacity, NodeExpansionRequired: true}, nil
}

func (d *driver) toSnapshot(s *snapshot) *csi.Snapshot {
	return &csi.Snapshot{SnapshotId: s.ID, SourceVolumeId: s.Source, SizeBytes: s.Size, CreationTime: timestamppb.New(s.Created), ReadyToUse: true}
}

func (d *driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	if req.GetName() == "" || req.GetSourceVolumeId() == "" {
		return nil, status.Error(codes.InvalidArgument, "name and source volume id are required")
	}
	for key := range req.GetParameters() {
		if !strings.HasPrefix(key, "csi.storage.k8s.io/") {
			return nil, status.Errorf(codes.InvalidArgument, "invalid parameter key %s for CreateSnapshot", key)
		}
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	all, err := d.store.snapshots()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	for _, s := range all {
		if s.Name == req.GetName() {
			if s.Source != req.GetSourceVolumeId() {
				return nil, status.Errorf(codes.AlreadyExists, "snapshot %s exists for volume %s", s.Name, s.Source)
			}
			return &csi.CreateSnapshotResponse{Snapshot: d.toSnapshot(s)}, nil
		}
	}
	v, err := d.store.getVolume(req.GetSourceVolumeId())
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if v == nil {
		return nil, status.Errorf(codes.NotFound, "volume %s does not exist", req.GetSourceVolumeId())
	}
	s := &snapshot{ID: newSnapshotID(), Name: req.GetName(), Source: v.ID, Size: v.Capacity, Created: time.Now()}
	if _, err := command(ctx, "cp", "--sparse=always", d.store.volumeImage(v.ID), d.store.snapshotImage(s.ID)); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	if err := d.store.putSnapshot(s); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.CreateSnapshotResponse{Snapshot: d.toSnapshot(s)}, nil
}

func (d *driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	if req.GetSnapshotId() == "" {
		return nil, status.Error(codes.InvalidArgument, "snapshot id is required")
	}
	d.store.mu.Lock()
	defer d.store.mu.Unlock()
	if err := d.store.deleteSnapshot(req.GetSnapshotId()); err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	return &csi.DeleteSnapshotResponse{}, nil
}

func (d *driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	d.store.mu.Lock()
	all, err := d.store.snapshots()
	d.store.mu.Unlock()
	if err != nil {
		return nil, status.Error(codes.Internal, err.Error())
	}
	var matching []*snapshot
	for _, s := range all {
		if (req.GetSnapshotId() == "" || s.ID == req.GetSnapshotId()) && (req.GetSourceVolumeId() == "" || s.Source == req.GetSourceVolumeId()) {
			matching = append(matching, s)
		}
	}
	start, end, next, err := page(len(matching), req.GetMaxEntries(), req.GetStartingToken())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for _, s := range matching[start:end] {
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: d.toSnapshot(s)})
	}
	return resp, nil
}
