package main

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// The system commands the driver runs, as real drivers do (k8s mount-utils execs mount too).

func command(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// loopDevices are the loop devices backed by file.
func loopDevices(ctx context.Context, file string) ([]string, error) {
	out, err := command(ctx, "losetup", "--noheadings", "--output", "NAME", "--associated", file)
	if err != nil {
		return nil, err
	}
	var devices []string
	for _, line := range strings.Split(out, "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "/dev/") {
			devices = append(devices, line)
		}
	}
	return devices, nil
}

// attach returns the loop device of file, attaching one if there is none (idempotent).
func attach(ctx context.Context, file string) (string, error) {
	devices, err := loopDevices(ctx, file)
	if err != nil {
		return "", err
	}
	if len(devices) > 0 {
		return devices[0], nil
	}
	out, err := command(ctx, "losetup", "--find", "--show", file)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(out), nil
}

// detach releases every loop device of file. losetup --detach of a device something still
// holds (a mount being torn down, a reader) only marks it to go when released, so this waits,
// briefly, until it has gone: a caller that deletes the file next must not find it attached.
func detach(ctx context.Context, file string) error {
	devices, err := loopDevices(ctx, file)
	if err != nil {
		return err
	}
	for _, d := range devices {
		if _, err := command(ctx, "losetup", "--detach", d); err != nil {
			return err
		}
	}
	for deadline := time.Now().Add(10 * time.Second); len(devices) > 0 && time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if devices, err = loopDevices(ctx, file); err != nil {
			return err
		}
	}
	if len(devices) > 0 {
		return fmt.Errorf("%s is still attached as %v after losetup --detach", file, devices)
	}
	return nil
}

// backingFile is the file behind a loop device, or "".
func backingFile(device string) string {
	name := strings.TrimPrefix(device, "/dev/")
	data, err := os.ReadFile("/sys/block/" + name + "/loop/backing_file")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}

// isMountPoint says whether path is a mount point, from /proc/self/mountinfo.
func isMountPoint(path string) (bool, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return false, err
	}
	defer f.Close()
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 64*1024), 1024*1024)
	for scanner.Scan() {
		fields := strings.Fields(scanner.Text())
		if len(fields) > 4 && unescape(fields[4]) == path {
			return true, nil
		}
	}
	return false, scanner.Err()
}

func unescape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func bindMount(ctx context.Context, source, target string, readOnly bool) error {
	args := []string{"--bind"}
	if readOnly {
		args = append(args, "-o", "ro")
	}
	_, err := command(ctx, "mount", append(args, source, target)...)
	return err
}

// unmountAll unmounts everything stacked on path.
func unmountAll(ctx context.Context, path string) error {
	for {
		mounted, err := isMountPoint(path)
		if err != nil || !mounted {
			return err
		}
		if _, err := command(ctx, "umount", path); err != nil {
			return err
		}
	}
}

// makeFile creates an empty file at path (the target of a block publish), parents included.
func makeFile(path string) error {
	if err := os.MkdirAll(parentOf(path), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDONLY, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

func parentOf(path string) string {
	i := strings.LastIndex(path, "/")
	if i <= 0 {
		return "/"
	}
	return path[:i]
}
