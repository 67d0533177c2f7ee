package faultsuite

// Section 2: garbage from raw peers. Each bad input must give a clear error
// (a documented type or sentinel) or be counted in Stats and reported,
// never a panic, a hang or a silent stop of Run.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	zmq "github.com/pebbe/zmq4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

var rawTransports = []string{"tcp", "ipc"}

func rawCtx(t *testing.T) *zmq.Context {
	t.Helper()
	c, err := zmq.NewContext()
	require.NoError(t, err)
	t.Cleanup(func() { closeWithin(t, "raw zmq context Term", 5*time.Second, c.Term) })
	return c
}

func rawSock(t *testing.T, c *zmq.Context, typ zmq.Type) *zmq.Socket {
	t.Helper()
	s, err := c.NewSocket(typ)
	require.NoError(t, err)
	require.NoError(t, s.SetLinger(0))
	require.NoError(t, s.SetRcvtimeo(10*time.Second))
	require.NoError(t, s.SetSndtimeo(10*time.Second))
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// rawBind binds s on a fresh endpoint of transport tr and returns it.
func rawBind(t *testing.T, s *zmq.Socket, tr string) string {
	t.Helper()
	require.NoError(t, s.Bind(bindEP(t, tr)))
	ep, err := s.GetLastEndpoint()
	require.NoError(t, err)
	return ep
}

// rawPeerOf binds a raw socket of type typ (on a raw context of its own) on
// a fresh endpoint of transport tr and connects an object made by open (with
// opts) to it; the object, of the type name, is closed (within closeBound) at
// cleanup.
func rawPeerOf[T object](t *testing.T, typ zmq.Type, tr, name string, open func(string, ...zmqkit.Option) (T, error), opts ...zmqkit.Option) (*zmq.Socket, T) {
	t.Helper()
	raw := rawSock(t, rawCtx(t), typ)
	o, err := open(rawBind(t, raw, tr), opts...)
	require.NoError(t, err)
	t.Cleanup(func() { closeWithin(t, name+".Close", closeBound, o.Close) })
	return raw, o
}

// rawClientOf makes a server of the type name (open, with echo as its
// handler, on transport tr, with opts), runs it until stop, and connects a
// raw socket of type typ (on a raw context of its own) to it.
func rawClientOf[S interface {
	object
	server
}](t *testing.T, typ zmq.Type, tr, name string, open func(string, zmqkit.RequestHandler, ...zmqkit.Option) (S, error), opts ...zmqkit.Option) (raw *zmq.Socket, srv S, stop func()) {
	t.Helper()
	srv, err := open(bindEP(t, tr), echo, opts...)
	require.NoError(t, err)
	stop = runUntilCancel(t, name+".Run", srv.Run)
	raw = rawSock(t, rawCtx(t), typ)
	require.NoError(t, raw.Connect(srv.Endpoints()[0]))
	return raw, srv, stop
}

// rawSend sends parts as one message on s.
func rawSend(t *testing.T, s *zmq.Socket, parts ...[]byte) {
	t.Helper()
	ps := make([]any, len(parts))
	for i, p := range parts {
		ps[i] = p
	}
	_, err := s.SendMessage(ps...)
	require.NoError(t, err)
}

// drainRaw reads and drops whatever s holds, without waiting.
func drainRaw(s *zmq.Socket) {
	for {
		if _, err := s.RecvBytes(zmq.DONTWAIT); err != nil {
			return
		}
	}
}

// syncSubscriber publishes frame on pub until sub receives one.
func syncSubscriber(t *testing.T, pub *zmq.Socket, sub *zmqkit.Subscriber, frame string) {
	t.Helper()
	for i := 0; ; i++ {
		_, err := pub.SendBytes([]byte(frame), 0)
		require.NoError(t, err)
		ctx, cancel := ctxFor(20 * time.Millisecond)
		_, err = sub.Receive(ctx)
		cancel()
		if err == nil {
			return
		}
		require.Less(t, i, 1000, "subscriber never synchronised")
	}
}

// bogusGreeting is the start of a ZMTP 3.0 greeting with a mechanism that
// does not exist.
func bogusGreeting() []byte {
	greeting := make([]byte, 64)
	greeting[0], greeting[9], greeting[10], greeting[11] = 0xff, 0x7f, 3, 0
	copy(greeting[12:], "BOGUS")
	return greeting
}

// errSink collects what an object reports to WithErrorHandler.
type errSink struct {
	mu   sync.Mutex
	errs []error
}

func (s *errSink) handler(err error) {
	s.mu.Lock()
	s.errs = append(s.errs, err)
	s.mu.Unlock()
}

func (s *errSink) count(target error) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, e := range s.errs {
		if errors.Is(e, target) {
			n++
		}
	}
	return n
}

func (s *errSink) all() []error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]error(nil), s.errs...)
}

func (s *errSink) opt() zmqkit.Option { return zmqkit.WithErrorHandler(s.handler) }

// requireMalformed checks the documented shape of a malformed-input error.
func requireMalformed(t *testing.T, err error, wantLen int, what string) {
	t.Helper()
	require.Error(t, err, what)
	assert.ErrorIs(t, err, zmqkit.ErrMalformed, what)
	var me *zmqkit.MalformedError
	if assert.True(t, errors.As(err, &me), "%s: %v is not a *MalformedError", what, err) {
		assert.LessOrEqual(t, len(me.Frame), zmqkit.MalformedExcerptLen, "%s: excerpt too long", what)
		assert.NotEmpty(t, me.Reason, what)
		if wantLen >= 0 {
			assert.Equal(t, wantLen, me.Len, "%s: MalformedError.Len", what)
		}
	}
	assert.LessOrEqual(t, len(err.Error()), 512, "%s: error message is not bounded: %d bytes", what, len(err.Error()))
	assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "%s: want one zmqkit: prefix in %q", what, err.Error())
}

func ctxFor(d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), d)
}

// badFrame is a pub/sub frame that must not decode.
type badFrame struct {
	name  string
	parts [][]byte
}

func garbageFrames(enc string) []badFrame {
	huge := append([]byte("1000 json "), randBytes(6<<20)...)
	bad := []badFrame{
		{"empty message", [][]byte{{}}},
		{"bad msgid", [][]byte{[]byte("abc text x")}},
		{"msgid only", [][]byte{[]byte("1000")}},
		{"no separator", [][]byte{[]byte("1000text")}},
		{"msgid overflows int", [][]byte{[]byte("99999999999999999999999999 text x")}},
		{"bad json", [][]byte{[]byte("1000 json {\"a\":")}},
		{"invalid bytes in text", [][]byte{[]byte("1000 text ok\xff\xfe")}},
		{"truncated multibyte in text", [][]byte{[]byte("1000 text \x81")}},
		{"invalid bytes in json", [][]byte{[]byte("1000 json \"\xff\"")}},
		{"two frames", [][]byte{[]byte("1000 text a"), []byte("b")}},
		{"three frames, empty", [][]byte{{}, {}, {}}},
		{"huge random json body", [][]byte{huge}},
	}
	_ = enc
	return bad
}

// TestGarbageSubscriber: a raw PUB sends malformed frames, each followed
// by a good one, to a Subscriber in utf-8 and gbk, read by Receive and by
// Run.
func TestGarbageSubscriber(t *testing.T) {
	for _, tr := range rawTransports {
		for _, enc := range []string{"utf-8", "gbk"} {
			for _, mode := range []string{"Receive", "Run"} {
				t.Run(fmt.Sprintf("%s/%s/%s", tr, enc, mode), func(t *testing.T) {
					leakCheck(t)
					zc := newZCtx(t)
					var sink errSink
					pub, sub := rawPeerOf(t, zmq.PUB, tr, "Subscriber", zmqkit.NewSubscriber, zmqkit.WithZMQContext(zc), zmqkit.WithEncoding(enc), sink.opt())
					// Synchronise: publish until the subscriber sees one.
					syncSubscriber(t, pub, sub, "1000 text sync")
					// Drain the rest of the sync burst.
					for {
						ctx, cancel := ctxFor(100 * time.Millisecond)
						_, err := sub.Receive(ctx)
						cancel()
						if err != nil {
							break
						}
					}
					bad := garbageFrames(enc)
					send := func(parts [][]byte) {
						t.Helper()
						rawSend(t, pub, parts...)
					}
					// Valid but unusual: a body of 6 MiB, and gbk text.
					big := strings.Repeat("é", 3<<20)
					gbkHello := []byte("1000 text \xc4\xe3\xba\xc3") // 你好 in gbk
					before := sub.Stats()
					if mode == "Receive" {
						for i, b := range bad {
							send(b.parts)
							send([][]byte{[]byte(fmt.Sprintf("1000 text ok %d", i))})
							ctx, cancel := ctxFor(10 * time.Second)
							_, err := sub.Receive(ctx)
							cancel()
							wantLen := len(b.parts[0])
							if len(b.parts) > 1 {
								wantLen = -1
							}
							requireMalformed(t, err, wantLen, b.name)
							var oe *zmqkit.OpError
							assert.True(t, errors.As(err, &oe), "%s: not an *OpError", b.name)
							ctx, cancel = ctxFor(10 * time.Second)
							m, err := sub.Receive(ctx)
							cancel()
							require.NoError(t, err, "the Receive after %q", b.name)
							assert.Equal(t, fmt.Sprintf("ok %d", i), m.Text(), "after %q", b.name)
						}
						st := sub.Stats()
						assert.Equal(t, uint64(len(bad)), st.Malformed-before.Malformed, "Stats.Malformed")
						// A huge valid body.
						wire := []byte("1000 text " + big)
						if enc == "gbk" {
							wire = []byte("1000 text " + strings.Repeat("\xa8\xa6", 3<<20)) // é in gbk
						}
						send([][]byte{wire})
						ctx, cancel := ctxFor(20 * time.Second)
						m, err := sub.Receive(ctx)
						cancel()
						require.NoError(t, err)
						assert.Equal(t, len(big), len(m.Body))
						assert.True(t, m.Text() == big, "huge body altered")
						if enc == "gbk" {
							send([][]byte{gbkHello})
							ctx, cancel := ctxFor(10 * time.Second)
							m, err := sub.Receive(ctx)
							cancel()
							require.NoError(t, err)
							assert.Equal(t, "你好", m.Text())
						}
						return
					}
					// Run: malformed frames are counted and reported, Run goes on.
					var mu sync.Mutex
					var got []string
					stopRun := runUntilCancel(t, "Subscriber.Run", func(ctx context.Context) error {
						return sub.Run(ctx, func(_ context.Context, m zmqkit.Message) error {
							mu.Lock()
							got = append(got, m.Text())
							mu.Unlock()
							return nil
						})
					})
					for i, b := range bad {
						send(b.parts)
						send([][]byte{[]byte(fmt.Sprintf("1000 text ok %d", i))})
					}
					ok := eventually(t, 20*time.Second, "Run handled every good frame", func() bool {
						mu.Lock()
						defer mu.Unlock()
						return len(got) == len(bad)
					})
					stopRun()
					if ok {
						for i := range bad {
							assert.Equal(t, fmt.Sprintf("ok %d", i), got[i])
						}
					}
					st := sub.Stats()
					assert.Equal(t, uint64(len(bad)), st.Malformed-before.Malformed, "Stats.Malformed")
					assert.Equal(t, len(bad), sink.count(zmqkit.ErrMalformed), "reports to the error handler: %v", sink.all())
				})
			}
		}
	}
}

// TestGarbageSubscriberRandom: thousands of random frames; each is either a
// message or a *MalformedError, never a panic; the good frame after them
// arrives.
func TestGarbageSubscriberRandom(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	rc := rawCtx(t)
	pub := rawSock(t, rc, zmq.PUB)
	require.NoError(t, pub.SetSndhwm(0))
	ep := rawBind(t, pub, "tcp")
	for _, enc := range []string{"utf-8", "gbk", "shift_jis"} {
		sub, err := zmqkit.NewSubscriber(ep, zmqkit.WithZMQContext(zc), zmqkit.WithEncoding(enc), zmqkit.WithRecvHWM(0))
		require.NoError(t, err)
		syncSubscriber(t, pub, sub, "7 text sync")
		const n = 3000
		prefixes := []string{"", "1000 ", "1000 text ", "1000 json ", "0 x ", "-1 text ", "1_0 text ", "+1 text ", "1000 msgpack "}
		for i := 0; i < n; i++ {
			f := append([]byte(prefixes[rand.IntN(len(prefixes))]), randBytes(rand.IntN(200))...)
			_, err := pub.SendBytes(f, 0)
			require.NoError(t, err)
		}
		_, err = pub.SendBytes([]byte("424242 text END"), 0)
		require.NoError(t, err)
		good, bad := 0, 0
		for {
			ctx, cancel := ctxFor(10 * time.Second)
			m, err := sub.Receive(ctx)
			cancel()
			if err == nil && m.ID == 424242 {
				break
			}
			if err != nil {
				if isCtxErr(err) {
					t.Fatalf("%s: END never arrived after %d good %d bad", enc, good, bad)
				}
				requireMalformed(t, err, -1, "random frame")
				bad++
				continue
			}
			good++
		}
		t.Logf("%s: %d decoded, %d malformed, stats %+v", enc, good, bad, sub.Stats())
		closeWithin(t, "Subscriber.Close", closeBound, sub.Close)
	}
}

// TestGarbagePuller: multi-frame, empty and huge messages from a raw PUSH.
func TestGarbagePuller(t *testing.T) {
	for _, tr := range rawTransports {
		for _, mode := range []string{"Receive", "Run"} {
			t.Run(tr+"/"+mode, func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var sink errSink
				push, pull := rawPeerOf(t, zmq.PUSH, tr, "PPPuller", zmqkit.NewPPPuller, zmqkit.WithZMQContext(zc), sink.opt())
				huge := randBytes(8 << 20)
				msgs := [][][]byte{
					{[]byte("a"), []byte("b")},
					{{}},
					{huge},
					{{}, {}, {}},
					{randBytes(100)},
				}
				for i, m := range msgs {
					rawSend(t, push, m...)
					_, err := push.SendBytes([]byte(fmt.Sprintf("ok %d", i)), 0)
					require.NoError(t, err)
				}
				if mode == "Receive" {
					for i, m := range msgs {
						ctx, cancel := ctxFor(20 * time.Second)
						got, err := pull.Receive(ctx)
						cancel()
						if len(m) > 1 {
							requireMalformed(t, err, -1, fmt.Sprintf("message %d of %d frames", i, len(m)))
						} else {
							require.NoError(t, err, "message %d", i)
							assert.True(t, bytes.Equal(m[0], got), "message %d altered (len %d vs %d)", i, len(got), len(m[0]))
						}
						ctx, cancel = ctxFor(10 * time.Second)
						got, err = pull.Receive(ctx)
						cancel()
						require.NoError(t, err)
						assert.Equal(t, fmt.Sprintf("ok %d", i), string(got))
					}
					assert.Equal(t, uint64(2), pull.Stats().Malformed)
					// ReceiveFrames gets a multi-frame message whole.
					_, err := push.SendMessage("x", "", "z")
					require.NoError(t, err)
					ctx, cancel := ctxFor(10 * time.Second)
					fr, err := pull.ReceiveFrames(ctx)
					cancel()
					require.NoError(t, err)
					assert.Equal(t, [][]byte{[]byte("x"), {}, []byte("z")}, fr)
					return
				}
				var mu sync.Mutex
				var got [][]byte
				stopRun := runUntilCancel(t, "PPPuller.Run", func(ctx context.Context) error {
					return pull.Run(ctx, func(_ context.Context, m []byte) error {
						mu.Lock()
						got = append(got, m)
						mu.Unlock()
						return nil
					})
				})
				want := 0
				for _, m := range msgs {
					want++ // the ok frame
					if len(m) == 1 {
						want++
					}
				}
				eventually(t, 20*time.Second, "Run handled every single-frame message", func() bool {
					mu.Lock()
					defer mu.Unlock()
					return len(got) == want
				})
				stopRun()
				assert.Equal(t, uint64(2), pull.Stats().Malformed)
				assert.Equal(t, 2, sink.count(zmqkit.ErrMalformed), "reported: %v", sink.all())
			})
		}
	}
}

// TestGarbageRRServer: a raw DEALER sends envelopes without delimiters,
// wrong frame counts, empty and huge requests and random frames.
func TestGarbageRRServer(t *testing.T) {
	for _, tr := range rawTransports {
		t.Run(tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			d, srv, stopRun := rawClientOf(t, zmq.DEALER, tr, "RRServer", zmqkit.NewRRServer, zmqkit.WithZMQContext(zc), sink.opt())
			send := func(parts ...[]byte) {
				t.Helper()
				rawSend(t, d, parts...)
			}
			recv := func() [][]byte {
				t.Helper()
				m, err := d.RecvMessageBytes(0)
				require.NoError(t, err, "no reply from RRServer (Run stopped or hung?)")
				return m
			}
			probe := func(i int) {
				t.Helper()
				p := []byte(fmt.Sprintf("probe %d", i))
				send(nil, p)
				require.Equal(t, [][]byte{{}, p}, recv(), "probe %d", i)
			}
			probe(0)
			base := srv.Stats()

			// No delimiter: counted, reported, ignored.
			send([]byte("no delimiter"))
			send([]byte("a"), []byte("b"))
			probe(1)
			st := srv.Stats()
			assert.Equal(t, uint64(2), st.Malformed-base.Malformed, "envelopes without delimiter counted")
			assert.GreaterOrEqual(t, sink.count(zmqkit.ErrMalformed), 2, "envelopes without delimiter reported")

			// Delimiter but no body: an error reply.
			send(nil)
			r := recv()
			require.Len(t, r, 2)
			assert.True(t, bytes.HasPrefix(r[1], []byte(zmqkit.ErrorReplyPrefix)), "reply to [\"\"]: %q", r)
			// Two body frames: an error reply (documented).
			send(nil, []byte("a"), []byte("b"))
			r = recv()
			require.Len(t, r, 2)
			assert.True(t, bytes.HasPrefix(r[1], []byte(zmqkit.ErrorReplyPrefix)), "reply to two body frames: %q", r)
			// Empty request: the handler's (empty) reply.
			send(nil, nil)
			assert.Equal(t, [][]byte{{}, {}}, recv())
			// A longer envelope comes back whole.
			send([]byte("e1"), []byte("e2"), nil, []byte("req"))
			assert.Equal(t, [][]byte{[]byte("e1"), []byte("e2"), {}, []byte("req")}, recv())
			// Huge request.
			huge := randBytes(8 << 20)
			send(nil, huge)
			r = recv()
			require.Len(t, r, 2)
			assert.True(t, bytes.Equal(huge, r[1]), "huge request not echoed")
			probe(2)

			// Random frames: whatever each gets, the server goes on.
			for i := 0; i < 300; i++ {
				n := 1 + rand.IntN(5)
				parts := make([][]byte, n)
				for j := range parts {
					if rand.IntN(3) > 0 {
						parts[j] = randBytes(rand.IntN(50))
					}
				}
				send(parts...)
			}
			// Read replies until the probe's comes back.
			p := []byte("final probe")
			send(nil, p)
			for i := 0; ; i++ {
				m := recv()
				if len(m) == 2 && bytes.Equal(m[1], p) {
					break
				}
				require.Less(t, i, 400, "final probe never answered")
			}
			assert.Zero(t, srv.Stats().HandlerPanics)
			stopRun()
			closeWithin(t, "RRServer.Close", closeBound, srv.Close)
		})
	}
}

// TestGarbageRRClient: a raw ROUTER answers the RRClient's requests with
// wrong ids, missing delimiters and wrong frame counts.
func TestGarbageRRClient(t *testing.T) {
	for _, tr := range rawTransports {
		t.Run(tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			rt, cli := rawPeerOf(t, zmq.ROUTER, tr, "RRClient", zmqkit.NewRRClient, zmqkit.WithZMQContext(zc), sink.opt())

			type result struct {
				rep []byte
				err error
			}
			// ask starts a request and returns the ROUTER's view of it.
			ask := func(body string) (chan result, [][]byte) {
				t.Helper()
				res := make(chan result, 1)
				go func() {
					ctx, cancel := ctxFor(10 * time.Second)
					defer cancel()
					rep, err := cli.Request(ctx, []byte(body))
					res <- result{rep, err}
				}()
				m, err := rt.RecvMessageBytes(0)
				require.NoError(t, err)
				require.Len(t, m, 4, "request as the ROUTER sees it: %q", m)
				require.Len(t, m[1], 8, "request id")
				require.Empty(t, m[2])
				require.Equal(t, body, string(m[3]))
				return res, m
			}
			reply := func(parts ...[]byte) {
				t.Helper()
				rawSend(t, rt, parts...)
			}
			get := func(res chan result) result {
				t.Helper()
				select {
				case r := <-res:
					return r
				case <-time.After(15 * time.Second):
					t.Fatal("Request never returned")
				}
				return result{}
			}
			wrongID := func(id []byte) []byte {
				w := append([]byte(nil), id...)
				binary.BigEndian.PutUint64(w, binary.BigEndian.Uint64(w)+1000)
				return w
			}

			// Garbage that must be ignored (the request stays pending),
			// then the right reply.
			res, m := ask("one")
			peer, id := m[0], m[1]
			base := cli.Stats()
			reply(peer, []byte("short"), nil, []byte("bad id length"))
			reply(peer, wrongID(id), nil, []byte("wrong id"))
			reply(peer, id, []byte("no delimiter"))
			reply(peer, id)
			reply(peer, id, []byte("X"), []byte("non-empty delimiter"))
			reply(peer, randBytes(3), randBytes(9), randBytes(1), randBytes(20))
			reply(peer, id, nil, []byte("one"))
			r := get(res)
			require.NoError(t, r.err)
			assert.Equal(t, "one", string(r.rep))
			st := cli.Stats()
			assert.Equal(t, uint64(1), st.Dropped-base.Dropped, "reply with an unknown id: Dropped")
			assert.GreaterOrEqual(t, st.Malformed-base.Malformed, uint64(4), "malformed replies counted: %+v", st)
			assert.GreaterOrEqual(t, sink.count(zmqkit.ErrMalformed), 4, "malformed replies reported: %v", sink.all())

			// Right id, two body frames: the request fails with a MalformedError.
			res, m = ask("two")
			reply(m[0], m[1], nil, []byte("a"), []byte("b"))
			r = get(res)
			requireMalformed(t, r.err, -1, "reply with two body frames")

			// Right id, error reply: *RemoteError.
			res, m = ask("three")
			reply(m[0], m[1], nil, []byte(zmqkit.ErrorReplyPrefix+"boom"))
			r = get(res)
			var re *zmqkit.RemoteError
			require.True(t, errors.As(r.err, &re), "error reply gave %v", r.err)
			assert.Equal(t, "boom", re.Message)

			// Empty reply.
			res, m = ask("four")
			reply(m[0], m[1], nil, nil)
			r = get(res)
			require.NoError(t, r.err)
			assert.Empty(t, r.rep)

			// A reply for a request that gave up: dropped, never given to the next.
			ctx, cancel := ctxFor(100 * time.Millisecond)
			_, err := cli.Request(ctx, []byte("late"))
			cancel()
			require.True(t, isCtxErr(err))
			late, err := rt.RecvMessageBytes(0)
			require.NoError(t, err)
			res, m = ask("five")
			reply(late[0], late[1], nil, []byte("late reply"))
			reply(m[0], m[1], nil, []byte("five"))
			r = get(res)
			require.NoError(t, r.err)
			assert.Equal(t, "five", string(r.rep))

			// Random garbage, then the right reply: the client is still fine.
			res, m = ask("six")
			for i := 0; i < 300; i++ {
				n := 1 + rand.IntN(5)
				parts := make([][]byte, n+1)
				parts[0] = m[0]
				for j := 1; j <= n; j++ {
					parts[j] = randBytes(rand.IntN(12))
				}
				reply(parts...)
			}
			reply(m[0], m[1], nil, []byte("six"))
			r = get(res)
			require.NoError(t, r.err)
			assert.Equal(t, "six", string(r.rep))
		})
	}
}

// TestGarbagePair: multi-frame and random messages to a PairClient and a
// PairServer from raw PAIR peers.
func TestGarbagePair(t *testing.T) {
	for _, tr := range rawTransports {
		t.Run("PairClient/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			p, cli := rawPeerOf(t, zmq.PAIR, tr, "PairClient", zmqkit.NewPairClient, zmqkit.WithZMQContext(zc))
			require.NoError(t, cli.Send(context.Background(), []byte("hi")))
			_, err := p.RecvBytes(0)
			require.NoError(t, err)
			_, err = p.SendMessage("a", "b")
			require.NoError(t, err)
			_, err = p.SendBytes(nil, 0)
			require.NoError(t, err)
			huge := randBytes(8 << 20)
			_, err = p.SendBytes(huge, 0)
			require.NoError(t, err)
			ctx, cancel := ctxFor(10 * time.Second)
			defer cancel()
			_, err = cli.Receive(ctx)
			requireMalformed(t, err, -1, "two frames to PairClient.Receive")
			m, err := cli.Receive(ctx)
			require.NoError(t, err)
			assert.Empty(t, m)
			m, err = cli.Receive(ctx)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(huge, m))
			// A Request answered by two frames: a MalformedError, and the
			// client goes on.
			rq := make(chan error, 1)
			go func() { _, err := cli.Request(ctx, []byte("q")); rq <- err }()
			_, err = p.RecvBytes(0)
			require.NoError(t, err)
			_, err = p.SendMessage("r1", "r2")
			require.NoError(t, err)
			requireMalformed(t, <-rq, -1, "two-frame reply to PairClient.Request")
			go func() {
				rep, err := cli.Request(ctx, []byte("q2"))
				if err == nil && string(rep) != "q2" {
					err = fmt.Errorf("reply %q", rep)
				}
				rq <- err
			}()
			q, err := p.RecvBytes(0)
			require.NoError(t, err)
			_, err = p.SendBytes(q, 0)
			require.NoError(t, err)
			assert.NoError(t, <-rq)
		})
		t.Run("PairServer/"+tr, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			var sink errSink
			p, srv, stopRun := rawClientOf(t, zmq.PAIR, tr, "PairServer", zmqkit.NewPairServer, zmqkit.WithZMQContext(zc), sink.opt())
			_, err := p.SendBytes([]byte("hello"), 0)
			require.NoError(t, err)
			r, err := p.RecvBytes(0)
			require.NoError(t, err, "PairServer did not answer")
			require.Equal(t, "hello", string(r))
			// Two frames: an error reply (as RRServer does), Run goes on.
			_, err = p.SendMessage("a", "b")
			require.NoError(t, err)
			r, err = p.RecvBytes(0)
			require.NoError(t, err, "no answer to a two-frame message")
			assert.True(t, bytes.HasPrefix(r, []byte(zmqkit.ErrorReplyPrefix)), "answer to two frames: %q", r)
			assert.Equal(t, uint64(1), srv.Stats().Malformed)
			assert.Equal(t, 1, sink.count(zmqkit.ErrMalformed), "reported: %v", sink.all())
			// Empty and huge messages are echoed.
			_, err = p.SendBytes(nil, 0)
			require.NoError(t, err)
			r, err = p.RecvBytes(0)
			require.NoError(t, err)
			assert.Empty(t, r)
			huge := randBytes(8 << 20)
			_, err = p.SendBytes(huge, 0)
			require.NoError(t, err)
			r, err = p.RecvBytes(0)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(huge, r))
			// Random messages, then a probe.
			for i := 0; i < 300; i++ {
				parts := make([]any, 1+rand.IntN(3))
				for j := range parts {
					parts[j] = randBytes(rand.IntN(40))
				}
				_, err := p.SendMessage(parts...)
				require.NoError(t, err)
			}
			_, err = p.SendBytes([]byte("final probe"), 0)
			require.NoError(t, err)
			for i := 0; ; i++ {
				r, err := p.RecvBytes(0)
				require.NoError(t, err, "final probe never answered")
				if string(r) == "final probe" {
					break
				}
				require.Less(t, i, 400)
			}
			stopRun()
			closeWithin(t, "PairServer.Close", closeBound, srv.Close)
		})
	}
}

// TestBadOutgoing: messages that cannot be encoded are refused with the
// documented sentinels, in utf-8 and gbk, and refused calls send nothing.
func TestBadOutgoing(t *testing.T) {
	leakCheck(t)
	zc := newZCtx(t)
	ctx := context.Background()
	for _, enc := range []string{"utf-8", "gbk"} {
		t.Run(enc, func(t *testing.T) {
			pub, err := zmqkit.NewPublisher(inprocEP("bad"), zmqkit.WithZMQContext(zc), zmqkit.WithEncoding(enc))
			require.NoError(t, err)
			defer closeWithin(t, "Publisher.Close", closeBound, pub.Close)
			invalid := []struct {
				name string
				call func() error
			}{
				{"text not utf-8", func() error { return pub.Publish(ctx, "abc\xff") }},
				{"[]byte text not utf-8", func() error { return pub.Publish(ctx, []byte("\xc3\x28")) }},
				{"json.RawMessage not json", func() error { return pub.Publish(ctx, json.RawMessage("{bad")) }},
				{"unmarshalable value", func() error { return pub.Publish(ctx, make(chan int)) }},
				{"func value", func() error { return pub.Publish(ctx, func() {}) }},
				{"json message not json", func() error { return pub.PublishMessage(ctx, zmqkit.Message{ID: 1, Type: "json", Body: []byte("{")}) }},
				{"text message not utf-8", func() error { return pub.PublishMessage(ctx, zmqkit.Message{ID: 1, Type: "text", Body: []byte{0xff}}) }},
				{"type with space", func() error { return pub.PublishMessage(ctx, zmqkit.Message{ID: 1, Type: "a b", Body: []byte("x")}) }},
				{"empty type", func() error { return pub.PublishMessage(ctx, zmqkit.Message{ID: 1, Type: "", Body: []byte("x")}) }},
				{"type with NUL", func() error { return pub.PublishMessage(ctx, zmqkit.Message{ID: 1, Type: "a\x00", Body: []byte("x")}) }},
			}
			if enc == "gbk" {
				invalid = append(invalid,
					struct {
						name string
						call func() error
					}{"emoji has no gbk form", func() error { return pub.Publish(ctx, "smile 😀") }},
					struct {
						name string
						call func() error
					}{"json with a char gbk lacks", func() error { return pub.Publish(ctx, map[string]string{"k": "😀"}) }},
				)
			}
			for _, c := range invalid {
				err := c.call()
				assert.ErrorIs(t, err, zmqkit.ErrInvalidMessage, c.name)
				if err != nil {
					assert.Equal(t, 1, strings.Count(err.Error(), "zmqkit:"), "%s: %q", c.name, err.Error())
				}
			}
			err = pub.PublishMessage(ctx, zmqkit.Message{ID: -1, Type: "text", Body: []byte("x")})
			assert.True(t, errors.Is(err, zmqkit.ErrInvalidArgument) || errors.Is(err, zmqkit.ErrInvalidMessage), "negative msgid: %v", err)
			assert.ErrorIs(t, pub.PublishFrames(ctx), zmqkit.ErrInvalidArgument, "no frames")
			assert.Zero(t, pub.Stats().Sent, "refused messages were counted as sent")
		})
	}
	push, err := zmqkit.NewPPPusher(inprocEP("bad"), zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	defer closeWithin(t, "PPPusher.Close", closeBound, push.Close)
	assert.ErrorIs(t, push.PushFrames(ctx), zmqkit.ErrInvalidArgument)
	pc, err := zmqkit.NewPairClient(inprocEP("bad"), zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	defer closeWithin(t, "PairClient.Close", closeBound, pc.Close)
	assert.ErrorIs(t, pc.SendFrames(ctx), zmqkit.ErrInvalidArgument)
	ps, err := zmqkit.NewPairServer(inprocEP("bad"), echo, zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	defer closeWithin(t, "PairServer.Close", closeBound, ps.Close)
	assert.ErrorIs(t, ps.SendFrames(ctx), zmqkit.ErrInvalidArgument)
	sub, err := zmqkit.NewSubscriber(inprocEP("bad"), zmqkit.WithZMQContext(zc))
	require.NoError(t, err)
	defer closeWithin(t, "Subscriber.Close", closeBound, sub.Close)
	assert.ErrorIs(t, sub.Subscribe(-1), zmqkit.ErrInvalidArgument)
	assert.ErrorIs(t, sub.Run(ctx, nil), zmqkit.ErrInvalidArgument)
	_, err = zmqkit.NewRRServer(inprocEP("bad"), nil, zmqkit.WithZMQContext(zc))
	assert.ErrorIs(t, err, zmqkit.ErrInvalidArgument)
	_, err = zmqkit.NewPairServer(inprocEP("bad"), nil, zmqkit.WithZMQContext(zc))
	assert.ErrorIs(t, err, zmqkit.ErrInvalidArgument)
	// Malformed endpoints.
	for _, ep := range []string{"", "tcp://", "foo://x", "tcp://127.0.0.1", "ipc://", "inproc://", ",", "@", ">", "tcp://127.0.0.1:99999", "udp://127.0.0.1:5"} {
		for _, k := range kinds {
			o, err := k.open(ep, zmqkit.WithZMQContext(zc))
			if err == nil {
				t.Errorf("%s accepted endpoint %q", k.name, ep)
				_ = o.Close()
				continue
			}
			var ee *zmqkit.EndpointError
			assert.True(t, errors.Is(err, zmqkit.ErrInvalidEndpoint) || errors.As(err, &ee),
				"%s(%q): %v is neither ErrInvalidEndpoint nor *EndpointError", k.name, ep, err)
		}
	}
}

// TestGarbageNonZMTP: plain TCP clients write random bytes or a bogus ZMTP
// greeting to each bound type, then close; the type goes on working with a
// real peer; then, with the real peer connected, a garbage connection is
// held open and the real peer must still get through.
func TestGarbageNonZMTP(t *testing.T) {
	greeting := bogusGreeting()
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			leakCheck(t)
			zc := newZCtx(t)
			x, err := start(k, k.bindSide()+"tcp://127.0.0.1:*", zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer x.stop(t)
			addr := strings.TrimPrefix(x.Endpoints()[0], "tcp://")
			refused := 0
			dial := func() net.Conn {
				t.Helper()
				for i := 0; ; i++ {
					c, err := net.Dial("tcp", addr)
					if err == nil {
						return c
					}
					refused++
					require.Less(t, i, 200, "the endpoint stayed closed: %v", err)
					time.Sleep(10 * time.Millisecond)
				}
			}
			for i := 0; i < 20; i++ {
				c := dial()
				if i%2 == 0 {
					_, _ = c.Write(randBytes(1 + rand.IntN(4096)))
				} else {
					_, _ = c.Write(greeting)
				}
				if i%3 == 0 {
					_ = c.(*net.TCPConn).SetLinger(0) // RST
				}
				_ = c.Close()
			}
			if refused > 0 {
				t.Logf("%s: %d connection attempts refused: the bound socket was closed and bound again after a garbage connection", k.name, refused)
			}
			peerEP := x.Endpoints()[0]
			pk := kindByName(k.peer)
			if pk.binds {
				peerEP = ">" + peerEP
			}
			peer, err := start(pk, peerEP, zmqkit.WithZMQContext(zc))
			require.NoError(t, err)
			defer peer.stop(t)
			ctx, cancel := ctxFor(20 * time.Second)
			defer cancel()
			require.NoError(t, exchange(ctx, x.object, peer.object), "after garbage connections")
			hold := dial()
			defer hold.Close()
			_, _ = hold.Write(greeting)
			_, _ = hold.Write(randBytes(8))
			for i := 0; i < 3; i++ {
				assert.NoError(t, exchange(ctx, x.object, peer.object), "with a garbage connection held open")
			}
		})
	}
}

// TestGarbageServerThenReal: a connecting type's first "server" on an
// endpoint is not ZMTP (it sends a bogus greeting, which libzmq treats as a
// protocol error and does not reconnect after); the real peer then binds the
// same endpoint. The documentation says zmqkit connects again after a
// protocol error (ErrConnectionDropped, counted in Stats.ProtocolErrors).
func TestGarbageServerThenReal(t *testing.T) {
	greeting := bogusGreeting()
	for _, k := range kinds {
		if k.binds {
			continue
		}
		for _, withMax := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/WithMaxMessageSize=%v", k.name, withMax), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				l, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				ep := "tcp://" + l.Addr().String()
				accepted := make(chan struct{})
				go func() {
					defer close(accepted)
					c, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = c.Write(greeting)
					buf := make([]byte, 256)
					_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
					_, _ = c.Read(buf)
					_ = c.Close()
				}()
				var sink errSink
				opts := []zmqkit.Option{zmqkit.WithZMQContext(zc), zmqkit.WithReconnectInterval(20*time.Millisecond, 0)}
				if k.name != "PPPusher" && k.name != "Publisher" {
					opts = append(opts, sink.opt())
				}
				if withMax {
					opts = append(opts, zmqkit.WithMaxMessageSize(1<<20))
				}
				x, err := start(k, ep, opts...)
				require.NoError(t, err)
				defer x.stop(t)
				select {
				case <-accepted:
				case <-time.After(10 * time.Second):
					t.Fatal("the object never connected to the garbage listener")
				}
				require.NoError(t, l.Close())
				peer, err := start(kindByName(k.peer), ep, zmqkit.WithZMQContext(zc))
				require.NoError(t, err, "the real peer could not bind the endpoint")
				defer peer.stop(t)
				ctx, cancel := ctxFor(10 * time.Second)
				defer cancel()
				err = exchange(ctx, x.object, peer.object)
				assert.NoError(t, err, "%s never reached the real peer after a non-ZMTP one (stats %+v, reported %v)", k.name, x.Stats(), sink.all())
			})
		}
	}
}

// TestMaxMessageSize: an oversize message drops the connection; the
// connecting object connects again, counts Stats.ProtocolErrors and
// reports ErrConnectionDropped, and later messages arrive.
func TestMaxMessageSize(t *testing.T) {
	for _, tr := range rawTransports {
		for _, name := range []string{"Subscriber", "PPPuller", "PairClient", "RRClient"} {
			t.Run(name+"/"+tr, func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var typ zmq.Type
				switch name {
				case "Subscriber":
					typ = zmq.PUB
				case "PPPuller":
					typ = zmq.PUSH
				case "PairClient":
					typ = zmq.PAIR
				case "RRClient":
					typ = zmq.ROUTER
				}
				var sink errSink
				raw, x := rawPeerOf(t, typ, tr, name, kindByName(name).open, zmqkit.WithZMQContext(zc), zmqkit.WithMaxMessageSize(1024),
					zmqkit.WithReconnectInterval(20*time.Millisecond, 0), sink.opt())
				big := randBytes(4096)
				deadline := time.Now().Add(20 * time.Second)
				// recvSmall tries to get a small message through to x.
				var rrID []byte
				var rrPeer []byte
				recvSmall := func(body []byte) bool {
					ctx, cancel := ctxFor(50 * time.Millisecond)
					defer cancel()
					switch o := x.(type) {
					case *zmqkit.Subscriber:
						_, _ = raw.SendBytes(append([]byte("1000 text "), body...), zmq.DONTWAIT)
						m, err := o.Receive(ctx)
						return err == nil && bytes.Equal(m.Body, body)
					case *zmqkit.PPPuller:
						_, _ = raw.SendBytes(body, zmq.DONTWAIT)
						m, err := o.Receive(ctx)
						return err == nil && bytes.Equal(m, body)
					case *zmqkit.PairClient:
						// A libzmq PAIR frees its one peer slot only when it
						// reads past what a departed peer left (PairClient's
						// doc): a server that only sent would refuse the new
						// connection forever. A real server reads.
						drainRaw(raw)
						_, _ = raw.SendBytes(body, zmq.DONTWAIT)
						m, err := o.Receive(ctx)
						return err == nil && bytes.Equal(m, body)
					case *zmqkit.RRClient:
						res := make(chan []byte, 1)
						go func() {
							c, cancel := ctxFor(2 * time.Second)
							defer cancel()
							r, _ := o.Request(c, body)
							res <- r
						}()
						_ = raw.SetRcvtimeo(2 * time.Second)
						m, err := raw.RecvMessageBytes(0)
						if err != nil {
							<-res
							return false
						}
						rrPeer, rrID = m[0], m[1]
						_, _ = raw.SendMessage(rrPeer, rrID, "", body)
						return bytes.Equal(<-res, body)
					}
					return false
				}
				for !recvSmall([]byte("sync")) {
					require.True(t, time.Now().Before(deadline), "never connected")
				}
				// Oversize message.
				switch name {
				case "RRClient":
					res := make(chan error, 1)
					go func() {
						c, cancel := ctxFor(2 * time.Second)
						defer cancel()
						_, err := x.(*zmqkit.RRClient).Request(c, []byte("big please"))
						res <- err
					}()
					m, err := raw.RecvMessageBytes(0)
					require.NoError(t, err)
					_, err = raw.SendMessage(m[0], m[1], "", big)
					require.NoError(t, err)
					assert.True(t, isCtxErr(<-res), "the oversize reply's request ends by ctx")
				case "Subscriber":
					_, err := raw.SendBytes(append([]byte("1000 text "), big...), 0)
					require.NoError(t, err)
				default:
					_, err := raw.SendBytes(big, 0)
					require.NoError(t, err)
				}
				eventually(t, 10*time.Second, "Stats.ProtocolErrors counts the dropped connection", func() bool {
					if name == "PairClient" { // a real PAIR server reads all along (see recvSmall)
						drainRaw(raw)
					}
					return x.Stats().ProtocolErrors >= 1
				})
				assert.GreaterOrEqual(t, sink.count(zmqkit.ErrConnectionDropped), 1, "ErrConnectionDropped reported: %v", sink.all())
				ok := false
				for time.Now().Before(deadline) {
					if recvSmall([]byte("after")) {
						ok = true
						break
					}
				}
				assert.True(t, ok, "no message arrived after the connection was dropped and made again (stats %+v)", x.Stats())
			})
		}
	}
}
