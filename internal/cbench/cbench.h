/*
 * cbench.h: C libzmq's own loops, the baselines zmqkit's benchmarks are
 * measured against. cbench.go documents what each loop times.
 */
#ifndef ZMQKIT_CBENCH_H
#define ZMQKIT_CBENCH_H

#include <stdint.h>

#define CB_WHAT_LEN 192
#define CB_ENDPOINT_LEN 256

/*
 * cb_result is what a loop hands back. On failure err is the failed call's
 * errno (0 when no call failed but a message was wrong or missing) and what
 * names the call; endpoint is the address really bound, once it is known.
 */
typedef struct {
	int64_t ns; /* the timed part, in nanoseconds */
	int err;
	char what[CB_WHAT_LEN];
	char endpoint[CB_ENDPOINT_LEN];
} cb_result;

/*
 * Each sends messages (or request bodies) of size bytes and returns 0, or
 * -1 with r->err and r->what set. want is the size the receiving side
 * (PULL, SUB, the echo thread) requires: the Go API passes size, and a
 * test another size to make a loop fail in mid-run.
 */
int cb_pushpull(const char *bind_ep, int size, int want, int64_t count, cb_result *r);
int cb_pubsub(const char *bind_ep, int size, int want, int64_t count, cb_result *r);
int cb_dealer_router(const char *bind_ep, int size, int want, int64_t count, int inflight, cb_result *r);
int cb_reqrep(const char *bind_ep, int size, int want, int64_t count, cb_result *r);

#endif
