// Package cbench runs C libzmq's own loops, the baselines that zmqkit's
// performance goals are stated against ("≥ 0.9× C libzmq's PUSH/PULL in the
// same run"). A Go benchmark calls a loop once with count = b.N, next to
// zmqkit's and pebbe/zmq4's loops, so all three see the same machine.
//
// # The loops
//
// Each loop is written in C (cbench.c) and runs entirely in C threads: no Go
// code and no cgo call runs per message. Each makes its own libzmq context
// (one I/O thread, libzmq's default), binds one socket and connects the
// other to the address really bound, and tears everything down before it
// returns: sockets closed with linger 0, context terminated, threads joined.
//
//   - [PushPull]: PUSH binds, PULL connects, default high-water marks (1000).
//     A sender thread sends count messages with zmq_send; the calling thread
//     receives them with zmq_msg_recv.
//   - [PubSub]: PUB binds, SUB connects, no high-water mark on the
//     messages' way (PUB's ZMQ_SNDHWM and SUB's ZMQ_RCVHWM are 0; the
//     subscriptions' way keeps the default), SUB subscribed to "1000 ";
//     frames are "1000 text xxx…". As PushPull otherwise; a lost message is
//     an error, not a hang. With no mark the publisher never waits, so when
//     it is faster than the subscriber (at 1 KiB over tcp, say) it runs
//     ahead and the backlog, up to count frames, queues in memory without
//     bound (about 150 MB for the 150,000 frames of a 1 s run at 1 KiB): the
//     time measured is the subscriber's, with that backlog growing beside it.
//   - [DealerRouter]: an echo thread on the ROUTER sends each request's
//     frames back; the calling thread's DEALER keeps inflight requests
//     [8-byte id, "", body] outstanding and checks every reply in order.
//     The C counterpart of one RRClient shared by 64 goroutines.
//   - [ReqRepLatency]: REQ ↔ REP through the same echo thread, one request in
//     flight.
//
// # What is timed
//
// The clock never runs while the connection is being made. Each loop first
// makes an untimed warm-up exchange, bounded at 10 s (then an error), and
// reads CLOCK_MONOTONIC only around the count timed operations:
//
//   - PushPull: the calling thread sends one empty message on PUSH (which
//     blocks until PULL's connection is attached) and receives it on PULL.
//     Then it starts the sender thread, which reads the clock just before
//     its first zmq_send, and receives; it reads the clock just after its
//     count-th zmq_msg_recv returns. Thread start is outside; the
//     receiver's wake-up on the first message is inside.
//   - PubSub: the calling thread publishes numbered probes ("1000 probe
//     <n>", under the timed frames' own subscription), waiting 2 ms for
//     each, until one arrives, then receives every probe up to the last one
//     sent: the PUB has the subscription and no probe is left on its way.
//     Then timed as PushPull. The SUB has a 10 s receive time-out, so a lost
//     message ends the run with an error instead of a hang.
//   - DealerRouter and ReqRepLatency: the echo thread is started first and
//     the calling thread makes one round trip through it, which proves both
//     the connection and that the echo thread is running.
//     The clock is read just before the first timed request is sent (for
//     DealerRouter, the first of the inflight sent at once) and just after
//     the count-th reply has been received and checked.
//
// Set-up and tear-down (context, sockets, connection, thread start and join)
// are outside that, so a benchmark should report rates from the duration
// returned, not from its own clock.
//
// # Transports
//
// tr is "inproc" (a fresh name each call), "tcp" (tcp://127.0.0.1:*, an
// ephemeral loopback port read back with ZMQ_LAST_ENDPOINT) or "ipc"
// (ipc://*, a socket file in a fresh temporary folder that libzmq removes).
//
// # Errors
//
// A failed libzmq call is reported as an [*Error] that names the loop, the
// endpoint and the call, and unwraps to its errno as a zmq4.Errno.
// Arguments out of range wrap [ErrInvalid]. The functions are safe to call
// from many goroutines at once; each call holds its goroutine's thread (one
// long cgo call) while it runs.
//
// The package needs cgo, libzmq's headers (found by pkg-config) and POSIX
// threads.
package cbench

/*
#cgo pkg-config: libzmq
#cgo CFLAGS: -pthread
#cgo LDFLAGS: -pthread
#include <stdlib.h>
#include "cbench.h"
*/
import "C"

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync/atomic"
	"time"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// ErrInvalid is wrapped by the error for an argument out of range.
var ErrInvalid = errors.New("cbench: invalid argument")

// MaxInflight is the most requests DealerRouter keeps outstanding: with no
// more than the ROUTER's default high-water mark in flight, no reply can be
// dropped.
const MaxInflight = 1000

// Error is a failure inside a C loop.
type Error struct {
	Loop     string    // "pushpull", "pubsub", "dealerrouter" or "reqrep"
	Endpoint string    // the address bound, or the one asked for if binding failed
	Op       string    // the failed call, or what was wrong with a message
	Errno    zmq.Errno // the call's errno; 0 when a message was wrong, not a call
}

// Error returns "cbench: <loop> <endpoint>: <op>[: <errno text>]".
func (e *Error) Error() string {
	s := "cbench: " + e.Loop + " " + strconv.Quote(e.Endpoint) + ": " + e.Op
	if e.Errno != 0 {
		s += ": " + e.Errno.Error()
	}
	return s
}

// Unwrap returns the errno, or nil when no call failed.
func (e *Error) Unwrap() error {
	if e.Errno == 0 {
		return nil
	}
	return e.Errno
}

// inprocSeq names each inproc run afresh. (Each run has its own context,
// so a fixed name would not collide; a fresh one keeps error messages
// apart.)
var inprocSeq atomic.Uint64

// bindEndpoint is the endpoint to bind for transport tr.
func bindEndpoint(tr string) (string, error) {
	switch tr {
	case "inproc":
		return fmt.Sprintf("inproc://cbench-%d", inprocSeq.Add(1)), nil
	case "tcp":
		return "tcp://127.0.0.1:*", nil
	case "ipc":
		return "ipc://*", nil
	}
	return "", fmt.Errorf("%w: transport %q (want inproc, ipc or tcp)", ErrInvalid, tr)
}

// loopFunc is one of cbench.c's loops, bound to its arguments.
type loopFunc func(ep *C.char, r *C.cb_result) C.int

// bindArgs checks the arguments every loop shares and returns the endpoint
// to bind for transport tr.
func bindArgs(name, tr string, size, count int) (string, error) {
	if size < 0 || size > math.MaxInt32 {
		return "", fmt.Errorf("%w: %s: size %d", ErrInvalid, name, size)
	}
	if count < 1 || count > math.MaxInt64/2 {
		return "", fmt.Errorf("%w: %s: count %d", ErrInvalid, name, count)
	}
	ep, err := bindEndpoint(tr)
	if err != nil {
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return ep, nil
}

// runAt runs loop with ep as the endpoint to bind and returns the time it
// measured.
func runAt(name, ep string, loop loopFunc) (time.Duration, error) {
	cep := C.CString(ep)
	defer C.free(unsafe.Pointer(cep))
	var r C.cb_result
	if loop(cep, &r) != 0 {
		e := &Error{Loop: name, Endpoint: C.GoString(&r.endpoint[0]), Op: C.GoString(&r.what[0]), Errno: zmq.Errno(r.err)}
		if e.Endpoint == "" {
			e.Endpoint = ep
		}
		return 0, e
	}
	return time.Duration(r.ns), nil
}

// PushPull sends count messages of size bytes from PUSH to PULL over
// transport tr in C and returns the time from the first send to the last
// receive.
func PushPull(tr string, size, count int) (time.Duration, error) {
	ep, err := bindArgs("pushpull", tr, size, count)
	if err != nil {
		return 0, err
	}
	return pushPullAt(ep, size, size, count)
}

// pushPullAt and the other …At functions run a loop binding ep; want is
// the size the receiving side requires (see cbench.h).
func pushPullAt(ep string, size, want, count int) (time.Duration, error) {
	return runAt("pushpull", ep, func(cep *C.char, r *C.cb_result) C.int {
		return C.cb_pushpull(cep, C.int(size), C.int(want), C.int64_t(count), r)
	})
}

// PubSub publishes count frames of size bytes ("1000 text xxx…", so size
// is at least 10) from PUB to SUB over transport tr in C and returns the
// time from the first send to the last receive. Neither PUB's sends nor
// SUB's receives have a high-water mark, so up to count frames may queue
// (see the package documentation); a message that does not arrive within
// 10 s of the one before is reported as lost.
func PubSub(tr string, size, count int) (time.Duration, error) {
	if size < len(frameHead) {
		return 0, fmt.Errorf("%w: pubsub: size %d is shorter than %q", ErrInvalid, size, frameHead)
	}
	ep, err := bindArgs("pubsub", tr, size, count)
	if err != nil {
		return 0, err
	}
	return pubSubAt(ep, size, size, count)
}

// frameHead starts every pub/sub frame (cbench.c's cb_frame_head).
const frameHead = "1000 text "

func pubSubAt(ep string, size, want, count int) (time.Duration, error) {
	return runAt("pubsub", ep, func(cep *C.char, r *C.cb_result) C.int {
		return C.cb_pubsub(cep, C.int(size), C.int(want), C.int64_t(count), r)
	})
}

// DealerRouter makes count round trips of a size-byte body from a DEALER
// to a ROUTER echo thread over transport tr in C, keeping inflight
// requests (1 to MaxInflight) outstanding, and returns the time from the
// first request to the last reply.
func DealerRouter(tr string, size, count, inflight int) (time.Duration, error) {
	if inflight < 1 || inflight > MaxInflight {
		return 0, fmt.Errorf("%w: dealerrouter: inflight %d (want 1 to %d)", ErrInvalid, inflight, MaxInflight)
	}
	ep, err := bindArgs("dealerrouter", tr, size, count)
	if err != nil {
		return 0, err
	}
	return dealerRouterAt(ep, size, size, count, inflight)
}

func dealerRouterAt(ep string, size, want, count, inflight int) (time.Duration, error) {
	return runAt("dealerrouter", ep, func(cep *C.char, r *C.cb_result) C.int {
		return C.cb_dealer_router(cep, C.int(size), C.int(want), C.int64_t(count), C.int(inflight), r)
	})
}

// ReqRepLatency makes count REQ → REP round trips of a size-byte body over
// transport tr in C, one at a time, and returns the mean time of one round
// trip (not the total, unlike the other loops).
func ReqRepLatency(tr string, size, count int) (time.Duration, error) {
	ep, err := bindArgs("reqrep", tr, size, count)
	if err != nil {
		return 0, err
	}
	d, err := reqRepAt(ep, size, size, count)
	if err != nil {
		return 0, err
	}
	return d / time.Duration(count), nil
}

// reqRepAt returns the time of all count round trips, not their mean.
func reqRepAt(ep string, size, want, count int) (time.Duration, error) {
	return runAt("reqrep", ep, func(cep *C.char, r *C.cb_result) C.int {
		return C.cb_reqrep(cep, C.int(size), C.int(want), C.int64_t(count), r)
	})
}
