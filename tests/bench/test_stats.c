/* SPDX-License-Identifier: MIT */
/* bench_stats: median, minimum and maximum over repetitions. */
#include <criterion/criterion.h>
#include <string.h>

#include "harness.h"

Test(bench_stats, odd_even_single_empty)
{
	double odd[] = {5, 1, 3}, even[] = {10, 2, 8, 4}, one[] = {7.5};
	double keep[3];
	struct bench_summary s;

	memcpy(keep, odd, sizeof(odd));
	bench_summarize(odd, 3, &s);
	cr_assert_eq(s.n, 3);
	cr_assert_float_eq(s.median, 3, 1e-12);
	cr_assert_float_eq(s.min, 1, 1e-12);
	cr_assert_float_eq(s.max, 5, 1e-12);
	cr_assert_arr_eq(odd, keep, sizeof(odd), "the input was reordered");
	bench_summarize(even, 4, &s);
	cr_assert_float_eq(s.median, 6, 1e-12); /* mean of 4 and 8 */
	cr_assert_float_eq(s.min, 2, 1e-12);
	cr_assert_float_eq(s.max, 10, 1e-12);
	bench_summarize(one, 1, &s);
	cr_assert_float_eq(s.median, 7.5, 1e-12);
	cr_assert_float_eq(s.min, 7.5, 1e-12);
	cr_assert_float_eq(s.max, 7.5, 1e-12);
	bench_summarize(NULL, 0, &s);
	cr_assert_eq(s.n, 0);
	cr_assert_float_eq(s.median, 0, 1e-12);
}

Test(bench_stats, many_and_equal_values)
{
	double v[250];
	struct bench_summary s;

	for (int i = 0; i < 250; i++)
		v[i] = (double)((i * 37) % 250); /* 0..249, shuffled */
	bench_summarize(v, 250, &s);
	cr_assert_eq(s.n, 250);
	cr_assert_float_eq(s.median, 124.5, 1e-12);
	cr_assert_float_eq(s.min, 0, 1e-12);
	cr_assert_float_eq(s.max, 249, 1e-12);
	for (int i = 0; i < 4; i++)
		v[i] = 2.5;
	bench_summarize(v, 4, &s);
	cr_assert_float_eq(s.median, 2.5, 1e-12);
	cr_assert_float_eq(s.min, 2.5, 1e-12);
	cr_assert_float_eq(s.max, 2.5, 1e-12);
}

Test(bench_stats, session_ceiling_lookup)
{
	struct bench_session ses;

	memset(&ses, 0, sizeof(ses));
	ses.n_ceilings = 2;
	ses.ceilings[0] =
	    (struct bench_ceiling){.transport = BENCH_TR_TCP, .streams = 1, .bytes_per_s = 1e9};
	ses.ceilings[1] =
	    (struct bench_ceiling){.transport = BENCH_TR_TCP, .streams = 2, .bytes_per_s = 2e9};
	cr_assert_float_eq(bench_session_ceiling(&ses, BENCH_TR_TCP, 2)->bytes_per_s, 2e9, 1);
	cr_assert_null(bench_session_ceiling(&ses, BENCH_TR_UNIX, 1));
	cr_assert_null(bench_session_ceiling(&ses, BENCH_TR_TCP, 4));
}
