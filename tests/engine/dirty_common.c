/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "dirty_common.h"

uint8_t *tdirty_map(size_t len, size_t align, unsigned int flags)
{
	int mflags = MAP_ANONYMOUS | ((flags & TDIRTY_SHARED) ? MAP_SHARED : MAP_PRIVATE);
	uint8_t *raw = mmap(NULL, len + align, PROT_READ | PROT_WRITE, mflags, -1, 0);

	cr_assert_neq(raw, MAP_FAILED, "mmap of %zu bytes failed", len + align);
	uint8_t *p = (uint8_t *)(((uintptr_t)raw + align - 1) & ~((uintptr_t)align - 1));
	if (p > raw)
		munmap(raw, (size_t)(p - raw));
	if (raw + len + align > p + len)
		munmap(p + len, (size_t)(raw + len + align - (p + len)));
	madvise(p, len, (flags & TDIRTY_THP) ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	return p;
}

void tdirty_unmap(uint8_t *p, size_t len)
{
	munmap(p, len);
}

uint64_t *tdirty_sync(struct ferry_dirty_log *log, uint32_t block, int *count)
{
	uint64_t pages = ferry_dirty_log_block_pages(log, block);
	uint64_t *map = calloc(ferry_dirty_bitmap_words(pages) + 1, sizeof(uint64_t));

	cr_assert_not_null(map);
	int n = ferry_dirty_log_sync(log, block, map);
	cr_assert_geq(n, 0, "sync of block %u failed: %d", block, n);
	if (count)
		*count = n;
	return map;
}

void tdirty_expect_exactly(const uint64_t *map, uint64_t pages, const uint64_t *list, size_t n)
{
	uint64_t found = 0;

	for (uint64_t p = 0; p < pages; p++) {
		bool want = false;
		for (size_t i = 0; i < n; i++)
			want |= list[i] == p;
		bool got = (map[p / 64] >> (p % 64)) & 1;
		cr_assert_eq(got, want, "page %llu: reported %d, expected %d",
			     (unsigned long long)p, got, want);
		found += got;
	}
	cr_assert_eq(found, n);
	/* Nothing past the last page. */
	if (pages % 64)
		cr_assert_eq(map[pages / 64] >> (pages % 64), 0, "bits past the block are set");
}

uint64_t tdirty_anon_huge_bytes(void)
{
	FILE *f = fopen("/proc/self/smaps_rollup", "r");
	char line[256];
	unsigned long long kb = 0;

	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "AnonHugePages: %llu kB", &kb) == 1)
			break;
	fclose(f);
	return (uint64_t)kb * 1024;
}

/* The race. */

#define HOT_PAGES 64

struct race_state {
	const struct tdirty_race *cfg;
	_Atomic uint64_t seq;
	atomic_bool stop;
	/* Per page: the writer's last sequence number; a page has one writer. */
	_Atomic uint64_t *last_write;
	uint8_t *written;
	_Atomic uint64_t writes;
};

struct writer_arg {
	struct race_state *st;
	unsigned int id;
};

static void *race_writer(void *arg)
{
	struct writer_arg *wa = arg;
	struct race_state *st = wa->st;
	const struct tdirty_race *c = st->cfg;
	unsigned int seed = 4242 + wa->id;
	uint64_t half = c->pages / 2;

	while (!atomic_load_explicit(&st->stop, memory_order_relaxed)) {
		/* Writer k owns the pages p with p % 2 == k. */
		uint64_t slot = rand_r(&seed) % 10 < 7 ? (uint64_t)rand_r(&seed) % HOT_PAGES
						       : (uint64_t)rand_r(&seed) % half;
		uint64_t p = slot * 2 + wa->id;
		uint64_t s = atomic_fetch_add(&st->seq, 1) + 1;
		uint64_t words = c->page_size / 8;
		volatile uint64_t *page = (volatile uint64_t *)(void *)(c->mem + p * c->page_size);
		size_t off = (size_t)(1 + s % (words - 1));

		page[off] = s;
		page[0] = s;
		atomic_store_explicit(&st->last_write[p], s, memory_order_release);
		st->written[p] = 1;
		if (c->mark_writes)
			ferry_dirty_log_mark(c->log, c->block, p * c->page_size, c->page_size);
		atomic_fetch_add_explicit(&st->writes, 1, memory_order_relaxed);
	}
	return NULL;
}

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Copy the reported pages; remember the sequence number current when the sync returned. */
static uint64_t copy_reported(const struct tdirty_race *c, struct race_state *st, uint8_t *dest,
			      uint64_t *reported_at, uint8_t *reported)
{
	uint64_t *map = tdirty_sync(c->log, c->block, NULL);
	uint64_t after = atomic_load(&st->seq), n = 0;

	for (uint64_t p = 0; p < c->pages; p++) {
		if (!((map[p / 64] >> (p % 64)) & 1))
			continue;
		memcpy(dest + p * c->page_size, c->mem + p * c->page_size, c->page_size);
		reported_at[p] = after;
		reported[p] = 1;
		n++;
	}
	free(map);
	return n;
}

void tdirty_run_race(const struct tdirty_race *c)
{
	struct race_state st = {.cfg = c};
	size_t bytes = c->pages * c->page_size;
	uint8_t *dest = malloc(bytes);
	uint64_t *reported_at = calloc(c->pages, sizeof(uint64_t));
	uint8_t *reported = calloc(c->pages, 1);
	pthread_t w[2];
	struct writer_arg wa[2] = {{&st, 0}, {&st, 1}};

	st.last_write = calloc(c->pages, sizeof(*st.last_write));
	st.written = calloc(c->pages, 1);
	cr_assert(dest && reported_at && reported && st.last_write && st.written);
	cr_assert_geq(c->pages, 2 * HOT_PAGES);

	cr_assert_eq(ferry_dirty_log_start(c->log), 0);
	/* The bulk pass: everything, once, after start. */
	memcpy(dest, c->mem, bytes);

	for (int i = 0; i < 2; i++)
		cr_assert_eq(pthread_create(&w[i], NULL, race_writer, &wa[i]), 0);
	uint64_t syncs = 0, reported_while_writing = 0;
	double t_end = now_s() + c->seconds;
	/* At least a few syncs however slow the machine (valgrind, TCG). */
	while (now_s() < t_end || syncs < 8) {
		reported_while_writing += copy_reported(c, &st, dest, reported_at, reported);
		syncs++;
	}
	atomic_store(&st.stop, true);
	for (int i = 0; i < 2; i++)
		pthread_join(w[i], NULL);
	uint64_t last = copy_reported(c, &st, dest, reported_at, reported);

	uint64_t writes = atomic_load(&st.writes), written_pages = 0;
	for (uint64_t p = 0; p < c->pages; p++)
		written_pages += st.written[p];
	cr_log_info("%s race: %llu writes to %llu pages, %llu syncs reported %llu pages while "
		    "writing, %llu in the last",
		    ferry_dirty_log_kind(c->log), (unsigned long long)writes,
		    (unsigned long long)written_pages, (unsigned long long)syncs,
		    (unsigned long long)reported_while_writing, (unsigned long long)last);
	cr_assert_geq(syncs, 5, "too few syncs overlapped the writers");
	cr_assert_gt(reported_while_writing, 0, "no sync overlapped a write");

	for (uint64_t p = 0; p < c->pages; p++) {
		uint64_t lw = atomic_load(&st.last_write[p]);
		if (st.written[p]) {
			/* Reported by a sync that returned after the page's last write. */
			cr_assert(reported[p], "page %llu written (last seq %llu), never reported",
				  (unsigned long long)p, (unsigned long long)lw);
			cr_assert_geq(reported_at[p], lw,
				      "page %llu: last write seq %llu, last report at seq %llu",
				      (unsigned long long)p, (unsigned long long)lw,
				      (unsigned long long)reported_at[p]);
			uint64_t got;
			memcpy(&got, dest + p * c->page_size, sizeof(got));
			cr_assert_eq(got, lw, "page %llu: destination holds seq %llu, source %llu",
				     (unsigned long long)p, (unsigned long long)got,
				     (unsigned long long)lw);
		} else if (c->exact) {
			cr_assert_not(reported[p], "page %llu reported but never written",
				      (unsigned long long)p);
		}
	}
	/* The migration invariant: the destination is the source. */
	cr_assert_eq(memcmp(dest, c->mem, bytes), 0, "destination differs from the source");
	cr_assert_eq(ferry_dirty_log_stop(c->log), 0);

	free(dest);
	free(reported_at);
	free(reported);
	free(st.last_write);
	free(st.written);
}
