package main

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// A volume as the "cloud" keeps it: a sparse image file and a JSON record beside it.
type volume struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Capacity int64  `json:"capacity"`
	// The snapshot or volume it was made from.
	SourceSnapshot string `json:"sourceSnapshot,omitempty"`
	SourceVolume   string `json:"sourceVolume,omitempty"`
	// Nodes it is attached to by ControllerPublish (the attach profile), and whether read-only.
	Published map[string]bool `json:"published,omitempty"`
}

type snapshot struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Source   string    `json:"source"`
	Size     int64     `json:"size"`
	Created  time.Time `json:"created"`
}

// What the node side did with a volume: staging paths and targets. The mount table is the truth
// for bind mounts; this is the driver's own record, as real drivers keep one.
type nodeRecord struct {
	Staged    []string `json:"staged,omitempty"`
	Published []string `json:"published,omitempty"`
}

// store keeps every record as a file, written atomically, so the driver survives kill -9.
type store struct {
	mu  sync.Mutex
	dir string
}

func newStore(dir string) (*store, error) {
	for _, sub := range []string{"volumes", "snapshots", "node"} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, err
		}
	}
	return &store{dir: dir}, nil
}

// Volume ids look like a cloud's: long, with slashes. The last segment names the files.
func newVolumeID(nodeID string) string {
	return fmt.Sprintf("blockdriver/nodes/%s/disks/vol-%s", nodeID, randomHex(12))
}

func newSnapshotID() string { return "blockdriver/snapshots/snap-" + randomHex(12) }

func randomHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// stem is the file name of an id this driver issued, or "" for any other id.
func stem(id string) string {
	last := id[strings.LastIndex(id, "/")+1:]
	if !(strings.HasPrefix(last, "vol-") || strings.HasPrefix(last, "snap-")) || strings.ContainsAny(last, "./\\") {
		return ""
	}
	return last
}

func (s *store) volumeImage(id string) string  { return filepath.Join(s.dir, "volumes", stem(id)+".img") }
func (s *store) snapshotImage(id string) string { return filepath.Join(s.dir, "snapshots", stem(id)+".img") }

func (s *store) getVolume(id string) (*volume, error) {
	if stem(id) == "" || !strings.Contains(id, "/disks/") {
		return nil, nil
	}
	var v volume
	ok, err := readJSON(filepath.Join(s.dir, "volumes", stem(id)+".json"), &v)
	if !ok || err != nil || v.ID != id {
		return nil, err
	}
	return &v, nil
}

func (s *store) putVolume(v *volume) error {
	return writeJSON(filepath.Join(s.dir, "volumes", stem(v.ID)+".json"), v)
}

func (s *store) deleteVolume(id string) error {
	return removeAll(filepath.Join(s.dir, "volumes", stem(id)+".json"), s.volumeImage(id))
}

func (s *store) volumes() ([]*volume, error) {
	var out []*volume
	err := each(filepath.Join(s.dir, "volumes"), func(path string) error {
		var v volume
		if _, err := readJSON(path, &v); err != nil {
			return err
		}
		out = append(out, &v)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (s *store) getSnapshot(id string) (*snapshot, error) {
	if stem(id) == "" || !strings.Contains(id, "/snapshots/") {
		return nil, nil
	}
	var sn snapshot
	ok, err := readJSON(filepath.Join(s.dir, "snapshots", stem(id)+".json"), &sn)
	if !ok || err != nil || sn.ID != id {
		return nil, err
	}
	return &sn, nil
}

func (s *store) putSnapshot(sn *snapshot) error {
	return writeJSON(filepath.Join(s.dir, "snapshots", stem(sn.ID)+".json"), sn)
}

func (s *store) deleteSnapshot(id string) error {
	return removeAll(filepath.Join(s.dir, "snapshots", stem(id)+".json"), s.snapshotImage(id))
}

func (s *store) snapshots() ([]*snapshot, error) {
	var out []*snapshot
	err := each(filepath.Join(s.dir, "snapshots"), func(path string) error {
		var sn snapshot
		if _, err := readJSON(path, &sn); err != nil {
			return err
		}
		out = append(out, &sn)
		return nil
	})
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, err
}

func (s *store) node(id string) (*nodeRecord, error) {
	var r nodeRecord
	if stem(id) == "" {
		return &r, nil
	}
	_, err := readJSON(filepath.Join(s.dir, "node", stem(id)+".json"), &r)
	return &r, err
}

func (s *store) putNode(id string, r *nodeRecord) error {
	path := filepath.Join(s.dir, "node", stem(id)+".json")
	if len(r.Staged) == 0 && len(r.Published) == 0 {
		return removeAll(path)
	}
	return writeJSON(path, r)
}

func readJSON(path string, into any) (bool, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return true, json.Unmarshal(data, into)
}

func writeJSON(path string, value any) error {
	data, err := json.MarshalIndent(value, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func removeAll(paths ...string) error {
	for _, p := range paths {
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

func each(dir string, fn func(path string) error) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if strings.HasSuffix(e.Name(), ".json") {
			if err := fn(filepath.Join(dir, e.Name())); err != nil {
				return err
			}
		}
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}
