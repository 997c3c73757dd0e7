package lab

import (
	"fmt"
	"os"
	"strconv"
	"strings"
)

// inotifyLimits are the host's inotify limits a lab needs: every node's kubelet and
// containerd watch files (pod manifests, certificates, logs, cgroups), and the kernel's
// default of 128 instances per user runs out at about eight nodes ("too many open files" from
// a kubelet that then exits). kind asks its users to raise the same two.
var inotifyLimits = []struct {
	file string
	min  int
}{
	{"/proc/sys/fs/inotify/max_user_instances", 8192},
	{"/proc/sys/fs/inotify/max_user_watches", 524288},
}

// raiseInotifyLimits raises each limit that is lower than the lab needs; it never lowers one.
func raiseInotifyLimits(printf func(string, ...any)) error {
	for _, l := range inotifyLimits {
		data, err := os.ReadFile(l.file)
		if err != nil {
			return fmt.Errorf("reading %s: %w", l.file, err)
		}
		have, err := strconv.Atoi(strings.TrimSpace(string(data)))
		if err != nil {
			return fmt.Errorf("%s holds %q, not a number", l.file, strings.TrimSpace(string(data)))
		}
		if have >= l.min {
			continue
		}
		if err := os.WriteFile(l.file, []byte(strconv.Itoa(l.min)), 0o644); err != nil {
			return fmt.Errorf("raising %s from %d to %d, which the lab's nodes need: %w", l.file, have, l.min, err)
		}
		printf("Raised %s from %d to %d for the lab's nodes.\n", strings.TrimPrefix(l.file, "/proc/sys/"), have, l.min)
	}
	return nil
}
