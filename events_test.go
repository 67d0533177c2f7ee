package zmqkit

import (
	"context"
	"net"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// eventsOfKind is a WithEvents option that passes the object's events of
// kind k to the channel returned (64 may wait; more are dropped).
func eventsOfKind(k EventKind) (Option, <-chan Event) {
	ch := make(chan Event, 64)
	return WithEvents(func(e Event) {
		if e.Kind == k {
			select {
			case ch <- e:
			default:
			}
		}
	}), ch
}

// awaitEvent returns the next event from ch that match accepts (nil:
// any), failing the test with what when ctx ends first.
func awaitEvent(t testing.TB, ctx context.Context, ch <-chan Event, match func(Event) bool, what string) Event {
	t.Helper()
	for {
		select {
		case e := <-ch:
			if match == nil || match(e) {
				return e
			}
		case <-ctx.Done():
			require.FailNow(t, what)
		}
	}
}

// eventLog records an object's events for a test.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) option() Option {
	return WithEvents(func(e Event) {
		l.mu.Lock()
		l.events = append(l.events, e)
		l.mu.Unlock()
	})
}

// await waits for an event of kind k and returns it.
func (l *eventLog) await(t testing.TB, k EventKind, within time.Duration) Event {
	t.Helper()
	var got Event
	require.Eventually(t, func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		for _, e := range l.events {
			if e.Kind == k {
				got = e
				return true
			}
		}
		return false
	}, within, time.Millisecond, "no %s event; got %v", k, l.kinds())
	return got
}

func (l *eventLog) kinds() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, e := range l.events {
		out = append(out, e.Kind.String())
	}
	return out
}

// Every type, over tcp and ipc, reports its connections coming and going,
// with the endpoint and (tcp) the peer's address, and counts them.
func TestEventsEveryType(t *testing.T) {
	for _, lc := range lifecycles {
		if !lc.bind {
			continue // each pair is tested from its binding side, and its peer
		}
		peer := lifecycleOf(t, peerOf[lc.name])
		for _, tr := range []string{"tcp", "ipc"} {
			t.Run(lc.name+"/"+tr, func(t *testing.T) {
				zctx := newTestContext(t)
				var srvLog, cliLog eventLog
				srv, err := lc.open(bindEndpoint(t, tr), WithZMQContext(zctx), srvLog.option())
				require.NoError(t, err)
				closeOnCleanup(t, srv)
				ep := srv.(interface{ Endpoints() []string }).Endpoints()[0]
				l := srvLog.await(t, EventListening, 5*time.Second)
				assert.Equal(t, ep, l.Endpoint)

				cli, err := peer.open(ep, WithZMQContext(zctx), cliLog.option())
				require.NoError(t, err)
				a := srvLog.await(t, EventAccepted, 5*time.Second)
				c := cliLog.await(t, EventConnected, 5*time.Second)
				srvLog.await(t, EventHandshakeSucceeded, 5*time.Second)
				cliLog.await(t, EventHandshakeSucceeded, 5*time.Second)
				assert.Equal(t, ep, c.Endpoint)
				if tr == "tcp" {
					assert.True(t, strings.HasPrefix(a.Peer, "127.0.0.1:"), "accepted peer %q", a.Peer)
				}
				st := srv.(interface{ Stats() Stats }).Stats()
				assert.EqualValues(t, 1, st.Connects)
				assert.EqualValues(t, 1, st.Peers)

				require.NoError(t, cli.Close())
				d := srvLog.await(t, EventDisconnected, 5*time.Second)
				assert.Equal(t, a.Peer, d.Peer)
				require.Eventually(t, func() bool {
					st := srv.(interface{ Stats() Stats }).Stats()
					return st.Disconnects == 1 && st.Peers == 0
				}, 5*time.Second, time.Millisecond)
				require.NoError(t, srv.Close())
				srvLog.await(t, EventClosed, 5*time.Second)
			})
		}
	}
}

// A peer whose ZMTP greeting asks for another security mechanism fails
// its handshake, which is reported with a reason and counted.
func TestEventsHandshakeFailed(t *testing.T) {
	zctx := newTestContext(t)
	var log eventLog
	srv, err := NewRRServer(bindEndpoint(t, "tcp"), echo, WithZMQContext(zctx), log.option())
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	conn, err := net.Dial("tcp", endpointAddress(srv.Endpoints()[0]))
	require.NoError(t, err)
	defer conn.Close()
	// A ZMTP 3.0 greeting: signature, version, mechanism CURVE (the server
	// speaks NULL), as-server 0, filler.
	greeting := append([]byte{0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0}, []byte("CURVE")...)
	greeting = append(greeting, make([]byte, 64-len(greeting))...)
	_, err = conn.Write(greeting)
	require.NoError(t, err)
	e := log.await(t, EventHandshakeFailed, 5*time.Second)
	require.Error(t, e.Err)
	assert.Contains(t, e.Err.Error(), "does not use CURVE")
	assert.EqualValues(t, 1, srv.Stats().HandshakeFailures)
}

// A panicking events callback is recovered and reported; the object goes
// on.
func TestEventsCallbackPanics(t *testing.T) {
	zctx := newTestContext(t)
	var rec errorRecorder
	pub, err := NewPublisher(bindEndpoint(t, "tcp"), WithZMQContext(zctx), rec.option(),
		WithEvents(func(Event) { panic("events blew up") }))
	require.NoError(t, err)
	closeOnCleanup(t, pub)
	require.Eventually(t, func() bool { return len(rec.errors()) > 0 }, 5*time.Second, time.Millisecond)
	var he *HandlerError
	require.ErrorAs(t, rec.errors()[0], &he)
	assert.Equal(t, "events blew up", he.Panic)
	require.NoError(t, pub.Publish(testCtx(t), "still fine"))
}

// A slow callback does not stall the object: events beyond the queue are
// dropped and counted.
func TestEventsSlowCallbackDropsNotStalls(t *testing.T) {
	zctx := newTestContext(t)
	release := make(chan struct{})
	srv, err := NewRRServer(bindEndpoint(t, "tcp"), echo, WithZMQContext(zctx),
		WithEvents(func(Event) { <-release }))
	require.NoError(t, err)
	closeOnCleanup(t, srv)
	t.Cleanup(func() { close(release) })
	runServer(t, srv)
	// Bare TCP connections, opened and closed: two events or more each.
	addr := endpointAddress(srv.Endpoints()[0])
	for i := 0; i < EventQueueLen; i++ {
		conn, err := net.Dial("tcp", addr)
		require.NoError(t, err)
		require.NoError(t, conn.Close())
	}
	require.Eventually(t, func() bool { return srv.Stats().EventsDropped > 0 }, 20*time.Second, time.Millisecond)
	// The server still serves.
	reply, err := newClient(t, zctx, srv.Endpoints()[0]).Request(testCtx(t), []byte("x"))
	require.NoError(t, err)
	assert.Equal(t, "reply:x", string(reply))
}

// pyHeartbeatPeer is a pyzmq peer that either binds or connects a socket
// of type argv[2] at argv[1] (argv[3] = "bind" or "connect"), with
// heartbeats, says "ready" (or, bound, its endpoint), then sends a message
// every 10 ms until killed, where its type can send one (a SUB or PULL
// peer only lives: libzmq's I/O thread answers the heartbeats).
const pyHeartbeatPeer = `
import sys, time, zmq
ctx = zmq.Context()
s = ctx.socket(getattr(zmq, sys.argv[2]))
s.setsockopt(zmq.LINGER, 0)
s.setsockopt(zmq.HEARTBEAT_IVL, 100)
s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 300)
if sys.argv[3] == "bind":
    s.bind(sys.argv[1])
    print(s.getsockopt(zmq.LAST_ENDPOINT).decode())
else:
    s.connect(sys.argv[1])
    print("ready")
while True:
    try:
        s.send(b"1000 text tick", zmq.NOBLOCK)
    except zmq.ZMQError:  # Again, or a type that cannot send
        pass
    time.sleep(0.01)
`

// A peer whose process is frozen (SIGSTOP: its TCP connection stays open,
// nothing is sent) is reported disconnected within timeout + interval
// when heartbeats are on, whether zmqkit binds or connects.
func TestEventsFrozenPeerWithHeartbeats(t *testing.T) {
	for _, zmqkitBinds := range []bool{true, false} {
		name := "zmqkit connects"
		if zmqkitBinds {
			name = "zmqkit binds"
		}
		t.Run(name, func(t *testing.T) {
			zctx := newTestContext(t)
			var log eventLog
			const ivl, timeout = 100 * time.Millisecond, 300 * time.Millisecond
			opts := []Option{WithZMQContext(zctx), log.option(), WithHeartbeat(ivl, timeout)}
			var sub *Subscriber
			var p *pyPeer
			if zmqkitBinds {
				var err error
				sub, err = NewSubscriber("@"+bindEndpoint(t, "tcp"), opts...)
				require.NoError(t, err)
				p = startPython(t, pyHeartbeatPeer, sub.Endpoints()[0], "PUB", "connect")
				require.Equal(t, "ready", p.Line(t))
			} else {
				p = startPython(t, pyHeartbeatPeer, "tcp://127.0.0.1:0", "PUB", "bind")
				var err error
				sub, err = NewSubscriber(p.Line(t), opts...)
				require.NoError(t, err)
			}
			closeOnCleanup(t, sub)
			_, err := sub.Receive(testCtx(t)) // the peer is up and talking
			require.NoError(t, err)
			log.await(t, EventHandshakeSucceeded, 5*time.Second)

			require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
			t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
			frozen := time.Now()
			d := log.await(t, EventDisconnected, 10*time.Second)
			took := d.Time.Sub(frozen)
			t.Logf("disconnected %v after the freeze", took)
			// timeout + ivl, and slack for a loaded machine's scheduling.
			assert.Less(t, took, timeout+ivl+time.Second)
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			_, err = sub.Receive(ctx)
			require.ErrorIs(t, err, context.DeadlineExceeded, "calls still end by ctx")
		})
	}
}

// Every type, binding or connecting, sees a frozen peer (SIGSTOP: its TCP
// connection stays open, nothing is sent) disconnected when heartbeats are
// on. Without them nothing would ever be reported: the await's bound is
// the test's only timing, and the delay is logged.
func TestEventsFrozenPeerEveryType(t *testing.T) {
	requirePyzmq(t)
	pyType := map[string]string{
		"Publisher": "SUB", "Subscriber": "PUB", "RRServer": "DEALER", "RRClient": "ROUTER",
		"PPPusher": "PULL", "PPPuller": "PUSH", "PairServer": "PAIR", "PairClient": "PAIR",
	}
	for _, lc := range lifecycles {
		t.Run(lc.name, func(t *testing.T) {
			zctx := newTestContext(t)
			var log eventLog
			const ivl, timeout = 100 * time.Millisecond, 300 * time.Millisecond
			opts := []Option{WithZMQContext(zctx), log.option(), WithHeartbeat(ivl, timeout)}
			var obj closer
			var p *pyPeer
			var err error
			if lc.bind {
				obj, err = lc.open("@"+bindEndpoint(t, "tcp"), opts...)
				require.NoError(t, err)
				p = startPython(t, pyHeartbeatPeer, obj.(interface{ Endpoints() []string }).Endpoints()[0], pyType[lc.name], "connect")
				require.Equal(t, "ready", p.Line(t))
			} else {
				p = startPython(t, pyHeartbeatPeer, "tcp://127.0.0.1:0", pyType[lc.name], "bind")
				obj, err = lc.open(">"+p.Line(t), opts...)
				require.NoError(t, err)
			}
			closeOnCleanup(t, obj)
			log.await(t, EventHandshakeSucceeded, 10*time.Second)

			require.NoError(t, p.cmd.Process.Signal(syscall.SIGSTOP))
			t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
			frozen := time.Now()
			d := log.await(t, EventDisconnected, 10*time.Second)
			t.Logf("disconnected %v after the freeze (timeout %v + interval %v)", d.Time.Sub(frozen), timeout, ivl)
		})
	}
}
