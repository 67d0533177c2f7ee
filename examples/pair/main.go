// Command pair shows a PairServer answering a PairClient over TCP, then
// restarting on the same address while the client carries on, which a bare
// libzmq PAIR does not do reliably. It exits by itself, or on Ctrl-C.
package main

import (
	"bytes"
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := run(ctx); err != nil && !errors.Is(err, context.Canceled) {
		log.Fatal(err)
	}
}

// shout answers with the message upper-cased; an empty message is an
// error, which the client receives as a *zmqkit.RemoteError.
func shout(ctx context.Context, msg []byte) ([]byte, error) {
	if len(msg) == 0 {
		return nil, errors.New("nothing to shout")
	}
	return bytes.ToUpper(msg), nil
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

	srv, stopSrv, err := startServer(ctx, zctx, "tcp://127.0.0.1:*")
	if err != nil {
		return err
	}
	addr := srv.Endpoints()[0]
	fmt.Println("server bound", addr)

	cli, err := zmqkit.NewPairClient(addr, zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	for _, m := range []string{"hello", "pair", ""} {
		reply, err := cli.Request(ctx, []byte(m))
		var remote *zmqkit.RemoteError
		switch {
		case errors.As(err, &remote):
			fmt.Printf("request %q: the server's handler failed: %s\n", m, remote.Message)
		case err != nil:
			return err
		default:
			fmt.Printf("request %q: reply %q\n", m, reply)
		}
	}

	// The server goes away and comes back on the same address.
	if err := stopSrv(); err != nil {
		return err
	}
	fmt.Println("server stopped")
	for {
		srv, stopSrv, err = startServer(ctx, zctx, addr)
		if err == nil {
			break
		}
		// The old listener may hold the port for a moment.
		if ctx.Err() != nil {
			return ctx.Err()
		}
		time.Sleep(10 * time.Millisecond)
	}
	defer func() {
		if err := stopSrv(); err != nil {
			log.Print(err)
		}
	}()
	fmt.Println("server restarted on", srv.Endpoints()[0])

	// The client noticed and reconnected by itself. A request caught in
	// the restart gets zmqkit.ErrPairReset or times out; retry it.
	for {
		rctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		reply, err := cli.Request(rctx, []byte("still there?"))
		cancel()
		if err == nil {
			fmt.Printf("after the restart: reply %q\n", reply)
			return nil
		}
		if !errors.Is(err, zmqkit.ErrPairReset) && !errors.Is(err, context.DeadlineExceeded) {
			return err
		}
		fmt.Println("retrying:", err)
	}
}

// startServer binds a PairServer and runs it until the returned stop
// function closes it.
func startServer(ctx context.Context, zctx *zmqkit.Context, addr string) (*zmqkit.PairServer, func() error, error) {
	srv, err := zmqkit.NewPairServer(addr, shout, zmqkit.WithZMQContext(zctx))
	if err != nil {
		return nil, nil, err
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := srv.Run(ctx); err != nil && !errors.Is(err, zmqkit.ErrClosed) && !errors.Is(err, context.Canceled) {
			log.Print("server: ", err)
		}
	}()
	stop := func() error {
		err := srv.Close() // Run returns ErrClosed
		wg.Wait()
		return err
	}
	return srv, stop, nil
}
