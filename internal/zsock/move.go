package zsock

/*
#include <stdlib.h>
#include "zk.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"sync/atomic"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// Mover moves whole messages from one socket to another, as zmq_proxy
// does: up to a batch of them in one cgo call, never copied into Go, never
// waiting. A message the destination cannot take yet stays in the Mover,
// held, and goes first on the next Move. A Mover is for one goroutine; the
// two sockets stay safe for others meanwhile (Move holds both locks only
// while it runs).
type Mover struct {
	src, dst *Socket
	lb       bool // dst is a DEALER, PUSH or REQ (see zk_sendm)
	h        *C.zk_held
	held     [][]byte // the fallback's held message (nil: none)
	heldC    bool     // h holds a message
}

// MoveResult is what one Move did. Taken counts the messages received from
// the source, Sent those given to the destination, Dropped those it had
// taken and released because the destination failed. Blocked tells which
// side stopped the move: SrcEmpty or DstFull (then a message is held), or
// none when the batch was moved whole.
type MoveResult struct {
	Taken, Sent, Dropped int
	Blocked              Blocked
}

// Blocked is the side that stopped a Move.
type Blocked int

const (
	NotBlocked Blocked = iota // the batch went whole
	SrcEmpty                  // the source had nothing more
	DstFull                   // the destination could not take the held message
)

// moverSeq orders the locking of a Mover's two sockets: two Movers between
// the same sockets in opposite directions lock them in the same order.
var moverSeq atomic.Uint64

// NewMover returns a Mover from src to dst; Close releases it.
func NewMover(src, dst *Socket) *Mover {
	m := &Mover{src: src, dst: dst, lb: dst.typ == zmq.DEALER || dst.typ == zmq.PUSH || dst.typ == zmq.REQ}
	m.lock() // Close frees recv
	defer m.unlock()
	if src.recv.raw != nil && dst.recv.raw != nil {
		m.h = (*C.zk_held)(C.calloc(1, C.sizeof_zk_held))
	}
	return m
}

// Held reports whether a message taken from the source waits for the
// destination.
func (m *Mover) Held() bool { return m.heldC || m.held != nil }

// Close releases the Mover and the message it holds, if any (reported:
// the caller counts it dropped).
func (m *Mover) Close() (dropped bool) {
	dropped = m.Held()
	m.held, m.heldC = nil, false
	if m.h != nil {
		C.zk_held_free(m.h)
		C.free(unsafe.Pointer(m.h))
		m.h = nil
	}
	return dropped
}

// lock takes both sockets' locks, in a fixed order.
func (m *Mover) lock() {
	a, b := m.src, m.dst
	if a.seq > b.seq {
		a, b = b, a
	}
	a.mu.Lock()
	b.mu.Lock()
}

func (m *Mover) unlock() {
	m.src.mu.Unlock()
	m.dst.mu.Unlock()
}

// Move sends the held message, if any, then moves messages until max have
// been sent (max 0 sends only the held one), the source has none or the
// destination can take none; it never waits. Errors other than EAGAIN end
// the move: ErrClosed when either socket is closed, with the held message
// still held. Like every operation, Move processes libzmq's commands of
// both sockets, so it checks their waiters after (see observe).
func (m *Mover) Move(max int) (res MoveResult, err error) {
	m.lock()
	defer m.unlock()
	if m.src.closed || m.dst.closed {
		return res, ErrClosed
	}
	if m.h != nil {
		res, err = m.moveC(max)
	} else {
		res, err = m.moveGo(max)
	}
	for _, s := range []*Socket{m.src, m.dst} {
		s.ops.Add(1)
		s.observeForWaiters()
	}
	if errors.Is(err, zmq.ETERM) {
		err = ErrClosed
	}
	return res, err
}

// moveC is Move through zk_move; both locks are held.
func (m *Mover) moveC(max int) (res MoveResult, err error) {
	lb := C.int(0)
	if m.lb {
		lb = 1
	}
	r := C.zk_move(m.src.recv.raw, m.dst.recv.raw, m.h, C.int(max), lb)
	res = MoveResult{Taken: int(r.taken), Sent: int(r.sent), Dropped: int(r.dropped)}
	m.heldC = m.h.n > 0
	switch e := syscall.Errno(r.err); {
	case e == 0:
	case e == syscall.EAGAIN && r.side == 0:
		res.Blocked = SrcEmpty
	case e == syscall.EAGAIN:
		res.Blocked = DstFull
	case r.side == 0:
		err = fmt.Errorf("zmqkit: receive: %w", zmq.Errno(e))
	default:
		err = fmt.Errorf("zmqkit: send: %w", zmq.Errno(e))
	}
	return res, err
}

// moveGo is Move through pebbe, for when zsock cannot reach libzmq's
// socket handles (see rawHandleOK); both locks are held.
func (m *Mover) moveGo(max int) (res MoveResult, err error) {
	for {
		if m.held == nil {
			if res.Sent >= max {
				return res, nil
			}
			msg, err := m.src.recvMessage(m.src.sock)
			if isAgain(err) {
				res.Blocked = SrcEmpty
				return res, nil
			}
			if err != nil {
				return res, fmt.Errorf("zmqkit: receive: %w", err)
			}
			res.Taken++
			m.held = msg
		}
		err := m.dst.sendMessage(m.dst.sock, m.held)
		if isAgain(err) {
			res.Blocked = DstFull
			return res, nil
		}
		m.held = nil
		if err != nil {
			res.Dropped++
			return res, fmt.Errorf("zmqkit: send: %w", err)
		}
		res.Sent++
	}
}
