// Package zmqkit gives Go programs ZeroMQ's messaging patterns as ready-made,
// goroutine-safe, context-aware types over libzmq, wire-compatible with the
// Python asyncio module it is the counterpart of, and with any other ZeroMQ
// program that speaks ZMTP 3 (libzmq 4 and later, pyzmq, JeroMQ, NetMQ):
// peers on ZMTP 1.0 and 2.0 (libzmq 2 and 3) are refused, since libzmq would
// otherwise take any stray client for one (see Delivery and back-pressure).
//
// # Patterns
//
//   - Publisher / Subscriber (PUB/SUB): broadcast framed messages; each
//     subscriber picks msgids, matched exactly.
//   - RRServer / RRClient (request/reply): a server that answers many
//     clients at once, a client that never gets stuck on a lost reply.
//   - PPPusher / PPPuller (PUSH/PULL): pipelines, fan-out and fan-in.
//   - PairServer / PairClient (PAIR): one-to-one, full duplex, surviving a
//     peer's restart.
//
// Each type has a constructor, NewX(endpoints, opts...), that binds or
// connects before it returns (so a busy address fails at once) and never
// waits for a peer. AddEndpoint binds or connects one more later.
//
// # Handlers
//
// One rule for where a handler goes. Types also used without one
// (Subscriber, PPPuller, PairClient) receive one message with Receive(ctx),
// or take a handler at Run(ctx, h), which calls it for every message.
// Servers (RRServer, PairServer) take their RequestHandler at construction,
// NewX(endpoints, h, opts...), and serve with Run(ctx). A nil handler is an
// ErrInvalidArgument at the call that takes it.
//
// Run blocks on the caller's goroutine and calls the handler n at a time
// (WithConcurrency, default 1: one at a time, in order). Above 1 the
// goroutine that receives a message handles it, and hands receiving on to
// another (started if need be) when a call lasts more than about 50µs;
// Run joins them all before it returns. A handler that
// returns an error or panics is recovered, counted in Stats and reported to
// WithErrorHandler's callback; it never stops Run. A server's handler error
// becomes an error reply (ErrorReplyPrefix + the message), which RRClient
// and PairClient return as a *RemoteError, so no client is left waiting.
//
// Stopping a server: when Run's ctx ends (a graceful stop), no new request
// is taken and the replies of the handlers already running are still sent;
// Close is immediate, and those replies are dropped and counted in
// Stats.Dropped, never sent after Close. An RRClient reads the replies a
// server sent before it closed, though the connection ends right after
// them.
//
// # Endpoints
//
// endpoints is one string, a comma-separated list in the CZMQ style:
// "tcp://*:5555", "@tcp://127.0.0.1:*,>ipc:///tmp/feed", "inproc://jobs".
// A leading @ binds and > connects; without one, each type takes its default
// side (Publisher, RRServer, PPPusher and PairServer bind; the others
// connect). "tcp://host:*" binds an ephemeral port, and Endpoints reports
// the address really bound. Transports are tcp, ipc and inproc. A malformed
// endpoint is an error wrapping ErrInvalidEndpoint; a refused bind or
// connect is an *EndpointError that keeps libzmq's errno
// (errors.Is(err, syscall.EADDRINUSE)).
//
// # Messages and the codec
//
// Publisher and Subscriber carry one frame per message, as the Python
// module does: "<msgid> <msgtype> <body>", for example
//
//	1000 text Hello World
//	1000 json {"data":42}
//
// Publish follows the module's rule: a string (or []byte) goes as text,
// anything else as JSON. A Subscriber returns a Message{ID, Type, Body}
// whose Text, JSON and Value methods read the body. It reads what the
// Python module reads: a msgid as Python's int() reads it (leading zeros
// too: the ZeroMQ Guide's weather server sends "02815 34 65"), and any
// type token, whose body comes as it is. Text and JSON bodies can travel in
// another character encoding (WithEncoding("gbk")); in Go they are always
// UTF-8. More types (msgpack, protobuf) plug in with WithBodyCodec. A
// message that does not decode is a *MalformedError (matching ErrMalformed)
// that quotes a bounded excerpt; it never panics and never stops a receive
// loop. Codec does the framing on its own, for any other transport.
//
// The Python module subscribes to the prefix "1000", which also matches
// msgid 10001. zmqkit subscribes to "1000 " and so matches exactly.
//
// For programs that do not speak this format, the pub/sub, pipeline and
// pair types also send and receive raw, multi-frame messages:
// PublishFrames, SubscribePrefix and ReceiveFrames, PushFrames, SendFrames. A Publisher can end the Guide's syncsub (a bare
// "END") or feed its lvcache ([topic, value] envelopes).
//
// # Options
//
// Options configure an object at construction. Each option's documentation
// ends with the types it applies to; given to another type, or with a value
// libzmq cannot hold, it makes the constructor fail with ErrInvalidOption
// naming the option. Defaults are documented on each option.
//
// # Contexts
//
// Objects share a process-wide Context made on first use (DefaultContext)
// unless given WithZMQContext(zctx). inproc:// endpoints reach only objects
// on the same Context. Context.Close closes every object still open on it
// and then terminates libzmq; because every socket has a bounded linger
// (WithLinger, 200 ms by default), it does not hang on messages for peers
// that never came. A Context holds at most WithMaxSockets sockets (32,768
// by default: 10,000 objects of any type, which take 1 to 3 each, an
// RRClient 3 more once it has had to watch a server that was down or
// added); a constructor beyond it fails with ErrSocketLimit.
//
// # Blocking, cancellation and goroutines
//
// Every call that can block takes a context.Context first and returns
// promptly with an error matching ctx's (errors.Is(err, context.Canceled))
// when it ends, or ErrClosed when the object is closed. All types are safe
// for concurrent use by multiple goroutines; one goroutine may send while
// another waits to receive on the same object.
//
// Under the hood a libzmq socket is never used by two threads at once: each
// sits behind a mutex held only for non-blocking operations, so no lock is
// held while a call waits. A call that must wait waits in one of three ways:
//
//   - Most types park the call on a Go channel, selecting on its ctx and the
//     object's closing. Each Context has one reactor, an epoll instance in
//     Go's netpoller and one goroutine, that watches every socket's
//     ZMQ_FD and wakes the calls waiting on a socket when it fires. A
//     waiting call holds no OS thread, and cancellation is a Go select.
//   - A Subscriber's or PPPuller's receive starts so, and after 50 µs
//     without a message goes on waiting in poll(2), as below: a busy stream
//     never leaves the channel, and a slow one (messages every millisecond,
//     say) is woken by the kernel directly, which costs a third less CPU
//     than going through the Go scheduler. Such a wait holds an OS thread,
//     and cancelling it takes a thread's wake-up (about 10 µs on a VM).
//   - RRServer and RRClient, whose round trip is two wake-ups, have one
//     waiting call per socket block in poll(2) on ZMQ_FD and a wake-up pipe
//     (ctx, Close and the other goroutines' operations write to it), the
//     others parking on a channel: a thread blocked in poll(2) runs on as
//     soon as the kernel wakes it, which a netpoller wake-up, passing
//     through the Go scheduler twice, does not. An RRServer whose Run is
//     waiting therefore holds one OS thread, as a hand-written REP loop
//     does; an RRClient holds one only while requests are in flight. At
//     most 256 calls in the process block in poll(2) at once (Go crashes a
//     program past 10,000 threads); past that, a waiting call parks on a
//     channel, woken by the reactor, as the other types' calls do. The
//     wake-up pipe is made the first time a call of the object polls.
//
// When nobody waits on a socket, the reactor processes the socket's pending
// libzmq commands itself: libzmq acts on them only inside calls on the
// socket, and an idle object must still let its inproc peers close.
//
// # Shutting down
//
// Cancel the ctx given to Run (or Close the object); Run returns once its
// handlers have. Close each object, or close the Context to close them all.
// Close is idempotent and returns once the object's goroutines and socket
// are gone and every address it bound is free to be bound again.
// Messages already queued are sent by libzmq in the background, for up to
// the linger time (WithLinger, 200 ms), while the process lives: a program
// that exits right after should close its Context (or DefaultContext's),
// whose Close waits until they have left or their linger has passed.
// One exception is libzmq's, not zmqkit's: over ipc, when a sender closes
// while its receiver's queue is full (WithRecvHWM), libzmq drops what the
// receiver had not yet taken from the kernel (libzmq issue #4660, open in
// 4.3.4 and later). Where every message counts, use tcp on 127.0.0.1, or
// have the receiver acknowledge the last message before the sender closes.
//
// # Security
//
// WithCurveServer and WithCurveClient make any object a CURVE server or
// client: every message is encrypted, the server proves its key to its
// clients, and a ClientPolicy (AllowKeys, or AllowAnyClient said out loud)
// decides which clients the server admits, checked by a ZAP handler that
// each Context runs in its own libzmq context. It fails closed: no policy
// is a construction error, and the handler denies what it does not know.
// Refusals are counted (Stats.AuthFailures) and reported as *AuthError.
// Keys come from NewKeyPair or from certificate files that pyzmq and CZMQ
// also read and write (KeyPair.Save, LoadKeyPair, LoadPublicKeys).
//
// CURVE protects the content and integrity of messages and the identity of
// the peers; it does not hide who talks to whom, when, or how much, and
// anyone holding a secret key file is that peer. There is no TLS: libzmq's
// wss transport is a draft in libzmq 4.3.
//
// # Running in production
//
// WithEvents gives an object's connection events (and Stats its
// Connects, Disconnects, HandshakeFailures and Peers), from the object's
// libzmq monitor, on a goroutine that never holds the object up. An object
// that connects over tcp or ipc, from its constructor or AddEndpoint,
// always has that monitor, since zmqkit uses it to connect again after a
// protocol error (libzmq never does); a pair type has it to follow its
// peer; the others have one only when asked.
// WithHeartbeat finds peers that froze: no answer within the time-out, and
// the connection is dropped and reported. An RRClient with
// retries resends at once the requests of a server that disconnected.
// Publisher.WaitForSubscribers waits until n subscriptions have reached a
// publisher, so that the next message is not lost to a slow joiner.
//
// Proxies let many peers meet at one address, as ZeroMQ's own topologies
// do, with no broker: NewForwarder (publishers to subscribers), NewQueue
// (clients to servers, which connect to its back end as workers) and
// NewStreamer (pushers to pullers), each stopping on ctx or Close, with
// stats per direction and an optional capture. The same code spreads over
// machines by changing endpoints only (see examples/cluster).
//
// # Delivery and back-pressure
//
// ZeroMQ queues messages per peer up to a high-water mark (WithSendHWM,
// WithRecvHWM; 1000). What happens beyond it depends on the pattern and is
// documented on each type: a Publisher drops, a pusher blocks. A subscriber
// misses what was published before its subscription reached the publisher
// (the "slow joiner"): Publisher.WaitForSubscribers when the start matters.
// WithMaxMessageSize drops the connection of a peer that sends more; a
// connection the object made is then made again (ErrConnectionDropped),
// which libzmq alone would not do.
//
// Every send copies the message into libzmq's memory, which libzmq frees
// once the message is out. Messages of 64 KiB and more are copied into
// buffers that zmqkit keeps for the next ones (up to 16 MiB in all, for the
// whole process), not into fresh memory from malloc: glibc hands freed
// large blocks back to the kernel, and faulting them in again for every
// message cost more than the copy. PPPusher.PushNoCopy copies nothing: it
// lends libzmq the caller's buffer, pinned (runtime.Pinner) so that libzmq
// may keep a pointer to it, and libzmq reads it in place (the tcp engine
// writes it to the kernel from there; inproc hands it to the puller). When
// libzmq lets it go, its free function calls back into Go, on whichever
// thread that happens, which unpins the buffer and ends the Tracker that
// PushNoCopy returned; the buffer must not change before. (On libzmq's I/O
// thread that call needs a Go P: while every P is busy, the I/O thread,
// which serves all the Context's sockets, waits for the Go scheduler.) On the receiving
// side, each message is copied out of libzmq into a fresh slice, or, with
// PPPuller.AppendReceive, into the caller's buffer, which large messages
// want: Go code cannot hold libzmq's memory without the risk of reading it
// after libzmq freed it.
//
// A socket that binds a tcp endpoint meets whatever connects to it. libzmq
// takes a client whose first byte is not 0xff (an HTTP request, a TLS hello,
// random bytes) for a ZMTP 1.0 peer and decodes what it sends as messages,
// unless ZAP is on: so every zmqkit socket has a ZAP domain ("zmqkit-plain"
// without CURVE), and such a client is disconnected instead. With no ZAP
// handler in the Context, libzmq admits ZMTP 3 clients by itself; a
// Context with a CURVE server runs a handler, which admits plain clients of
// that domain.
//
// Each Send, Push, Publish or Receive is one cgo call into libzmq. For busy
// streams of small messages, PPPusher.PushBatch, Publisher.PublishBatch,
// PPPuller.ReceiveBatch and Subscriber.ReceiveBatch move up to MaxBatch
// messages per call instead: a batch receive takes only the messages that
// have already arrived (it waits for the first), and a batch send waits at
// the high-water mark as a single send does, so neither changes ordering,
// back-pressure or cancellation.
//
// # Errors
//
// A failed operation returns an *OpError (Kind, Op, Endpoint, Err) with one
// "zmqkit:" prefix; errors.Is and errors.As see through it to the sentinels
// (ErrClosed, ErrInvalidArgument, ErrInvalidMessage, ErrMalformed,
// ErrNoReply, ErrPairReset, ...), ctx's error, or libzmq's errno. Failures
// with no caller to return to go to the error callback (WithErrorHandler)
// and the log (WithLogger, silent by default), and are counted in Stats.
//
// # Building
//
// zmqkit uses cgo, runs on Linux, and needs libzmq's headers and
// pkg-config: on Debian or Ubuntu, apt-get install libzmq3-dev pkg-config
// (make deps does it).
package zmqkit
