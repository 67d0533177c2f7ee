package zsock

import (
	"errors"
	"io/fs"
	"net"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
)

// closeWait bounds how long Close waits for a tcp or ipc address it bound
// to be free again.
const closeWait = 2 * time.Second

// unbindInproc frees the inproc names s bound (at once, with no loss: the
// connections made stay) and returns its tcp and ipc listeners. Those are
// left to zmq_close, which closes them at once while the connections they
// accepted get the linger time to deliver what is queued: unbinding them
// would cut those connections short (and lose the queue). So Close waits
// for their addresses instead (awaitFree). mu is not held; s is closed.
func (s *Socket) unbindInproc() (listeners []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, ep := range s.bound {
		if strings.HasPrefix(ep, "inproc://") {
			_ = s.sock.Unbind(ep)
		} else {
			listeners = append(listeners, ep)
		}
	}
	return listeners
}

// awaitFree waits, up to closeWait in all, until libzmq's I/O thread has
// closed the listeners of eps, a closed socket's: until a tcp address can
// be bound (libzmq, like Go, binds with SO_REUSEADDR, so only a listener
// holds it), and, for an ipc endpoint bound as ipc://*, until its file is
// gone: that is the one kind libzmq removes as it closes the listener (and
// so would remove the file of a socket bound there again meanwhile). A
// named ipc file stays, and binding it again replaces it: nothing to wait
// for.
func (s *Socket) awaitFree(eps []string) {
	deadline := time.Now().Add(closeWait)
	for _, ep := range eps {
		if strings.HasPrefix(ep, "ipc://") && !slices.Contains(s.tmpIPC, ep) {
			continue
		}
		for pause := 20 * time.Microsecond; !addressFree(ep) && time.Now().Before(deadline); pause = min(2*pause, 5*time.Millisecond) {
			time.Sleep(pause)
		}
	}
}

// addressFree reports whether a listener's address is free; when it cannot
// tell, it says yes.
func addressFree(ep string) bool {
	switch {
	case strings.HasPrefix(ep, "tcp://"):
		return tcpPortFree(strings.TrimPrefix(ep, "tcp://"))
	case strings.HasPrefix(ep, "ipc://"):
		_, err := os.Lstat(strings.TrimPrefix(ep, "ipc://"))
		return errors.Is(err, fs.ErrNotExist)
	}
	return true
}

// tcpPortFree reports whether hostport can be bound: it binds a socket
// there, with SO_REUSEADDR as libzmq does, and closes it without ever
// listening. (A listening probe would accept, and then reset, the
// connections the closed socket's peers are making again at that moment:
// they would see a failed handshake.) When it cannot tell, it says yes.
func tcpPortFree(hostport string) bool {
	a, err := net.ResolveTCPAddr("tcp", hostport)
	if err != nil {
		return true
	}
	var sa syscall.Sockaddr
	family := syscall.AF_INET
	if ip4 := a.IP.To4(); ip4 != nil || a.IP == nil {
		in := &syscall.SockaddrInet4{Port: a.Port}
		copy(in.Addr[:], ip4)
		sa = in
	} else {
		family = syscall.AF_INET6
		in := &syscall.SockaddrInet6{Port: a.Port}
		copy(in.Addr[:], a.IP.To16())
		sa = in
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return true
	}
	defer syscall.Close(fd)
	if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		return true
	}
	return !errors.Is(syscall.Bind(fd, sa), syscall.EADDRINUSE)
}
