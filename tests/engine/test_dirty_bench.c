/* SPDX-License-Identifier: MIT */
/*
 * What a sync costs: 1 GiB of anonymous memory, all of it touched, then rounds
 * of writing 1% (and 0%, 0.1%, 10%) of the pages at random and syncing. Reports the
 * median time of one sync, and what the writes cost the writer, per source.
 * Numbers only, nothing to pass or fail beyond the reports being right; skipped
 * unless FERRY_BENCH_DIRTY is set, because it needs 1 GiB and some seconds:
 *
 *	FERRY_BENCH_DIRTY=1 ferry-tests --filter engine_dirty_bench/\* --verbose
 *
 * FERRY_BENCH_DIRTY_MIB overrides the size (MiB).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <ferry/dirty.h>
#include <ferry/error.h>

#include "dirty_common.h"

#define PS     4096u
#define ROUNDS 9

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static uint64_t bench_bytes(void)
{
	const char *on = getenv("FERRY_BENCH_DIRTY");
	const char *mib = getenv("FERRY_BENCH_DIRTY_MIB");

	if (!on || !*on)
		cr_skip_test("set FERRY_BENCH_DIRTY=1 to run the dirty-log benchmark");
	return (mib ? strtoull(mib, NULL, 10) : 1024) << 20;
}

/* Distinct random pages: a partial Fisher-Yates over a permutation. */
static void pick_pages(uint64_t *perm, uint64_t pages, uint64_t n, unsigned int *seed)
{
	for (uint64_t i = 0; i < n; i++) {
		uint64_t j =
		    i + ((uint64_t)rand_r(seed) * 65536 + (uint64_t)rand_r(seed)) % (pages - i);
		uint64_t t = perm[i];
		perm[i] = perm[j];
		perm[j] = t;
	}
}

static void run(const char *what, uint32_t mode, bool is_explicit)
{
	uint64_t bytes = bench_bytes(), pages = bytes / PS;
	uint8_t *mem = tdirty_map(bytes, 2u << 20, 0);
	uint64_t *perm = malloc(pages * sizeof(uint64_t));
	uint64_t *map = calloc(ferry_dirty_bitmap_words(pages), sizeof(uint64_t));
	struct ferry_dirty_block b = {.host = mem, .length = bytes, .page_size = PS};
	struct ferry_dirty_log *log;
	unsigned int seed = 1;
	int ret;

	cr_assert(perm && map);
	for (uint64_t i = 0; i < pages; i++)
		perm[i] = i;
	memset(mem, 1, bytes); /* every page present, as in a running guest */
	if (is_explicit) {
		ret = ferry_dirty_log_create_explicit(&b, 1, &log);
	} else {
		struct ferry_dirty_uffd_attr a = {.size = sizeof(a), .mode = mode};
		ret = ferry_dirty_log_create_uffd(&b, 1, &a, &log);
	}
	if (ret == -EOPNOTSUPP || ret == -ENOSYS || ret == -EPERM)
		cr_skip_test("%s unavailable: %s", what, ferry_strerror(ret));
	cr_assert_eq(ret, 0);
	double t0 = now_ms();
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	double start_ms = now_ms() - t0;

	static const double fractions[] = {0.0, 0.001, 0.01, 0.10};
	for (size_t f = 0; f < sizeof(fractions) / sizeof(fractions[0]); f++) {
		uint64_t n = (uint64_t)((double)pages * fractions[f]);
		double sync_ms[ROUNDS], write_us_per_page = 0;
		for (int r = 0; r < ROUNDS; r++) {
			pick_pages(perm, pages, n, &seed);
			double w0 = now_ms();
			for (uint64_t i = 0; i < n; i++) {
				mem[perm[i] * PS + 64] += 1;
				if (is_explicit)
					ferry_dirty_log_mark(log, 0, perm[i] * PS + 64, 1);
			}
			double w1 = now_ms();
			if (n)
				write_us_per_page += (w1 - w0) * 1e3 / (double)n;
			memset(map, 0, ferry_dirty_bitmap_words(pages) * sizeof(uint64_t));
			double s0 = now_ms();
			int got = ferry_dirty_log_sync(log, 0, map);
			sync_ms[r] = now_ms() - s0;
			cr_assert_eq(got, (int)n, "%s: %d pages reported, %llu written", what, got,
				     (unsigned long long)n);
		}
		qsort(sync_ms, ROUNDS, sizeof(double), cmp_double);
		cr_log_info("%-11s %5llu MiB  %5.2f%% dirty (%7llu pages): sync median %8.3f ms "
			    "(min %8.3f, max %8.3f); first write of a page costs the writer "
			    "%6.2f us",
			    what, (unsigned long long)(bytes >> 20), fractions[f] * 100,
			    (unsigned long long)n, sync_ms[ROUNDS / 2], sync_ms[0],
			    sync_ms[ROUNDS - 1], n ? write_us_per_page / ROUNDS : 0.0);
	}
	cr_log_info("%-11s start (register + protect %llu MiB): %.1f ms", what,
		    (unsigned long long)(bytes >> 20), start_ms);
	ferry_dirty_log_destroy(log);
	free(perm);
	free(map);
	tdirty_unmap(mem, bytes);
}

Test(engine_dirty_bench, uffd_async, .timeout = 600)
{
	run("uffd-async", FERRY_DIRTY_UFFD_ASYNC, false);
}

Test(engine_dirty_bench, uffd_sync, .timeout = 600)
{
	run("uffd-sync", FERRY_DIRTY_UFFD_SYNC, false);
}

Test(engine_dirty_bench, explicit_marks, .timeout = 600)
{
	run("explicit", 0, true);
}
