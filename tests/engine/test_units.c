/* SPDX-License-Identifier: MIT */
/* Unit tests of the engine's pure pieces: convergence arithmetic, zero pages. */
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "engine/internal.h"

Test(engine_converge, bandwidth)
{
	cr_assert_eq(eng_bandwidth(1000, 1000000000ull), 1000);
	cr_assert_eq(eng_bandwidth(1u << 30, 500000000ull), 2ull << 30);
	/* No division by zero; no overflow past 18 GB. */
	cr_assert_eq(eng_bandwidth(5, 0), 5000000000ull);
	cr_assert_eq(eng_bandwidth(100ull << 30, 10ull * 1000000000ull), 10ull << 30);
}

Test(engine_converge, expected_downtime)
{
	/* 300 MB left at 1 GB/s: 300 ms. */
	cr_assert_eq(eng_expected_downtime_ms(300000000ull, 1000000000ull), 300);
	/* Rounded up: 1 byte still costs a millisecond, never 0. */
	cr_assert_eq(eng_expected_downtime_ms(1, 1000000000ull), 1);
	cr_assert_eq(eng_expected_downtime_ms(0, 0), 0);
	cr_assert_eq(eng_expected_downtime_ms(4096, 0), UINT64_MAX);
	/* Large values do not overflow. */
	cr_assert_eq(eng_expected_downtime_ms(1ull << 50, 1ull << 30), (1ull << 20) * 1000);
}

Test(engine_converge, hot_rounds_and_throttle_steps)
{
	cr_assert(eng_round_is_hot(600, 1000));
	cr_assert_not(eng_round_is_hot(500, 1000));
	cr_assert_not(eng_round_is_hot(0, 0));
	cr_assert_eq(eng_next_throttle(0, 20, 10, 99), 20);
	cr_assert_eq(eng_next_throttle(20, 20, 10, 99), 30);
	cr_assert_eq(eng_next_throttle(95, 20, 10, 99), 99);
	cr_assert_eq(eng_next_throttle(99, 20, 10, 99), 99);
}

Test(engine_zero_page, detection)
{
	uint8_t *p = aligned_alloc(4096, 4096);

	memset(p, 0, 4096);
	cr_assert(eng_page_is_zero(p));
	/* A non-zero byte anywhere, first line or last byte, is seen. */
	for (size_t off = 0; off < 4096; off += 1) {
		p[off] = 1;
		cr_assert_not(eng_page_is_zero(p), "byte %zu", off);
		p[off] = 0;
	}
	p[4095] = 0x80;
	cr_assert_not(eng_page_is_zero(p));
	free(p);
}
