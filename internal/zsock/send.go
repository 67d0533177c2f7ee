package zsock

/*
#include <zmq.h>
#include <string.h>

// zk_send_frame sends "<id> <typ> <body>" as one frame without waiting,
// building it straight into libzmq's message: one cgo call, no Go buffer.
// It returns 0, or -errno.
static int zk_send_frame(void *s, unsigned long long id, const char *typ, size_t typlen, const void *body, size_t n) {
	char num[24];
	int k = 0;
	do { num[k++] = (char)('0' + id % 10); id /= 10; } while (id);
	zmq_msg_t m;
	if (zmq_msg_init_size(&m, (size_t)k + 1 + typlen + 1 + n) != 0) return -zmq_errno();
	char *p = (char *)zmq_msg_data(&m);
	while (k) *p++ = num[--k];
	*p++ = ' ';
	memcpy(p, typ, typlen);
	p += typlen;
	*p++ = ' ';
	if (n) memcpy(p, body, n);
	if (zmq_msg_send(&m, s, ZMQ_DONTWAIT) < 0) {
		int e = zmq_errno();
		zmq_msg_close(&m);
		return -e;
	}
	return 0;
}
*/
import "C"

import (
	"context"
	"strconv"
	"syscall"
	"unsafe"

	zmq "github.com/pebbe/zmq4"
)

// SendFrame sends the single frame "<id> <typ> <body>", waiting while the
// socket cannot take it. id must not be negative and typ not empty; the
// caller has validated both and the body.
func (s *Socket) SendFrame(ctx context.Context, id int, typ string, body []byte) error {
	return s.attempt(ctx, sending, func(z *zmq.Socket) error {
		raw := s.recv.raw
		if raw == nil { // pebbe's layout changed: build the frame in Go
			frame := strconv.AppendInt(make([]byte, 0, 24+len(typ)+len(body)), int64(id), 10)
			frame = append(append(append(append(frame, ' '), typ...), ' '), body...)
			_, err := z.SendBytes(frame, zmq.DONTWAIT)
			return err
		}
		var p unsafe.Pointer
		if len(body) > 0 {
			p = unsafe.Pointer(&body[0])
		}
		for {
			rc := C.zk_send_frame(raw, C.ulonglong(id), (*C.char)(unsafe.Pointer(unsafe.StringData(typ))), C.size_t(len(typ)), p, C.size_t(len(body)))
			if rc == 0 {
				return nil
			}
			if syscall.Errno(-rc) != syscall.EINTR {
				return zmq.Errno(-rc)
			}
		}
	})
}
