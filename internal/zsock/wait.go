package zsock

import (
	"context"

	zmq "github.com/pebbe/zmq4"
)

// netpoll is the Netpoller waiter: waiting calls park on the wait
// channel, which the reactor closes when ZMQ_FD fires.
type netpoll struct {
	s      *Socket
	lastEv zmq.State // the events last observed; guarded by the socket's mu
}

func (w *netpoll) enter() waitState { return waitState{} }
func (w *netpoll) waitBegin(dir)    {}
func (w *netpoll) waitEnd(dir)      {}
func (w *netpoll) leave(waitState)  {}

// block parks on the wait channel taken before the last retry; the first
// time (after the fast path, which took none) it only takes one. It takes
// a fresh channel before returning to the retry: an edge that comes after
// the retry began closes it, so no wake-up is lost.
func (w *netpoll) block(ctx context.Context, st waitState, hot bool) (waitState, error) {
	s := w.s
	if st.ready != nil {
		if err := s.parkRetry(ctx, st.ready, hot); err != nil {
			return st, err
		}
	}
	st.ready = s.waitChan()
	return st, nil
}

// observe wakes the waiters when the socket's readiness changed. Any
// operation processes libzmq's pending commands, including those that let
// another goroutine's operation go (a receive consuming the peer's
// "activate write" a blocked sender waits for, in full duplex); the edge on
// ZMQ_FD for that command has then come and gone. Waking only on a change
// keeps two blocked goroutines from waking each other forever.
func (w *netpoll) observe(ev zmq.State, _ bool) {
	if ev == w.lastEv {
		return
	}
	w.lastEv = ev
	if w.s.waiting.Load() > 0 {
		w.s.notifyChans()
	}
}

// trustsEmptyRecv is false: the events a failed receive would skip
// reading are what observe compares the next ones with.
func (w *netpoll) trustsEmptyRecv() bool { return false }

func (w *netpoll) edge()      { w.s.notifyChans() }
func (w *netpoll) interrupt() { w.s.notifyChans() }

// close has nothing to release: parked waiters select on done.
func (w *netpoll) close() {}
