package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// cpuSample is the machine's busy CPU time (/proc/stat) and this
// process's, at one moment.
type cpuSample struct {
	at       time.Time
	machine  time.Duration // every CPU's busy time, all processes
	self     time.Duration // this process, user and system
	hasStats bool
}

// userHz is the unit of /proc/stat (USER_HZ, 100 on Linux).
const userHz = 100

func sampleCPU() cpuSample {
	s := cpuSample{at: time.Now()}
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err == nil {
		s.self = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return s
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return s
	}
	var busy int64
	for i, v := range f[1:] {
		if i == 3 || i == 4 { // idle, iowait
			continue
		}
		if i >= 8 { // guest times are counted in user already
			break
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return s
		}
		busy += n
	}
	s.machine, s.hasStats = time.Duration(busy)*time.Second/userHz, true
	return s
}

// othersShare says how much of the machine's CPU other processes used
// between a and b: they share the cores with the benchmark and move its
// figures.
func othersShare(a, b cpuSample) string {
	if !a.hasStats || !b.hasStats {
		return "CPU use of other processes unknown (no /proc/stat)"
	}
	wall := b.at.Sub(a.at)
	others := (b.machine - a.machine) - (b.self - a.self)
	share := max(float64(others)/float64(wall*time.Duration(runtime.NumCPU())), 0)
	return fmt.Sprintf("other processes used %.0f %% of the machine's CPU during the run (this one %.0f %%)",
		100*share, 100*float64(b.self-a.self)/float64(wall*time.Duration(runtime.NumCPU())))
}
