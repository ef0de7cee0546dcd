/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging: which pages of guest RAM were written since the last look.
 *
 * A dirty log is a source over a fixed set of RAM blocks with three operations:
 * start (begin tracking), sync (report the pages of one block written since the
 * previous sync and make them clean again) and stop. Three sources exist:
 *
 *   kvm       KVM's dirty log of memory slots (KVM_GET_DIRTY_LOG, and
 *             KVM_CLEAR_DIRTY_LOG when the kernel has manual protection): the
 *             hypervisor case. Only the guest's writes are logged.
 *   uffd      userfaultfd write-protection of plain process memory: asynchronous
 *             (PAGEMAP_SCAN, Linux >= 6.7) or synchronous (a fault thread).
 *   explicit  nothing is tracked by the kernel: the embedder reports every write
 *             with ferry_dirty_log_mark().
 *
 * ferry_dirty_log_mark() works on every source: it is how an embedder reports the
 * writes the kernel cannot see (device emulation writing guest RAM from a host
 * thread under KVM, for example).
 *
 * Bitmaps: one bit per page of the block (page i of a block is the bytes
 * [i * page_size, (i + 1) * page_size)), bit i is bit (i % 64) of the 64-bit
 * word i / 64. Size them with ferry_dirty_bitmap_words().
 *
 * The guarantee (every source): a write that begins after ferry_dirty_log_start()
 * returned is reported by a sync of its block that returns after the write has
 * completed. So a caller that copies the reported pages after each sync, and
 * does a last sync once the writers are stopped, copies every page's final
 * contents. Pages may be reported that were not written (the kernel's tracking
 * granularity, a huge page, or a write that raced a sync); pages are never
 * missed.
 *
 * Full design, races and costs: docs/dirty-logging.md.
 */
#ifndef FERRY_DIRTY_H
#define FERRY_DIRTY_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The most blocks one log may track. */
#define FERRY_DIRTY_MAX_BLOCKS 65536u

/*
 * One RAM block, as the embedder registered it. Plain data, copied by _create.
 * @host: the block's first byte in this process; a multiple of @page_size.
 * @length: bytes; a non-zero multiple of @page_size.
 * @page_size: the unit of tracking and reporting: a power of two, at least the
 *	system page size and at most 1 GiB (4096 and 2 MiB are the usual ones).
 *	For memory backed by huge pages, give the huge page size.
 */
struct ferry_dirty_block {
	void *host;
	uint64_t length;
	uint64_t page_size;
};

/* A KVM memory slot and the block it maps. */
struct ferry_dirty_kvm_slot {
	struct ferry_dirty_block block;
	/*
	 * The slot as given to KVM_SET_USER_MEMORY_REGION: (address space << 16) | id.
	 * The embedder created it with KVM_MEM_LOG_DIRTY_PAGES, and its memory is
	 * exactly @block (same host address and length).
	 */
	uint32_t slot;
};

/* Flags of struct ferry_dirty_kvm_attr. */
enum ferry_dirty_kvm_flags {
	/*
	 * Use KVM_GET_DIRTY_LOG alone (which re-protects the whole slot on every
	 * read) even when the kernel offers KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2.
	 */
	FERRY_DIRTY_KVM_NO_MANUAL_PROTECT = 1u << 0,
};

struct ferry_dirty_kvm_attr {
	uint32_t size;	/* sizeof(struct ferry_dirty_kvm_attr): lets the struct grow */
	uint32_t flags; /* enum ferry_dirty_kvm_flags */
};

enum ferry_dirty_uffd_mode {
	/* Asynchronous if the kernel offers it (UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN). */
	FERRY_DIRTY_UFFD_AUTO = 0,
	/* Asynchronous or fail with -EOPNOTSUPP. */
	FERRY_DIRTY_UFFD_ASYNC = 1,
	/* Synchronous write-protect faults served by a thread of the log. */
	FERRY_DIRTY_UFFD_SYNC = 2,
};

/* Flags of struct ferry_dirty_uffd_attr. */
enum ferry_dirty_uffd_flags {
	/*
	 * Map the zero page into never-touched anonymous pages at start (a read
	 * fault each) instead of relying on UFFD_FEATURE_WP_UNPOPULATED. Automatic
	 * when the kernel lacks that feature; set it to test that path.
	 */
	FERRY_DIRTY_UFFD_PREFAULT = 1u << 0,
};

struct ferry_dirty_uffd_attr {
	uint32_t size;	/* sizeof(struct ferry_dirty_uffd_attr) */
	uint32_t mode;	/* enum ferry_dirty_uffd_mode */
	uint32_t flags; /* enum ferry_dirty_uffd_flags */
};

/* Counters of one log; plain data, filled by ferry_dirty_log_stats(). */
struct ferry_dirty_stats {
	uint64_t syncs;		 /* successful ferry_dirty_log_sync() calls */
	uint64_t pages_reported; /* pages those syncs reported (a page counts once per sync) */
	uint64_t sync_ns;	 /* wall time spent inside them */
	uint64_t max_sync_ns;	 /* the longest one */
	uint64_t marks;		 /* ferry_dirty_log_mark() calls */
	uint64_t faults;	 /* write faults served (synchronous userfaultfd only) */
};

struct ferry_dirty_log;

/* Words of a bitmap covering @pages pages. */
static inline size_t ferry_dirty_bitmap_words(uint64_t pages)
{
	return (size_t)((pages + 63) / 64);
}

/**
 * ferry_dirty_log_create_kvm() - a dirty log over KVM memory slots.
 * @vm_fd: the VM's file descriptor (from KVM_CREATE_VM); borrowed, not closed.
 * @slots: @n slots, each a block of the log (block i is slots[i]).
 * @n: 1 to FERRY_DIRTY_MAX_BLOCKS.
 * @attr: options, or NULL for the defaults.
 * @out: receives the log.
 *
 * Nothing is asked of KVM until start. At start, when the kernel offers
 * KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2, the log enables it on @vm_fd (with
 * KVM_DIRTY_LOG_INITIALLY_SET where offered) so a sync re-protects only the
 * pages it reports; the capability then stays enabled for the VM. Between start
 * and stop the log owns the dirty bitmaps of these slots: nothing else may call
 * KVM_GET_DIRTY_LOG or KVM_CLEAR_DIRTY_LOG on them.
 *
 * Only the guest's writes are logged. Writes into the slots' memory made by the
 * host (device emulation, vhost in this process, the embedder's threads) must
 * be reported with ferry_dirty_log_mark().
 *
 * Thread context: any thread. Returns 0, -EINVAL for bad arguments (unaligned
 * or overlapping blocks, a bad page size, a duplicate slot), -ENOMEM.
 */
int ferry_dirty_log_create_kvm(int vm_fd, const struct ferry_dirty_kvm_slot *slots, size_t n,
			       const struct ferry_dirty_kvm_attr *attr,
			       struct ferry_dirty_log **out);

/**
 * ferry_dirty_log_create_uffd() - a dirty log over plain process memory.
 * @blocks: @n blocks of this process's memory: anonymous (private or shared),
 *	shmem or hugetlbfs; the asynchronous mode also takes file mappings. They
 *	must stay mapped until the log is destroyed.
 * @n: 1 to FERRY_DIRTY_MAX_BLOCKS.
 * @attr: options (mode), or NULL for FERRY_DIRTY_UFFD_AUTO.
 * @out: receives the log.
 *
 * Opens a userfaultfd and picks the mode (ferry_dirty_log_kind() says which):
 * "uffd-async" lets the kernel resolve write faults itself and reads the
 * written pages with PAGEMAP_SCAN, which also re-protects them, so a write costs
 * one minor fault per page and round; "uffd-sync" (kernels before 6.7) serves
 * each first write of a page per round in a thread of the log, which records
 * the page and lifts the protection: the faulting thread waits for that thread,
 * and for a sync in progress. The memory is registered at start and
 * unregistered at stop. Not fork-safe: a child neither inherits the tracking
 * nor may use the log.
 *
 * The blocks must not be registered with another userfaultfd, and the bitmaps
 * given to sync must not lie in them. Memory discarded while tracking
 * (MADV_DONTNEED, MADV_REMOVE) is reported as written by the synchronous mode
 * and by the asynchronous mode of recent kernels (6.18 does; see
 * docs/dirty-logging.md for older ones): mark it if in doubt.
 *
 * Thread context: any thread. Returns 0, -EINVAL for bad arguments, -EPERM when
 * this process may not use userfaultfd (vm.unprivileged_userfaultfd=0 without
 * CAP_SYS_PTRACE and no access to /dev/userfaultfd: the log names the fix),
 * -ENOSYS without userfaultfd in the kernel, -EOPNOTSUPP when the kernel lacks
 * write-protection or the requested mode, -ENOMEM.
 */
int ferry_dirty_log_create_uffd(const struct ferry_dirty_block *blocks, size_t n,
				const struct ferry_dirty_uffd_attr *attr,
				struct ferry_dirty_log **out);

/**
 * ferry_dirty_log_create_explicit() - a dirty log fed only by ferry_dirty_log_mark().
 * @blocks: @n blocks (only their lengths and page sizes matter; @host may be NULL).
 * @n: 1 to FERRY_DIRTY_MAX_BLOCKS.
 * @out: receives the log.
 *
 * For embedders that track dirtiness themselves (a hypervisor with its own
 * dirty ring, an emulator that sees every store).
 *
 * Thread context: any thread. Returns 0, -EINVAL, -ENOMEM.
 */
int ferry_dirty_log_create_explicit(const struct ferry_dirty_block *blocks, size_t n,
				    struct ferry_dirty_log **out);

/**
 * ferry_dirty_log_start() - begin tracking.
 * @log: a created or stopped log.
 *
 * Every write that begins after this returns will be reported. Forgets whatever
 * was recorded before (marks included). Call it before the first full pass over
 * RAM, so the pass sees every write made before the log started.
 *
 * Thread context: not concurrently with sync, stop or destroy of @log. Returns
 * 0, FERRY_ESTATE when already started, or a negative errno from the kernel
 * (the log is then stopped).
 */
int ferry_dirty_log_start(struct ferry_dirty_log *log);

/**
 * ferry_dirty_log_sync() - collect the pages of one block written since its last sync.
 * @log: a started log.
 * @block: index of the block, below ferry_dirty_log_block_count().
 * @bitmap: ferry_dirty_bitmap_words(ferry_dirty_log_block_pages(log, block))
 *	words; the written pages' bits are ORed in, other bits are left alone.
 *
 * The pages reported are clean again when this returns: a later write to them
 * is reported by a later sync. The first sync of a block after start reports
 * the writes since start.
 *
 * After a failure the log cannot tell what it lost: every later sync fails with
 * the same error until the log is stopped and started again; the caller must
 * treat all pages as dirty or give up.
 *
 * Thread context: thread-safe (calls are serialised), may run concurrently with
 * ferry_dirty_log_mark() and with any writer of the memory. Returns the number
 * of pages this call reported (capped at INT_MAX), FERRY_ESTATE when the log is
 * not started, -EINVAL for a bad block, or a negative errno from the kernel.
 */
int ferry_dirty_log_sync(struct ferry_dirty_log *log, uint32_t block, uint64_t *bitmap);

/**
 * ferry_dirty_log_mark() - report a write the source cannot see.
 * @log: any log.
 * @block: index of the block.
 * @offset: byte offset in the block of the first byte written.
 * @len: bytes written; every page the range touches is marked.
 *
 * Call it after the write has completed: a sync that ran between the write and
 * the mark does not report the page, the next one does.
 *
 * Thread context: any thread, lock-free, concurrently with everything except
 * destroy. Returns 0, -EINVAL for a range outside the block (nothing marked).
 */
int ferry_dirty_log_mark(struct ferry_dirty_log *log, uint32_t block, uint64_t offset,
			 uint64_t len);

/**
 * ferry_dirty_log_stop() - stop tracking.
 * @log: a started log (stopping a stopped log is a no-op).
 *
 * Releases what start took from the kernel (the userfaultfd registration and its
 * fault thread). Pages written and not yet synced are forgotten.
 *
 * Thread context: not concurrently with start, sync or destroy. Returns 0 or a
 * negative errno (the log is stopped anyway).
 */
int ferry_dirty_log_stop(struct ferry_dirty_log *log);

/**
 * ferry_dirty_log_destroy() - stop if needed and free the log.
 * @log: a log, or NULL.
 *
 * Thread context: no other call on @log may be running or follow.
 */
void ferry_dirty_log_destroy(struct ferry_dirty_log *log);

/**
 * ferry_dirty_log_kind() - the source's name.
 *
 * "kvm", "uffd-async", "uffd-sync" or "explicit". Static string; thread-safe.
 */
const char *ferry_dirty_log_kind(const struct ferry_dirty_log *log);

/* Number of blocks. Thread-safe. */
uint32_t ferry_dirty_log_block_count(const struct ferry_dirty_log *log);

/* Pages of block @block (0 for a bad index). Thread-safe. */
uint64_t ferry_dirty_log_block_pages(const struct ferry_dirty_log *log, uint32_t block);

/**
 * ferry_dirty_log_stats() - a snapshot of the log's counters.
 *
 * Thread-safe; each counter is read atomically, the set is not one instant.
 */
void ferry_dirty_log_stats(const struct ferry_dirty_log *log, struct ferry_dirty_stats *out);

#ifdef __cplusplus
}
#endif
#endif
