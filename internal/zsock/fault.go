package zsock

/*
#include "zk.h"
*/
import "C"

// injectEINTR makes the k-th frame received or sent from now on by the
// one-call C paths fail once with EINTR (k = 0 cancels). Tests only: the
// setting is process-wide and unsynchronised.
func injectEINTR(k int) { C.zk_eintr_at = C.int(k) }

// eintrPending is the count injectEINTR set that has not run out yet: 0
// once the injected EINTR was hit.
func eintrPending() int { return int(C.zk_eintr_at) }
