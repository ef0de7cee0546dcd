/* SPDX-License-Identifier: MIT */
/*
 * fuzz_bench_ctrl: the control protocol of two-host `ferry bench`
 * (bench/ctrl.c), which a `ferry bench --server` reads from whoever connects.
 * The input is one message as received (header and payload).
 *
 * Checks, besides the sanitizers: an accepted message encodes back to exactly
 * the received bytes (no field is ignored, no padding goes unchecked), and a
 * refused one is refused with FERRY_EBADSTREAM.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ferry/error.h>

#include "ctrl.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct bench_msg m;
	uint8_t out[BENCH_CTRL_MAX];
	int ret = bench_msg_from_wire(data, size, &m), len;

	if (ret) {
		CHECK(ret == FERRY_EBADSTREAM);
		return 0;
	}
	len = bench_msg_to_wire(&m, out, sizeof(out));
	CHECK(len > 0 && (size_t)len == size);
	CHECK(memcmp(out, data, size) == 0);
	return 0;
}
