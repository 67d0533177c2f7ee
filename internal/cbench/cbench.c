/*
 * cbench.c: C libzmq's own loops, the baselines zmqkit's benchmarks are
 * measured against. Every loop runs in C threads over a context of its own,
 * checks every libzmq call, and on the first failure records it, shuts the
 * context down (which makes the other thread's blocking call return ETERM),
 * joins its thread, closes its sockets (linger 0) and terminates the context.
 * cbench.go documents what each loop times.
 */
#define _GNU_SOURCE /* pthread_setname_np */
#include "cbench.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <zmq.h>

enum {
	CB_WARMUP_MS = 10000, /* how long the untimed set-up waits for the connection */
	CB_STALL_MS = 10000,  /* pubsub: no message for this long means one was lost */
	CB_PROBE_MS = 2,      /* pubsub: how long each slow-joiner probe is waited for */
	CB_MAX_SOCKS = 2,
	CB_MAX_FRAMES = 8, /* the most frames the echo thread takes in one request */
};

static const char cb_topic[] = "1000 ";
static const char cb_frame_head[] = "1000 text "; /* the timed frames' */
static const char cb_probe_head[] = "1000 probe "; /* + a sequence number */

/* cb_run is one loop's context, sockets and first failure. */
typedef struct {
	void *zctx;
	void *socks[CB_MAX_SOCKS];
	int nsocks;
	pthread_mutex_t mu; /* guards failed, err and what */
	int failed;
	int err;
	char what[CB_WHAT_LEN];
} cb_run;

static int64_t cb_now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/*
 * cb_fail records the run's first failure and shuts its context down, so
 * that a call blocked in the other thread returns ETERM (which, coming
 * second, is not recorded). It returns -1.
 */
static int cb_fail(cb_run *run, int err, const char *fmt, ...)
{
	va_list ap;
	int first;

	pthread_mutex_lock(&run->mu);
	first = !run->failed;
	if (first) {
		run->failed = 1;
		run->err = err;
		va_start(ap, fmt);
		vsnprintf(run->what, sizeof run->what, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&run->mu);
	if (run->zctx != NULL && zmq_ctx_shutdown(run->zctx) == -1 && first) {
		/* Only EFAULT (not a context) is documented: the other thread may not wake. */
		int e = errno;

		pthread_mutex_lock(&run->mu);
		size_t n = strlen(run->what);
		snprintf(run->what + n, sizeof run->what - n, " (then zmq_ctx_shutdown: %s)", zmq_strerror(e));
		pthread_mutex_unlock(&run->mu);
	}
	return -1;
}

/* The calls a signal may interrupt (the calling thread is a Go thread). */
static int cb_send(void *s, const void *buf, size_t len, int flags)
{
	int rc;

	do
		rc = zmq_send(s, buf, len, flags);
	while (rc == -1 && errno == EINTR);
	return rc;
}

static int cb_recv(void *s, zmq_msg_t *m)
{
	int rc;

	do
		rc = zmq_msg_recv(m, s, 0);
	while (rc == -1 && errno == EINTR);
	return rc;
}

static int cb_msg_send(zmq_msg_t *m, void *s, int flags)
{
	int rc;

	do
		rc = zmq_msg_send(m, s, flags);
	while (rc == -1 && errno == EINTR);
	return rc;
}

/* cb_open makes run's context; run->mu is statically initialised by the caller. */
static int cb_open(cb_run *run, cb_result *r)
{
	memset(r, 0, sizeof *r);
	run->zctx = zmq_ctx_new();
	if (run->zctx == NULL)
		return cb_fail(run, errno, "zmq_ctx_new");
	return 0;
}

/* cb_close closes the sockets, terminates the context and fills r. */
static int cb_close(cb_run *run, cb_result *r)
{
	int rc;

	for (int i = run->nsocks - 1; i >= 0; i--)
		if (zmq_close(run->socks[i]) == -1)
			cb_fail(run, errno, "zmq_close");
	if (run->zctx != NULL) {
		void *zctx = run->zctx;

		do
			rc = zmq_ctx_term(zctx);
		while (rc == -1 && errno == EINTR);
		run->zctx = NULL; /* gone either way: cb_fail must not shut it down */
		if (rc == -1)
			cb_fail(run, errno, "zmq_ctx_term");
	}
	pthread_mutex_destroy(&run->mu);
	if (!run->failed)
		return 0;
	r->err = run->err;
	snprintf(r->what, sizeof r->what, "%s", run->what);
	return -1;
}

/* cb_socket makes a socket of the run, with linger 0. */
static void *cb_socket(cb_run *run, int type, const char *name)
{
	int linger = 0;
	void *s;

	s = zmq_socket(run->zctx, type);
	if (s == NULL) {
		cb_fail(run, errno, "zmq_socket(%s)", name);
		return NULL;
	}
	run->socks[run->nsocks++] = s;
	if (zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger) == -1) {
		cb_fail(run, errno, "zmq_setsockopt(%s, ZMQ_LINGER)", name);
		return NULL;
	}
	return s;
}

static int cb_setint(cb_run *run, void *s, int opt, int v, const char *name)
{
	if (zmq_setsockopt(s, opt, &v, sizeof v) == -1)
		return cb_fail(run, errno, "zmq_setsockopt(%s)", name);
	return 0;
}

/* cb_link binds binder to ep and connects connecter to the address bound. */
static int cb_link(cb_run *run, void *binder, void *connecter, const char *ep, cb_result *r)
{
	size_t len = sizeof r->endpoint;

	if (zmq_bind(binder, ep) == -1)
		return cb_fail(run, errno, "zmq_bind");
	if (zmq_getsockopt(binder, ZMQ_LAST_ENDPOINT, r->endpoint, &len) == -1)
		return cb_fail(run, errno, "zmq_getsockopt(ZMQ_LAST_ENDPOINT)");
	if (zmq_connect(connecter, r->endpoint) == -1)
		return cb_fail(run, errno, "zmq_connect");
	return 0;
}

/* cb_timeouts sets a socket's send and receive time-outs (-1: none). */
static int cb_timeouts(cb_run *run, void *s, int ms)
{
	if (cb_setint(run, s, ZMQ_SNDTIMEO, ms, "ZMQ_SNDTIMEO") == -1 ||
	    cb_setint(run, s, ZMQ_RCVTIMEO, ms, "ZMQ_RCVTIMEO") == -1)
		return -1;
	return 0;
}

/* cb_warmup_fail reports a warm-up call's failure, a time-out by name. */
static int cb_warmup_fail(cb_run *run, const char *call)
{
	int e = errno;

	if (e == EAGAIN)
		return cb_fail(run, e, "warm-up %s: no connection after %d ms", call, CB_WARMUP_MS);
	return cb_fail(run, e, "warm-up %s", call);
}

static int cb_spawn(cb_run *run, pthread_t *th, void *(*fn)(void *), void *arg)
{
	int rc = pthread_create(th, NULL, fn, arg);

	if (rc != 0)
		return cb_fail(run, rc, "pthread_create");
	return 0;
}

/*
 * cb_thread_init blocks signals in a loop's thread, as libzmq does in its
 * own, so that the process's signals go to Go's threads, and names it.
 */
static void cb_thread_init(const char *name)
{
	sigset_t all;

	sigfillset(&all);
	pthread_sigmask(SIG_BLOCK, &all, NULL);
	pthread_setname_np(pthread_self(), name);
}

/* cb_sender is the sending thread of push/pull and pub/sub. */
typedef struct {
	cb_run *run;
	void *sock;
	const char *buf;
	size_t size;
	int64_t count;
	int64_t t0; /* just before the first zmq_send; read after the join */
} cb_sender;

static void *cb_send_loop(void *arg)
{
	cb_sender *sd = arg;

	cb_thread_init("cbench-send");
	sd->t0 = cb_now();
	for (int64_t i = 0; i < sd->count; i++) {
		if (cb_send(sd->sock, sd->buf, sd->size, 0) == -1) {
			cb_fail(sd->run, errno, "zmq_send (message %lld)", (long long)i + 1);
			break;
		}
	}
	return NULL;
}

/*
 * cb_recv_n receives count messages of size bytes on s and sets *t1 to the
 * time the last one arrived.
 */
static int cb_recv_n(cb_run *run, void *s, size_t size, int64_t count, int64_t *t1)
{
	zmq_msg_t m;
	int rc = 0;

	if (zmq_msg_init(&m) == -1)
		return cb_fail(run, errno, "zmq_msg_init");
	for (int64_t i = 0; i < count; i++) {
		if (cb_recv(s, &m) == -1) {
			int e = errno;

			if (e == EAGAIN) /* only a PUB/SUB receiver has a time-out */
				rc = cb_fail(run, e, "received %lld of %lld messages, then none for %d ms: lost",
				             (long long)i, (long long)count, CB_STALL_MS);
			else
				rc = cb_fail(run, e, "zmq_msg_recv (message %lld)", (long long)i + 1);
			break;
		}
		if (zmq_msg_size(&m) != size) {
			rc = cb_fail(run, 0, "message %lld is %zu bytes, want %zu", (long long)i + 1,
			             zmq_msg_size(&m), size);
			break;
		}
	}
	*t1 = cb_now();
	if (zmq_msg_close(&m) == -1)
		rc = cb_fail(run, errno, "zmq_msg_close");
	return rc;
}

/* cb_warmup_pushpull sends one untimed message, once PUSH has a peer. */
/* cb_stream times count messages of size bytes (buf) sent on out by a
 * sender thread and received on in by this one, each received frame
 * checked to be want bytes: from the sender's first send to the last
 * receive, into r->ns. The sockets are linked and warmed up. */
static int cb_stream(cb_run *run, void *out, void *in, char *buf, int size, int want, int64_t count, cb_result *r)
{
	cb_sender sd = {.run = run, .sock = out, .buf = buf, .size = (size_t)size, .count = count};
	pthread_t th;
	int64_t t1;

	if (cb_spawn(run, &th, cb_send_loop, &sd) == -1)
		return -1;
	int rc = cb_recv_n(run, in, (size_t)want, count, &t1);
	pthread_join(th, NULL);
	if (rc == 0)
		r->ns = t1 - sd.t0;
	return rc;
}

static int cb_warmup_pushpull(cb_run *run, void *push, void *pull)
{
	zmq_msg_t m;
	int rc = 0;

	if (cb_timeouts(run, push, CB_WARMUP_MS) == -1 || cb_timeouts(run, pull, CB_WARMUP_MS) == -1)
		return -1;
	if (cb_send(push, "", 0, 0) == -1)
		return cb_warmup_fail(run, "zmq_send");
	if (zmq_msg_init(&m) == -1)
		return cb_fail(run, errno, "zmq_msg_init");
	if (cb_recv(pull, &m) == -1)
		rc = cb_warmup_fail(run, "zmq_msg_recv");
	if (zmq_msg_close(&m) == -1)
		rc = cb_fail(run, errno, "zmq_msg_close");
	if (rc == -1 || cb_timeouts(run, push, -1) == -1 || cb_timeouts(run, pull, -1) == -1)
		return -1;
	return 0;
}

int cb_pushpull(const char *bind_ep, int size, int want, int64_t count, cb_result *r)
{
	cb_run run = {.mu = PTHREAD_MUTEX_INITIALIZER};
	char *buf = NULL;
	void *push, *pull;

	if (cb_open(&run, r) == -1)
		goto out;
	buf = calloc(size > 0 ? (size_t)size : 1, 1);
	if (buf == NULL) {
		cb_fail(&run, ENOMEM, "calloc");
		goto out;
	}
	/* libzmq's default high-water marks (1000), as zmqkit's benchmark has. */
	if ((push = cb_socket(&run, ZMQ_PUSH, "PUSH")) == NULL ||
	    (pull = cb_socket(&run, ZMQ_PULL, "PULL")) == NULL ||
	    cb_link(&run, push, pull, bind_ep, r) == -1 || cb_warmup_pushpull(&run, push, pull) == -1)
		goto out;
	cb_stream(&run, push, pull, buf, size, want, count, r);
out:
	free(buf);
	return cb_close(&run, r);
}

/* cb_probe_id parses a probe frame, "1000 probe <id>"; -1 if m is not one. */
static int cb_probe_id(zmq_msg_t *m, unsigned long long *id)
{
	char text[64];
	size_t head = strlen(cb_probe_head), n = zmq_msg_size(m);
	char *end;

	if (n <= head || n >= sizeof text || memcmp(zmq_msg_data(m), cb_probe_head, head) != 0)
		return -1;
	memcpy(text, zmq_msg_data(m), n);
	text[n] = 0;
	*id = strtoull(text + head, &end, 10);
	return *end == 0 ? 0 : -1;
}

/*
 * cb_warmup_pubsub handles the slow joiner: it publishes numbered probes,
 * each waited for CB_PROBE_MS, until the SUB has one; a probe that arrives
 * proves the PUB has the subscription, so every later probe arrives too,
 * and it then receives until the last probe sent. The probes share the
 * timed frames' "1000 " subscription (a probe under another prefix would
 * only prove that one: a SUB replays its subscriptions on connect in its
 * trie's order, not the order they were set), and none is left on its way
 * when the clock starts.
 */
static int cb_warmup_pubsub(cb_run *run, void *pub, void *sub)
{
	zmq_msg_t m;
	char probe[64];
	unsigned long long sent = 0, got;
	int seen = 0, rc = 0, n;
	int64_t deadline = cb_now() + (int64_t)CB_WARMUP_MS * 1000000;

	if (cb_setint(run, sub, ZMQ_RCVTIMEO, CB_PROBE_MS, "ZMQ_RCVTIMEO") == -1)
		return -1;
	if (zmq_msg_init(&m) == -1)
		return cb_fail(run, errno, "zmq_msg_init");
	for (;;) {
		if (!seen) {
			n = snprintf(probe, sizeof probe, "%s%llu", cb_probe_head, ++sent);
			if (cb_send(pub, probe, (size_t)n, 0) == -1) {
				rc = cb_fail(run, errno, "zmq_send (probe %llu)", sent);
				break;
			}
		}
		if (cb_recv(sub, &m) != -1) {
			if (cb_probe_id(&m, &got) == -1 || got == 0 || got > sent) {
				rc = cb_fail(run, 0, "warm-up: got a %zu-byte message that is no probe sent", zmq_msg_size(&m));
				break;
			}
			seen = 1;
			if (got == sent)
				break;
			continue;
		}
		if (errno != EAGAIN) {
			rc = cb_fail(run, errno, "zmq_msg_recv (probe)");
			break;
		}
		if (cb_now() > deadline) {
			rc = cb_fail(run, EAGAIN, "warm-up: %s after %d ms", seen ? "probes lost" : "no probe reached the SUB",
			             CB_WARMUP_MS);
			break;
		}
	}
	if (zmq_msg_close(&m) == -1)
		rc = cb_fail(run, errno, "zmq_msg_close");
	if (rc == -1)
		return -1;
	/* A lost message ends the timed part as an error, not a hang. */
	return cb_setint(run, sub, ZMQ_RCVTIMEO, CB_STALL_MS, "ZMQ_RCVTIMEO");
}

int cb_pubsub(const char *bind_ep, int size, int want, int64_t count, cb_result *r)
{
	cb_run run = {.mu = PTHREAD_MUTEX_INITIALIZER};
	char *buf = NULL;
	void *pub, *sub;
	size_t head = strlen(cb_frame_head);

	if (cb_open(&run, r) == -1)
		goto out;
	if (size < 0 || (size_t)size < head) {
		cb_fail(&run, EINVAL, "size %d is shorter than \"%s\"", size, cb_frame_head);
		goto out;
	}
	buf = malloc((size_t)size);
	if (buf == NULL) {
		cb_fail(&run, ENOMEM, "malloc");
		goto out;
	}
	memcpy(buf, cb_frame_head, head);
	memset(buf + head, 'x', (size_t)size - head);
	/*
	 * No high-water mark on the messages' way (PUB's send, SUB's receive), as
	 * in zmqkit's benchmark, where only those can be set: a PUB drops at its
	 * mark. The subscriptions' way keeps libzmq's default.
	 */
	if ((pub = cb_socket(&run, ZMQ_PUB, "PUB")) == NULL || (sub = cb_socket(&run, ZMQ_SUB, "SUB")) == NULL ||
	    cb_setint(&run, pub, ZMQ_SNDHWM, 0, "PUB ZMQ_SNDHWM") == -1 ||
	    cb_setint(&run, sub, ZMQ_RCVHWM, 0, "SUB ZMQ_RCVHWM") == -1)
		goto out;
	if (zmq_setsockopt(sub, ZMQ_SUBSCRIBE, cb_topic, strlen(cb_topic)) == -1) {
		cb_fail(&run, errno, "zmq_setsockopt(ZMQ_SUBSCRIBE)");
		goto out;
	}
	if (cb_link(&run, pub, sub, bind_ep, r) == -1 || cb_warmup_pubsub(&run, pub, sub) == -1)
		goto out;
	cb_stream(&run, pub, sub, buf, size, want, count, r);
out:
	free(buf);
	return cb_close(&run, r);
}

/*
 * cb_echo is the server thread of dealer/router and req/rep: it answers
 * count requests (the warm-up's included) by sending each one's frames
 * back, envelope and all, then returns. A request's last frame, its body,
 * must be want bytes.
 */
typedef struct {
	cb_run *run;
	void *sock;
	int64_t count;
	size_t want;
} cb_echo;

static void *cb_echo_loop(void *arg)
{
	cb_echo *e = arg;
	zmq_msg_t parts[CB_MAX_FRAMES];
	int n;

	cb_thread_init("cbench-echo");
	for (n = 0; n < CB_MAX_FRAMES; n++) {
		if (zmq_msg_init(&parts[n]) == -1) {
			cb_fail(e->run, errno, "zmq_msg_init");
			goto out;
		}
	}
	for (int64_t i = 0; i < e->count; i++) {
		int k = 0, more = 1;

		while (more) {
			if (k == CB_MAX_FRAMES) {
				cb_fail(e->run, 0, "echo: request %lld has more than %d frames", (long long)i,
				        CB_MAX_FRAMES);
				goto out;
			}
			if (cb_recv(e->sock, &parts[k]) == -1) {
				cb_fail(e->run, errno, "zmq_msg_recv (echo, request %lld)", (long long)i);
				goto out;
			}
			more = zmq_msg_more(&parts[k]);
			k++;
		}
		if (zmq_msg_size(&parts[k - 1]) != e->want) {
			cb_fail(e->run, 0, "echo: request %lld's body is %zu bytes, want %zu", (long long)i,
			        zmq_msg_size(&parts[k - 1]), e->want);
			goto out;
		}
		for (int j = 0; j < k; j++) {
			if (cb_msg_send(&parts[j], e->sock, j + 1 < k ? ZMQ_SNDMORE : 0) == -1) {
				cb_fail(e->run, errno, "zmq_msg_send (echo, request %lld)", (long long)i);
				goto out;
			}
		}
	}
out:
	for (int j = 0; j < n; j++)
		if (zmq_msg_close(&parts[j]) == -1)
			cb_fail(e->run, errno, "zmq_msg_close");
	return NULL;
}

/* cb_request sends DEALER's request id as [8-byte id, "", body]; -1 with errno on failure. */
static int cb_request(void *s, uint64_t id, const char *body, size_t size)
{
	if (cb_send(s, &id, sizeof id, ZMQ_SNDMORE) == -1 || cb_send(s, "", 0, ZMQ_SNDMORE) == -1 ||
	    cb_send(s, body, size, 0) == -1)
		return -1;
	return 0;
}

/*
 * cb_reply receives DEALER's next reply into m and checks that it is
 * [want, "", size bytes]: one server over one connection answers in order.
 * A failed call returns -1 with errno set and nothing recorded; a wrong
 * reply is recorded and returns -2.
 */
static int cb_reply(cb_run *run, void *s, zmq_msg_t *m, uint64_t want, size_t size)
{
	uint64_t id;

	if (cb_recv(s, m) == -1)
		return -1;
	if (zmq_msg_size(m) != sizeof id || !zmq_msg_more(m)) {
		cb_fail(run, 0, "reply %llu: first frame is %zu bytes, want an 8-byte id and more",
		        (unsigned long long)want, zmq_msg_size(m));
		return -2;
	}
	memcpy(&id, zmq_msg_data(m), sizeof id);
	if (id != want) {
		cb_fail(run, 0, "reply %llu came when reply %llu was due", (unsigned long long)id,
		        (unsigned long long)want);
		return -2;
	}
	if (cb_recv(s, m) == -1)
		return -1;
	if (zmq_msg_size(m) != 0 || !zmq_msg_more(m)) {
		cb_fail(run, 0, "reply %llu: no empty delimiter frame", (unsigned long long)want);
		return -2;
	}
	if (cb_recv(s, m) == -1)
		return -1;
	if (zmq_msg_size(m) != size || zmq_msg_more(m)) {
		cb_fail(run, 0, "reply %llu: body is %zu bytes%s, want %zu", (unsigned long long)want,
		        zmq_msg_size(m), zmq_msg_more(m) ? " and more frames" : "", size);
		return -2;
	}
	return 0;
}

/* cb_reply_failed records cb_reply's failed call (a wrong reply is recorded already). */
static int cb_reply_failed(cb_run *run, int rc, uint64_t want)
{
	if (rc == -1)
		return cb_fail(run, errno, "zmq_msg_recv (reply %llu)", (unsigned long long)want);
	return -1;
}

int cb_dealer_router(const char *bind_ep, int size, int want, int64_t count, int inflight, cb_result *r)
{
	cb_run run = {.mu = PTHREAD_MUTEX_INITIALIZER};
	cb_echo echo;
	pthread_t th;
	int started = 0, rc;
	int64_t t0, t1;
	uint64_t next, due;
	char *body = NULL;
	void *router, *dealer;
	zmq_msg_t m;

	if (cb_open(&run, r) == -1)
		goto out;
	body = calloc(size > 0 ? (size_t)size : 1, 1);
	if (body == NULL) {
		cb_fail(&run, ENOMEM, "calloc");
		goto out;
	}
	if ((router = cb_socket(&run, ZMQ_ROUTER, "ROUTER")) == NULL ||
	    (dealer = cb_socket(&run, ZMQ_DEALER, "DEALER")) == NULL ||
	    cb_link(&run, router, dealer, bind_ep, r) == -1)
		goto out;
	echo = (cb_echo){.run = &run, .sock = router, .count = count + 1, .want = (size_t)want};
	if (cb_spawn(&run, &th, cb_echo_loop, &echo) == -1)
		goto out;
	started = 1;
	if (zmq_msg_init(&m) == -1) {
		cb_fail(&run, errno, "zmq_msg_init");
		goto out;
	}
	/* Warm-up: request 0 goes once DEALER has a peer and comes back from the echo thread. */
	if (cb_timeouts(&run, dealer, CB_WARMUP_MS) == -1)
		goto close_msg;
	if (cb_request(dealer, 0, body, (size_t)size) == -1) {
		cb_warmup_fail(&run, "zmq_send");
		goto close_msg;
	}
	rc = cb_reply(&run, dealer, &m, 0, (size_t)size);
	if (rc == -1)
		cb_warmup_fail(&run, "zmq_msg_recv");
	if (rc != 0 || cb_timeouts(&run, dealer, -1) == -1)
		goto close_msg;

	t0 = cb_now();
	for (next = 1; next <= (uint64_t)count && next <= (uint64_t)inflight; next++)
		if (cb_request(dealer, next, body, (size_t)size) == -1) {
			cb_fail(&run, errno, "zmq_send (request %llu)", (unsigned long long)next);
			goto close_msg;
		}
	for (due = 1; due <= (uint64_t)count; due++) {
		rc = cb_reply(&run, dealer, &m, due, (size_t)size);
		if (rc != 0) {
			cb_reply_failed(&run, rc, due);
			goto close_msg;
		}
		if (next <= (uint64_t)count) {
			if (cb_request(dealer, next, body, (size_t)size) == -1) {
				cb_fail(&run, errno, "zmq_send (request %llu)", (unsigned long long)next);
				goto close_msg;
			}
			next++;
		}
	}
	t1 = cb_now();
	r->ns = t1 - t0;
close_msg:
	if (zmq_msg_close(&m) == -1)
		cb_fail(&run, errno, "zmq_msg_close");
out:
	if (started)
		pthread_join(th, NULL);
	free(body);
	return cb_close(&run, r);
}

/* cb_round_trip sends body on REQ and checks the reply's size. */
static int cb_round_trip(cb_run *run, void *req, zmq_msg_t *m, const char *body, size_t size,
                         int64_t i)
{
	if (cb_send(req, body, size, 0) == -1)
		return cb_fail(run, errno, "zmq_send (request %lld)", (long long)i);
	if (cb_recv(req, m) == -1)
		return cb_fail(run, errno, "zmq_msg_recv (reply %lld)", (long long)i);
	if (zmq_msg_size(m) != size || zmq_msg_more(m))
		return cb_fail(run, 0, "reply %lld is %zu bytes%s, want %zu", (long long)i, zmq_msg_size(m),
		               zmq_msg_more(m) ? " and more frames" : "", size);
	return 0;
}

int cb_reqrep(const char *bind_ep, int size, int want, int64_t count, cb_result *r)
{
	cb_run run = {.mu = PTHREAD_MUTEX_INITIALIZER};
	cb_echo echo;
	pthread_t th;
	int started = 0;
	int64_t t0;
	char *body = NULL;
	void *rep, *req;
	zmq_msg_t m;

	if (cb_open(&run, r) == -1)
		goto out;
	body = calloc(size > 0 ? (size_t)size : 1, 1);
	if (body == NULL) {
		cb_fail(&run, ENOMEM, "calloc");
		goto out;
	}
	if ((rep = cb_socket(&run, ZMQ_REP, "REP")) == NULL || (req = cb_socket(&run, ZMQ_REQ, "REQ")) == NULL ||
	    cb_link(&run, rep, req, bind_ep, r) == -1)
		goto out;
	echo = (cb_echo){.run = &run, .sock = rep, .count = count + 1, .want = (size_t)want};
	if (cb_spawn(&run, &th, cb_echo_loop, &echo) == -1)
		goto out;
	started = 1;
	if (zmq_msg_init(&m) == -1) {
		cb_fail(&run, errno, "zmq_msg_init");
		goto out;
	}
	/* Warm-up: one round trip once REQ has a peer, through the echo thread. */
	if (cb_timeouts(&run, req, CB_WARMUP_MS) == -1)
		goto close_msg;
	if (cb_send(req, body, (size_t)size, 0) == -1) {
		cb_warmup_fail(&run, "zmq_send");
		goto close_msg;
	}
	if (cb_recv(req, &m) == -1) {
		cb_warmup_fail(&run, "zmq_msg_recv");
		goto close_msg;
	}
	if (cb_timeouts(&run, req, -1) == -1)
		goto close_msg;

	t0 = cb_now();
	for (int64_t i = 1; i <= count; i++)
		if (cb_round_trip(&run, req, &m, body, (size_t)size, i) == -1)
			goto close_msg;
	r->ns = cb_now() - t0;
close_msg:
	if (zmq_msg_close(&m) == -1)
		cb_fail(&run, errno, "zmq_msg_close");
out:
	if (started)
		pthread_join(th, NULL);
	free(body);
	return cb_close(&run, r);
}
