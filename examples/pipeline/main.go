// Command pipeline is the ZeroMQ guide's divide-and-conquer pipeline
// (taskvent, taskwork, tasksink) in one process: a ventilator pushes tasks
// to four workers, which push their results to a sink. It exits by itself
// once the sink has every result, or on Ctrl-C.
package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"math/rand/v2"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"time"

	"github.com/zmqkit/zmqkit"
)

const (
	workers = 4
	tasks   = 100
)

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

	// The ventilator binds (a PPPusher's default side) and deals tasks out
	// round-robin; the sink binds too ("@": a PPPuller connects by default)
	// so that every worker can push into it: fan-out, then fan-in.
	vent, err := zmqkit.NewPPPusher("tcp://127.0.0.1:*", zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	sink, err := zmqkit.NewPPPuller("@tcp://127.0.0.1:*", zmqkit.WithZMQContext(zctx))
	if err != nil {
		return err
	}
	fmt.Println("ventilator", vent.Endpoints()[0], "sink", sink.Endpoints()[0])

	runCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel: every worker's Run has returned
	defer cancel()
	for w := 0; w < workers; w++ {
		out, err := zmqkit.NewPPPusher(">"+sink.Endpoints()[0], zmqkit.WithZMQContext(zctx))
		if err != nil {
			return err
		}
		var announced bool // touched only by this worker's handler goroutine
		in, err := zmqkit.NewPPPuller(vent.Endpoints()[0], zmqkit.WithZMQContext(zctx))
		if err != nil {
			return err
		}
		work := func(ctx context.Context, task []byte) error {
			if string(task) == "probe" {
				if announced {
					return nil
				}
				announced = true
				return out.Push(ctx, []byte("ready"))
			}
			ms, err := strconv.Atoi(string(task))
			if err != nil {
				return err
			}
			time.Sleep(time.Duration(ms) * time.Millisecond) // the "work"
			return out.Push(ctx, []byte(strconv.Itoa(w)))
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := in.Run(runCtx, work); err != nil && !errors.Is(err, context.Canceled) {
				log.Print("worker: ", err)
			}
		}()
	}

	// Tasks dealt out before a worker has connected would all go to the
	// workers already there, so probe until every worker has said ready.
	for ready := 0; ready < workers; {
		if err := vent.Push(ctx, []byte("probe")); err != nil {
			return err
		}
		pctx, pcancel := context.WithTimeout(ctx, 10*time.Millisecond)
		msg, err := sink.Receive(pctx)
		pcancel()
		switch {
		case err == nil && string(msg) == "ready":
			ready++
		case err != nil && !errors.Is(err, context.DeadlineExceeded):
			return err
		}
	}

	start := time.Now()
	expected := 0
	for i := 0; i < tasks; i++ {
		ms := rand.IntN(20) + 1
		expected += ms
		if err := vent.Push(ctx, []byte(strconv.Itoa(ms))); err != nil {
			return err
		}
	}
	fmt.Printf("ventilator: %d tasks, %d ms of work in all\n", tasks, expected)

	perWorker := make([]int, workers)
	for i := 0; i < tasks; {
		msg, err := sink.Receive(ctx)
		if err != nil {
			return err
		}
		if string(msg) == "ready" { // a late answer to a probe
			continue
		}
		w, err := strconv.Atoi(string(msg))
		if err != nil {
			return err
		}
		perWorker[w]++
		i++
	}
	fmt.Printf("sink: %d results in %v (about %v with one worker)\n",
		tasks, time.Since(start).Round(time.Millisecond), time.Duration(expected)*time.Millisecond)
	fmt.Println("tasks per worker:", perWorker)
	return nil
}
