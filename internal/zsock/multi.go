package zsock

/*
#include "zk.h"
*/
import "C"

import (
	"fmt"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// Messages up to scratchSize bytes and maxFrames frames (a request with its
// envelope, say) are sent and received with one cgo call, through the
// socket's scratch buffer; larger ones take a call per frame.
const (
	scratchSize = 4096
	maxFrames   = 16
)

// scratch is the per-socket buffer of the one-call paths, made on first
// use. Guarded by the Socket's mu.
type scratch struct {
	buf   []byte
	sizes []C.int
}

func (sc *scratch) get() ([]byte, []C.int) {
	if sc.buf == nil {
		sc.buf = make([]byte, scratchSize)
		sc.sizes = make([]C.int, maxFrames)
	}
	return sc.buf, sc.sizes
}

// recvMessage receives one whole message without waiting; the caller holds
// mu and r.raw is set.
func (r *receiver) recvMessage(sc *scratch, z *zmq.Socket) ([][]byte, error) {
	buf, sizes := sc.get()
	res := C.zk_recvm(r.raw, r.held, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &sizes[0], C.int(len(sizes)))
	n := int(res.frames)
	switch {
	case res.err != 0 && n == 0:
		return nil, zmq.Errno(res.err)
	case res.err != 0:
		// The rest of a message is there once its first frame is, and
		// zk_recvm retries signals, so only a terminated context gets here.
		return nil, fmt.Errorf("zmqkit: receive frame %d: %w", n+1, zmq.Errno(res.err))
	}
	out := unpack(buf, sizes[:n], 1)
	if res.held == 0 {
		return out, nil
	}
	b := r.take(int(res.n))
	out = append(out, b)
	// The rest of a message is there once its first frame is.
	for more := res.more != 0; more; {
		var err error
		if b, more, err = r.recvFrame(z); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// sendMessage sends parts as one message without waiting when it fits the
// scratch buffer; ok is false when it does not, and nothing was sent. The
// caller holds mu and r.raw is set.
func (r *receiver) sendMessage(sc *scratch, parts [][]byte, lb bool) (ok bool, err error) {
	buf, sizes := sc.get()
	if pack(buf, sizes, parts) < len(parts) {
		return false, nil
	}
	clb := C.int(0)
	if lb {
		clb = 1
	}
	res := C.zk_sendm(r.raw, (*C.char)(unsafe.Pointer(&buf[0])), &sizes[0], C.int(len(parts)), clb)
	switch {
	case res.err == 0:
		return true, nil
	case res.sent > 0: // libzmq takes a whole message once it took its first frame
		return true, fmt.Errorf("zmqkit: send frame %d of %d: %w", res.sent+1, len(parts), zmq.Errno(res.err))
	}
	return true, zmq.Errno(res.err)
}

// unpack copies the frames that C packed back to back in buf, of the given
// sizes, out of it: one allocation holds them all, and each frame's
// capacity ends where it does, so appending to one never touches the next.
// The slice returned has room for extra more frames.
func unpack(buf []byte, sizes []C.int, extra int) [][]byte {
	total := 0
	for _, sz := range sizes {
		total += int(sz)
	}
	all := make([]byte, total)
	copy(all, buf[:total])
	out := make([][]byte, len(sizes), len(sizes)+extra)
	off := 0
	for i, sz := range sizes {
		out[i] = all[off : off+int(sz) : off+int(sz)]
		off += int(sz)
	}
	return out
}

// pack copies parts back to back into buf, their sizes into sizes, for as
// many parts as both hold, and returns how many it packed.
func pack(buf []byte, sizes []C.int, parts [][]byte) int {
	off := 0
	for i, p := range parts {
		if i == len(sizes) || off+len(p) > len(buf) {
			return i
		}
		copy(buf[off:], p)
		off += len(p)
		sizes[i] = C.int(len(p))
	}
	return len(parts)
}

// sendFrame sends one frame without waiting, through zk_send, which
// retries signals; the caller holds mu and r.raw is set.
func (r *receiver) sendFrame(b []byte, more bool) error {
	var p unsafe.Pointer
	if len(b) > 0 {
		p = unsafe.Pointer(&b[0])
	}
	flags := C.int(0)
	if more {
		flags = C.ZMQ_SNDMORE
	}
	if errno := C.zk_send(r.raw, p, C.size_t(len(b)), flags); errno != 0 {
		return zmq.Errno(errno)
	}
	return nil
}
