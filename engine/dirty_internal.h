/* SPDX-License-Identifier: MIT */
/*
 * The inside of a dirty log: the object every source embeds and the ops table
 * through which the common code (dirty.c) drives a source. Private to engine/.
 */
#ifndef ENG_DIRTY_INTERNAL_H
#define ENG_DIRTY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/dirty.h>

#define eng_container_of(ptr, type, member) ((type *)(void *)((char *)(ptr)-offsetof(type, member)))

struct ferry_dirty_log;

/*
 * What a source does. The common code validates arguments and state, holds
 * log->lock around start, sync and stop, times syncs, and takes the marks.
 */
struct eng_dirty_ops {
	/* "kvm", "uffd-async", ... */
	const char *kind;
	/*
	 * Arm the kernel's tracking of every block. On failure, undo what was done:
	 * the log stays stopped. May be NULL (nothing to arm).
	 */
	int (*start)(struct ferry_dirty_log *log);
	/*
	 * OR into @report (block page granularity; all zero on entry) what the
	 * kernel saw written in @block since the last sync, leaving those pages
	 * protected again. Returns 0 or a negative error. Called with log->lock
	 * held. Unless @takes_marks, the common code then takes the block's marks
	 * into @report; a source whose own threads set marks and lift protection
	 * (synchronous userfaultfd) sets @takes_marks and takes them itself, under
	 * its own lock, with eng_dirty_take_marks(). May be NULL (marks only).
	 */
	int (*sync)(struct ferry_dirty_log *log, uint32_t block, uint64_t *report);
	bool takes_marks;
	/* Disarm; must succeed in leaving the memory untracked. May be NULL. */
	int (*stop)(struct ferry_dirty_log *log);
	/* Free the source's own parts (the log is stopped). May be NULL. */
	void (*destroy)(struct ferry_dirty_log *log);
};

struct eng_dirty_block {
	uint8_t *host;
	uint64_t length;
	uint64_t page_size;
	uint64_t pages;
	unsigned int page_shift;
	/* Pages marked by ferry_dirty_log_mark() or by a fault handler; taken by sync. */
	_Atomic uint64_t *marks;
	/* Scratch for one sync (under log->lock): the source's report, then the marks. */
	uint64_t *report;
};

enum eng_dirty_state {
	ENG_DIRTY_STOPPED = 0,
	ENG_DIRTY_STARTED = 1,
};

struct ferry_dirty_log {
	const struct eng_dirty_ops *ops;
	uint32_t nblocks;
	struct eng_dirty_block *blocks;
	/* Serialises start, sync and stop. */
	pthread_mutex_t lock;
	bool lock_ready;
	enum eng_dirty_state state;
	/* Sticky sync failure (0 when none); cleared by start. */
	int error;
	_Atomic uint64_t syncs, pages_reported, sync_ns, max_sync_ns, marks, faults;
};

/*
 * Fill the common part of a log: copy and check @blocks (sizes, alignment; with
 * @need_host, non-NULL and non-overlapping hosts), allocate the marks. The log
 * must be zeroed first; on failure, eng_dirty_fini() releases what was done.
 */
int eng_dirty_init(struct ferry_dirty_log *log, const struct eng_dirty_ops *ops,
		   const struct ferry_dirty_block *blocks, size_t n, bool need_host);
void eng_dirty_fini(struct ferry_dirty_log *log);

/* The block whose memory holds @addr, or -1. */
int64_t eng_dirty_find_block(const struct ferry_dirty_log *log, uintptr_t addr);

/* Mark the pages of block @b that bytes [offset, offset + len) touch (lock-free). */
void eng_dirty_mark_pages(struct ferry_dirty_log *log, uint32_t b, uint64_t offset, uint64_t len);

/* OR the marks of block @b into @report, clearing them (atomic per word). */
void eng_dirty_take_marks(struct ferry_dirty_log *log, uint32_t b, uint64_t *report);

/* Monotonic clock in nanoseconds. */
uint64_t eng_dirty_now_ns(void);

#endif
