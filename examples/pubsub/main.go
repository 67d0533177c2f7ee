// Command pubsub is zmqkit's main example: one Publisher and two
// Subscribers over TCP on the loopback, exchanging text and JSON messages
// under two msgids. It exits by itself, or on Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"sync"
	"time"

	"github.com/zmqkit/zmqkit"
)

// Weather is what the publisher sends as JSON.
type Weather struct {
	City  string  `json:"city"`
	TempC float64 `json:"temp_c"`
}

const (
	newsID    = 1000 // text headlines (the default msgid, as in the Python module)
	weatherID = 2000 // JSON reports
	helloID   = 1    // the publisher's hello, until every subscriber has one
	lastCity  = "Lisbon"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	// Everything on one explicit Context, closed (with all its objects) at the end.
	zctx, err := zmqkit.NewContext()
	if err != nil {
		return err
	}
	defer func() {
		if err := zctx.Close(); err != nil {
			log.Print(err)
		}
	}()

	pub, err := zmqkit.NewPublisher("tcp://127.0.0.1:*", zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	addr := pub.Endpoints()[0]
	fmt.Println("publisher bound", addr)

	// One subscriber for everything, one for weather only (exact match:
	// 2000 never matches 20001).
	all, err := zmqkit.NewSubscriber(addr, zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	weather, err := zmqkit.NewSubscriber(addr, zmqkit.WithZMQContext(zctx), zmqkit.WithMsgIDs(weatherID, helloID))
	if err != nil {
		return err
	}

	// ready: each subscriber has heard hello; finished: each has seen the
	// last report.
	var ready, finished sync.WaitGroup
	ready.Add(2)
	finished.Add(2)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel, below: Run returns once its ctx ends
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	for name, sub := range map[string]*zmqkit.Subscriber{"all": all, "weather": weather} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var hello, last sync.Once
			err := sub.Run(runCtx, func(ctx context.Context, m zmqkit.Message) error {
				if m.ID == helloID {
					hello.Do(ready.Done)
					return nil
				}
				if m.Type == zmqkit.TypeJSON {
					var w Weather
					if err := m.JSON(&w); err != nil {
						return err
					}
					fmt.Printf("[%s] %d weather: %s %.1f°C\n", name, m.ID, w.City, w.TempC)
					if w.City == lastCity {
						last.Do(finished.Done)
					}
					return nil
				}
				fmt.Printf("[%s] %d %s: %s\n", name, m.ID, m.Type, m.Text())
				return nil
			})
			if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, zmqkit.ErrClosed) {
				log.Printf("%s: %v", name, err)
			}
		}()
	}

	// Slow joiners: a subscription takes a moment to reach the publisher,
	// and PUB drops what it sends before then. Say hello until both hear it.
	allReady := whenDone(&ready)
	for waiting := true; waiting; {
		if err := pub.PublishMessage(ctx, zmqkit.Message{ID: helloID, Type: zmqkit.TypeText, Body: []byte("hello")}); err != nil {
			return err
		}
		select {
		case <-allReady:
			waiting = false
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	fmt.Println("both subscribers are listening")

	for _, headline := range []string{"zmqkit speaks the Python module's wire format", "你好，世界"} {
		if err := pub.Publish(ctx, headline); err != nil { // msgid 1000, text
			return err
		}
	}
	for _, w := range []Weather{{"Beijing", 3.5}, {lastCity, 17}} {
		m, err := zmqkit.NewMessage(weatherID, w) // not a string: JSON
		if err != nil {
			return err
		}
		if err := pub.PublishMessage(ctx, m); err != nil {
			return err
		}
	}

	// Stop once both have seen the last report.
	select {
	case <-whenDone(&finished):
	case <-time.After(5 * time.Second):
		return errors.New("pubsub: messages did not arrive in time")
	case <-ctx.Done():
		return ctx.Err()
	}
	fmt.Printf("done: published %d messages (hellos included)\n", pub.Stats().Sent)
	return nil
}

// whenDone returns a channel closed when wg's count reaches zero.
func whenDone(wg *sync.WaitGroup) <-chan struct{} {
	ch := make(chan struct{})
	go func() { wg.Wait(); close(ch) }()
	return ch
}
