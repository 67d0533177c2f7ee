package zsock

/*
#include "zk.h"
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
