package fleet

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// A simulated agent is a whole agent.Run and holds what a device's agent
// holds open: its broker socket, a writer and a reader for each of its
// queue's two lanes, and a watcher each for its policy and roster files —
// seven descriptors. The open-file limit is per process, and where it
// cannot be raised (a container without CAP_SYS_RESOURCE keeps a hard
// limit of 20,000) one process holds under 3,000 agents; so the fleet
// spreads its agents over child processes, each under its own limit.

// AgentFiles is what one simulated agent holds open, for sizing the
// child processes.
const AgentFiles = 7

// ProcsFor is how many processes hold agents so that none needs more
// than limit descriptors (with a margin for the process itself).
func ProcsFor(agents int, limit uint64) int {
	per := (int(min(limit, 1<<20)) - 512) / AgentFiles
	if per < 1 {
		per = 1
	}
	return (agents + per - 1) / per
}

// FileLimit is this process's open-file limit (after raiseFileLimit).
func FileLimit() uint64 {
	raiseFileLimit()
	var r syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r) != nil {
		return 1024
	}
	return r.Cur
}

// procs are the child processes that hold the agents. Devices go to them
// round robin as JSON lines on their standard input; a child runs each
// as it arrives (ServeAgents) and stops them all when its input ends.
type procs struct {
	cmds []*exec.Cmd
	ins  []io.WriteCloser
	next int
	done []chan error
	// closing: the children are being stopped, so their end is no failure.
	closing atomic.Bool
}

// startProcs starts n children of argv. A child that ends while ctx is
// live is a failure of the run: fail is told.
func startProcs(ctx context.Context, argv []string, n int, fail func(error)) (*procs, error) {
	if len(argv) == 0 {
		return nil, errors.New("fleet: Options.Exec is required with Procs > 1")
	}
	p := &procs{}
	for i := range n {
		c := exec.Command(argv[0], argv[1:]...)
		c.Stdout, c.Stderr = os.Stderr, os.Stderr
		// Children die with the run, whatever happens to this process.
		c.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		in, err := c.StdinPipe()
		if err != nil {
			p.close()
			return nil, err
		}
		if err := c.Start(); err != nil {
			p.close()
			return nil, fmt.Errorf("fleet: agent process %d: %w", i, err)
		}
		done := make(chan error, 1)
		go func() {
			err := c.Wait()
			done <- err
			if ctx.Err() == nil && !p.closing.Load() {
				fail(fmt.Errorf("fleet: agent process %d (pid %d) ended: %v", i, c.Process.Pid, err))
			}
		}()
		p.cmds, p.ins, p.done = append(p.cmds, c), append(p.ins, in), append(p.done, done)
	}
	return p, nil
}

// start hands d to the next child.
func (p *procs) start(d Device) error {
	b, err := json.Marshal(d)
	if err != nil {
		return err
	}
	i := p.next % len(p.ins)
	p.next++
	if _, err := p.ins[i].Write(append(b, '\n')); err != nil {
		return fmt.Errorf("fleet: agent process %d: %w", i, err)
	}
	return nil
}

func (p *procs) pids() []int {
	var ids []int
	for _, c := range p.cmds {
		ids = append(ids, c.Process.Pid)
	}
	return ids
}

// close ends the children: their input closes, so they stop their agents
// (each says offline) and exit; those that do not within 30 s are killed.
func (p *procs) close() {
	p.closing.Store(true)
	for _, in := range p.ins {
		in.Close()
	}
	for i, d := range p.done {
		select {
		case <-d:
		case <-time.After(30 * time.Second):
			p.cmds[i].Process.Kill()
			<-d
		}
	}
}

// ServeAgents is a child process's side: it runs start for each Device
// line read from r until r ends (the parent closed it, or died) or ctx
// ends, then stops every agent and returns. A device that fails ends the
// child with its error, as it would end an in-process run.
func ServeAgents(ctx context.Context, r io.Reader, start func(context.Context, Device) error, log *slog.Logger) error {
	raiseFileLimit()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	failed := make(chan error, 1)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var d Device
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			cancel()
			wg.Wait()
			return fmt.Errorf("fleet: device line: %w", err)
		}
		d.Logger = log.With("device", d.ID)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := start(ctx, d); err != nil && ctx.Err() == nil {
				select {
				case failed <- fmt.Errorf("fleet: %s: %w", d.ID, err):
				default:
				}
				cancel()
			}
		}()
		select {
		case err := <-failed:
			wg.Wait()
			return err
		default:
		}
	}
	cancel()
	wg.Wait()
	select {
	case err := <-failed:
		return err
	default:
	}
	return sc.Err()
}

// procStat is what /proc says of a process: resident memory, open
// descriptors, CPU time used.
type procStat struct {
	RSS   uint64 // bytes
	Files int
	CPU   time.Duration
}

func statOf(pid int) procStat {
	var s procStat
	dir := "/proc/" + strconv.Itoa(pid)
	if b, err := os.ReadFile(dir + "/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
				s.RSS = kb << 10
			}
		}
	}
	if ents, err := os.ReadDir(dir + "/fd"); err == nil {
		s.Files = len(ents)
	}
	if b, err := os.ReadFile(dir + "/stat"); err == nil {
		// Fields after the command name (which may hold spaces): utime
		// and stime are the 12th and 13th, in clock ticks (USER_HZ, 100).
		if i := strings.LastIndexByte(string(b), ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 13 {
				u, _ := strconv.ParseUint(f[11], 10, 64)
				k, _ := strconv.ParseUint(f[12], 10, 64)
				s.CPU = time.Duration(u+k) * 10 * time.Millisecond
			}
		}
	}
	return s
}

func statsOf(pids []int) procStat {
	var t procStat
	for _, p := range pids {
		s := statOf(p)
		t.RSS += s.RSS
		t.Files += s.Files
		t.CPU += s.CPU
	}
	return t
}

// PIDsUnder are the processes started as `PROG -c CONF` with CONF under
// dir: the brokers a run started (mosquitto, nats-server), for their CPU.
func PIDsUnder(dir string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 2 && args[1] == "-c" && strings.HasPrefix(args[2], dir+"/") {
			pids = append(pids, pid)
		}
	}
	return pids
}
