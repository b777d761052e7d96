package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sluicehq/sluice"
)

// restartDelay is how long the supervisor waits before it starts a service
// that exited on its own again, like systemd's RestartSec.
const restartDelay = time.Second

// supervisor keeps enrich-service running the way systemd would
// (Restart=always): a process that exits on its own is started again. The
// soak kills and stops it on purpose through kill and stop.
type supervisor struct {
	bin  string
	env  []string
	work string
	log  *logger

	mu       sync.Mutex
	want     bool // the service should be running
	closed   bool
	proc     *process
	starts   int
	kills    int
	exits    map[int]int // unexpected exits by status
	restarts *time.Timer
}

// process is one run of the service.
type process struct {
	cmd      *exec.Cmd
	done     chan struct{}
	addr     chan string // the health address, once it is logged
	url      string
	expected bool // the soak stopped it on purpose
	lastErr  string
}

func newSupervisor(bin string, env []string, work string, log *logger) *supervisor {
	return &supervisor{bin: bin, env: env, work: work, log: log, exits: map[int]int{}}
}

// start makes sure the service runs. It does not wait for it to serve.
func (s *supervisor) start(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = true
	if s.proc != nil || s.closed {
		return nil
	}
	return s.spawnLocked()
}

func (s *supervisor) spawnLocked() error {
	if s.restarts != nil {
		s.restarts.Stop()
		s.restarts = nil
	}
	s.starts++
	name := fmt.Sprintf("service-%02d.log", s.starts)
	f, err := os.Create(filepath.Join(s.work, name))
	if err != nil {
		return err
	}
	p := &process{done: make(chan struct{}), addr: make(chan string, 1)}
	lw := &lineWriter{w: f, onLine: func(line string) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
			Addr  string `json:"addr"`
			Err   string `json:"err"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil {
			return
		}
		if strings.HasPrefix(rec.Msg, "serving /healthz") {
			select {
			case p.addr <- rec.Addr:
			default:
			}
		}
		if rec.Level == "ERROR" {
			s.mu.Lock()
			p.lastErr = rec.Msg + ": " + rec.Err
			s.mu.Unlock()
		}
	}}
	p.cmd = exec.Command(s.bin)
	p.cmd.Env = append(os.Environ(), s.env...)
	p.cmd.Stdout = lw
	p.cmd.Stderr = lw
	if err := p.cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("start %s: %w", s.bin, err)
	}
	s.proc = p
	s.log.printf("  service started (pid %d, log %s)", p.cmd.Process.Pid, name)
	go func() {
		err := p.cmd.Wait()
		f.Close()
		code := p.cmd.ProcessState.ExitCode()
		s.mu.Lock()
		defer s.mu.Unlock()
		close(p.done)
		if s.proc == p {
			s.proc = nil
		}
		if p.expected {
			return
		}
		s.exits[code]++
		s.log.printf("  service exited on its own (pid %d, %v, last error %q); restarting in %s", p.cmd.Process.Pid, err, p.lastErr, restartDelay)
		if s.want && !s.closed {
			s.restarts = time.AfterFunc(restartDelay, func() {
				s.mu.Lock()
				defer s.mu.Unlock()
				if s.want && !s.closed && s.proc == nil {
					if err := s.spawnLocked(); err != nil {
						s.log.printf("  restarting the service: %v", err)
					}
				}
			})
		}
	}()
	return nil
}

// kill sends SIGKILL and waits for the process to go. The service stays
// down until start.
func (s *supervisor) kill() error {
	p := s.halt()
	if p == nil {
		s.log.printf("  service not running; nothing to kill")
		return nil
	}
	s.mu.Lock()
	s.kills++
	s.mu.Unlock()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	s.log.printf("  service killed (pid %d)", p.cmd.Process.Pid)
	return nil
}

// stop sends SIGTERM, and SIGKILL if the service has not exited within a
// minute. It reports a non-zero exit status.
func (s *supervisor) stop() error {
	p := s.halt()
	if p == nil {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(time.Minute):
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		return errors.New("no exit within a minute of SIGTERM; killed")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		return fmt.Errorf("exit status %d after SIGTERM", code)
	}
	return nil
}

// halt marks the service as not wanted and returns the running process,
// marked as stopped on purpose.
func (s *supervisor) halt() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = false
	if s.restarts != nil {
		s.restarts.Stop()
		s.restarts = nil
	}
	p := s.proc
	if p != nil {
		p.expected = true
	}
	return p
}

// shutdown stops everything for good.
func (s *supervisor) shutdown() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	if p := s.halt(); p != nil {
		_ = p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
	}
}

// health reads the running service's /healthz.
func (s *supervisor) health(ctx context.Context) (sluice.Health, error) {
	s.mu.Lock()
	p := s.proc
	s.mu.Unlock()
	if p == nil {
		return sluice.Health{}, errors.New("service not running")
	}
	if p.url == "" {
		select {
		case a := <-p.addr:
			p.url = "http://" + a
		case <-p.done:
			return sluice.Health{}, errors.New("service exited")
		case <-ctx.Done():
			return sluice.Health{}, ctx.Err()
		default:
			return sluice.Health{}, errors.New("service not serving /healthz yet")
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, p.url+"/healthz", nil)
	if err != nil {
		return sluice.Health{}, err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return sluice.Health{}, err
	}
	defer resp.Body.Close()
	var h sluice.Health
	if err := json.NewDecoder(resp.Body).Decode(&h); err != nil {
		return sluice.Health{}, fmt.Errorf("/healthz (status %d): %w", resp.StatusCode, err)
	}
	return h, nil
}

// lineWriter writes a process's output to w and calls onLine for each
// line.
type lineWriter struct {
	mu     sync.Mutex
	w      *os.File
	part   []byte
	onLine func(string)
}

func (l *lineWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	_, _ = l.w.Write(b)
	l.part = append(l.part, b...)
	for {
		i := bytes.IndexByte(l.part, '\n')
		if i < 0 {
			break
		}
		l.onLine(string(l.part[:i]))
		l.part = l.part[i+1:]
	}
	return len(b), nil
}
