// kubelet's side of plugin registration, for cloak's tests: kubelet's own plugin manager
// (k8s.io/kubernetes/pkg/kubelet/pluginmanager: the plugins_registry watcher, the reconciler
// and the operation executor that dial a registration socket, call GetInfo and report back with
// NotifyRegistrationStatus), with kubelet's own CSI version validation (pkg/volume/csi's
// RegistrationHandler.ValidatePlugin). Registering a CSI plugin then calls NodeGetInfo on the
// endpoint the plugin reported, as kubelet's CSI handler does, and prints what it learnt as a
// JSON line instead of writing a CSINode object. What is not kubelet's here: the CSINode write,
// and --reject, which fails the first N registrations on purpose so a test sees a refusal.
//
//	pluginwatcher --plugins-dir DIR [--reject MESSAGE] [--reject-times N]
//
// stdout: one JSON object per event ({"event":"validate"|"register"|"rejected"|"deregister",…});
// stderr: klog.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	csi "github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"
	"k8s.io/kubernetes/pkg/kubelet/config"
	"k8s.io/kubernetes/pkg/kubelet/pluginmanager"
	kubeletcsi "k8s.io/kubernetes/pkg/volume/csi"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

var (
	out   = json.NewEncoder(os.Stdout)
	outMu sync.Mutex
)

func emit(event map[string]any) {
	outMu.Lock()
	defer outMu.Unlock()
	_ = out.Encode(event)
}

type handler struct {
	mu          sync.Mutex
	reject      string
	rejectTimes int
}

func (h *handler) ValidatePlugin(name, endpoint string, versions []string) error {
	err := kubeletcsi.PluginHandler.ValidatePlugin(name, endpoint, versions)
	event := map[string]any{"event": "validate", "name": name, "endpoint": endpoint, "versions": versions}
	if err != nil {
		event["error"] = err.Error()
	}
	emit(event)
	return err
}

func (h *handler) RegisterPlugin(name, endpoint string, versions []string, timeout *time.Duration) error {
	h.mu.Lock()
	reject := h.reject != "" && h.rejectTimes > 0
	if reject {
		h.rejectTimes--
	}
	h.mu.Unlock()
	if reject {
		emit(map[string]any{"event": "rejected", "name": name, "endpoint": endpoint, "error": h.reject})
		return fmt.Errorf("%s", h.reject)
	}
	info, err := nodeGetInfo(endpoint)
	if err != nil {
		emit(map[string]any{"event": "rejected", "name": name, "endpoint": endpoint, "error": err.Error()})
		return err
	}
	emit(map[string]any{
		"event": "register", "name": name, "endpoint": endpoint, "versions": versions,
		"nodeId": info.GetNodeId(), "maxVolumesPerNode": info.GetMaxVolumesPerNode(),
		"topology": info.GetAccessibleTopology().GetSegments(),
	})
	return nil
}

func (h *handler) DeRegisterPlugin(name, endpoint string) {
	emit(map[string]any{"event": "deregister", "name": name, "endpoint": endpoint})
}

// NodeGetInfo over the plugin's CSI socket, with kubelet's CSI timeout.
func nodeGetInfo(endpoint string) (*csi.NodeGetInfoResponse, error) {
	conn, err := grpc.NewClient("passthrough:///"+endpoint,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, "unix", addr)
		}))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return csi.NewNodeClient(conn).NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
}

func main() {
	dir := flag.String("plugins-dir", "", "the plugins_registry directory to watch")
	reject := flag.String("reject", "", "fail registrations with this error")
	rejectTimes := flag.Int("reject-times", 1, "how many registrations --reject fails")
	klog.InitFlags(nil)
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "pluginwatcher: --plugins-dir is required")
		os.Exit(2)
	}
	pm := pluginmanager.NewPluginManager(*dir, &record.FakeRecorder{})
	pm.AddHandler(registerapi.CSIPlugin, &handler{reject: *reject, rejectTimes: *rejectTimes})
	stop := make(chan struct{})
	go pm.Run(config.NewSourcesReady(func(sets.Set[string]) bool { return true }), stop)
	emit(map[string]any{"event": "watching", "dir": *dir})
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	<-signals
	close(stop)
}
