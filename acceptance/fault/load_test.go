package faultsuite

// Section 7: load. One RRClient shared by 64 goroutines against an RRServer
// at concurrency 1 and 8: 100,000 requests (FAULTSUITE_LOAD; a tenth under
// -race unless set), each with a ctx of 5 s: any request unanswered for 5 s
// fails the test.

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/zmqkit/zmqkit"
)

func loadN() int {
	if os.Getenv("FAULTSUITE_LOAD") != "" {
		return envInt("FAULTSUITE_LOAD", 100000)
	}
	if raceEnabled {
		return 10000
	}
	return 100000
}

func TestLoadSharedRRClient(t *testing.T) {
	n := loadN()
	const G = 64
	for _, tr := range []string{"tcp", "ipc", "inproc"} {
		for _, conc := range []int{1, 8} {
			t.Run(fmt.Sprintf("%s/concurrency=%d", tr, conc), func(t *testing.T) {
				leakCheck(t)
				zc := newZCtx(t)
				var sink errSink
				srv, err := zmqkit.NewRRServer(bindEP(t, tr), echo, zmqkit.WithZMQContext(zc), zmqkit.WithConcurrency(conc), sink.opt())
				require.NoError(t, err)
				stopSrv := serveBG(t, "RRServer", srv)
				cli, err := zmqkit.NewRRClient(srv.Endpoints()[0], zmqkit.WithZMQContext(zc), sink.opt())
				require.NoError(t, err)
				var next, done, failed atomic.Int64
				var maxLat atomic.Int64
				var wg sync.WaitGroup
				var firstErr sync.Once
				start := time.Now()
				for g := 0; g < G; g++ {
					wg.Add(1)
					go func() {
						defer wg.Done()
						var buf [16]byte
						for {
							i := next.Add(1)
							if i > int64(n) {
								return
							}
							binary.BigEndian.PutUint64(buf[:], uint64(i))
							req := buf[:8+i%8]
							ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
							s := time.Now()
							rep, err := cli.Request(ctx, req)
							cancel()
							if d := int64(time.Since(s)); d > maxLat.Load() {
								maxLat.Store(d)
							}
							if err != nil || !bytes.Equal(rep, req) {
								failed.Add(1)
								firstErr.Do(func() { t.Errorf("request %d: reply %x, %v", i, rep, err) })
								continue
							}
							done.Add(1)
						}
					}()
				}
				wg.Wait()
				el := time.Since(start)
				t.Logf("%d requests by %d goroutines, server concurrency %d: %v (%.0f req/s), slowest %v, failed %d; client %+v; server %+v",
					n, G, conc, el, float64(n)/el.Seconds(), time.Duration(maxLat.Load()), failed.Load(), cli.Stats(), srv.Stats())
				assert.Zero(t, failed.Load(), "requests unanswered within 5 s or wrong")
				assert.Equal(t, int64(n), done.Load())
				assert.Empty(t, sink.all(), "errors reported under load")
				closeWithin(t, "RRClient.Close", closeBound, cli.Close)
				stopSrv()
			})
		}
	}
}
