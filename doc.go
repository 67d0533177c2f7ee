// Package zmqkit gives Go programs ZeroMQ's messaging patterns as ready-made,
// goroutine-safe, context-aware types over libzmq, wire-compatible with the
// Python asyncio module it is the counterpart of.
//
// # Patterns
//
//   - Publisher / Subscriber (PUB/SUB): broadcast framed messages; each
//     subscriber picks msgids, matched exactly.
//   - RRServer / RRClient (request/reply): a server that answers many
//     clients at once, a client that never gets stuck on a lost reply.
//   - PPPusher / PPPuller (PUSH/PULL): pipelines, fan-out and fan-in.
//   - PairServer / PairClient (PAIR): one-to-one, full duplex.
//
// Each type has a constructor, NewX(endpoints, opts...), that binds or
// connects before it returns (so a busy address fails at once) and never
// waits for a peer.
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
// connect is an *EndpointError that keeps libzmq's errno.
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
// whose Text, JSON and Value methods read the body. Text and JSON bodies can
// travel in another character encoding (WithEncoding("gbk")); in Go they are
// always UTF-8. More types (msgpack, protobuf) plug in with WithBodyCodec. A
// frame that does not parse is a *MalformedError (matching ErrMalformed)
// that quotes a bounded excerpt; it never panics and never stops a receive
// loop. Codec does the framing on its own, for any other transport.
//
// The Python module subscribes to the prefix "1000", which also matches
// msgid 10001. zmqkit subscribes to "1000 " and so matches exactly.
//
// # Contexts
//
// Objects share a process-wide libzmq context made on first use
// (DefaultContext) unless given WithContext(zctx). inproc:// endpoints reach
// only objects on the same Context. Context.Close closes every object still
// open on it and then terminates libzmq; because every socket has a bounded
// linger (WithLinger, 200 ms by default), it does not hang on messages for
// peers that never came.
//
// # Blocking, cancellation and goroutines
//
// Every call that can block takes a context.Context first and returns
// promptly with ctx's error (errors.Is(err, context.Canceled)) when it ends,
// or with ErrClosed when the object is closed. All types are safe for
// concurrent use by multiple goroutines.
//
// Under the hood a libzmq socket is never used by two threads at once: each
// sits behind a mutex held only for non-blocking operations. A caller that
// must wait parks on a Go channel, woken by the socket's own descriptor
// (ZMQ_FD) through Go's netpoller, by its ctx, or by Close. So a blocked call
// holds no lock and no OS thread, one goroutine can send while another waits
// to receive on the same object, and cancellation takes microseconds.
//
// RRServer and RRClient wait differently, because a round trip is two
// wake-ups and a netpoller wake-up costs tens of microseconds more than a
// thread's: one waiting goroutine per socket blocks in poll(2) on ZMQ_FD and
// a wake-up pipe (ctx, Close and the other goroutines' operations write to
// it), holding its OS thread while it waits, and the others park on a
// channel as above. An RRServer whose Run is waiting therefore holds one OS
// thread, as a hand-written REP loop does; an RRClient holds one only while
// requests are in flight.
//
// Handler-driven types (Subscriber.Run, RRServer, PPPuller, PairServer) run
// handlers in goroutines they own, n at a time (WithConcurrency, default 1:
// in order). Run blocks on the caller's goroutine and returns when ctx ends
// or the object is closed, after every handler call has returned. A handler
// that returns an error or panics is recovered, counted in Stats and
// reported to WithErrorHandler's callback; it never stops the loop.
//
// # Shutting down
//
// Cancel the ctx given to Run (or Close the object); Run returns once its
// handlers have. Close each object, or close the Context to close them all.
// Close is idempotent and returns once the object's socket and goroutines
// are gone; messages still queued get the linger time to leave.
//
// # Delivery and back-pressure
//
// ZeroMQ queues messages per peer up to a high-water mark (WithSendHWM,
// WithRecvHWM; 1000). What happens beyond it depends on the pattern and is
// documented on each type: a Publisher drops, a pusher blocks. A subscriber
// misses what was published before its subscription reached the publisher
// (the "slow joiner"): synchronise first when the start matters.
//
// # Building
//
// zmqkit uses cgo and needs libzmq's headers and pkg-config: on Debian or
// Ubuntu, apt-get install libzmq3-dev pkg-config (make deps does it).
package zmqkit
