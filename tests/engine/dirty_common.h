/* SPDX-License-Identifier: MIT */
/* Helpers shared by the dirty-log suites: mappings, syncs, and the writer-vs-sync race. */
#ifndef TESTS_ENGINE_DIRTY_COMMON_H
#define TESTS_ENGINE_DIRTY_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/dirty.h>

enum tdirty_map_flags {
	TDIRTY_SHARED = 1 << 0, /* MAP_SHARED | MAP_ANONYMOUS (shmem) instead of private */
	TDIRTY_THP = 1 << 1,	/* MADV_HUGEPAGE instead of MADV_NOHUGEPAGE */
};

/* An anonymous mapping of @len bytes aligned to @align; asserts on failure. */
uint8_t *tdirty_map(size_t len, size_t align, unsigned int flags);
void tdirty_unmap(uint8_t *p, size_t len);

/* Sync @block into a new zeroed bitmap (free it); asserts the sync succeeded. */
uint64_t *tdirty_sync(struct ferry_dirty_log *log, uint32_t block, int *count);

/* Assert that @map (of @pages bits) holds exactly the @n pages listed. */
void tdirty_expect_exactly(const uint64_t *map, uint64_t pages, const uint64_t *list, size_t n);

/* Bytes of the AnonHugePages line of /proc/self/smaps_rollup (0 if unknown). */
uint64_t tdirty_anon_huge_bytes(void);

struct tdirty_race {
	struct ferry_dirty_log *log;
	uint32_t block;
	uint8_t *mem;
	uint64_t pages;
	uint64_t page_size;
	/* Writers report each write with ferry_dirty_log_mark() (the explicit source). */
	bool mark_writes;
	/* Every reported page must have been written (no false positives expected). */
	bool exact;
	/* How long the writers run. */
	double seconds;
};

/*
 * Start the log, copy the block (the bulk pass), then run two writer threads
 * (disjoint pages, a hot set and random ones, each write stores an increasing
 * sequence number into the page) against repeated syncs that copy every
 * reported page into a destination. After the writers stop and a last sync,
 * the destination must equal the block, and every page written must have been
 * reported by a sync that returned after its last write. Asserts all of it.
 */
void tdirty_run_race(const struct tdirty_race *r);

#endif
