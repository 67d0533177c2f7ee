package zsock

/*
#cgo !windows pkg-config: libzmq
#include <stdlib.h>
#include "zk.h"
*/
import "C"

import (
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// pebbe's RecvBytes makes four cgo calls and two allocations per frame;
// receiving is the hot path of every pattern, so zsock receives with one
// call and one allocation instead. It needs libzmq's socket handle, the
// first field of pebbe's Socket; rawHandleOK checks that layout once and
// zsock falls back to pebbe's RecvBytes if it ever changes.
var rawHandleOK = sync.OnceValue(func() bool {
	t := reflect.TypeOf(zmq.Socket{})
	f := t.Field(0)
	return f.Name == "soc" && f.Type == reflect.TypeOf(unsafe.Pointer(nil)) && f.Offset == 0
})

func rawHandle(s *zmq.Socket) unsafe.Pointer {
	if !rawHandleOK() {
		return nil
	}
	return *(*unsafe.Pointer)(unsafe.Pointer(s))
}

// receiver holds the per-socket state of the fast receive. Guarded by the
// Socket's mu.
type receiver struct {
	raw   unsafe.Pointer // libzmq socket, nil to use pebbe
	held  *C.zmq_msg_t   // C memory: never moved by Go
	guess int            // size of the last frame: the next buffer's size
}

// maxGuess bounds the speculative buffer; larger frames take two calls.
const maxGuess = 4096

// testForceFallback, set only by tests, makes new sockets take pebbe's
// paths, as they would if the layout check failed.
var testForceFallback atomic.Bool

func newReceiver(s *zmq.Socket) receiver {
	r := receiver{raw: rawHandle(s), guess: 64}
	if testForceFallback.Load() {
		r.raw = nil
	}
	if r.raw != nil {
		r.held = (*C.zmq_msg_t)(C.malloc(C.sizeof_zmq_msg_t))
	}
	return r
}

func (r *receiver) free() {
	if r.held != nil {
		C.free(unsafe.Pointer(r.held))
		r.held = nil
	}
	r.raw = nil
}

// recvFrame receives one frame without waiting; the caller holds mu.
func (r *receiver) recvFrame(s *zmq.Socket) (b []byte, more bool, err error) {
	if r.raw == nil {
		b, err = s.RecvBytes(zmq.DONTWAIT)
		if err != nil {
			return nil, false, err
		}
		more, err = s.GetRcvmore()
		return b, more, err
	}
	var buf []byte
	var p unsafe.Pointer
	capacity := 0
	if r.guess <= maxGuess {
		buf = make([]byte, r.guess)
		p, capacity = unsafe.Pointer(&buf[0]), len(buf)
	}
	res := C.zk_recv(r.raw, r.held, p, C.size_t(capacity)) // retries signals
	n := int(res.n)
	if n < 0 {
		return nil, false, zmq.Errno(res.err)
	}
	r.guess = max(n, 1)
	if n > capacity {
		buf = r.take(n)
	}
	return buf[:n:n], res.more != 0, nil
}

// recvFrameAppend receives one frame without waiting and appends it to
// dst: into dst's spare capacity when the frame fits (one cgo call, no
// allocation), else into dst grown to fit it. The caller holds mu.
func (r *receiver) recvFrameAppend(s *zmq.Socket, dst []byte) (out []byte, more bool, err error) {
	if r.raw == nil {
		b, more, err := r.recvFrame(s)
		if err != nil {
			return dst, false, err
		}
		return append(dst, b...), more, nil
	}
	spare := dst[len(dst):cap(dst)]
	var p unsafe.Pointer
	if len(spare) > 0 {
		p = unsafe.Pointer(&spare[0])
	}
	res := C.zk_recv(r.raw, r.held, p, C.size_t(len(spare))) // retries signals
	n := int(res.n)
	if n < 0 {
		return dst, false, zmq.Errno(res.err)
	}
	if n > len(spare) {
		dst = slices.Grow(dst, n)
		C.zk_take(r.held, unsafe.Pointer(&dst[:len(dst)+n][len(dst)]), C.size_t(n))
	}
	return dst[:len(dst)+n], res.more != 0, nil
}

// take copies the n-byte frame held in r.held into a new buffer and
// releases it.
func (r *receiver) take(n int) []byte {
	buf := make([]byte, n)
	var dst unsafe.Pointer
	if n > 0 {
		dst = unsafe.Pointer(&buf[0])
	}
	C.zk_take(r.held, dst, C.size_t(n))
	return buf
}

// events reads ZMQ_EVENTS; the caller holds mu.
func (r *receiver) events(s *zmq.Socket) (zmq.State, error) {
	if r.raw == nil {
		return s.GetEvents()
	}
	ev := C.zk_events(r.raw)
	if ev < 0 {
		return 0, zmq.Errno(-ev)
	}
	return zmq.State(ev), nil
}
