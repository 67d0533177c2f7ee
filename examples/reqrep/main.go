// Command reqrep shows request/reply: an RRServer answering with up to four
// handlers at once, and one RRClient shared by several goroutines, with a
// typed JSON call, a handler error coming back as a *RemoteError, and a
// request that gives up by its ctx without harming the next one. It exits
// by itself, or on Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"os/signal"
	"strings"
	"sync"
	"time"

	"github.com/zmqkit/zmqkit"
)

// Sum is the typed request; Total the typed reply.
type Sum struct {
	Numbers []int `json:"numbers"`
}

type Total struct {
	Total int `json:"total"`
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

func run(ctx context.Context) error {
	zctx, err := zmqkit.NewContext()
	if err != nil {
		return err
	}
	defer func() {
		if err := zctx.Close(); err != nil {
			log.Print(err)
		}
	}()

	// Two services on two endpoints: text upper-casing, and typed JSON sums.
	upper, err := zmqkit.NewRRServer("tcp://127.0.0.1:*", func(ctx context.Context, req []byte) ([]byte, error) {
		switch string(req) {
		case "":
			return nil, errors.New("empty request")
		case "slow":
			select { // outlives its caller's patience
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
		return []byte(strings.ToUpper(string(req))), nil
	}, zmqkit.WithZMQContext(zctx), zmqkit.WithConcurrency(4))
	if err != nil {
		return err
	}
	sums, err := zmqkit.NewRRServer("tcp://127.0.0.1:*", zmqkit.JSONHandler(func(ctx context.Context, s Sum) (Total, error) {
		var t Total
		for _, n := range s.Numbers {
			t.Total += n
		}
		return t, nil
	}), zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // runs after cancel: the servers' Run return once runCtx ends
	defer cancel()
	for _, srv := range []*zmqkit.RRServer{upper, sums} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := srv.Run(runCtx); err != nil && !errors.Is(err, context.Canceled) {
				log.Print(err)
			}
		}()
	}

	textClient, err := zmqkit.NewRRClient(upper.Endpoints()[0], zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	sumClient, err := zmqkit.NewRRClient(sums.Endpoints()[0], zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}

	// Three goroutines share one client; each reply is its own.
	words := []string{"hello", "concurrent", "world"}
	replies := make([]string, len(words))
	errs := make([]error, len(words))
	var callers sync.WaitGroup
	for i, w := range words {
		callers.Add(1)
		go func() {
			defer callers.Done()
			rep, err := textClient.Request(ctx, []byte(w))
			replies[i], errs[i] = string(rep), err
		}()
	}
	callers.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, w := range words {
		fmt.Printf("%s -> %s\n", w, replies[i])
	}

	total, err := zmqkit.RequestJSON[Total](ctx, sumClient, Sum{Numbers: []int{1, 2, 3, 36}})
	if err != nil {
		return err
	}
	fmt.Println("sum of 1 2 3 36 =", total.Total)

	// A handler error arrives as a typed error with the server's message.
	_, err = textClient.Request(ctx, nil)
	var remote *zmqkit.RemoteError
	if !errors.As(err, &remote) {
		return fmt.Errorf("want a remote error, got %v", err)
	}
	fmt.Println("server said:", remote.Message)

	// A request that gives up leaves the client usable; its late reply is
	// dropped, never handed to the next request.
	short, cancelShort := context.WithTimeout(ctx, 20*time.Millisecond)
	_, err = textClient.Request(short, []byte("slow"))
	cancelShort()
	if !errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("want a time-out, got %v", err)
	}
	fmt.Println("slow request:", err)
	rep, err := textClient.Request(ctx, []byte("still fine"))
	if err != nil {
		return err
	}
	fmt.Println("next request ->", string(rep))
	return nil
}
