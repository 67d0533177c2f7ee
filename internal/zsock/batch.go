package zsock

/*
#include "zk.h"
*/
import "C"

import (
	"context"
	"errors"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// Batches move many single-frame messages with one cgo call: up to
// MaxBatch messages, or BatchBytes bytes copied, per call. A message larger
// than BatchBytes takes a call of its own.
const (
	MaxBatch   = 256
	BatchBytes = 32 << 10
)

// batch is the per-socket buffer of RecvBatch and SendBatch, made on first
// use. Guarded by the Socket's mu.
type batch struct {
	buf           []byte
	sizes, frames []C.int
}

func (b *batch) get() *batch {
	if b.buf == nil {
		b.buf = make([]byte, BatchBytes)
		b.sizes = make([]C.int, MaxBatch)
		b.frames = make([]C.int, MaxBatch)
	}
	return b
}

// RecvBatch receives the messages ready, up to limit (at most MaxBatch),
// waiting for the first as RecvBytes does. Each is one frame; one of
// several frames is received whole, discarded, and returned in bad (so a
// batch may hold only bad ones). The messages of one batch share one
// allocation; each one's capacity ends where it does.
func (s *Socket) RecvBatch(ctx context.Context, limit int) (msgs [][]byte, bad []*FramesError, err error) {
	if limit < 1 {
		return nil, nil, errors.New("zmqkit: batch of fewer than one message")
	}
	limit = min(limit, MaxBatch)
	err = s.attempt(ctx, receiving, func(z *zmq.Socket) error {
		msgs, bad = nil, nil
		if s.recv.raw == nil {
			return s.recvBatchPebbe(z, limit, &msgs, &bad)
		}
		return s.recvBatch(z, limit, &msgs, &bad)
	})
	return msgs, bad, err
}

// recvBatch is RecvBatch's one try, through zk_recvb; mu is held.
func (s *Socket) recvBatch(z *zmq.Socket, limit int, msgs *[][]byte, bad *[]*FramesError) error {
	b := s.batch.get()
	res := C.zk_recvb(s.recv.raw, s.recv.held, (*C.char)(unsafe.Pointer(&b.buf[0])), C.size_t(len(b.buf)),
		&b.sizes[0], &b.frames[0], C.int(limit))
	n := int(res.n)
	if n == 0 && res.held == 0 {
		return zmq.Errno(res.err) // EAGAIN: nothing ready
	}
	all := unpack(b.buf, b.sizes[:n], int(res.held))
	out := all[:0] // the single-frame ones, in place
	for i, m := range all {
		if f := int(b.frames[i]); f > 1 {
			*bad = append(*bad, &FramesError{Frames: f, First: m})
			continue
		}
		out = append(out, m)
	}
	if res.held != 0 {
		m := s.recv.take(int(res.hn))
		if res.hmore == 0 {
			out = append(out, m)
		} else {
			fe, err := s.refuseRest(z, m)
			if err != nil {
				return err
			}
			*bad = append(*bad, fe)
		}
	}
	*msgs = out
	return nil
}

// recvBatchPebbe is recvBatch through pebbe's calls, for when its layout
// changed (see rawHandleOK).
func (s *Socket) recvBatchPebbe(z *zmq.Socket, limit int, msgs *[][]byte, bad *[]*FramesError) error {
	for len(*msgs)+len(*bad) < limit {
		b, more, err := s.recv.recvFrame(z)
		if err != nil {
			if len(*msgs)+len(*bad) > 0 && isAgain(err) {
				return nil
			}
			return err
		}
		if !more {
			*msgs = append(*msgs, b)
			continue
		}
		fe, err := s.refuseRest(z, b)
		if err != nil {
			return err
		}
		*bad = append(*bad, fe)
	}
	return nil
}

// SendBatch sends msgs in order, each as a single-frame message, waiting
// while the socket cannot take the next one until ctx ends or the socket
// closes. It returns how many were sent: all of them, or those before the
// error. It takes the socket one call at a time (up to MaxBatch messages
// or 32 KiB), so ctx and Close are seen between calls even on a socket
// that never makes it wait (a PUB drops at its mark instead).
func (s *Socket) SendBatch(ctx context.Context, msgs [][]byte) (int, error) {
	sent := 0
	for sent < len(msgs) {
		err := s.attempt(ctx, sending, func(z *zmq.Socket) error {
			n, err := s.sendBatch(z, msgs[sent:])
			sent += n
			return err // EAGAIN: the rest of this call's share once there is room
		})
		if err != nil {
			return sent, err
		}
	}
	return sent, nil
}

// sendBatch sends as many of msgs as fit the batch buffer (at least the
// first) without waiting, and says how many went; mu is held.
func (s *Socket) sendBatch(z *zmq.Socket, msgs [][]byte) (int, error) {
	if s.recv.raw == nil || len(msgs[0]) > BatchBytes {
		if err := s.sendFrame(z, msgs[0], false); err != nil {
			return 0, err
		}
		return 1, nil
	}
	b := s.batch.get()
	n := pack(b.buf, b.sizes, msgs)
	res := C.zk_sendb(s.recv.raw, (*C.char)(unsafe.Pointer(&b.buf[0])), &b.sizes[0], C.int(n))
	if res.err != 0 {
		return int(res.sent), zmq.Errno(res.err)
	}
	return int(res.sent), nil
}
