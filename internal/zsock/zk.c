// See zk.h.
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "zk.h"
#include "_cgo_export.h"

int zk_eintr_at;

// zk_inject reports whether the frame about to be received or sent must
// fail with EINTR (see zk.h).
static int zk_inject(void) {
	return zk_eintr_at > 0 && --zk_eintr_at == 0;
}

// zk_msg_recv receives one frame without waiting, retrying when a signal
// interrupts libzmq: a message whose first frame was taken must be taken
// whole, or the next receive would start in its middle.
static int zk_msg_recv(zmq_msg_t *m, void *s) {
	for (;;) {
		int n;
		if (zk_inject()) {
			errno = EINTR;
			n = -1;
		} else {
			n = zmq_msg_recv(m, s, ZMQ_DONTWAIT);
		}
		if (n >= 0 || zmq_errno() != EINTR) return n;
	}
}

// zk_msg_send sends one frame without waiting, retrying signals (see
// zk_msg_recv). On success libzmq owns m's content; on failure m is left
// as it was. It returns 0, or the errno.
static int zk_msg_send(zmq_msg_t *m, void *s, int flags) {
	for (;;) {
		if (zk_inject()) {
			errno = EINTR;
		} else if (zmq_msg_send(m, s, flags | ZMQ_DONTWAIT) >= 0) {
			return 0;
		}
		int e = zmq_errno();
		if (e != EINTR) return e;
	}
}

// zk_hold receives the next frame into *held without waiting. It returns
// the frame's size, or -1 with *err set and *held released.
static int zk_hold(void *s, zmq_msg_t *held, int *err) {
	zmq_msg_init(held);
	int n = zk_msg_recv(held, s);
	if (n < 0) {
		*err = zmq_errno();
		zmq_msg_close(held);
	}
	return n;
}

// The send buffer pool. zmq_send copies a frame into memory it mallocs,
// which libzmq frees once the frame is written out, often on another
// thread. For large frames glibc hands that memory back to the kernel
// when a thread's heap shrinks (trim), and the next frame's copy
// page-faults it all in again: with 1 MiB frames over tcp, most of the
// sender's time went to those faults. Frames of ZK_POOL_MIN bytes or more
// are copied into buffers kept here instead, in size classes a quarter of
// a power of two apart, which libzmq gives back through zk_pool_put when
// it is done with them. At most ZK_POOL_KEEP bytes are kept, process-wide;
// the rest go back to free().
enum {
	ZK_POOL_MIN_SHIFT = 16,          // 64 KiB
	ZK_POOL_MAX_SHIFT = 26,          // 64 MiB: larger frames are not pooled
	ZK_POOL_CLASSES = 4 * (ZK_POOL_MAX_SHIFT - ZK_POOL_MIN_SHIFT),
};
#define ZK_POOL_MIN ((size_t)1 << ZK_POOL_MIN_SHIFT)
#define ZK_POOL_KEEP ((size_t)16 << 20)

typedef struct zk_pooled { struct zk_pooled *next; } zk_pooled;

static pthread_mutex_t zk_pool_mu = PTHREAD_MUTEX_INITIALIZER;
static zk_pooled *zk_pool_free[ZK_POOL_CLASSES];
static size_t zk_pool_kept;
static long zk_pool_out; // buffers handed out and not yet given back

static size_t zk_class_size(int c) {
	size_t base = (size_t)1 << (ZK_POOL_MIN_SHIFT + c / 4);
	return base + base / 4 * (c % 4);
}

// zk_class_of is the smallest class that holds n bytes, or -1.
static int zk_class_of(size_t n) {
	for (int c = 0; c < ZK_POOL_CLASSES; c++)
		if (zk_class_size(c) >= n) return c;
	return -1;
}

static void zk_pool_put(void *data, void *hint) {
	int c = (int)(intptr_t)hint;
	size_t size = zk_class_size(c);
	pthread_mutex_lock(&zk_pool_mu);
	zk_pool_out--;
	if (zk_pool_kept + size <= ZK_POOL_KEEP) {
		zk_pooled *p = data;
		p->next = zk_pool_free[c];
		zk_pool_free[c] = p;
		zk_pool_kept += size;
		data = NULL;
	}
	pthread_mutex_unlock(&zk_pool_mu);
	free(data);
}

static void *zk_pool_get(int c) {
	pthread_mutex_lock(&zk_pool_mu);
	zk_pooled *p = zk_pool_free[c];
	if (p != NULL) {
		zk_pool_free[c] = p->next;
		zk_pool_kept -= zk_class_size(c);
	}
	zk_pool_out++;
	pthread_mutex_unlock(&zk_pool_mu);
	if (p != NULL) return p;
	void *data = malloc(zk_class_size(c));
	if (data == NULL) {
		pthread_mutex_lock(&zk_pool_mu);
		zk_pool_out--;
		pthread_mutex_unlock(&zk_pool_mu);
	}
	return data;
}

zk_pool_counts zk_pool_stats(void) {
	pthread_mutex_lock(&zk_pool_mu);
	zk_pool_counts r = {zk_pool_kept, zk_pool_out, ZK_POOL_MIN, ZK_POOL_KEEP};
	pthread_mutex_unlock(&zk_pool_mu);
	return r;
}

// zk_msg_init_size is zmq_msg_init_size, with a large frame's memory from
// the pool.
static int zk_msg_init_size(zmq_msg_t *m, size_t n) {
	int c = n >= ZK_POOL_MIN ? zk_class_of(n) : -1;
	if (c < 0) return zmq_msg_init_size(m, n);
	void *data = zk_pool_get(c);
	if (data == NULL) {
		errno = ENOMEM;
		return -1;
	}
	if (zmq_msg_init_data(m, data, n, zk_pool_put, (void *)(intptr_t)c) == -1) {
		int e = zmq_errno();
		zk_pool_put(data, (void *)(intptr_t)c);
		errno = e;
		return -1;
	}
	return 0;
}

// zk_send_once is one zmq_send, of a large frame through the pool.
static int zk_send_once(void *s, const void *buf, size_t n, int flags) {
	if (n < ZK_POOL_MIN) return zmq_send(s, buf, n, flags);
	zmq_msg_t m;
	if (zk_msg_init_size(&m, n) == -1) return -1;
	memcpy(zmq_msg_data(&m), buf, n);
	int rc = zmq_msg_send(&m, s, flags);
	if (rc == -1) {
		int e = zmq_errno();
		zmq_msg_close(&m); // gives the memory back
		errno = e;
	}
	return rc;
}

// zk_send sends one frame without waiting, retrying when a signal
// interrupts libzmq, for the same reason. It returns 0, or the errno.
int zk_send(void *s, const void *buf, size_t n, int flags) {
	for (;;) {
		int rc;
		if (zk_inject()) {
			errno = EINTR;
			rc = -1;
		} else {
			rc = zk_send_once(s, buf, n, flags | ZMQ_DONTWAIT);
		}
		if (rc >= 0) return 0;
		if (zmq_errno() != EINTR) return zmq_errno();
	}
}

// Frames sent without a copy. Go pins the buffer and passes a handle;
// libzmq reads the buffer in place (the tcp engine writes it to the kernel
// straight from there, inproc hands it to the receiver) and calls
// zk_ref_free once no message refers to it any more, on whatever thread
// drops the last reference: the I/O thread, the receiver's, or the
// sender's when the frame is never sent.
static void zk_ref_free(void *data, void *hint) {
	(void)data;
	zkReleased((uintptr_t)hint);
}

int zk_ref_init(zmq_msg_t *m, void *buf, size_t n, uintptr_t h) {
	if (zmq_msg_init_data(m, buf, n, zk_ref_free, (void *)h) == -1) return zmq_errno();
	return 0;
}

int zk_ref_send(void *s, zmq_msg_t *m, int flags) { return zk_msg_send(m, s, flags); }

// zk_place copies the held frame, of n bytes, into buf and releases it if
// it fits in room bytes, and reports whether it did; else it stays held.
static int zk_place(zmq_msg_t *held, char *buf, size_t room, int n) {
	if ((size_t)n > room) return 0;
	if (n > 0) memcpy(buf, zmq_msg_data(held), n);
	zmq_msg_close(held);
	return 1;
}

// zk_recv receives one frame without waiting. When the frame fits in buf
// (cap bytes) it is copied there and released, so the common case is one
// cgo call; otherwise it stays in *held for zk_take. It returns the frame
// size, or n = -1 and the errno; more tells whether frames follow. The
// result is returned by value: out-parameters would make Go allocate.
zk_result zk_recv(void *s, zmq_msg_t *held, void *buf, size_t cap) {
	zk_result r = {0, 0, 0};
	r.n = zk_hold(s, held, &r.err);
	if (r.n < 0) return r;
	r.more = zmq_msg_more(held);
	zk_place(held, buf, cap, r.n);
	return r;
}

// zk_take copies the held frame into buf and releases it.
void zk_take(zmq_msg_t *held, void *buf, size_t n) {
	if (n > 0) memcpy(buf, zmq_msg_data(held), n);
	zmq_msg_close(held);
}

// zk_recvm receives one whole message without waiting, copying its frames
// back to back into buf (cap bytes) and their sizes into sizes (up to maxf
// frames): one cgo call for the whole message. A frame that does not fit
// stays in *held (held = 1, n bytes, more) for the caller to take with
// zk_take, and so do the frames after it. err is the errno of a failed
// receive (frames = 0 for a message that was not there).
zk_mresult zk_recvm(void *s, zmq_msg_t *held, char *buf, size_t cap, int *sizes, int maxf) {
	zk_mresult r = {0, 0, 0, 0, 0};
	size_t off = 0;
	for (;;) {
		int n = zk_hold(s, held, &r.err);
		if (n < 0) return r;
		int more = zmq_msg_more(held);
		if (r.frames == maxf || !zk_place(held, buf + off, cap - off, n)) {
			r.held = 1;
			r.n = n;
			r.more = more;
			return r;
		}
		off += n;
		sizes[r.frames++] = n;
		if (!more) return r;
	}
}


// zk_sendm sends n frames (sizes[i] bytes each, back to back in buf) as one
// message without waiting: one cgo call. sent is how many frames went; a
// message whose first frame went is complete unless err says otherwise.
//
// With lb set (a DEALER, PUSH or REQ socket), EAGAIN after the first frame
// means the pipe died mid-message: libzmq rolled the frames back and drops
// the rest of this message when it comes. zk_sendm sends the rest, to be
// dropped, and reports nothing sent, so that the message can be sent again
// whole (sent again at once, its frames would be dropped instead).
zk_sresult zk_sendm(void *s, const char *buf, const int *sizes, int n, int lb) {
	zk_sresult r = {0, 0};
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		r.err = zk_send(s, buf + off, sizes[i], i < n - 1 ? ZMQ_SNDMORE : 0);
		if (r.err) {
			if (lb && r.err == EAGAIN && i > 0) {
				for (int j = i; j < n && i < n - 1; j++) {
					zk_send(s, buf + off, sizes[j], j < n - 1 ? ZMQ_SNDMORE : 0);
					off += sizes[j];
				}
				r.sent = 0;
			}
			return r;
		}
		off += sizes[i];
		r.sent++;
	}
	return r;
}

// zk_recvb receives up to max messages without waiting, copying each back
// to back into buf (cap bytes): sizes[i] is message i's size, frames[i] its
// frames. A message of several frames is received whole: its first frame
// is copied, the rest dropped (the caller refuses it whole). The first
// frame that does not fit stays in *held (held = 1, hn bytes, hmore) for
// zk_take, and ends the batch. err is the errno that ended the batch:
// EAGAIN once no message was left.
zk_bresult zk_recvb(void *s, zmq_msg_t *held, char *buf, size_t cap, int *sizes, int *frames, int max) {
	zk_bresult r = {0, 0, 0, 0, 0};
	size_t off = 0;
	while (r.n < max) {
		int n = zk_hold(s, held, &r.err);
		if (n < 0) return r;
		int more = zmq_msg_more(held);
		if (!zk_place(held, buf + off, cap - off, n)) {
			r.held = 1;
			r.hn = n;
			r.hmore = more;
			return r;
		}
		off += n;
		sizes[r.n] = n;
		frames[r.n] = 1;
		// The rest of a message is there once its first frame is.
		while (more) {
			if (zk_hold(s, held, &r.err) < 0) { // a terminated context
				r.n++;
				return r;
			}
			more = zmq_msg_more(held);
			zmq_msg_close(held);
			frames[r.n]++;
		}
		r.n++;
	}
	return r;
}

// zk_sendb sends n single-frame messages (sizes[i] bytes each, back to back
// in buf) without waiting, in order, until one cannot go: sent is how many
// went, err the errno that stopped the rest (EAGAIN: no room).
zk_sresult zk_sendb(void *s, const char *buf, const int *sizes, int n) {
	zk_sresult r = {0, 0};
	size_t off = 0;
	for (int i = 0; i < n; i++) {
		r.err = zk_send(s, buf + off, sizes[i], 0);
		if (r.err) return r;
		off += sizes[i];
		r.sent++;
	}
	return r;
}

// zk_send2 sends a and b, back to back, as one frame without waiting,
// building it straight into libzmq's message: one cgo call and no Go
// buffer for, say, a header and a body. It returns 0, or the errno (a
// signal is retried).
int zk_send2(void *s, const void *a, size_t alen, const void *b, size_t blen) {
	zmq_msg_t m;
	if (zk_msg_init_size(&m, alen + blen) != 0) return zmq_errno();
	char *p = (char *)zmq_msg_data(&m);
	if (alen) memcpy(p, a, alen);
	if (blen) memcpy(p + alen, b, blen);
	int e = zk_msg_send(&m, s, 0);
	if (e != 0) zmq_msg_close(&m);
	return e;
}

// zk_poll blocks until zfd (the socket's ZMQ_FD) or wfd (the read end of
// the socket's wake pipe) is readable, or timeout ms (-1: none) have
// passed, then drains the wake pipe. It returns 0, or -errno when poll
// fails for a reason other than a signal.
int zk_poll(int zfd, int wfd, int timeout) {
	struct pollfd p[2] = {{zfd, POLLIN, 0}, {wfd, POLLIN, 0}};
	for (;;) {
		if (poll(p, 2, timeout) >= 0) break;
		if (errno != EINTR) return -errno;
	}
	if (p[1].revents) {
		char buf[64];
		while (read(wfd, buf, sizeof buf) > 0) {}
	}
	return 0;
}

// zk_events returns the socket's ZMQ_EVENTS, or -errno: one cgo call and
// no Go allocation (pebbe's getsockopt allocates its out-parameters).
int zk_events(void *s) {
	int ev = 0;
	size_t size = sizeof ev;
	for (;;) {
		if (zmq_getsockopt(s, ZMQ_EVENTS, &ev, &size) == 0) return ev;
		if (zmq_errno() != EINTR) return -zmq_errno();
	}
}

// zk_held_release closes the frames of h's message.
static void zk_held_release(zk_held *h) {
	for (int i = 0; i < h->n; i++) zmq_msg_close(&h->f[i]);
	h->n = 0;
}

// zk_held_free releases h's message and its frame array.
void zk_held_free(zk_held *h) {
	zk_held_release(h);
	free(h->f);
	h->f = NULL;
	h->cap = 0;
}

// zk_take_msg receives one whole message from src into h, without
// waiting. It returns 0, or the errno (EAGAIN: none there; h->n is 0).
static int zk_take_msg(void *src, zk_held *h) {
	for (;;) {
		if (h->n == h->cap) {
			int cap = h->cap ? 2 * h->cap : 4;
			zmq_msg_t *f = realloc(h->f, cap * sizeof *f);
			if (!f) {
				zk_held_release(h);
				return ENOMEM;
			}
			h->f = f;
			h->cap = cap;
		}
		zmq_msg_t *m = &h->f[h->n];
		zmq_msg_init(m);
		if (zk_msg_recv(m, src) < 0) {
			int e = zmq_errno();
			zmq_msg_close(m);
			// The rest of a message is there once its first frame is,
			// and signals are retried: only a terminating context fails
			// mid-message.
			zk_held_release(h);
			return e;
		}
		h->n++;
		if (!zmq_msg_more(m)) return 0;
	}
}

// zk_give_msg sends h's message to dst whole, without waiting. It returns
// 0 (h is empty), or the errno with h's message still held when none of
// it went (EAGAIN: dst cannot take it now) or released when part of it
// went. A single frame goes as it is (zero copy); the frames of a longer
// one go as copies (libzmq shares their content), so that the message can
// be sent again whole when lb is set (a DEALER, PUSH or REQ) and the pipe
// died mid-message (see zk_sendm).
static int zk_give_msg(void *dst, zk_held *h, int lb) {
	if (h->n == 1) {
		int e = zk_msg_send(&h->f[0], dst, 0);
		if (e == 0) {
			zmq_msg_close(&h->f[0]); // empty now
			h->n = 0;
		}
		return e;
	}
	for (int i = 0; i < h->n; i++) {
		zmq_msg_t c;
		zmq_msg_init(&c);
		zmq_msg_copy(&c, &h->f[i]);
		int e = zk_msg_send(&c, dst, i < h->n - 1 ? ZMQ_SNDMORE : 0);
		if (e == 0) continue;
		zmq_msg_close(&c);
		if (i == 0) return e;
		if (lb && e == EAGAIN) {
			// libzmq drops the rest of this message when it comes
			// (from frame i on, unless frame i was the last).
			for (int j = i; j < h->n && i < h->n - 1; j++) {
				zmq_msg_init(&c);
				zmq_msg_copy(&c, &h->f[j]);
				if (zk_msg_send(&c, dst, j < h->n - 1 ? ZMQ_SNDMORE : 0) != 0) zmq_msg_close(&c);
			}
			return e;
		}
		zk_held_release(h);
		return e;
	}
	zk_held_release(h);
	return 0;
}

// zk_move moves whole messages from src to dst without waiting and without
// copying them, as zmq_proxy does: one cgo call for up to max messages. A
// message that dst cannot take now stays in h for the next call, which
// sends it before taking another. taken counts the messages received from
// src, sent those given to dst, dropped those released because dst failed
// (other than EAGAIN); err is the errno that ended the call (EAGAIN: src
// had nothing, side 0, or dst could take nothing, side 1), or 0 when max
// messages were sent.
zk_moved zk_move(void *src, void *dst, zk_held *h, int max, int lb) {
	zk_moved r = {0, 0, 0, 0, 0};
	for (;;) {
		if (h->n == 0) {
			if (r.sent >= max) return r;
			r.err = zk_take_msg(src, h);
			if (r.err) {
				r.side = 0;
				return r;
			}
			r.taken++;
		}
		r.err = zk_give_msg(dst, h, lb);
		if (r.err) {
			r.side = 1;
			if (h->n == 0) r.dropped++;
			return r;
		}
		r.sent++;
	}
}
