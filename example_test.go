package zmqkit_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zmqkit/zmqkit"
)

// Publish text and JSON, receive them exactly by msgid. inproc:// needs the
// two objects on one Context; over TCP they could be in two processes.
func Example() {
	zctx, err := zmqkit.NewContext()
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := zctx.Close(); err != nil {
			log.Print(err)
		}
	}()
	ctx := context.Background()

	pub, err := zmqkit.NewPublisher("inproc://example", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := zmqkit.NewSubscriber("inproc://example", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(1000))
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.WaitForSubscribers(ctx, 1); err != nil { // no slow joiner
		log.Fatal(err)
	}

	if err := pub.Publish(ctx, "Hello World"); err != nil {
		log.Fatal(err)
	}
	if err := pub.Publish(ctx, map[string]int{"data": 42}); err != nil {
		log.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		m, err := sub.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m)
	}
	// Output:
	// 1000 text Hello World
	// 1000 json {"data":42}
}

// waitForSubscription beats the slow joiner: it publishes a probe under
// another msgid until the subscriber sees one, then unsubscribes it.
func waitForSubscription(ctx context.Context, pub *zmqkit.Publisher, sub *zmqkit.Subscriber) {
	const probe = 1
	if err := sub.Subscribe(probe); err != nil {
		log.Fatal(err)
	}
	for {
		if err := pub.PublishMessage(ctx, zmqkit.Message{ID: probe, Type: zmqkit.TypeText}); err != nil {
			log.Fatal(err)
		}
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		m, err := sub.Receive(rctx)
		cancel()
		if err == nil && m.ID == probe {
			break
		}
	}
	if err := sub.Unsubscribe(probe); err != nil {
		log.Fatal(err)
	}
	for { // drain probes already queued
		rctx, cancel := context.WithTimeout(ctx, 10*time.Millisecond)
		_, err := sub.Receive(rctx)
		cancel()
		if err != nil {
			return
		}
	}
}

// The codec on its own: frame and parse "<msgid> <msgtype> <body>" in any
// character encoding the Python side uses.
func ExampleCodec() {
	codec, err := zmqkit.NewCodec("gbk")
	if err != nil {
		log.Fatal(err)
	}
	frame, err := codec.Frame(zmqkit.Message{ID: 1000, Type: zmqkit.TypeText, Body: []byte("你好")})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("% x\n", frame)
	m, err := codec.Decode(frame)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.ID, m.Type, m.Text())

	_, err = codec.Decode([]byte("10a0 text hi"))
	fmt.Println(err)
	fmt.Println(errors.Is(err, zmqkit.ErrMalformed))
	// Output:
	// 31 30 30 30 20 74 65 78 74 20 c4 e3 ba c3
	// 1000 text 你好
	// zmqkit: malformed frame: bad msgid "10a0": not a decimal number: "10a0 text hi"
	// true
}

// NewMessage applies the Python module's rule: strings are text, anything
// else is JSON.
func ExampleNewMessage() {
	for _, v := range []any{"Hello", map[string]int{"data": 42}, []int{1, 2}} {
		m, err := zmqkit.NewMessage(1000, v)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(m)
	}
	// Output:
	// 1000 text Hello
	// 1000 json {"data":42}
	// 1000 json [1,2]
}

// Run calls a handler for each message until its ctx ends.
func ExampleSubscriber_Run() {
	zctx, err := zmqkit.NewContext()
	if err != nil {
		log.Fatal(err)
	}
	defer func() {
		if err := zctx.Close(); err != nil {
			log.Print(err)
		}
	}()
	pub, err := zmqkit.NewPublisher("inproc://run", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := zmqkit.NewSubscriber("inproc://run", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(1000))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if err := pub.WaitForSubscribers(ctx, 1); err != nil { // no slow joiner
		log.Fatal(err)
	}

	done := make(chan error, 1)
	go func() {
		done <- sub.Run(ctx, func(ctx context.Context, m zmqkit.Message) error {
			var v struct{ N int }
			if err := m.JSON(&v); err != nil {
				return err
			}
			fmt.Println("got", v.N)
			if v.N == 3 {
				cancel() // Run returns once this handler has
			}
			return nil
		})
	}()
	for n := 1; n <= 3; n++ {
		if err := pub.Publish(ctx, map[string]int{"N": n}); err != nil {
			log.Fatal(err)
		}
	}
	fmt.Println(errors.Is(<-done, context.Canceled))
	// Output:
	// got 1
	// got 2
	// got 3
	// true
}

// newContext makes a Context for an example; the caller closes it.
func newContext() *zmqkit.Context {
	zctx, err := zmqkit.NewContext()
	if err != nil {
		log.Fatal(err)
	}
	return zctx
}

// closeContext closes zctx and every object still open on it.
func closeContext(zctx *zmqkit.Context) {
	if err := zctx.Close(); err != nil {
		log.Print(err)
	}
}

// A Subscriber with WithMsgIDs receives exactly those msgids: 1000 does not
// match 10001, as the Python module's prefix filter would.
func ExampleSubscriber() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	pub, err := zmqkit.NewPublisher("inproc://ids", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := zmqkit.NewSubscriber("inproc://ids", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(1000))
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.WaitForSubscribers(ctx, 1); err != nil { // no slow joiner
		log.Fatal(err)
	}
	for _, m := range []zmqkit.Message{
		{ID: 10001, Type: zmqkit.TypeText, Body: []byte("not for us")},
		{ID: 1000, Type: zmqkit.TypeText, Body: []byte("for us")},
	} {
		if err := pub.PublishMessage(ctx, m); err != nil {
			log.Fatal(err)
		}
	}
	m, err := sub.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(m.ID, m.Text())
	// Output:
	// 1000 for us
}

// A Publisher sends any Go value: strings as text, the rest as JSON, under
// its msgid (WithMsgID).
func ExamplePublisher() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	pub, err := zmqkit.NewPublisher("inproc://weather", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgID(7))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := zmqkit.NewSubscriber("inproc://weather", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(7))
	if err != nil {
		log.Fatal(err)
	}
	if err := pub.WaitForSubscribers(ctx, 1); err != nil { // no slow joiner
		log.Fatal(err)
	}
	type reading struct {
		City  string  `json:"city"`
		TempC float64 `json:"temp_c"`
	}
	if err := pub.Publish(ctx, reading{City: "Oslo", TempC: -3.5}); err != nil {
		log.Fatal(err)
	}
	m, err := sub.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	var r reading
	if err := m.JSON(&r); err != nil {
		log.Fatal(err)
	}
	fmt.Println(m)
	fmt.Println(r.City, r.TempC)
	// Output:
	// 7 json {"city":"Oslo","temp_c":-3.5}
	// Oslo -3.5
}

// Raw frames, for ZeroMQ programs that do not speak "<msgid> <msgtype>
// <body>": the ZeroMQ Guide's pub-sub envelopes are [topic, body], and
// subscribers filter on the topic.
func ExamplePublisher_PublishFrames() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	pub, err := zmqkit.NewPublisher("inproc://envelopes", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	sub, err := zmqkit.NewSubscriber("inproc://envelopes", zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(1))
	if err != nil {
		log.Fatal(err)
	}
	if err := sub.SubscribePrefix([]byte("B")); err != nil {
		log.Fatal(err)
	}
	waitForSubscription(ctx, pub, sub)
	for _, topic := range []string{"A", "B"} {
		if err := pub.PublishFrames(ctx, []byte(topic), []byte("for "+topic)); err != nil {
			log.Fatal(err)
		}
	}
	frames, err := sub.ReceiveFrames(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%q\n", frames)
	// Output:
	// ["B" "for B"]
}

// An RRServer answers many clients at once; a handler's error reaches the
// client as a *RemoteError.
func ExampleRRServer() {
	zctx := newContext()
	defer closeContext(zctx)
	srv, err := zmqkit.NewRRServer("inproc://upper", func(ctx context.Context, req []byte) ([]byte, error) {
		if len(req) == 0 {
			return nil, errors.New("empty request")
		}
		return bytes.ToUpper(req), nil
	}, zmqkit.WithZMQContext(zctx), zmqkit.WithConcurrency(4))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()

	cli, err := zmqkit.NewRRClient("inproc://upper", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	reply, err := cli.Request(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	_, err = cli.Request(ctx, nil)
	var re *zmqkit.RemoteError
	fmt.Println(errors.As(err, &re), re.Message)

	cancel()
	fmt.Println(errors.Is(<-done, context.Canceled))
	// Output:
	// HELLO
	// true empty request
	// true
}

// An RRClient never gets stuck: a request that times out leaves it usable.
// JSONHandler and RequestJSON carry typed requests and replies as JSON.
func ExampleRRClient() {
	zctx := newContext()
	defer closeContext(zctx)
	type sum struct{ A, B int }
	srv, err := zmqkit.NewRRServer("inproc://sum", zmqkit.JSONHandler(func(ctx context.Context, s sum) (int, error) {
		if s.A < 0 {
			<-ctx.Done() // too slow for the client
			return 0, ctx.Err()
		}
		return s.A + s.B, nil
	}), zmqkit.WithZMQContext(zctx), zmqkit.WithConcurrency(2))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			log.Print(err)
		}
	}()

	cli, err := zmqkit.NewRRClient("inproc://sum", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	short, stop := context.WithTimeout(ctx, 50*time.Millisecond)
	_, err = zmqkit.RequestJSON[int](short, cli, sum{A: -1})
	stop()
	fmt.Println(errors.Is(err, context.DeadlineExceeded))
	n, err := zmqkit.RequestJSON[int](ctx, cli, sum{A: 2, B: 3})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(n)
	// Output:
	// true
	// 5
}

// A pusher deals tasks out to pullers; a puller's Run handles them.
func ExamplePPPusher() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	push, err := zmqkit.NewPPPusher("inproc://tasks", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	pull, err := zmqkit.NewPPPuller("inproc://tasks", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	for _, task := range []string{"wash", "dry", "fold"} {
		if err := push.Push(ctx, []byte(task)); err != nil { // waits for a puller
			log.Fatal(err)
		}
	}
	for i := 0; i < 3; i++ {
		task, err := pull.Receive(ctx)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(string(task))
	}
	// Output:
	// wash
	// dry
	// fold
}

// PushBatch and ReceiveBatch move many messages with one cgo call each
// way: a batch holds what had arrived, so a loop gets all it asked for in a
// few calls.
func ExamplePPPuller_ReceiveBatch() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	push, err := zmqkit.NewPPPusher("inproc://batch", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	pull, err := zmqkit.NewPPPuller("inproc://batch", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	var readings [][]byte
	for i := 0; i < 10; i++ {
		readings = append(readings, fmt.Appendf(nil, "reading %d", i))
	}
	n, err := push.PushBatch(ctx, readings) // waits for a puller
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("pushed", n)
	var got []string
	for len(got) < n {
		batch, err := pull.ReceiveBatch(ctx, 4) // up to 4 a call
		if err != nil {
			log.Fatal(err)
		}
		for _, m := range batch {
			got = append(got, string(m))
		}
	}
	fmt.Println(got[0], "...", got[n-1])
	// Output:
	// pushed 10
	// reading 0 ... reading 9
}

// PushNoCopy sends a large message without copying it; its Tracker says
// when the buffer may be filled again.
func ExamplePPPusher_PushNoCopy() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	push, err := zmqkit.NewPPPusher("inproc://frames", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	pull, err := zmqkit.NewPPPuller("inproc://frames", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	frame := make([]byte, 1<<20)
	var got []byte
	for i := range 3 {
		for j := range frame {
			frame[j] = byte(i)
		}
		tracker, err := push.PushNoCopy(ctx, frame)
		if err != nil {
			log.Fatal(err)
		}
		if got, err = pull.AppendReceive(ctx, got[:0]); err != nil {
			log.Fatal(err)
		}
		if err := tracker.Wait(ctx); err != nil { // frame is ours again
			log.Fatal(err)
		}
		fmt.Println("frame", i, "of", len(got), "bytes, all", got[0])
	}
	// Output:
	// frame 0 of 1048576 bytes, all 0
	// frame 1 of 1048576 bytes, all 1
	// frame 2 of 1048576 bytes, all 2
}

// Run calls a handler for every message, n at a time with WithConcurrency,
// until its ctx ends.
func ExamplePPPuller() {
	zctx := newContext()
	defer closeContext(zctx)
	push, err := zmqkit.NewPPPusher("inproc://jobs", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	pull, err := zmqkit.NewPPPuller("inproc://jobs", zmqkit.WithZMQContext(zctx), zmqkit.WithConcurrency(4))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var total atomic.Int64
	var handled sync.WaitGroup
	handled.Add(100)
	done := make(chan error, 1)
	go func() {
		done <- pull.Run(ctx, func(ctx context.Context, msg []byte) error {
			defer handled.Done()
			n, err := strconv.Atoi(string(msg))
			total.Add(int64(n))
			return err
		})
	}()
	for i := 1; i <= 100; i++ {
		if err := push.Push(ctx, []byte(strconv.Itoa(i))); err != nil {
			log.Fatal(err)
		}
	}
	handled.Wait()
	cancel()
	fmt.Println(total.Load(), errors.Is(<-done, context.Canceled))
	// Output:
	// 5050 true
}

// A PairServer answers its one peer; it survives that peer's restart over
// tcp and ipc.
func ExamplePairServer() {
	zctx := newContext()
	defer closeContext(zctx)
	srv, err := zmqkit.NewPairServer("inproc://pair", func(ctx context.Context, msg []byte) ([]byte, error) {
		return append([]byte("echo: "), msg...), nil
	}, zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			log.Print(err)
		}
	}()
	cli, err := zmqkit.NewPairClient("inproc://pair", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	reply, err := cli.Request(ctx, []byte("ping"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(reply))
	// Output:
	// echo: ping
}

// A pair is full duplex: either side sends whenever it likes, one goroutine
// may Send while another Receives.
func ExamplePairClient() {
	zctx := newContext()
	defer closeContext(zctx)
	ctx := context.Background()
	srv, err := zmqkit.NewPairServer("inproc://duplex", func(ctx context.Context, msg []byte) ([]byte, error) {
		return msg, nil
	}, zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	cli, err := zmqkit.NewPairClient("inproc://duplex", zmqkit.WithZMQContext(zctx))
	if err != nil {
		log.Fatal(err)
	}
	if err := srv.Send(ctx, []byte("server says hi")); err != nil { // unprompted
		log.Fatal(err)
	}
	msg, err := cli.Receive(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(msg))
	if err := cli.SendFrames(ctx, []byte("two"), []byte("frames")); err != nil {
		log.Fatal(err)
	}
	fmt.Println(cli.Stats().Sent, cli.Stats().Received)
	// Output:
	// server says hi
	// 1 1
}
