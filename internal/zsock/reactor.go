package zsock

import (
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// reactor watches the ZMQ_FD of every socket of a Context with one epoll
// instance, itself registered in Go's netpoller, and one goroutine. When a
// socket's descriptor fires (libzmq has queued it a command: a message
// arrived, a peer came or went, room to send), the reactor wakes the calls
// waiting on it or, when none is, processes the commands itself (pump).
//
// Pumping idle sockets is not an optimisation: libzmq processes a socket's
// commands only inside calls on that socket, and a peer that closes over
// inproc is not released until this socket has acknowledged its pipe's
// termination. Without the pump, an idle Publisher kept every Subscriber
// that had ever connected to it over inproc (its socket and descriptor)
// until it next published.
//
// One epoll instance per Context rather than one netpoller registration
// per socket also keeps the descriptor count at one per socket (libzmq's
// own), so a Context can hold tens of thousands of them.
type reactor struct {
	epfd int
	file *os.File // epfd, registered in Go's netpoller

	mu    sync.Mutex
	socks map[uint64]*Socket
	seq   uint64

	stopping atomic.Bool
	done     chan struct{}
}

// epollET is EPOLLET as the uint32 EpollEvent.Events wants.
const epollET = 1 << 31

func newReactor() (*reactor, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("zmqkit: epoll: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		_ = syscall.Close(fd)
		return nil, fmt.Errorf("zmqkit: epoll: %w", err)
	}
	// An epoll descriptor is pollable: os.NewFile registers it in the
	// netpoller, which the check below proves.
	f := os.NewFile(uintptr(fd), "zmqkit-reactor")
	if err := f.SetReadDeadline(time.Time{}); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("zmqkit: epoll descriptor is not pollable: %w", err)
	}
	rc, err := f.SyscallConn()
	if err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("zmqkit: epoll: %w", err)
	}
	r := &reactor{epfd: fd, file: f, socks: map[uint64]*Socket{}, done: make(chan struct{})}
	go r.run(rc)
	return r, nil
}

// add watches fd (s's ZMQ_FD) for s.
func (r *reactor) add(s *Socket, fd int) error {
	r.mu.Lock()
	r.seq++
	id := r.seq
	r.socks[id] = s
	r.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | epollET}
	ev.Fd, ev.Pad = int32(uint32(id)), int32(uint32(id>>32))
	if err := syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		r.mu.Lock()
		delete(r.socks, id)
		r.mu.Unlock()
		return fmt.Errorf("zmqkit: watch ZMQ_FD: %w", err)
	}
	s.rid, s.rfd = id, fd
	return nil
}

// remove stops watching s; after it returns the reactor never calls s
// again. It must come before libzmq closes the descriptor.
func (r *reactor) remove(s *Socket) {
	_ = syscall.EpollCtl(r.epfd, syscall.EPOLL_CTL_DEL, s.rfd, nil)
	r.mu.Lock() // the reactor holds it while it calls a socket
	delete(r.socks, s.rid)
	r.mu.Unlock()
}

func (r *reactor) run(rc syscall.RawConn) {
	defer close(r.done)
	events := make([]syscall.EpollEvent, 256)
	// One RawRead for the reactor's whole life: leaving and re-entering it
	// would reset the netpoller's ready flag and could drop an edge. Each
	// round drains epoll, so the next event makes a new edge.
	_ = rc.Read(func(fd uintptr) bool {
		for {
			if r.stopping.Load() {
				return true
			}
			n, err := syscall.EpollWait(int(fd), events, 0)
			if err == syscall.EINTR {
				continue
			}
			if n <= 0 {
				return false // wait for the next edge
			}
			r.mu.Lock()
			for _, ev := range events[:n] {
				if s := r.socks[uint64(uint32(ev.Fd))|uint64(uint32(ev.Pad))<<32]; s != nil {
					s.edge()
				}
			}
			r.mu.Unlock()
			if n < len(events) {
				return false
			}
		}
	})
}

// close stops the reactor and joins its goroutine; every socket is closed.
func (r *reactor) close() {
	r.stopping.Store(true)
	// An expired deadline wakes the reactor out of the netpoller.
	_ = r.file.SetReadDeadline(time.Unix(1, 0))
	<-r.done
	_ = r.file.Close()
}
