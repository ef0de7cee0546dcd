/* SPDX-License-Identifier: MIT */
/*
 * userfaultfd write-protect dirty logging of real process memory, in both modes:
 * asynchronous (PAGEMAP_SCAN) and synchronous (the fault thread). Every test
 * runs twice, once per mode, and skips a mode this kernel lacks.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/dirty.h>
#include <ferry/error.h>

#include "dirty_common.h"

#define PS  4096u
#define MIB (1024u * 1024u)

/*
 * Under valgrind a thread blocked in a page fault keeps valgrind's big lock (a
 * fault is not a system call), so the fault thread of the synchronous mode
 * never runs and the test would hang.
 */
static void skip_sync_mode_under_valgrind(uint32_t mode)
{
	const char *preload = getenv("LD_PRELOAD");

	if (mode == FERRY_DIRTY_UFFD_SYNC && preload && strstr(preload, "vgpreload"))
		cr_skip_test("synchronous userfaultfd cannot run under valgrind (a faulting "
			     "thread holds valgrind's lock)");
}

/* A uffd log over @n blocks in @mode, or a skip naming why the kernel cannot. */
static struct ferry_dirty_log *uffd_log(const struct ferry_dirty_block *b, size_t n, uint32_t mode,
					uint32_t flags)
{
	struct ferry_dirty_uffd_attr a = {.size = sizeof(a), .mode = mode, .flags = flags};
	struct ferry_dirty_log *log;

	skip_sync_mode_under_valgrind(mode);
	int ret = ferry_dirty_log_create_uffd(b, n, &a, &log);

	if (ret == -ENOSYS || ret == -EOPNOTSUPP || ret == -EPERM)
		cr_skip_test("userfaultfd %s write-protection unavailable here: %s",
			     mode == FERRY_DIRTY_UFFD_ASYNC ? "asynchronous" : "synchronous",
			     ferry_strerror(ret));
	cr_assert_eq(ret, 0, "create: %s", ferry_strerror(ret));
	cr_assert_str_eq(ferry_dirty_log_kind(log),
			 mode == FERRY_DIRTY_UFFD_ASYNC ? "uffd-async" : "uffd-sync");
	return log;
}

static struct ferry_dirty_log *one_block_log(uint8_t *mem, size_t len, uint64_t ps, uint32_t mode,
					     uint32_t flags)
{
	struct ferry_dirty_block b = {.host = mem, .length = len, .page_size = ps};

	return uffd_log(&b, 1, mode, flags);
}

static void expect_sync(struct ferry_dirty_log *log, uint32_t block, const uint64_t *pages,
			size_t n)
{
	int count;
	uint64_t *m = tdirty_sync(log, block, &count);

	tdirty_expect_exactly(m, ferry_dirty_log_block_pages(log, block), pages, n);
	cr_assert_eq(count, (int)n);
	free(m);
}

/* Writes to pages 5, 7, 8, 1000 are exactly what the first sync reports; then nothing. */
static void basic(uint32_t mode, unsigned int mflags, uint32_t lflags)
{
	size_t len = 4 * MIB;
	uint8_t *mem = tdirty_map(len, PS, mflags);

	memset(mem, 0x11, len); /* every page present before start */
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, lflags);

	cr_assert_eq(ferry_dirty_log_start(log), 0);
	expect_sync(log, 0, NULL, 0);
	mem[5 * PS] = 1;
	mem[7 * PS + 4095] = 1;
	mem[8 * PS + 17] = 1;
	mem[1000 * PS] = 1;
	/* Reads are not writes. */
	volatile uint8_t sink = mem[9 * PS] + mem[500 * PS];
	(void)sink;
	expect_sync(log, 0, (uint64_t[]){5, 7, 8, 1000}, 4);
	expect_sync(log, 0, NULL, 0);
	/* The reported pages are protected again: a second write is seen. */
	mem[8 * PS] = 2;
	mem[1023 * PS] = 2;
	expect_sync(log, 0, (uint64_t[]){8, 1023}, 2);
	cr_assert_eq(mem[7 * PS + 4095], 1);

	struct ferry_dirty_stats st;
	ferry_dirty_log_stats(log, &st);
	cr_assert_eq(st.syncs, 4);
	cr_assert_eq(st.pages_reported, 6);
	if (mode == FERRY_DIRTY_UFFD_SYNC)
		cr_assert_geq(st.faults, 6, "the fault thread served %llu faults",
			      (unsigned long long)st.faults);
	cr_assert_eq(ferry_dirty_log_stop(log), 0);
	/* Stopped: writes go through untracked, sync refuses. */
	mem[3 * PS] = 3;
	uint64_t map[16] = {0};
	cr_assert_eq(ferry_dirty_log_sync(log, 0, map), FERRY_ESTATE);
	/* And a restart tracks again from a clean state. */
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	expect_sync(log, 0, NULL, 0);
	mem[4 * PS] = 4;
	expect_sync(log, 0, (uint64_t[]){4}, 1);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_pages_written)
{
	basic(FERRY_DIRTY_UFFD_ASYNC, 0, 0);
}

Test(engine_dirty_uffd, sync_pages_written)
{
	basic(FERRY_DIRTY_UFFD_SYNC, 0, 0);
}

Test(engine_dirty_uffd, async_shared_anonymous)
{
	basic(FERRY_DIRTY_UFFD_ASYNC, TDIRTY_SHARED, 0);
}

Test(engine_dirty_uffd, sync_shared_anonymous)
{
	basic(FERRY_DIRTY_UFFD_SYNC, TDIRTY_SHARED, 0);
}

/*
 * Memory never touched before start has no page table entries. The first write
 * after start must still be reported, reads must not be, and the untouched
 * pages must not show up as written either.
 */
static void untouched(uint32_t mode, unsigned int mflags, uint32_t lflags)
{
	size_t len = 8 * MIB;
	uint8_t *mem = tdirty_map(len, 2 * MIB, mflags);
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, lflags);

	cr_assert_eq(ferry_dirty_log_start(log), 0);
	expect_sync(log, 0, NULL, 0);
	mem[0] = 1;
	mem[513 * PS] = 1; /* a page table of its own (second 2 MiB) */
	mem[2047 * PS + 1] = 1;
	volatile uint8_t sink = mem[1 * PS] + mem[1500 * PS]; /* zero page, read only */
	(void)sink;
	expect_sync(log, 0, (uint64_t[]){0, 513, 2047}, 3);
	expect_sync(log, 0, NULL, 0);
	/* A page first read after start, then written: the write is seen. */
	mem[1500 * PS] = 9;
	expect_sync(log, 0, (uint64_t[]){1500}, 1);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_untouched_pages)
{
	untouched(FERRY_DIRTY_UFFD_ASYNC, 0, 0);
}

Test(engine_dirty_uffd, sync_untouched_pages)
{
	untouched(FERRY_DIRTY_UFFD_SYNC, 0, 0);
}

Test(engine_dirty_uffd, sync_untouched_pages_prefault)
{
	/* The path of kernels without UFFD_FEATURE_WP_UNPOPULATED (Linux < 6.4). */
	untouched(FERRY_DIRTY_UFFD_SYNC, 0, FERRY_DIRTY_UFFD_PREFAULT);
}

Test(engine_dirty_uffd, async_untouched_shared)
{
	untouched(FERRY_DIRTY_UFFD_ASYNC, TDIRTY_SHARED, 0);
}

Test(engine_dirty_uffd, sync_untouched_shared)
{
	untouched(FERRY_DIRTY_UFFD_SYNC, TDIRTY_SHARED, 0);
}

/* Pages written before start are not reported; everything after is. */
static void written_before_start(uint32_t mode)
{
	size_t len = 2 * MIB;
	uint8_t *mem = tdirty_map(len, PS, 0);
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, 0);

	mem[3 * PS] = 1; /* before start, even while the log exists */
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	expect_sync(log, 0, NULL, 0);
	mem[3 * PS] = 2;
	expect_sync(log, 0, (uint64_t[]){3}, 1);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_written_before_start)
{
	written_before_start(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_written_before_start)
{
	written_before_start(FERRY_DIRTY_UFFD_SYNC);
}

/* The writer-vs-sync race: nothing the writers wrote may be missed. */
static void race(uint32_t mode, double seconds)
{
	uint64_t pages = 4096;
	uint8_t *mem = tdirty_map(pages * PS, PS, 0);

	memset(mem, 0, pages * PS);
	struct ferry_dirty_log *log = one_block_log(mem, pages * PS, PS, mode, 0);
	struct tdirty_race r = {.log = log,
				.mem = mem,
				.pages = pages,
				.page_size = PS,
				.exact = true,
				.seconds = seconds};
	tdirty_run_race(&r);
	struct ferry_dirty_stats st;
	ferry_dirty_log_stats(log, &st);
	cr_log_info("%s: %llu syncs, %llu pages, %.3f ms per sync, %llu faults",
		    ferry_dirty_log_kind(log), (unsigned long long)st.syncs,
		    (unsigned long long)st.pages_reported, st.sync_ns / 1e6 / (double)st.syncs,
		    (unsigned long long)st.faults);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, pages * PS);
}

Test(engine_dirty_uffd, async_writers_race_syncs, .timeout = 60)
{
	race(FERRY_DIRTY_UFFD_ASYNC, 1.0);
}

Test(engine_dirty_uffd, sync_writers_race_syncs, .timeout = 60)
{
	race(FERRY_DIRTY_UFFD_SYNC, 1.0);
}

/* A 64 MiB mapping: a sparse pattern, then every page, then nothing. */
static void big(uint32_t mode)
{
	size_t len = 64 * MIB;
	uint64_t pages = len / PS;
	uint8_t *mem = tdirty_map(len, PS, 0);
	uint64_t *list = calloc(pages, sizeof(uint64_t));
	size_t n = 0;

	cr_assert_not_null(list);
	memset(mem, 0x5a, len);
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	for (uint64_t p = 0; p < pages; p += 97) {
		mem[p * PS + p % PS] ^= 1;
		list[n++] = p;
	}
	int count;
	uint64_t *m = tdirty_sync(log, 0, &count);
	cr_assert_eq(count, (int)n);
	for (size_t i = 0; i < n; i++)
		cr_assert((m[list[i] / 64] >> (list[i] % 64)) & 1, "page %llu missing",
			  (unsigned long long)list[i]);
	free(m);
	memset(mem, 0x33, len);
	m = tdirty_sync(log, 0, &count);
	cr_assert_eq(count, (int)pages, "after rewriting everything: %d of %llu", count,
		     (unsigned long long)pages);
	free(m);
	expect_sync(log, 0, NULL, 0);
	ferry_dirty_log_destroy(log);
	free(list);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_64mib, .timeout = 60)
{
	big(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_64mib, .timeout = 60)
{
	big(FERRY_DIRTY_UFFD_SYNC);
}

/* Two blocks: each sync reports only its own block's pages, in its own numbering. */
static void two_blocks(uint32_t mode)
{
	uint8_t *a = tdirty_map(1 * MIB, PS, 0), *b = tdirty_map(4 * MIB, 2 * MIB, 0);
	struct ferry_dirty_block blocks[2] = {
	    {.host = a, .length = 1 * MIB, .page_size = PS},
	    {.host = b, .length = 4 * MIB, .page_size = 2 * MIB},
	};
	struct ferry_dirty_log *log = uffd_log(blocks, 2, mode, 0);

	cr_assert_eq(ferry_dirty_log_block_pages(log, 1), 2);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	a[10 * PS] = 1;
	b[2 * MIB + 5 * PS] = 1; /* 2 MiB page 1 */
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 200 * PS, 1), 0);
	expect_sync(log, 0, (uint64_t[]){10, 200}, 2);
	expect_sync(log, 1, (uint64_t[]){1}, 1);
	expect_sync(log, 1, NULL, 0);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(a, 1 * MIB);
	tdirty_unmap(b, 4 * MIB);
}

Test(engine_dirty_uffd, async_two_blocks_and_marks)
{
	two_blocks(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_two_blocks_and_marks)
{
	two_blocks(FERRY_DIRTY_UFFD_SYNC);
}

/* The kernel writing into tracked memory (read(2) from a pipe) is a write like any other. */
static void kernel_writes(uint32_t mode)
{
	size_t len = 1 * MIB;
	uint8_t *mem = tdirty_map(len, PS, 0);
	int fds[2];

	memset(mem, 0, len);
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(write(fds[1], "ferry", 5), 5);
	cr_assert_eq(read(fds[0], mem + 42 * PS + 10, 5), 5, "read into tracked memory: %s",
		     strerror(errno));
	cr_assert_eq(memcmp(mem + 42 * PS + 10, "ferry", 5), 0);
	expect_sync(log, 0, (uint64_t[]){42}, 1);
	close(fds[0]);
	close(fds[1]);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_kernel_writes)
{
	kernel_writes(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_kernel_writes)
{
	kernel_writes(FERRY_DIRTY_UFFD_SYNC);
}

/*
 * MADV_DONTNEED on private anonymous memory zeroes it: the page changed and
 * must be reported; and a write after it must be reported too.
 */
static void discarded(uint32_t mode)
{
	size_t len = 4 * MIB;
	uint8_t *mem = tdirty_map(len, 2 * MIB, 0);

	memset(mem, 0x77, len);
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	cr_assert_eq(madvise(mem + 20 * PS, 2 * PS, MADV_DONTNEED), 0);
	cr_assert_eq(mem[20 * PS], 0);
	int count;
	uint64_t *m = tdirty_sync(log, 0, &count);
	bool seen = (m[0] >> 20) & 1 && (m[0] >> 21) & 1;
	free(m);
	if (mode == FERRY_DIRTY_UFFD_ASYNC && !seen)
		cr_skip_test("this kernel's PAGEMAP_SCAN does not report discarded anonymous "
			     "pages as written (6.18 does; see docs/dirty-logging.md): embedders "
			     "must mark them");
	cr_assert(seen, "discarded pages 20-21 not reported");
	cr_assert_eq(count, 2);
	/* Written after the discard: seen again. */
	mem[21 * PS] = 5;
	expect_sync(log, 0, (uint64_t[]){21}, 1);
	expect_sync(log, 0, NULL, 0);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_discarded_pages)
{
	discarded(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_discarded_pages)
{
	discarded(FERRY_DIRTY_UFFD_SYNC);
}

/*
 * Transparent huge pages: the kernel may report a whole 2 MiB for a write into
 * a huge page. The written 4 KiB pages must be among those reported, and any
 * extra ones inside the same 2 MiB. With a 2 MiB block page size the report is
 * exact.
 */
static void thp(uint32_t mode)
{
	size_t len = 8 * MIB;
	uint8_t *mem = tdirty_map(len, 2 * MIB, TDIRTY_THP);

	memset(mem, 1, len);
	uint64_t huge = tdirty_anon_huge_bytes();
	struct ferry_dirty_log *log = one_block_log(mem, len, PS, mode, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	expect_sync(log, 0, NULL, 0);
	mem[600 * PS] = 2;
	mem[1500 * PS] = 2;
	int count;
	uint64_t *m = tdirty_sync(log, 0, &count);
	cr_assert((m[600 / 64] >> (600 % 64)) & 1);
	cr_assert((m[1500 / 64] >> (1500 % 64)) & 1);
	for (uint64_t p = 0; p < len / PS; p++) {
		bool got = (m[p / 64] >> (p % 64)) & 1;
		if (got)
			cr_assert(p / 512 == 600 / 512 || p / 512 == 1500 / 512,
				  "page %llu reported outside the written huge pages",
				  (unsigned long long)p);
	}
	cr_log_info("%s THP (%llu KiB AnonHugePages before start): 2 writes -> %d pages",
		    ferry_dirty_log_kind(log), (unsigned long long)(huge / 1024), count);
	free(m);
	expect_sync(log, 0, NULL, 0);
	ferry_dirty_log_destroy(log);

	/* The same memory as 2 MiB pages: exactly huge pages 1 and 3. */
	log = one_block_log(mem, len, 2 * MIB, mode, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	mem[2 * MIB + 7] = 3;
	mem[7 * MIB] = 3;
	expect_sync(log, 0, (uint64_t[]){1, 3}, 2);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, async_transparent_huge_pages)
{
	thp(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_transparent_huge_pages)
{
	thp(FERRY_DIRTY_UFFD_SYNC);
}

/* hugetlbfs pages (MAP_HUGETLB), where the host has some reserved. */
static void hugetlb(uint32_t mode)
{
	size_t len = 4 * MIB;
	uint8_t *mem = mmap(NULL, len, PROT_READ | PROT_WRITE,
			    MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	if (mem == MAP_FAILED)
		cr_skip_test("no 2 MiB huge pages reserved (vm.nr_hugepages): %s", strerror(errno));
	skip_sync_mode_under_valgrind(mode);
	memset(mem, 1, len);
	struct ferry_dirty_block b = {.host = mem, .length = len, .page_size = 2 * MIB};
	struct ferry_dirty_uffd_attr a = {.size = sizeof(a), .mode = mode};
	struct ferry_dirty_log *log;
	int ret = ferry_dirty_log_create_uffd(&b, 1, &a, &log);
	if (ret == 0) {
		ret = ferry_dirty_log_start(log);
		if (ret == -EOPNOTSUPP) {
			ferry_dirty_log_destroy(log);
			munmap(mem, len);
			cr_skip_test("this kernel cannot write-protect hugetlbfs memory in %s mode",
				     mode == FERRY_DIRTY_UFFD_ASYNC ? "async" : "sync");
		}
	}
	if (ret == -EOPNOTSUPP || ret == -ENOSYS) {
		munmap(mem, len);
		cr_skip_test("userfaultfd mode unavailable: %s", ferry_strerror(ret));
	}
	cr_assert_eq(ret, 0, "%s", ferry_strerror(ret));
	expect_sync(log, 0, NULL, 0);
	mem[2 * MIB + 100] = 2;
	expect_sync(log, 0, (uint64_t[]){1}, 1);
	expect_sync(log, 0, NULL, 0);
	ferry_dirty_log_destroy(log);
	munmap(mem, len);
}

Test(engine_dirty_uffd, async_hugetlb)
{
	hugetlb(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_hugetlb)
{
	hugetlb(FERRY_DIRTY_UFFD_SYNC);
}

Test(engine_dirty_uffd, auto_mode_picks_one)
{
	size_t len = 1 * MIB;
	uint8_t *mem = tdirty_map(len, PS, 0);
	struct ferry_dirty_block b = {.host = mem, .length = len, .page_size = PS};
	struct ferry_dirty_log *log;
	int ret = ferry_dirty_log_create_uffd(&b, 1, NULL, &log);

	if (ret == -ENOSYS || ret == -EOPNOTSUPP || ret == -EPERM)
		cr_skip_test("no userfaultfd write-protection here: %s", ferry_strerror(ret));
	cr_assert_eq(ret, 0);
	if (!strcmp(ferry_dirty_log_kind(log), "uffd-sync")) {
		ferry_dirty_log_destroy(log);
		skip_sync_mode_under_valgrind(FERRY_DIRTY_UFFD_SYNC);
		log = NULL;
		cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, NULL, &log), 0);
	}
	cr_log_info("auto mode chose %s", ferry_dirty_log_kind(log));
	cr_assert(!strcmp(ferry_dirty_log_kind(log), "uffd-async") ||
		  !strcmp(ferry_dirty_log_kind(log), "uffd-sync"));
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	mem[3 * PS] = 1;
	expect_sync(log, 0, (uint64_t[]){3}, 1);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, len);
}

Test(engine_dirty_uffd, bad_arguments)
{
	uint8_t *mem = tdirty_map(4 * MIB, 2 * MIB, 0);
	struct ferry_dirty_log *log = (void *)1;
	struct ferry_dirty_block b = {.host = mem + 1, .length = PS, .page_size = PS};

	cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, NULL, &log), -EINVAL, "unaligned host");
	cr_assert_null(log);
	b = (struct ferry_dirty_block){.host = mem + PS, .length = 2 * MIB, .page_size = 2 * MIB};
	cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, NULL, &log), -EINVAL,
		     "not aligned to its huge page size");
	b = (struct ferry_dirty_block){.host = NULL, .length = PS, .page_size = PS};
	cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, NULL, &log), -EINVAL, "NULL host");
	struct ferry_dirty_block two[2] = {
	    {.host = mem, .length = 2 * MIB, .page_size = PS},
	    {.host = mem + 2 * MIB - PS, .length = PS, .page_size = PS},
	};
	cr_assert_eq(ferry_dirty_log_create_uffd(two, 2, NULL, &log), -EINVAL, "overlap");
	struct ferry_dirty_uffd_attr a = {.size = sizeof(a), .mode = 7};
	b = (struct ferry_dirty_block){.host = mem, .length = PS, .page_size = PS};
	cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, &a, &log), -EINVAL, "bad mode");
	a.size = 2;
	a.mode = 0;
	cr_assert_eq(ferry_dirty_log_create_uffd(&b, 1, &a, &log), -EINVAL, "bad attr size");
	tdirty_unmap(mem, 4 * MIB);
}

/*
 * A file on a disk filesystem: only the asynchronous mode can write-protect it
 * (Linux allows any memory type when WP_ASYNC is the only mode); the
 * synchronous mode's start says so and leaves the memory untouched. Where the
 * build directory is on tmpfs the file is shmem, and both modes track it.
 */
static void file_backed(uint32_t mode)
{
	char path[] = FERRY_BINARY_DIR "/dirty-uffd-XXXXXX";
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	unlink(path);
	cr_assert_eq(ftruncate(fd, 1 * MIB), 0);
	uint8_t *mem = mmap(NULL, 1 * MIB, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	cr_assert_neq(mem, MAP_FAILED);
	struct ferry_dirty_log *log = one_block_log(mem, 1 * MIB, PS, mode, 0);
	int ret = ferry_dirty_log_start(log);
	if (mode == FERRY_DIRTY_UFFD_SYNC && ret == 0) {
		/* The file is shmem after all (tmpfs, or an overlay with a tmpfs upper). */
		cr_log_info("%s is write-protectable here: checked as tracked memory", path);
		expect_sync(log, 0, NULL, 0);
		mem[5 * PS] = 1;
		expect_sync(log, 0, (uint64_t[]){5}, 1);
	} else if (mode == FERRY_DIRTY_UFFD_SYNC) {
		cr_assert_eq(ret, -EOPNOTSUPP, "start: %s", ferry_strerror(ret));
		uint64_t map[4] = {0};
		cr_assert_eq(ferry_dirty_log_sync(log, 0, map), FERRY_ESTATE, "not started");
		mem[0] = 1; /* still writable, nobody waits on a fault */
		cr_assert_eq(mem[0], 1);
	} else {
		cr_assert_eq(ret, 0, "start: %s", ferry_strerror(ret));
		expect_sync(log, 0, NULL, 0);
		mem[0] = 1;
		mem[100 * PS] = 1;
		expect_sync(log, 0, (uint64_t[]){0, 100}, 2);
		expect_sync(log, 0, NULL, 0);
	}
	ferry_dirty_log_destroy(log);
	munmap(mem, 1 * MIB);
	close(fd);
}

Test(engine_dirty_uffd, async_file_backed_memory)
{
	file_backed(FERRY_DIRTY_UFFD_ASYNC);
}

Test(engine_dirty_uffd, sync_file_backed_memory_is_refused)
{
	file_backed(FERRY_DIRTY_UFFD_SYNC);
}

static int read_int_file(const char *path)
{
	FILE *f = fopen(path, "r");
	int v = -1;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/*
 * Without privilege (an unprivileged user, vm.unprivileged_userfaultfd=0, no
 * access to /dev/userfaultfd) the synchronous mode, which needs kernel-mode
 * faults, is refused with -EPERM; the asynchronous mode still works through
 * UFFD_USER_MODE_ONLY.
 */
Test(engine_dirty_uffd, unprivileged_process)
{
	if (geteuid() != 0)
		cr_skip_test("needs root to drop privileges");
	int sysctl = read_int_file("/proc/sys/vm/unprivileged_userfaultfd");
	if (sysctl != 0)
		cr_skip_test("vm.unprivileged_userfaultfd is %d: unprivileged use is allowed",
			     sysctl);
	pid_t pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		/* Exit codes: 10 + what each mode gave, encoded. */
		if (setresgid(65534, 65534, 65534) || setresuid(65534, 65534, 65534))
			_exit(1);
		/*
		 * A uid change makes the process non-dumpable, which hands its
		 * /proc/self files to root; a process started unprivileged owns them.
		 */
		if (prctl(PR_SET_DUMPABLE, 1))
			_exit(7);
		uint8_t *mem =
		    mmap(NULL, 1 * MIB, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		struct ferry_dirty_block b = {.host = mem, .length = 1 * MIB, .page_size = PS};
		struct ferry_dirty_uffd_attr a = {.size = sizeof(a), .mode = FERRY_DIRTY_UFFD_SYNC};
		struct ferry_dirty_log *log;
		int sync_ret = ferry_dirty_log_create_uffd(&b, 1, &a, &log);
		if (sync_ret == -ENOSYS)
			_exit(21); /* no userfaultfd at all */
		if (sync_ret == 0)
			_exit(2);
		if (sync_ret != -EPERM)
			_exit(3);
		a.mode = FERRY_DIRTY_UFFD_ASYNC;
		int async_ret = ferry_dirty_log_create_uffd(&b, 1, &a, &log);
		if (async_ret == -EOPNOTSUPP)
			_exit(20); /* no async mode on this kernel: nothing more to check */
		if (async_ret)
			_exit(4);
		if (ferry_dirty_log_start(log))
			_exit(5);
		mem[7 * PS] = 1;
		uint64_t map[4] = {0};
		if (ferry_dirty_log_sync(log, 0, map) != 1 || map[0] != 1u << 7)
			_exit(6);
		ferry_dirty_log_destroy(log);
		_exit(0);
	}
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status));
	int code = WEXITSTATUS(status);
	if (code == 21)
		cr_skip_test("no userfaultfd system call here");
	cr_assert(code == 0 || code == 20, "unprivileged child failed at step %d", code);
	if (code == 20)
		cr_log_info(
		    "no asynchronous mode: only the -EPERM of the synchronous mode checked");
}
