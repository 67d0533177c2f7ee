package zsock

/*
#include <stdlib.h>
#include "zk.h"
*/
import "C"

import (
	"context"
	"runtime"
	"runtime/cgo"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// A frame sent without a copy: its buffer stays pinned (C may keep a Go
// pointer only to pinned memory) from SendNoCopy until libzmq lets it go.
type noCopyRef struct {
	pin     runtime.Pinner
	release func()
}

// zkReleased is the free function of a frame sent without a copy
// (zk_ref_free): libzmq calls it, on whatever thread dropped the last
// reference, once it no longer reads the frame's buffer.
//
//export zkReleased
func zkReleased(h C.uintptr_t) {
	handle := cgo.Handle(h)
	ref := handle.Value().(*noCopyRef)
	handle.Delete()
	ref.pin.Unpin()
	ref.release()
}

// SendNoCopy sends b as one frame (more marks it as not the last of a
// message) without copying it, waiting as SendBytes does: libzmq reads b in
// place, from its own threads, and calls release once it no longer does
// (the frame was written to the connection, taken by an inproc receiver,
// or dropped). b must not change until then. release runs on a libzmq
// thread or inside a zsock call, so it must not block. When SendNoCopy
// returns an error, release has already been called.
//
// On the pebbe fallback b is copied as SendBytes copies it, and release is
// called before SendNoCopy returns.
func (s *Socket) SendNoCopy(ctx context.Context, b []byte, more bool, release func()) error {
	if len(b) == 0 {
		defer release()
		return s.SendBytes(ctx, b, more)
	}
	ref := &noCopyRef{release: release}
	ref.pin.Pin(&b[0])
	h := cgo.NewHandle(ref)
	m := (*C.zmq_msg_t)(C.malloc(C.sizeof_zmq_msg_t))
	defer C.free(unsafe.Pointer(m))
	if errno := C.zk_ref_init(m, unsafe.Pointer(&b[0]), C.size_t(len(b)), C.uintptr_t(h)); errno != 0 {
		zkReleased(C.uintptr_t(h))
		return zmq.Errno(errno)
	}
	sent := false // m is libzmq's
	err := s.attempt(ctx, sending, func(z *zmq.Socket) error {
		if s.recv.raw == nil {
			return s.sendFrame(z, b, more) // m is closed below, releasing b
		}
		if errno := C.zk_ref_send(s.recv.raw, m, C.int(moreIf(more))); errno != 0 {
			return zmq.Errno(errno)
		}
		sent = true
		return nil
	})
	if !sent {
		C.zmq_msg_close(m) // calls zkReleased
	}
	return err
}
