package zmqkit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
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
	waitForSubscription(ctx, pub, sub)

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
	waitForSubscription(ctx, pub, sub)

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
