package zsock

/*
#include "zk.h"
*/
import "C"

import (
	"context"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// SendConcat sends a and b, back to back, as one single-frame message (a
// header and a body, say), waiting while the socket cannot take it: one
// cgo call, the frame built inside libzmq's message, no Go buffer.
func (s *Socket) SendConcat(ctx context.Context, a, b []byte) error {
	return s.attempt(ctx, sending, func(z *zmq.Socket) error {
		if s.recv.raw == nil { // pebbe's layout changed: join in Go
			_, err := z.SendBytes(append(append(make([]byte, 0, len(a)+len(b)), a...), b...), zmq.DONTWAIT)
			return err
		}
		if errno := C.zk_send2(s.recv.raw, bytesPtr(a), C.size_t(len(a)), bytesPtr(b), C.size_t(len(b))); errno != 0 {
			return zmq.Errno(errno)
		}
		return nil
	})
}

// bytesPtr is b's first byte for C, or nil for an empty b.
func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(&b[0])
}

// poolStats reports the send buffer pool's state (see zk.c): bytes kept
// for reuse, buffers handed to libzmq and not yet given back, the smallest
// frame that takes one, and the most bytes kept.
func poolStats() (kept, out, minFrame, keep int) {
	c := C.zk_pool_stats()
	return int(c.kept), int(c.out), int(c.min), int(c.keep)
}
