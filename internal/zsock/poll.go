package zsock

/*
#include "zk.h"
*/
import "C"

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	zmq "github.com/pebbe/zmq4"
)

// blocking is the Blocking waiter, for
// request/reply where each wait is one round trip and its wake-up is the
// latency: a thread blocked in poll(2) on ZMQ_FD runs on as soon as the
// kernel wakes it, as a hand-written blocking pebbe loop does, where a
// netpoller wake-up goes through the Go scheduler twice (the watcher, then
// the waiter) and costs tens of microseconds more per direction.
//
// One waiting goroutine at a time, the poller, blocks in poll(2) on ZMQ_FD
// and a wake pipe, holding its OS thread; any others park on the wait
// channel, which is closed when the events let some of them go (observe),
// and the first of them to find the role free takes it over when the
// poller leaves. The pipe
// is written when the poller's ctx ends, when the socket closes, and when
// another goroutine's operation changed the socket's events (observe), so
// none of them is missed while the poller sleeps in C. An idle socket with a
// waiter holds one OS thread, so only the request/reply sockets use it.
type blocking struct {
	s        *Socket
	adaptive bool        // waits start on the channel (see adaptiveNet)
	busy     atomic.Bool // a goroutine holds the poller role

	// Waiters (poller included) waiting to receive and to send.
	wantIn, wantOut atomic.Int32

	// The ctx whose end wakes the poller (by its Done channel), kept from
	// one wait to the next: a server waits with the same ctx every time.
	ctxMu    sync.Mutex
	ctxDone  <-chan struct{}
	ctxStop  func() bool
	ctxClose bool // the socket closed: watch nothing more

	zfd C.int // ZMQ_FD
	rfd int   // the wake pipe, read end (polled) and write end
	wfd int

	// pipeMu guards the pipe's descriptors: every poll and every write
	// holds it for reading, and Close holds it for writing while it
	// closes them, so no descriptor number is used once closed (it may
	// belong to a connection or a file by then).
	pipeMu   sync.RWMutex
	pipeShut bool

	wIno uint64 // the write end's inode, kept only for testHookPipeWrite
}

// newBlocking makes the Blocking waiter of s, whose ZMQ_FD is fd. The wake
// pipe is made by the first call that polls (makePipe): a socket whose
// calls never wait in poll(2), such as an Adaptive one that is never idle
// long, holds no descriptor of zmqkit's.
func newBlocking(s *Socket, fd int) (*blocking, error) {
	return &blocking{s: s, zfd: C.int(fd), rfd: -1, wfd: -1}, nil
}

// makePipe makes the wake pipe if there is none yet; made reports that
// this call made it. A wake-up before it was made went nowhere, so the
// caller must try its operation again before it polls.
func (b *blocking) makePipe() (made bool, err error) {
	b.pipeMu.Lock()
	defer b.pipeMu.Unlock()
	if b.pipeShut {
		return false, ErrClosed
	}
	if b.rfd >= 0 {
		return false, nil
	}
	var p [2]int
	syscall.ForkLock.RLock()
	err = syscall.Pipe(p[:])
	if err == nil {
		syscall.CloseOnExec(p[0])
		syscall.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return false, fmt.Errorf("zmqkit: wake pipe: %w", err)
	}
	for _, fd := range p {
		if err := syscall.SetNonblock(fd, true); err != nil {
			_ = syscall.Close(p[0])
			_ = syscall.Close(p[1])
			return false, fmt.Errorf("zmqkit: wake pipe: %w", err)
		}
	}
	b.rfd, b.wfd = p[0], p[1]
	if testHookPipeWrite.Load() != nil {
		var st syscall.Stat_t
		if syscall.Fstat(p[1], &st) == nil {
			b.wIno = st.Ino
		}
	}
	return true, nil
}

// observe wakes the waiters
// when ev says some of them can go. That wakes a waiter whose signal on
// ZMQ_FD another goroutine's operation consumed; and as only the events
// the waiters wait for wake them, two waiters cannot wake each other in a
// loop while neither can go. A poller does not wake itself. mu is held.
func (b *blocking) observe(ev zmq.State, poller bool) {
	if (ev&zmq.POLLIN == 0 || b.wantIn.Load() == 0) && (ev&zmq.POLLOUT == 0 || b.wantOut.Load() == 0) {
		return
	}
	b.s.notifyChans()
	if !poller && b.busy.Load() {
		b.wake()
	}
}

// trustsEmptyRecv is true: a poll(2) on ZMQ_FD after a receive that found
// nothing cannot miss the next message (see try).
func (b *blocking) trustsEmptyRecv() bool { return true }

// interrupt wakes the poller out of poll(2), and the parked waiters.
func (b *blocking) interrupt() {
	b.s.notifyChans()
	if b.busy.Load() {
		b.wake()
	}
}

// edge leaves a poller to poll(2), which sees ZMQ_FD itself; parked
// waiters are woken to take the role if nobody holds it.
func (b *blocking) edge() {
	if !b.busy.Load() {
		b.s.notifyChans()
	}
}

// watch makes the end of ctx wake the poller. The registration stays for
// the next wait with the same ctx (one AfterFunc per server Run, not per
// request); a wait with another ctx replaces it, and a wake-up a stale one
// gives is only a spurious return from poll.
func (b *blocking) watch(ctx context.Context) {
	done := ctx.Done()
	if done == nil {
		return // never ends
	}
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	if done == b.ctxDone || b.ctxClose {
		return
	}
	if b.ctxStop != nil {
		b.ctxStop()
	}
	b.ctxDone, b.ctxStop = done, context.AfterFunc(ctx, b.wake)
}

// unwatch drops the ctx registration for good.
func (b *blocking) unwatch() {
	b.ctxMu.Lock()
	defer b.ctxMu.Unlock()
	b.ctxClose = true
	if b.ctxStop != nil {
		b.ctxStop()
		b.ctxStop, b.ctxDone = nil, nil
	}
}

// wake makes the poller's poll return, or its next one return at once.
func (b *blocking) wake() {
	b.pipeMu.RLock()
	defer b.pipeMu.RUnlock()
	if b.pipeShut || b.wfd < 0 {
		return // closed, or nobody has polled yet
	}
	if h := testHookPipeWrite.Load(); h != nil {
		(*h)(b.wfd, b.wIno)
	}
	// A full pipe already holds a wake-up, so EAGAIN is fine.
	_, _ = syscall.Write(b.wfd, []byte{1})
}

// testHookPipeWrite, nil outside tests, is called before every write to a
// wake pipe with the descriptor about to be written and the inode the
// pipe's write end had when it was made (if the hook was set then), so a
// test can check that the descriptor is still that pipe.
var testHookPipeWrite atomic.Pointer[func(fd int, ino uint64)]

// enter takes the poller role if it is free, before the first try, so every
// wake-up after the try reaches the pipe; a call that does not get it takes
// the wait channel before trying, so the poller's leaving wakes it.
func (b *blocking) enter() waitState {
	if b.busy.CompareAndSwap(false, true) {
		return waitState{poller: true}
	}
	return waitState{ready: b.s.waitChan()}
}

func (b *blocking) waitBegin(d dir) {
	if d == sending {
		b.wantOut.Add(1)
	} else {
		b.wantIn.Add(1)
	}
}

func (b *blocking) waitEnd(d dir) {
	if d == sending {
		b.wantOut.Add(-1)
	} else {
		b.wantIn.Add(-1)
	}
}

// block waits in poll(2) while the call holds the poller role and on the
// wait channel while it does not, taking the role when it comes free.
func (b *blocking) block(ctx context.Context, st waitState, hot bool) (waitState, error) {
	s := b.s
	switch {
	case !st.poller && !st.parkOnce && b.busy.CompareAndSwap(false, true):
		// The role came free: retry holding it before polling.
		st.poller = true
	case !st.poller:
		if st.parkOnce && st.parkLimit > 0 && !hot {
			if err := s.parkFor(ctx, st.ready, st.parkLimit); err != nil {
				return st, err
			}
		} else if err := s.parkRetry(ctx, st.ready, hot); err != nil {
			return st, err
		}
		st.ready = s.waitChan()
		st.parkOnce = false
	default:
		if b.adaptive && !st.netDone {
			// Wait on the channel first, for up to adaptiveNet.
			st.netDone = true
			return b.yield(st, time.Duration(adaptiveNet.Load())), nil
		}
		if made, err := b.makePipe(); err != nil || made {
			return st, err // made: retry first (see makePipe)
		}
		b.watch(ctx)
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if !takePollSlot() {
			// As many threads as allowed sit in poll(2) already.
			return b.yield(st, 0), nil
		}
		defer releasePollSlot()
		if h := testHookBeforePoll.Load(); h != nil {
			(*h)(s)
		}
		// The retry that follows wakes the parked waiters if the events
		// now let some of them go (observe): not all of them on every
		// wake-up.
		return st, b.poll(hot)
	}
	return st, nil
}

// yield gives the poller role up for one park on the wait channel, of at
// most limit (0: until woken), as a Netpoller waiter waits: woken by the
// reactor's edges, which go to the channel while nobody holds the role.
// An edge that came while this call held the role went to nobody, so the
// call retries before it parks.
func (b *blocking) yield(st waitState, limit time.Duration) waitState {
	b.busy.Store(false)
	st.poller, st.parkOnce, st.parkLimit = false, true, limit
	st.ready = b.s.waitChan()
	return st
}

// maxPollers bounds the goroutines blocked in poll(2) at once, process
// wide: each holds an OS thread (Go allows 10,000 in all), so a program
// with thousands of Blocking sockets waiting at once has the rest wait on
// the netpoller instead. Tests change it.
var maxPollers atomic.Int32

// defaultMaxPollers is maxPollers' value.
const defaultMaxPollers = 256

func init() { maxPollers.Store(defaultMaxPollers) }

// pollers counts the goroutines in poll(2) now.
var pollers atomic.Int32

func takePollSlot() bool {
	if pollers.Add(1) > maxPollers.Load() {
		pollers.Add(-1)
		return false
	}
	return true
}

func releasePollSlot() { pollers.Add(-1) }

// leave gives the poller role up; one of the parked waiters takes it over.
func (b *blocking) leave(st waitState) {
	if !st.poller {
		return
	}
	s := b.s
	if h := testHookLeaving.Load(); h != nil {
		(*h)(s)
	}
	b.busy.Store(false)
	if s.waiting.Load() > 0 {
		s.notifyChans()
	}
}

// Test hooks, nil outside tests: called by the poller just before it
// blocks in poll(2) and just before it gives the role up.
var testHookBeforePoll, testHookLeaving atomic.Pointer[func(*Socket)]

// poll blocks in poll(2) until ZMQ_FD or the wake pipe is readable; hot
// (see try) bounds it to a millisecond.
func (b *blocking) poll(hot bool) error {
	b.pipeMu.RLock()
	defer b.pipeMu.RUnlock()
	if b.pipeShut {
		return ErrClosed
	}
	timeout := C.int(-1)
	if hot {
		timeout = 1
	}
	if rc := C.zk_poll(b.zfd, C.int(b.rfd), timeout); rc < 0 {
		return fmt.Errorf("zmqkit: poll ZMQ_FD: %w", syscall.Errno(-rc))
	}
	return nil
}

// close wakes the poller, waits for it to leave poll(2) and closes the
// wake pipe.
func (b *blocking) close() {
	b.unwatch()
	b.wake()
	// Once the poller has left poll(2) and no write is under way, nothing
	// uses the descriptors again: later polls and writes see pipeShut.
	b.pipeMu.Lock()
	defer b.pipeMu.Unlock()
	b.pipeShut = true
	if b.rfd >= 0 {
		_ = syscall.Close(b.rfd)
		_ = syscall.Close(b.wfd)
	}
}

// adaptiveNet is how long an adaptive Blocking socket's wait stays on the
// channel, woken by the reactor, before it blocks in poll(2): 50 µs; tests
// change it.
var adaptiveNet atomic.Int64

func init() { adaptiveNet.Store(int64(50 * time.Microsecond)) }
