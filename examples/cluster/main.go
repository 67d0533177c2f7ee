// Command cluster runs a small zmqkit system as separate processes on one
// machine, the way it would run on several: a broker process with a
// forwarder (publishers → subscribers) and a queue (clients → servers),
// two publishers, two subscribers, two servers and two clients. Nobody
// knows anybody but the broker's four addresses: put the processes on
// other machines and only the endpoints change.
//
// Run without flags, it starts every process itself (as copies of its own
// binary, each with a -role), waits for the subscribers and clients to
// finish their work, stops the rest, and exits. With -role it is one of
// the processes; for example, on three machines:
//
//	cluster -role broker                     # prints its four endpoints
//	cluster -role server -queue-back tcp://broker:5601
//	cluster -role client -queue-front tcp://broker:5600
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/zmqkit/zmqkit"
)

// Each subscriber receives this many updates, each client makes this many
// requests, then they exit.
const (
	updates  = 20
	requests = 20
)

func main() {
	role := flag.String("role", "", "broker, publisher, subscriber, server or client; none starts them all")
	fwdFront := flag.String("forwarder-front", "", "where publishers connect")
	fwdBack := flag.String("forwarder-back", "", "where subscribers connect")
	qFront := flag.String("queue-front", "", "where clients connect")
	qBack := flag.String("queue-back", "", "where servers connect")
	name := flag.String("name", "", "this process's name, in its output")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix(fmt.Sprintf("%-12s ", *name+":"))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch *role {
	case "":
		err = orchestrate(ctx)
	case "broker":
		err = broker(ctx)
	case "publisher":
		err = publisher(ctx, *fwdFront, *name)
	case "subscriber":
		err = subscriber(ctx, *fwdBack)
	case "server":
		err = server(ctx, *qBack, *name)
	case "client":
		err = client(ctx, *qFront)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil && !errors.Is(err, context.Canceled) && !errors.Is(err, zmqkit.ErrClosed) {
		log.Fatal(err)
	}
}

// broker runs a forwarder and a queue, each binding two ephemeral tcp
// ports on the loopback, and prints them for the others.
func broker(ctx context.Context) error {
	fwd, err := zmqkit.NewForwarder("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
	if err != nil {
		return err
	}
	defer closeOrLog(fwd)
	q, err := zmqkit.NewQueue("tcp://127.0.0.1:*", "tcp://127.0.0.1:*")
	if err != nil {
		return err
	}
	defer closeOrLog(q)
	// The orchestrator reads these two lines.
	fmt.Println("forwarder", fwd.Front()[0], fwd.Back()[0])
	fmt.Println("queue", q.Front()[0], q.Back()[0])
	errc := make(chan error, 2)
	go func() { errc <- fwd.Run(ctx) }()
	go func() { errc <- q.Run(ctx) }()
	err = errors.Join(<-errc, <-errc)
	f, b := fwd.Stats(), q.Stats()
	log.Printf("forwarded %d updates, queued %d requests and %d replies", f.FrontToBack.Sent, b.FrontToBack.Sent, b.BackToFront.Sent)
	return err
}

// publisher publishes a numbered update every 10 ms, as JSON, until told
// to stop.
func publisher(ctx context.Context, front, name string) error {
	pub, err := zmqkit.NewPublisher(">" + front) // a Publisher binds by default
	if err != nil {
		return err
	}
	defer closeOrLog(pub)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			log.Printf("published %d updates", pub.Stats().Sent)
			return ctx.Err()
		case <-tick.C:
		}
		if err := pub.Publish(ctx, map[string]any{"from": name, "n": n}); err != nil {
			return err
		}
	}
}

// subscriber takes updates from every publisher, through the forwarder.
func subscriber(ctx context.Context, back string) error {
	sub, err := zmqkit.NewSubscriber(back, zmqkit.WithMsgIDs(zmqkit.DefaultMsgID))
	if err != nil {
		return err
	}
	defer closeOrLog(sub)
	from := map[string]int{}
	for i := 0; i < updates; i++ {
		m, err := sub.Receive(ctx)
		if err != nil {
			return err
		}
		var u struct{ From string }
		if err := m.JSON(&u); err != nil {
			return err
		}
		from[u.From]++
	}
	log.Printf("received %d updates from %d publishers", updates, len(from))
	return nil
}

// server answers requests that the queue deals it, as one of its workers.
func server(ctx context.Context, back, name string) error {
	srv, err := zmqkit.NewRRServer(">"+back, func(ctx context.Context, req []byte) ([]byte, error) {
		return []byte(strings.ToUpper(string(req)) + " (from " + name + ")"), nil
	}, zmqkit.WithConcurrency(4))
	if err != nil {
		return err
	}
	defer closeOrLog(srv)
	err = srv.Run(ctx)
	log.Printf("answered %d requests", srv.Stats().Sent)
	return err
}

// client sends requests through the queue; any server may answer.
func client(ctx context.Context, front string) error {
	cli, err := zmqkit.NewRRClient(front, zmqkit.WithRetries(3, 2*time.Second))
	if err != nil {
		return err
	}
	defer closeOrLog(cli)
	by := map[string]int{}
	for i := 0; i < requests; i++ {
		reply, err := cli.Request(ctx, []byte(fmt.Sprintf("request %d", i)))
		if err != nil {
			return err
		}
		_, server, _ := strings.Cut(string(reply), "(from ")
		by[strings.TrimSuffix(server, ")")]++
	}
	log.Printf("%d replies, from %d servers", requests, len(by))
	return nil
}

// orchestrate starts every process, waits for the subscribers and clients
// to finish, then stops the others.
func orchestrate(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	start := func(name string, args ...string) (*exec.Cmd, error) {
		cmd := exec.Command(self, append([]string{"-name", name}, args...)...)
		cmd.Stderr = os.Stderr
		return cmd, cmd.Start()
	}

	// The broker first: everyone needs its endpoints.
	b := exec.Command(self, "-role", "broker", "-name", "broker")
	b.Stderr = os.Stderr
	out, err := b.StdoutPipe()
	if err != nil {
		return err
	}
	if err := b.Start(); err != nil {
		return err
	}
	eps := map[string][2]string{}
	lines := bufio.NewScanner(out)
	for len(eps) < 2 && lines.Scan() {
		var kind, front, back string
		if _, err := fmt.Sscan(lines.Text(), &kind, &front, &back); err == nil {
			eps[kind] = [2]string{front, back}
		}
	}
	if len(eps) < 2 {
		_ = b.Process.Kill()
		return errors.Join(errors.New("the broker did not say its endpoints"), b.Wait())
	}
	fmt.Printf("broker: forwarder %s → %s, queue %s → %s\n", eps["forwarder"][0], eps["forwarder"][1], eps["queue"][0], eps["queue"][1])

	var services, workers []*exec.Cmd
	for i := 1; i <= 2; i++ {
		for _, s := range []struct{ role, flag, ep string }{
			{"publisher", "-forwarder-front", eps["forwarder"][0]},
			{"server", "-queue-back", eps["queue"][1]},
		} {
			cmd, err := start(fmt.Sprintf("%s-%d", s.role, i), "-role", s.role, s.flag, s.ep)
			if err != nil {
				return err
			}
			services = append(services, cmd)
		}
		for _, w := range []struct{ role, flag, ep string }{
			{"subscriber", "-forwarder-back", eps["forwarder"][1]},
			{"client", "-queue-front", eps["queue"][0]},
		} {
			cmd, err := start(fmt.Sprintf("%s-%d", w.role, i), "-role", w.role, w.flag, w.ep)
			if err != nil {
				return err
			}
			workers = append(workers, cmd)
		}
	}

	// The subscribers and clients exit when done; stop the rest after
	// them, or on Ctrl-C.
	var failed error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := w.Wait(); err != nil {
				mu.Lock()
				failed = errors.Join(failed, fmt.Errorf("%s: %w", w.Args[2], err))
				mu.Unlock()
			}
		}()
	}
	finished := make(chan struct{})
	go func() { wg.Wait(); close(finished) }()
	select {
	case <-finished:
	case <-ctx.Done():
		for _, w := range workers {
			_ = w.Process.Signal(os.Interrupt)
		}
		<-finished
	}
	for _, s := range append(services, b) {
		_ = s.Process.Signal(os.Interrupt)
	}
	for _, s := range append(services, b) {
		if err := s.Wait(); err != nil {
			failed = errors.Join(failed, fmt.Errorf("%s: %w", s.Args[2], err))
		}
	}
	if failed == nil {
		fmt.Println("cluster: done")
	}
	return failed
}

func closeOrLog(c interface{ Close() error }) {
	if err := c.Close(); err != nil {
		log.Print(err)
	}
}
