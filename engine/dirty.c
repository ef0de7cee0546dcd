/* SPDX-License-Identifier: MIT */
/*
 * The common part of every dirty log: argument and state checks, the lock, the
 * marks, statistics, and dispatch to the source's ops.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry_log_internal.h>

#include "bitmap.h"
#include "dirty_internal.h"

#define MAX_PAGE_SIZE ((uint64_t)1 << 30)

uint64_t eng_dirty_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int check_block(const struct ferry_dirty_block *b, size_t i, bool need_host)
{
	uint64_t sys_page = (uint64_t)sysconf(_SC_PAGESIZE);

	if (b->page_size < sys_page || b->page_size > MAX_PAGE_SIZE ||
	    (b->page_size & (b->page_size - 1))) {
		ferry_log_msg(FERRY_LOG_ERROR, "engine",
			      "dirty log: block %zu: page size %llu is not a power of two in "
			      "[%llu, 1 GiB]",
			      i, (unsigned long long)b->page_size, (unsigned long long)sys_page);
		return -EINVAL;
	}
	if (b->length == 0 || b->length % b->page_size) {
		ferry_log_msg(FERRY_LOG_ERROR, "engine",
			      "dirty log: block %zu: length %llu is not a non-zero multiple of "
			      "the page size %llu",
			      i, (unsigned long long)b->length, (unsigned long long)b->page_size);
		return -EINVAL;
	}
	if (need_host && (!b->host || (uintptr_t)b->host % b->page_size ||
			  (uint64_t)UINTPTR_MAX - (uintptr_t)b->host < b->length)) {
		ferry_log_msg(FERRY_LOG_ERROR, "engine",
			      "dirty log: block %zu: host address %p is NULL, not aligned to its "
			      "page size %llu, or wraps",
			      i, b->host, (unsigned long long)b->page_size);
		return -EINVAL;
	}
	return 0;
}

static int cmp_by_host(const void *a, const void *b)
{
	const struct eng_dirty_block *x = *(const struct eng_dirty_block *const *)a;
	const struct eng_dirty_block *y = *(const struct eng_dirty_block *const *)b;

	return x->host < y->host ? -1 : x->host > y->host;
}

/* Overlapping blocks would make a page belong to two blocks: refuse them. */
static int check_overlap(struct ferry_dirty_log *log)
{
	struct eng_dirty_block **order = calloc(log->nblocks, sizeof(*order));
	int ret = 0;

	if (!order)
		return -ENOMEM;
	for (uint32_t i = 0; i < log->nblocks; i++)
		order[i] = &log->blocks[i];
	qsort(order, log->nblocks, sizeof(*order), cmp_by_host);
	for (uint32_t i = 1; i < log->nblocks; i++) {
		if ((uintptr_t)order[i - 1]->host + order[i - 1]->length >
		    (uintptr_t)order[i]->host) {
			ferry_log_msg(FERRY_LOG_ERROR, "engine",
				      "dirty log: blocks %td and %td overlap",
				      order[i - 1] - log->blocks, order[i] - log->blocks);
			ret = -EINVAL;
			break;
		}
	}
	free(order);
	return ret;
}

int eng_dirty_init(struct ferry_dirty_log *log, const struct eng_dirty_ops *ops,
		   const struct ferry_dirty_block *blocks, size_t n, bool need_host)
{
	int ret;

	log->ops = ops;
	if (!blocks || n == 0 || n > FERRY_DIRTY_MAX_BLOCKS) {
		ferry_log_msg(FERRY_LOG_ERROR, "engine", "dirty log: %zu blocks (want 1 to %u)",
			      blocks ? n : 0, FERRY_DIRTY_MAX_BLOCKS);
		return -EINVAL;
	}
	for (size_t i = 0; i < n; i++) {
		ret = check_block(&blocks[i], i, need_host);
		if (ret)
			return ret;
	}
	if (pthread_mutex_init(&log->lock, NULL))
		return -ENOMEM;
	log->lock_ready = true;
	log->blocks = calloc(n, sizeof(*log->blocks));
	if (!log->blocks)
		return -ENOMEM;
	log->nblocks = (uint32_t)n;
	for (size_t i = 0; i < n; i++) {
		struct eng_dirty_block *b = &log->blocks[i];

		b->host = blocks[i].host;
		b->length = blocks[i].length;
		b->page_size = blocks[i].page_size;
		b->page_shift = (unsigned int)__builtin_ctzll(b->page_size);
		b->pages = b->length >> b->page_shift;
		b->marks = calloc(eng_bitmap_words(b->pages), sizeof(*b->marks));
		b->report = calloc(eng_bitmap_words(b->pages), sizeof(*b->report));
		if (!b->marks || !b->report)
			return -ENOMEM;
	}
	if (need_host)
		return check_overlap(log);
	return 0;
}

void eng_dirty_fini(struct ferry_dirty_log *log)
{
	if (log->blocks) {
		for (uint32_t i = 0; i < log->nblocks; i++) {
			free(log->blocks[i].marks);
			free(log->blocks[i].report);
		}
		free(log->blocks);
		log->blocks = NULL;
	}
	if (log->lock_ready) {
		pthread_mutex_destroy(&log->lock);
		log->lock_ready = false;
	}
}

int64_t eng_dirty_find_block(const struct ferry_dirty_log *log, uintptr_t addr)
{
	/* Few blocks in practice (a guest has a handful of RAM blocks): a linear scan. */
	for (uint32_t i = 0; i < log->nblocks; i++) {
		uintptr_t h = (uintptr_t)log->blocks[i].host;
		if (addr >= h && addr - h < log->blocks[i].length)
			return i;
	}
	return -1;
}

void eng_dirty_mark_pages(struct ferry_dirty_log *log, uint32_t b, uint64_t offset, uint64_t len)
{
	struct eng_dirty_block *blk = &log->blocks[b];
	uint64_t first = offset >> blk->page_shift;
	uint64_t last = (offset + len - 1) >> blk->page_shift;

	eng_abitmap_set_range(blk->marks, first, last - first + 1);
}

void eng_dirty_take_marks(struct ferry_dirty_log *log, uint32_t b, uint64_t *report)
{
	struct eng_dirty_block *blk = &log->blocks[b];

	eng_abitmap_take(blk->marks, report, eng_bitmap_words(blk->pages));
}

int ferry_dirty_log_start(struct ferry_dirty_log *log)
{
	int ret = 0;

	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->lock);
	if (log->state == ENG_DIRTY_STARTED) {
		ret = FERRY_ESTATE;
		goto out;
	}
	/*
	 * Forget old marks first: a mark that lands after this belongs to a write
	 * made during start and is kept; the kernel side starts clean below.
	 */
	for (uint32_t i = 0; i < log->nblocks; i++) {
		struct eng_dirty_block *b = &log->blocks[i];
		for (size_t w = 0; w < eng_bitmap_words(b->pages); w++)
			atomic_store_explicit(&b->marks[w], 0, memory_order_relaxed);
	}
	if (log->ops->start) {
		ret = log->ops->start(log);
		if (ret)
			goto out;
	}
	log->error = 0;
	log->state = ENG_DIRTY_STARTED;
	ferry_log_msg(FERRY_LOG_DEBUG, "engine", "dirty log (%s): started over %u blocks",
		      log->ops->kind, log->nblocks);
out:
	pthread_mutex_unlock(&log->lock);
	return ret;
}

static void stat_max(_Atomic uint64_t *max, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(max, memory_order_relaxed);

	while (v > cur && !atomic_compare_exchange_weak(max, &cur, v))
		;
}

int ferry_dirty_log_sync(struct ferry_dirty_log *log, uint32_t block, uint64_t *bitmap)
{
	int64_t found = 0;
	int ret;

	if (!log || !bitmap || block >= log->nblocks)
		return -EINVAL;
	struct eng_dirty_block *b = &log->blocks[block];
	uint64_t t0 = eng_dirty_now_ns();

	pthread_mutex_lock(&log->lock);
	if (log->state != ENG_DIRTY_STARTED) {
		ret = FERRY_ESTATE;
		goto out;
	}
	if (log->error) {
		ret = log->error;
		goto out;
	}
	if (log->ops->sync) {
		ret = log->ops->sync(log, block, b->report);
		if (ret < 0) {
			log->error = ret;
			ferry_log_msg(FERRY_LOG_ERROR, "engine",
				      "dirty log (%s): sync of block %u failed: %s; the log is "
				      "unreliable until restarted",
				      log->ops->kind, block, ferry_strerror(ret));
			/* Leave the scratch clean for the next start. */
			memset(b->report, 0, eng_bitmap_words(b->pages) * sizeof(*b->report));
			goto out;
		}
	}
	/*
	 * Marks last: the source has re-armed the kernel's tracking above, so a
	 * page written and marked before this point is in the marks taken now, and
	 * one marked later is taken by the next sync.
	 */
	if (!log->ops->takes_marks)
		eng_dirty_take_marks(log, block, b->report);
	/* Merge into the caller's map; the scratch is all zero again afterwards. */
	for (size_t w = 0, nw = eng_bitmap_words(b->pages); w < nw; w++) {
		uint64_t v = b->report[w];
		if (!v)
			continue;
		b->report[w] = 0;
		bitmap[w] |= v;
		found += __builtin_popcountll(v);
	}
	uint64_t dt = eng_dirty_now_ns() - t0;
	atomic_fetch_add_explicit(&log->syncs, 1, memory_order_relaxed);
	atomic_fetch_add_explicit(&log->pages_reported, (uint64_t)found, memory_order_relaxed);
	atomic_fetch_add_explicit(&log->sync_ns, dt, memory_order_relaxed);
	stat_max(&log->max_sync_ns, dt);
	ret = found > INT_MAX ? INT_MAX : (int)found;
out:
	pthread_mutex_unlock(&log->lock);
	return ret;
}

int ferry_dirty_log_mark(struct ferry_dirty_log *log, uint32_t block, uint64_t offset, uint64_t len)
{
	if (!log || block >= log->nblocks)
		return -EINVAL;
	struct eng_dirty_block *b = &log->blocks[block];
	if (len == 0 || offset >= b->length || len > b->length - offset)
		return -EINVAL;
	eng_dirty_mark_pages(log, block, offset, len);
	atomic_fetch_add_explicit(&log->marks, 1, memory_order_relaxed);
	return 0;
}

int ferry_dirty_log_stop(struct ferry_dirty_log *log)
{
	int ret = 0;

	if (!log)
		return -EINVAL;
	pthread_mutex_lock(&log->lock);
	if (log->state == ENG_DIRTY_STARTED) {
		if (log->ops->stop)
			ret = log->ops->stop(log);
		log->state = ENG_DIRTY_STOPPED;
		ferry_log_msg(FERRY_LOG_DEBUG, "engine", "dirty log (%s): stopped", log->ops->kind);
	}
	pthread_mutex_unlock(&log->lock);
	return ret;
}

void ferry_dirty_log_destroy(struct ferry_dirty_log *log)
{
	if (!log)
		return;
	/* A half-built log never had its lock initialised and was never started. */
	if (log->lock_ready)
		ferry_dirty_log_stop(log);
	if (log->ops && log->ops->destroy)
		log->ops->destroy(log);
	else {
		eng_dirty_fini(log);
		free(log);
	}
}

const char *ferry_dirty_log_kind(const struct ferry_dirty_log *log)
{
	return log && log->ops ? log->ops->kind : "none";
}

uint32_t ferry_dirty_log_block_count(const struct ferry_dirty_log *log)
{
	return log ? log->nblocks : 0;
}

uint64_t ferry_dirty_log_block_pages(const struct ferry_dirty_log *log, uint32_t block)
{
	if (!log || block >= log->nblocks)
		return 0;
	return log->blocks[block].pages;
}

void ferry_dirty_log_stats(const struct ferry_dirty_log *log, struct ferry_dirty_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!log)
		return;
	out->syncs = atomic_load(&log->syncs);
	out->pages_reported = atomic_load(&log->pages_reported);
	out->sync_ns = atomic_load(&log->sync_ns);
	out->max_sync_ns = atomic_load(&log->max_sync_ns);
	out->marks = atomic_load(&log->marks);
	out->faults = atomic_load(&log->faults);
}
