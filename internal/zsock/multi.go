package zsock

/*
#include <zmq.h>
#include <string.h>

typedef struct { int frames; int err; int held; int n; int more; } zk_mresult;

// zk_recvm receives one whole message without waiting, copying its frames
// back to back into buf (cap bytes) and their sizes into sizes (up to maxf
// frames): one cgo call for the whole message. A frame that does not fit
// stays in *held (held = 1, n bytes, more) for the caller to take with
// zk_take, and so do the frames after it. err is the errno of a failed
// receive (frames = 0 for a message that was not there).
static zk_mresult zk_recvm(void *s, zmq_msg_t *held, char *buf, size_t cap, int *sizes, int maxf) {
	zk_mresult r = {0, 0, 0, 0, 0};
	size_t off = 0;
	for (;;) {
		zmq_msg_init(held);
		int n = zmq_msg_recv(held, s, ZMQ_DONTWAIT);
		if (n < 0) {
			r.err = zmq_errno();
			zmq_msg_close(held);
			return r;
		}
		int more = zmq_msg_more(held);
		if (r.frames == maxf || off + (size_t)n > cap) {
			r.held = 1;
			r.n = n;
			r.more = more;
			return r;
		}
		if (n > 0) memcpy(buf + off, zmq_msg_data(held), n);
		zmq_msg_close(held);
		off += n;
		sizes[r.frames++] = n;
		if (!more) return r;
	}
}

typedef struct { int sent; int err; } zk_sresult;

// zk_sendm sends n frames (sizes[i] bytes each, back to back in buf) as one
// message without waiting: one cgo call. sent is how many frames went; a
// message whose first frame went is complete unless err says otherwise.
static zk_sresult zk_sendm(void *s, const char *buf, const int *sizes, int n) {
	zk_sresult r = {0, 0};
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		if (zmq_send(s, buf + off, sizes[i], ZMQ_DONTWAIT | (i < n - 1 ? ZMQ_SNDMORE : 0)) < 0) {
			r.err = zmq_errno();
			return r;
		}
		off += sizes[i];
		r.sent++;
	}
	return r;
}
*/
import "C"

import (
	"fmt"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// Messages up to scratchSize bytes and maxFrames frames (a request with its
// envelope, say) are sent and received with one cgo call, through the
// socket's scratch buffer; larger ones take a call per frame.
const (
	scratchSize = 4096
	maxFrames   = 16
)

// scratch is the per-socket buffer of the one-call paths, made on first
// use. Guarded by the Socket's mu.
type scratch struct {
	buf   []byte
	sizes []C.int
}

func (sc *scratch) get() ([]byte, []C.int) {
	if sc.buf == nil {
		sc.buf = make([]byte, scratchSize)
		sc.sizes = make([]C.int, maxFrames)
	}
	return sc.buf, sc.sizes
}

// recvMessage receives one whole message without waiting; the caller holds
// mu and r.raw is set.
func (r *receiver) recvMessage(sc *scratch, z *zmq.Socket) ([][]byte, error) {
	buf, sizes := sc.get()
	var res C.zk_mresult
	for {
		res = C.zk_recvm(r.raw, r.held, (*C.char)(unsafe.Pointer(&buf[0])), C.size_t(len(buf)), &sizes[0], C.int(len(sizes)))
		if res.err == 0 || res.frames > 0 || syscall.Errno(res.err) != syscall.EINTR {
			break
		}
	}
	n := int(res.frames)
	switch {
	case res.err != 0 && n == 0:
		return nil, zmq.Errno(res.err)
	case res.err != 0: // cannot happen: the rest of a message is there once its first frame is
		return nil, fmt.Errorf("zmqkit: receive frame %d: %w", n+1, zmq.Errno(res.err))
	}
	total := 0
	for _, sz := range sizes[:n] {
		total += int(sz)
	}
	// One allocation holds every copied frame; each frame's capacity ends
	// where it does, so appending to one never touches the next.
	all := make([]byte, total)
	copy(all, buf[:total])
	out := make([][]byte, n, n+1)
	off := 0
	for i, sz := range sizes[:n] {
		out[i] = all[off : off+int(sz) : off+int(sz)]
		off += int(sz)
	}
	if res.held == 0 {
		return out, nil
	}
	b := r.take(int(res.n))
	out = append(out, b)
	// The rest of a message is there once its first frame is.
	for more := res.more != 0; more; {
		var err error
		if b, more, err = r.recvFrame(z); err != nil {
			return nil, err
		}
		out = append(out, b)
	}
	return out, nil
}

// sendMessage sends parts as one message without waiting when it fits the
// scratch buffer; ok is false when it does not, and nothing was sent. The
// caller holds mu and r.raw is set.
func (r *receiver) sendMessage(sc *scratch, parts [][]byte) (ok bool, err error) {
	if len(parts) > maxFrames {
		return false, nil
	}
	buf, sizes := sc.get()
	off := 0
	for i, p := range parts {
		if off+len(p) > len(buf) {
			return false, nil
		}
		copy(buf[off:], p)
		off += len(p)
		sizes[i] = C.int(len(p))
	}
	for {
		res := C.zk_sendm(r.raw, (*C.char)(unsafe.Pointer(&buf[0])), &sizes[0], C.int(len(parts)))
		switch {
		case res.err == 0:
			return true, nil
		case res.sent > 0:
			return true, fmt.Errorf("zmqkit: send frame %d of %d: %w", res.sent+1, len(parts), zmq.Errno(res.err))
		case syscall.Errno(res.err) != syscall.EINTR:
			return true, zmq.Errno(res.err)
		}
	}
}
