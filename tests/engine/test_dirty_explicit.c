/* SPDX-License-Identifier: MIT */
/* The explicit dirty log, and what every log shares: arguments, states, marks, stats. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/dirty.h>
#include <ferry/error.h>

#include "dirty_common.h"

#define PS  4096u
#define MIB (1024u * 1024u)

static struct ferry_dirty_log *explicit_log(void)
{
	struct ferry_dirty_block b[2] = {
	    {.host = NULL, .length = 1000 * PS, .page_size = PS},
	    {.host = NULL, .length = 8 * MIB, .page_size = 2 * MIB},
	};
	struct ferry_dirty_log *log;

	cr_assert_eq(ferry_dirty_log_create_explicit(b, 2, &log), 0);
	return log;
}

Test(engine_dirty_explicit, bad_arguments)
{
	struct ferry_dirty_block ok = {.length = 16 * PS, .page_size = PS};
	struct ferry_dirty_block b;
	struct ferry_dirty_log *log = (void *)1;

	cr_assert_eq(ferry_dirty_log_create_explicit(&ok, 0, &log), -EINVAL);
	cr_assert_null(log, "out is cleared on failure");
	cr_assert_eq(ferry_dirty_log_create_explicit(NULL, 1, &log), -EINVAL);
	cr_assert_eq(ferry_dirty_log_create_explicit(&ok, FERRY_DIRTY_MAX_BLOCKS + 1, &log),
		     -EINVAL);
	b = ok;
	b.page_size = 3000;
	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), -EINVAL);
	b.page_size = 2048; /* below the system page size */
	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), -EINVAL);
	b.page_size = (uint64_t)2 << 30;
	b.length = b.page_size;
	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), -EINVAL);
	b = ok;
	b.length = 0;
	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), -EINVAL);
	b.length = PS + 1;
	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), -EINVAL);
	ferry_dirty_log_destroy(NULL);
}

Test(engine_dirty_explicit, states)
{
	struct ferry_dirty_log *log = explicit_log();
	uint64_t map[16] = {0};

	cr_assert_str_eq(ferry_dirty_log_kind(log), "explicit");
	cr_assert_eq(ferry_dirty_log_block_count(log), 2);
	cr_assert_eq(ferry_dirty_log_block_pages(log, 0), 1000);
	cr_assert_eq(ferry_dirty_log_block_pages(log, 1), 4);
	cr_assert_eq(ferry_dirty_log_block_pages(log, 2), 0);
	cr_assert_eq(ferry_dirty_log_sync(log, 0, map), FERRY_ESTATE, "sync before start");
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	cr_assert_eq(ferry_dirty_log_start(log), FERRY_ESTATE, "double start");
	cr_assert_eq(ferry_dirty_log_sync(log, 2, map), -EINVAL, "bad block");
	cr_assert_eq(ferry_dirty_log_sync(log, 0, NULL), -EINVAL);
	cr_assert_eq(ferry_dirty_log_stop(log), 0);
	cr_assert_eq(ferry_dirty_log_stop(log), 0, "stopping twice is a no-op");
	cr_assert_eq(ferry_dirty_log_sync(log, 0, map), FERRY_ESTATE, "sync after stop");
	/* Restart works, and forgets marks made while stopped. */
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 0, 1), 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	int n;
	uint64_t *m = tdirty_sync(log, 0, &n);
	cr_assert_eq(n, 0);
	free(m);
	ferry_dirty_log_destroy(log); /* destroy stops */
}

Test(engine_dirty_explicit, marks_become_pages)
{
	struct ferry_dirty_log *log = explicit_log();
	int n;

	cr_assert_eq(ferry_dirty_log_start(log), 0);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 5 * PS, 1), 0);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 7 * PS + 100, PS), 0); /* 7 and 8 */
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 1000 * PS - 1, 1), 0); /* the last page */
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 5 * PS + 9, 3), 0);	 /* 5 again */
	/* Out of the block: refused, nothing marked. */
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 1000 * PS, 1), -EINVAL);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 999 * PS, 2 * PS), -EINVAL);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, UINT64_MAX, 2), -EINVAL);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 0, 0), -EINVAL);
	cr_assert_eq(ferry_dirty_log_mark(log, 2, 0, 1), -EINVAL);

	uint64_t *m = tdirty_sync(log, 0, &n);
	tdirty_expect_exactly(m, 1000, (uint64_t[]){5, 7, 8, 999}, 4);
	cr_assert_eq(n, 4);
	free(m);
	m = tdirty_sync(log, 0, &n);
	cr_assert_eq(n, 0, "a second sync with no marks reports nothing");
	tdirty_expect_exactly(m, 1000, NULL, 0);
	free(m);

	/* Sync ORs: bits already in the caller's map stay. */
	uint64_t map[16] = {0};
	map[0] = 1;
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 3 * PS, 1), 0);
	cr_assert_eq(ferry_dirty_log_sync(log, 0, map), 1);
	cr_assert_eq(map[0], 0x9);

	/* Huge pages: a byte in 2 MiB page 2 marks bit 2; a range across two marks both. */
	cr_assert_eq(ferry_dirty_log_mark(log, 1, 4 * MIB + 12345, 1), 0);
	cr_assert_eq(ferry_dirty_log_mark(log, 1, 2 * MIB - 1, 2), 0);
	m = tdirty_sync(log, 1, &n);
	tdirty_expect_exactly(m, 4, (uint64_t[]){0, 1, 2}, 3);
	free(m);

	struct ferry_dirty_stats st;
	ferry_dirty_log_stats(log, &st);
	cr_assert_eq(st.syncs, 4);
	cr_assert_eq(st.pages_reported, 4 + 0 + 1 + 3);
	cr_assert_eq(st.marks, 7);
	cr_assert_eq(st.faults, 0);
	cr_assert_geq(st.sync_ns, st.max_sync_ns);
	ferry_dirty_log_destroy(log);
}

Test(engine_dirty_explicit, markers_race_syncs_without_loss)
{
	uint64_t pages = 4096;
	uint8_t *mem = tdirty_map(pages * PS, PS, 0);
	struct ferry_dirty_block b = {.host = mem, .length = pages * PS, .page_size = PS};
	struct ferry_dirty_log *log;

	cr_assert_eq(ferry_dirty_log_create_explicit(&b, 1, &log), 0);
	struct tdirty_race r = {.log = log,
				.mem = mem,
				.pages = pages,
				.page_size = PS,
				.mark_writes = true,
				.exact = true,
				.seconds = 0.5};
	tdirty_run_race(&r);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, pages * PS);
}
