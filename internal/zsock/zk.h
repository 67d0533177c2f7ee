// The C side of zsock: each function does in one cgo call what would
// otherwise take several. None of them blocks except zk_poll.
#ifndef ZK_H
#define ZK_H

#include <stddef.h>
#include <stdint.h>
#include <zmq.h>

typedef struct { int n; int err; int more; } zk_result;
typedef struct { int frames; int err; int held; int n; int more; } zk_mresult;
typedef struct { int sent; int err; } zk_sresult;

zk_result zk_recv(void *s, zmq_msg_t *held, void *buf, size_t cap);
void zk_take(zmq_msg_t *held, void *buf, size_t n);
zk_mresult zk_recvm(void *s, zmq_msg_t *held, char *buf, size_t cap, int *sizes, int maxf);
int zk_send(void *s, const void *buf, size_t n, int flags);
// Batches: many single-frame messages in one call each way.
typedef struct { int n; int err; int held; int hn; int hmore; } zk_bresult;
zk_bresult zk_recvb(void *s, zmq_msg_t *held, char *buf, size_t cap, int *sizes, int *frames, int max);
zk_sresult zk_sendb(void *s, const char *buf, const int *sizes, int n);
zk_sresult zk_sendm(void *s, const char *buf, const int *sizes, int n, int lb);
// Frames sent without a copy (see nocopy.go): zk_ref_init makes *m refer
// to the n bytes at buf, and libzmq calls the Go function zkReleased(h)
// once it no longer reads them; zk_ref_send sends *m without waiting,
// retrying signals, and returns 0 (m is then libzmq's) or the errno (m is
// still the caller's, to send again or zmq_msg_close).
int zk_ref_init(zmq_msg_t *m, void *buf, size_t n, uintptr_t h);
int zk_ref_send(void *s, zmq_msg_t *m, int flags);
int zk_send2(void *s, const void *a, size_t alen, const void *b, size_t blen);
// The send buffer pool's bytes kept, buffers out (in libzmq's hands),
// smallest pooled frame and most bytes kept (see zk.c).
typedef struct { size_t kept; long out; size_t min; size_t keep; } zk_pool_counts;
zk_pool_counts zk_pool_stats(void);
int zk_poll(int zfd, int wfd, int timeout);
int zk_events(void *s);

// A message moved by zk_move: its frames, taken whole from the source and
// held until the destination took them all.
typedef struct { zmq_msg_t *f; int cap; int n; } zk_held;
typedef struct { int taken; int sent; int dropped; int err; int side; } zk_moved;
zk_moved zk_move(void *src, void *dst, zk_held *h, int max, int lb);
void zk_held_free(zk_held *h);

// Tests only: when set to k > 0, the k-th frame received or sent from now
// on by zk_recv, zk_recvm, zk_recvb, zk_sendm, zk_sendb or zk_ref_send
// fails once with EINTR before touching the socket, as a signal arriving in
// libzmq's poll would make it.
extern int zk_eintr_at;

#endif
