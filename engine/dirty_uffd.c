/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging of plain process memory with userfaultfd write-protection.
 *
 * Asynchronous mode (Linux >= 6.7): UFFD_FEATURE_WP_ASYNC makes the kernel
 * resolve a write fault on a protected page by itself, just dropping the
 * protection; ioctl(PAGEMAP_SCAN) on /proc/self/pagemap with PM_SCAN_WP_MATCHING
 * then lists the pages that lost it (PAGE_IS_WRITTEN) and protects them again,
 * page by page under the page table lock, so a page is either reported or still
 * protected: no write falls between the two.
 *
 * Synchronous mode (older kernels, or on request): a write to a protected page
 * blocks the writer and queues a message; the log's fault thread records the
 * page in the block's marks and lifts the protection, which wakes the writer.
 * A sync protects the block again and then takes the marks. Why that is safe is
 * written at sync_fault_thread() below.
 *
 * Never-touched pages: with UFFD_FEATURE_WP_UNPOPULATED (implied by WP_ASYNC)
 * UFFDIO_WRITEPROTECT puts a marker into empty page table entries, so the first
 * write after start is caught like any other. Without it, an empty entry of
 * anonymous memory cannot carry the protection, and a first write would go
 * unseen; the log then maps the zero page into the block at start
 * (MADV_POPULATE_READ), which the protection can cover.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <linux/fs.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry_log_internal.h>

#include "bitmap.h"
#include "dirty_internal.h"

/*
 * UAPI the build host's headers may lack (Debian 12 ships 6.1 headers). These
 * are stable kernel ABI: PAGEMAP_SCAN and its structures since 6.7, the
 * userfaultfd features since 6.4 (WP_UNPOPULATED) and 6.7 (WP_ASYNC).
 */
#ifndef UFFD_FEATURE_WP_UNPOPULATED
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#endif
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif
#ifndef UFFD_USER_MODE_ONLY
#define UFFD_USER_MODE_ONLY 1
#endif
#ifndef USERFAULTFD_IOC_NEW
#define USERFAULTFD_IOC_NEW _IO(0xAA, 0x00)
#endif
#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif

#ifndef PAGEMAP_SCAN
struct page_region {
	__u64 start;
	__u64 end;
	__u64 categories;
};

struct pm_scan_arg {
	__u64 size;
	__u64 flags;
	__u64 start;
	__u64 end;
	__u64 walk_end;
	__u64 vec;
	__u64 vec_len;
	__u64 max_pages;
	__u64 category_inverted;
	__u64 category_mask;
	__u64 category_anyof_mask;
	__u64 return_mask;
};

#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif
#ifndef PAGE_IS_WRITTEN
#define PAGE_IS_WRITTEN (1 << 1)
#endif
#ifndef PM_SCAN_WP_MATCHING
#define PM_SCAN_WP_MATCHING (1 << 0)
#endif
#ifndef PM_SCAN_CHECK_WPASYNC
#define PM_SCAN_CHECK_WPASYNC (1 << 1)
#endif

_Static_assert(sizeof(struct pm_scan_arg) == 96, "pm_scan_arg is 12 u64");
_Static_assert(sizeof(struct page_region) == 24, "page_region is 3 u64");

/* Regions per PAGEMAP_SCAN call: 24 KiB of output, enough for most rounds in one call. */
#define SCAN_VEC_LEN 1024
/* Messages read per read(2) by the fault thread. */
#define FAULT_BATCH 64
/*
 * A synchronous sync protects the written runs one call each while there are
 * fewer than one per this many pages of the block, and the whole block in one
 * call beyond (see protect_marked()). Measured on the development machine: one
 * call costs about as much as walking 300 pages (docs/dirty-logging.md).
 */
#define PAGES_PER_PROTECT_CALL 256
/* How many times a sync yields to a fault thread waiting for the fault lock. */
#define YIELD_TO_FAULTS 1000

struct uffd_log {
	struct ferry_dirty_log base;
	int uffd;
	int pagemap_fd;
	bool async;
	bool user_mode_only;
	bool prefault;
	uint64_t features;
	uint32_t registered; /* blocks registered so far (start unwinds these) */
	struct page_region *vec;
	/* Synchronous mode. */
	int wake_fd;
	pthread_t thread;
	bool thread_running;
	atomic_bool stopping;
	/*
	 * Held by the fault thread while it marks pages and lifts protection, and
	 * by a sync while it protects a block and takes its marks. The fault
	 * thread raises fault_waiting while it waits, and a sync lets it go
	 * first: back-to-back syncs would otherwise starve it (and every writer
	 * blocked on a fault with it).
	 */
	pthread_mutex_t fault_lock;
	bool fault_lock_ready;
	atomic_bool fault_waiting;
	/* A failure of the fault thread, reported by the next sync. */
	int fault_error;
	/* Per block: discarded memory to fault in again before the next protect. */
	bool *repopulate;
};

static const struct eng_dirty_ops uffd_async_ops;
static const struct eng_dirty_ops uffd_sync_ops;

static struct uffd_log *to_uffd(struct ferry_dirty_log *log)
{
	return eng_container_of(log, struct uffd_log, base);
}

/*
 * Open a userfaultfd. The plain system call needs vm.unprivileged_userfaultfd=1
 * or CAP_SYS_PTRACE; /dev/userfaultfd (Linux >= 6.1) needs only access to the
 * device node; UFFD_USER_MODE_ONLY is always allowed but makes faults taken in
 * kernel mode (a read(2) into the memory) fail with EFAULT when they need the
 * fault thread, so it is good for the asynchronous mode only, where the kernel
 * never waits for us.
 */
static int uffd_open(bool allow_user_mode_only, bool *user_mode_only)
{
	int flags = O_CLOEXEC | O_NONBLOCK;
	int fd = (int)syscall(SYS_userfaultfd, flags);

	*user_mode_only = false;
	if (fd >= 0)
		return fd;
	int err = errno;
	if (err != ENOSYS && err != EPERM && err != EACCES)
		return -err;
	/* Also on ENOSYS: a seccomp filter (or valgrind) may refuse the call, not the device. */
	int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);
	if (dev >= 0) {
		fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
		close(dev);
		if (fd >= 0)
			return fd;
	}
	if (err == ENOSYS) {
		ferry_log_msg(
		    FERRY_LOG_ERROR, "engine",
		    "dirty log: no userfaultfd (the kernel lacks CONFIG_USERFAULTFD, or a "
		    "seccomp filter refuses the system call)");
		return -ENOSYS;
	}
	if (allow_user_mode_only) {
		fd = (int)syscall(SYS_userfaultfd, flags | UFFD_USER_MODE_ONLY);
		if (fd >= 0) {
			*user_mode_only = true;
			return fd;
		}
	}
	ferry_log_msg(FERRY_LOG_ERROR, "engine",
		      "dirty log: this process may not use userfaultfd%s: set sysctl "
		      "vm.unprivileged_userfaultfd=1, grant CAP_SYS_PTRACE, or give it read-write "
		      "access to /dev/userfaultfd",
		      allow_user_mode_only ? "" : " for kernel-mode faults (synchronous mode)");
	return -EPERM;
}

/* UFFDIO_API can be called once per descriptor: ask a throw-away one what the kernel offers. */
static int uffd_offered(bool allow_user_mode_only, uint64_t *features)
{
	bool umo;
	int fd = uffd_open(allow_user_mode_only, &umo);

	if (fd < 0)
		return fd;
	struct uffdio_api api = {.api = UFFD_API, .features = 0};
	int ret = ioctl(fd, UFFDIO_API, &api) ? -errno : 0;
	close(fd);
	*features = api.features;
	return ret;
}

/*
 * Does this kernel's pagemap answer PAGEMAP_SCAN? A read-only scan of one page
 * of the first block: ENOTTY (no such ioctl, before 6.7) or EINVAL (flags it
 * does not know) mean no.
 */
static int pagemap_scan_works(int pagemap_fd, const struct eng_dirty_block *b)
{
	struct page_region r;
	struct pm_scan_arg a = {
	    .size = sizeof(a),
	    .start = (uintptr_t)b->host,
	    .end = (uintptr_t)b->host + (uint64_t)sysconf(_SC_PAGESIZE),
	    .vec = (uintptr_t)&r,
	    .vec_len = 1,
	    .category_mask = PAGE_IS_WRITTEN,
	    .return_mask = PAGE_IS_WRITTEN,
	};

	if (ioctl(pagemap_fd, PAGEMAP_SCAN, &a) >= 0)
		return 1;
	if (errno == ENOTTY || errno == EINVAL)
		return 0;
	return -errno;
}

/* Fault in the zero page over a block so write-protection has entries to cover. */
static int populate_read(const struct eng_dirty_block *b)
{
	if (madvise(b->host, b->length, MADV_POPULATE_READ) == 0)
		return 0;
	if (errno != EINVAL)
		return -errno;
	/* Before Linux 5.14: touch one byte per page instead. */
	size_t step = (size_t)sysconf(_SC_PAGESIZE);
	for (uint64_t off = 0; off < b->length; off += step)
		(void)*(volatile const uint8_t *)(b->host + off);
	return 0;
}

static int uffd_protect(int uffd, uintptr_t start, uint64_t len, bool protect)
{
	struct uffdio_writeprotect wp = {
	    .range = {.start = start, .len = len},
	    .mode = protect ? UFFDIO_WRITEPROTECT_MODE_WP : 0,
	};

	/* EAGAIN: the address space is changing under a fork or mremap; try again. */
	for (int tries = 0; tries < 1000; tries++) {
		if (ioctl(uffd, UFFDIO_WRITEPROTECT, &wp) == 0)
			return 0;
		if (errno != EAGAIN)
			return -errno;
		sched_yield();
	}
	return -EAGAIN;
}

static void uffd_unregister(struct uffd_log *u, uint32_t b)
{
	struct eng_dirty_block *blk = &u->base.blocks[b];
	struct uffdio_range r = {.start = (uintptr_t)blk->host, .len = blk->length};

	/*
	 * A writer blocked on a write-protect fault must not outlive the log:
	 * the kernel wakes blocked faults on UFFDIO_UNREGISTER only for MISSING
	 * registrations (Debian 12's 6.1 among others), so a WP-only range's
	 * writers would sleep until the descriptor is closed, a guest frozen
	 * after its migration failed. So: lift the protection (which wakes the
	 * range's writers, and they find the page writable), unregister, and
	 * wake the range once more for anyone who faulted in between.
	 */
	(void)uffd_protect(u->uffd, r.start, r.len, false);
	if (ioctl(u->uffd, UFFDIO_UNREGISTER, &r))
		ferry_log_msg(FERRY_LOG_WARN, "engine",
			      "dirty log: UFFDIO_UNREGISTER of block %u failed: %s", b,
			      strerror(errno));
	if (ioctl(u->uffd, UFFDIO_WAKE, &r) && errno != EINVAL)
		ferry_log_msg(FERRY_LOG_WARN, "engine",
			      "dirty log: UFFDIO_WAKE of block %u failed: %s", b, strerror(errno));
}

static int uffd_register_all(struct uffd_log *u)
{
	for (uint32_t i = 0; i < u->base.nblocks; i++) {
		struct eng_dirty_block *b = &u->base.blocks[i];
		struct uffdio_register reg = {
		    .range = {.start = (uintptr_t)b->host, .len = b->length},
		    .mode = UFFDIO_REGISTER_MODE_WP,
		};
		int ret;

		if (ioctl(u->uffd, UFFDIO_REGISTER, &reg)) {
			ret = -errno;
			ferry_log_msg(
			    FERRY_LOG_ERROR, "engine",
			    "dirty log: block %u (%p, %llu bytes) cannot be registered for "
			    "write-protection: %s (it must be mapped anonymous, shmem or "
			    "hugetlbfs memory, not registered elsewhere)",
			    i, (void *)b->host, (unsigned long long)b->length, strerror(-ret));
			return ret == -EINVAL ? -EOPNOTSUPP : ret;
		}
		u->registered = i + 1;
		if (!(reg.ioctls & ((uint64_t)1 << _UFFDIO_WRITEPROTECT))) {
			ferry_log_msg(FERRY_LOG_ERROR, "engine",
				      "dirty log: block %u: the kernel offers no write-protection "
				      "for this kind of memory",
				      i);
			return -EOPNOTSUPP;
		}
		if (u->prefault) {
			ret = populate_read(b);
			if (ret) {
				ferry_log_msg(FERRY_LOG_ERROR, "engine",
					      "dirty log: block %u: prefault failed: %s", i,
					      strerror(-ret));
				return ret;
			}
		}
		ret = uffd_protect(u->uffd, (uintptr_t)b->host, b->length, true);
		if (ret) {
			ferry_log_msg(FERRY_LOG_ERROR, "engine",
				      "dirty log: block %u: UFFDIO_WRITEPROTECT failed: %s", i,
				      strerror(-ret));
			return ret;
		}
	}
	return 0;
}

static void uffd_unregister_all(struct uffd_log *u)
{
	for (uint32_t i = 0; i < u->registered; i++)
		uffd_unregister(u, i);
	u->registered = 0;
}

/* Asynchronous mode. */

static int uffd_async_start(struct ferry_dirty_log *log)
{
	struct uffd_log *u = to_uffd(log);
	int ret = uffd_register_all(u);

	if (ret)
		uffd_unregister_all(u);
	return ret;
}

static int uffd_async_sync(struct ferry_dirty_log *log, uint32_t block, uint64_t *report)
{
	struct uffd_log *u = to_uffd(log);
	struct eng_dirty_block *b = &log->blocks[block];
	uintptr_t host = (uintptr_t)b->host, end = host + b->length, cur = host;

	while (cur < end) {
		struct pm_scan_arg a = {
		    .size = sizeof(a),
		    /* CHECK_WPASYNC: fail rather than report a range nobody protects. */
		    .flags = PM_SCAN_WP_MATCHING | PM_SCAN_CHECK_WPASYNC,
		    .start = cur,
		    .end = end,
		    .vec = (uintptr_t)u->vec,
		    .vec_len = SCAN_VEC_LEN,
		    .category_mask = PAGE_IS_WRITTEN,
		    .return_mask = PAGE_IS_WRITTEN,
		};
		long n = ioctl(u->pagemap_fd, PAGEMAP_SCAN, &a);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		for (long i = 0; i < n; i++) {
			uint64_t first = (u->vec[i].start - host) >> b->page_shift;
			uint64_t last = (u->vec[i].end - 1 - host) >> b->page_shift;
			eng_bitmap_set_range(report, first, last - first + 1);
		}
		/*
		 * The scan stops early when the vector is full; walk_end is where it
		 * stopped, and pages from there on were neither reported nor touched.
		 */
		if (a.walk_end <= cur || a.walk_end > end)
			return -EIO;
		cur = (uintptr_t)a.walk_end;
	}
	return 0;
}

static int uffd_async_stop(struct ferry_dirty_log *log)
{
	uffd_unregister_all(to_uffd(log));
	return 0;
}

/* Synchronous mode. */

static void handle_remove(struct uffd_log *u, uintptr_t start, uintptr_t end)
{
	/* Discarded memory reads back as zeroes (anonymous) or as the file: a write. */
	for (uint32_t i = 0; i < u->base.nblocks; i++) {
		struct eng_dirty_block *b = &u->base.blocks[i];
		uintptr_t h = (uintptr_t)b->host, s = start > h ? start : h;
		uintptr_t e = end < h + b->length ? end : h + b->length;
		if (s >= e)
			continue;
		eng_dirty_mark_pages(&u->base, i, s - h, e - s);
		/* Without markers the emptied entries cannot hold the protection again. */
		if (!(u->features & UFFD_FEATURE_WP_UNPOPULATED))
			u->repopulate[i] = true;
	}
}

static void handle_fault(struct uffd_log *u, uintptr_t addr)
{
	int64_t i = eng_dirty_find_block(&u->base, addr);

	if (i < 0)
		return;
	struct eng_dirty_block *b = &u->base.blocks[i];
	uint64_t off = (addr - (uintptr_t)b->host) & ~(b->page_size - 1);

	/* Record first, then let the writer go: see sync_fault_thread(). */
	eng_dirty_mark_pages(&u->base, (uint32_t)i, off, b->page_size);
	atomic_fetch_add_explicit(&u->base.faults, 1, memory_order_relaxed);
	int ret = uffd_protect(u->uffd, (uintptr_t)b->host + off, b->page_size, false);
	/* Stopping: the range may be unregistered already, which woke the writer. */
	if (ret == 0 || atomic_load(&u->stopping))
		return;
	/*
	 * The writer would wait forever. Give up tracking this block (which frees
	 * it) and make the failure stick so the engine knows the log is blind.
	 */
	ferry_log_msg(FERRY_LOG_ERROR, "engine",
		      "dirty log: cannot lift write-protection at %p: %s; tracking of block "
		      "%lld stops",
		      (void *)addr, strerror(-ret), (long long)i);
	uffd_unregister(u, (uint32_t)i);
	if (!u->fault_error)
		u->fault_error = ret;
}

/*
 * The fault thread, and why no write is lost.
 *
 * For every page p of a started log this invariant holds whenever neither this
 * thread nor a sync is inside its critical section (both hold fault_lock):
 *
 *	(I) p is write-protected, or p's bit is set in the block's marks.
 *
 * After start every page is protected. The fault handler sets the bit and only
 * then lifts the protection, so (I) holds after it; the writer it wakes writes
 * afterwards, into a page whose bit is set. A sync first protects the whole
 * block again and only then takes the marks: after the protect (I) holds through
 * the protection alone, so clearing the bits keeps it. A writer is a free agent,
 * but it can only write into an unprotected page, whose bit is therefore set;
 * and a sync takes that bit only after protecting the page, which is after the
 * write landed. So the sync that takes the bit reports the page, and whoever
 * copies the page after that sync copies the write. A write into a protected
 * page waits for this thread and so lands after the bit is set again.
 *
 * The lock is what makes this hold. Without it, this thread could lift a
 * protection that a concurrent sync had just put back, and that sync could then
 * take the bit this thread had set: the page is writable with no bit, and every
 * write to it is lost, for no fault will ever come. (The race test in
 * tests/engine/ catches a sync that skips the lock within a second.)
 *
 * Why protect before take: under the lock, taking first would lose nothing
 * either for a caller that copies after the sync returns, since a write landing
 * between the take and the protect is in a page this sync reports (the argument
 * of KVM's GET-then-CLEAR). Protecting first is the stronger order: when a bit
 * is taken its page is already protected, so every write after the take is
 * recorded anew, whenever the caller gets round to copying; it is also the
 * order PAGEMAP_SCAN follows for each page in the asynchronous mode.
 *
 * Discarded memory (MADV_DONTNEED, MADV_REMOVE) arrives as UFFD_EVENT_REMOVE,
 * and the madvise does not return before this thread has read the event. The
 * discard itself changes the page (it reads back as zeroes), and a write after
 * it may land without a fault (an emptied entry of anonymous memory keeps no
 * protection), so the range is marked. The thread reads and marks under the
 * lock, so once the madvise has returned, any sync that follows finds the marks
 * and reports the range; a copy made after it holds the zeroes and any such
 * write. Where empty entries cannot carry the protection at all (no
 * WP_UNPOPULATED), the next sync also faults the zero page back in before
 * protecting.
 *
 * A sync waits for the fault lock at most as long as the thread needs to serve
 * one batch of messages; the thread waits at most one block's re-protection.
 * A writer faulting during a sync is thus held up by that much: the price of
 * the synchronous mode, measured in docs/dirty-logging.md.
 */
static void *sync_fault_thread(void *arg)
{
	struct uffd_log *u = arg;
	struct uffd_msg msgs[FAULT_BATCH];

	while (!atomic_load(&u->stopping)) {
		struct pollfd p[2] = {{.fd = u->uffd, .events = POLLIN},
				      {.fd = u->wake_fd, .events = POLLIN}};
		if (poll(p, 2, 1000) <= 0 || (p[1].revents & POLLIN))
			continue;
		/*
		 * Lock before reading: reading a REMOVE event lets its madvise return,
		 * and a sync that starts after that must find the range marked.
		 */
		atomic_store(&u->fault_waiting, true);
		pthread_mutex_lock(&u->fault_lock);
		atomic_store(&u->fault_waiting, false);
		ssize_t n = read(u->uffd, msgs, sizeof(msgs));
		if (n <= 0) {
			pthread_mutex_unlock(&u->fault_lock);
			continue;
		}
		for (size_t i = 0; i < (size_t)n / sizeof(msgs[0]); i++) {
			const struct uffd_msg *m = &msgs[i];
			if (m->event == UFFD_EVENT_PAGEFAULT)
				handle_fault(u, (uintptr_t)m->arg.pagefault.address);
			else if (m->event == UFFD_EVENT_REMOVE)
				handle_remove(u, (uintptr_t)m->arg.remove.start,
					      (uintptr_t)m->arg.remove.end);
		}
		pthread_mutex_unlock(&u->fault_lock);
	}
	return NULL;
}

static void sync_thread_stop(struct uffd_log *u)
{
	if (!u->thread_running)
		return;
	atomic_store(&u->stopping, true);
	uint64_t one = 1;
	if (write(u->wake_fd, &one, sizeof(one)) < 0) {
		/* The thread still sees the flag within its poll timeout. */
	}
	pthread_join(u->thread, NULL);
	u->thread_running = false;
	uint64_t drain;
	if (read(u->wake_fd, &drain, sizeof(drain)) < 0) {
		/* Nothing to drain. */
	}
}

static int uffd_sync_start(struct ferry_dirty_log *log)
{
	struct uffd_log *u = to_uffd(log);
	int ret;

	/* The thread must serve faults before the first page is protected. */
	atomic_store(&u->stopping, false);
	memset(u->repopulate, 0, log->nblocks * sizeof(*u->repopulate));
	ret = -pthread_create(&u->thread, NULL, sync_fault_thread, u);
	if (ret)
		return ret;
	u->thread_running = true;
	u->fault_error = 0;
	ret = uffd_register_all(u);
	if (ret) {
		uffd_unregister_all(u);
		sync_thread_stop(u);
	}
	return ret;
}

/*
 * Protect again what may be unprotected in block @b: only the fault thread
 * lifts protection, and only after marking the page, so the marks cover every
 * unprotected page (see sync_fault_thread()). Their runs are protected one by
 * one, which costs in proportion to what was written rather than to the size
 * of the block, unless there are so many runs that one walk of the whole block
 * is cheaper. Called under fault_lock; @scratch (all zero) receives a snapshot
 * of the marks, a subset of what the caller then takes.
 */
static int protect_marked(struct uffd_log *u, uint32_t b, uint64_t *scratch)
{
	struct eng_dirty_block *blk = &u->base.blocks[b];
	size_t nw = eng_bitmap_words(blk->pages);
	uint64_t runs = 0, pos = 0, s, n;
	int ret;

	for (size_t w = 0; w < nw; w++) {
		scratch[w] = atomic_load_explicit(&blk->marks[w], memory_order_acquire);
		/* A run starts at each set bit whose lower neighbour is clear. */
		uint64_t below = w ? scratch[w - 1] >> 63 : 0;
		runs += (uint64_t)__builtin_popcountll(scratch[w] & ~((scratch[w] << 1) | below));
	}
	if (runs > blk->pages / PAGES_PER_PROTECT_CALL)
		return uffd_protect(u->uffd, (uintptr_t)blk->host, blk->length, true);
	while (eng_bitmap_next_run(scratch, blk->pages, &pos, &s, &n)) {
		ret = uffd_protect(u->uffd, (uintptr_t)blk->host + (s << blk->page_shift),
				   n << blk->page_shift, true);
		if (ret)
			return ret;
	}
	return 0;
}

static int uffd_sync_sync(struct ferry_dirty_log *log, uint32_t block, uint64_t *report)
{
	struct uffd_log *u = to_uffd(log);
	struct eng_dirty_block *b = &log->blocks[block];
	int ret = 0;

	for (int i = 0; i < YIELD_TO_FAULTS && atomic_load(&u->fault_waiting); i++)
		sched_yield();
	pthread_mutex_lock(&u->fault_lock);
	if (u->fault_error) {
		ret = u->fault_error;
		goto out;
	}
	bool whole = false;
	if (u->repopulate[block]) {
		ret = populate_read(b);
		if (ret)
			goto out;
		u->repopulate[block] = false;
		whole = true;
	}
	/* Protect first, then take what the fault thread recorded: see sync_fault_thread(). */
	ret = whole ? uffd_protect(u->uffd, (uintptr_t)b->host, b->length, true)
		    : protect_marked(u, block, report);
	if (ret == 0)
		eng_dirty_take_marks(log, block, report);
out:
	pthread_mutex_unlock(&u->fault_lock);
	return ret;
}

static int uffd_sync_stop(struct ferry_dirty_log *log)
{
	struct uffd_log *u = to_uffd(log);
	struct uffd_msg msgs[FAULT_BATCH];

	/*
	 * Tell the thread first (it then ignores faults on ranges going away),
	 * then unprotect and unregister, which wakes writers whose faults it
	 * will never serve (uffd_unregister()), then join it.
	 */
	atomic_store(&u->stopping, true);
	uffd_unregister_all(u);
	sync_thread_stop(u);
	/* Messages left unread: a discard (UFFD_EVENT_REMOVE) waits until its event is read. */
	while (read(u->uffd, msgs, sizeof(msgs)) > 0)
		;
	return 0;
}

static void uffd_destroy(struct ferry_dirty_log *log)
{
	struct uffd_log *u = to_uffd(log);

	if (u->uffd >= 0)
		close(u->uffd);
	if (u->pagemap_fd >= 0)
		close(u->pagemap_fd);
	if (u->wake_fd >= 0)
		close(u->wake_fd);
	free(u->vec);
	free(u->repopulate);
	if (u->fault_lock_ready)
		pthread_mutex_destroy(&u->fault_lock);
	eng_dirty_fini(log);
	free(u);
}

static const struct eng_dirty_ops uffd_async_ops = {
    .kind = "uffd-async",
    .start = uffd_async_start,
    .sync = uffd_async_sync,
    .stop = uffd_async_stop,
    .destroy = uffd_destroy,
};

static const struct eng_dirty_ops uffd_sync_ops = {
    .kind = "uffd-sync",
    .start = uffd_sync_start,
    .sync = uffd_sync_sync,
    .takes_marks = true,
    .stop = uffd_sync_stop,
    .destroy = uffd_destroy,
};

/* Can the asynchronous mode run here? 1 yes, 0 no, or a negative error. */
static int async_possible(struct uffd_log *u, uint64_t offered)
{
	if (!(offered & UFFD_FEATURE_WP_ASYNC))
		return 0;
	u->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	if (u->pagemap_fd < 0) {
		int err = errno;
		ferry_log_msg(FERRY_LOG_WARN, "engine",
			      "dirty log: cannot open /proc/self/pagemap (%s): no asynchronous "
			      "write-protection%s",
			      strerror(err),
			      err == EACCES ? " (a process made non-dumpable by a uid change "
					      "does not own its /proc files)"
					    : "");
		return err == ENOENT || err == EACCES || err == EPERM ? 0 : -err;
	}
	int ret = pagemap_scan_works(u->pagemap_fd, &u->base.blocks[0]);
	if (ret <= 0) {
		close(u->pagemap_fd);
		u->pagemap_fd = -1;
	}
	return ret;
}

static int uffd_setup(struct uffd_log *u, const struct ferry_dirty_uffd_attr *attr)
{
	uint32_t mode = attr ? attr->mode : FERRY_DIRTY_UFFD_AUTO;
	uint64_t offered = 0;
	bool umo;
	int ret;

	if (mode > FERRY_DIRTY_UFFD_SYNC)
		return -EINVAL;
	/* Ask with every way of opening allowed; the synchronous mode checks again below. */
	ret = uffd_offered(mode != FERRY_DIRTY_UFFD_SYNC, &offered);
	if (ret)
		return ret;
	if (!(offered & UFFD_FEATURE_PAGEFAULT_FLAG_WP)) {
		ferry_log_msg(FERRY_LOG_ERROR, "engine",
			      "dirty log: this kernel has no userfaultfd write-protection "
			      "(features %#llx)",
			      (unsigned long long)offered);
		return -EOPNOTSUPP;
	}
	if (mode != FERRY_DIRTY_UFFD_SYNC) {
		ret = async_possible(u, offered);
		if (ret < 0)
			return ret;
		u->async = ret == 1;
		if (!u->async && mode == FERRY_DIRTY_UFFD_ASYNC) {
			ferry_log_msg(FERRY_LOG_ERROR, "engine",
				      "dirty log: asynchronous write-protection needs Linux >= 6.7 "
				      "(UFFD_FEATURE_WP_ASYNC and PAGEMAP_SCAN)");
			return -EOPNOTSUPP;
		}
	}

	uint64_t want = UFFD_FEATURE_WP_UNPOPULATED | UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
	if (u->async)
		want |= UFFD_FEATURE_WP_ASYNC;
	else
		want |= UFFD_FEATURE_EVENT_REMOVE | UFFD_FEATURE_PAGEFAULT_FLAG_WP;
	u->uffd = uffd_open(u->async, &umo);
	if (u->uffd < 0)
		return u->uffd;
	u->user_mode_only = umo;
	struct uffdio_api api = {.api = UFFD_API, .features = want & offered};
	if (ioctl(u->uffd, UFFDIO_API, &api))
		return -errno;
	u->features = api.features;
	u->prefault = (attr && (attr->flags & FERRY_DIRTY_UFFD_PREFAULT)) ||
		      !(u->features & UFFD_FEATURE_WP_UNPOPULATED);

	if (u->async) {
		u->base.ops = &uffd_async_ops;
		u->vec = calloc(SCAN_VEC_LEN, sizeof(*u->vec));
		if (!u->vec)
			return -ENOMEM;
	} else {
		u->base.ops = &uffd_sync_ops;
		u->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (u->wake_fd < 0)
			return -errno;
		if (pthread_mutex_init(&u->fault_lock, NULL))
			return -ENOMEM;
		u->fault_lock_ready = true;
	}
	ferry_log_msg(FERRY_LOG_INFO, "engine",
		      "dirty log: userfaultfd %s write-protection over %u blocks (features "
		      "%#llx%s%s)",
		      u->async ? "asynchronous" : "synchronous", u->base.nblocks,
		      (unsigned long long)u->features, u->prefault ? ", prefault" : "",
		      u->user_mode_only ? ", user-mode only" : "");
	return 0;
}

int ferry_dirty_log_create_uffd(const struct ferry_dirty_block *blocks, size_t n,
				const struct ferry_dirty_uffd_attr *attr,
				struct ferry_dirty_log **out)
{
	struct ferry_dirty_uffd_attr a = {0};
	struct uffd_log *u;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (attr) {
		if (attr->size < sizeof(uint32_t) * 2)
			return -EINVAL;
		memcpy(&a, attr, attr->size < sizeof(a) ? attr->size : sizeof(a));
	}
	u = calloc(1, sizeof(*u));
	if (!u)
		return -ENOMEM;
	u->uffd = u->pagemap_fd = u->wake_fd = -1;
	ret = eng_dirty_init(&u->base, &uffd_sync_ops, blocks, n, true);
	if (ret)
		goto err;
	u->repopulate = calloc(n, sizeof(*u->repopulate));
	if (!u->repopulate) {
		ret = -ENOMEM;
		goto err;
	}
	ret = uffd_setup(u, attr ? &a : NULL);
	if (ret)
		goto err;
	*out = &u->base;
	return 0;
err:
	uffd_destroy(&u->base);
	return ret;
}
