/* SPDX-License-Identifier: MIT */
/*
 * KVM dirty logging against a real guest: a vCPU in 32-bit flat protected mode
 * (set up through KVM_SET_SREGS; no GDT or page tables in guest memory) runs
 * a few instructions that increment the first byte of each page listed in a
 * table, then hlt. The dirty log must report exactly those pages, and never the
 * code page, which the guest only reads. Skips where /dev/kvm is missing.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/dirty.h>
#include <ferry/error.h>

#include "dirty_common.h"

#define PS  4096u
#define MIB (1024u * 1024u)

/* Guest physical layout of slot 0 (1 MiB at 0): code at 0x1000, its table at 0x2000. */
#define SLOT0_LEN (1 * MIB)
#define CODE_GPA  0x1000u
#define TABLE_GPA 0x2000u
#define TABLE_MAX 128
/* Slot 1: 4 MiB at 4 MiB, tracked as 2 MiB pages. */
#define SLOT1_GPA (4 * MIB)
#define SLOT1_LEN (4 * MIB)

/*
 * 32-bit code:
 *	mov esi, TABLE_GPA	; BE imm32
 *	mov ecx, [esi]		; 8B 0E     count (at least 1)
 *	add esi, 4		; 83 C6 04
 * loop:
 *	mov ebx, [esi]		; 8B 1E     next guest physical address
 *	inc byte [ebx]		; FE 03
 *	add esi, 4		; 83 C6 04
 *	dec ecx			; 49
 *	jnz loop		; 75 F6     (-10: back to offset 10)
 *	hlt			; F4
 */
static const uint8_t guest_code[] = {
    0xbe,
    TABLE_GPA & 0xff,
    (TABLE_GPA >> 8) & 0xff,
    0,
    0, /* mov esi, imm32 */
    0x8b,
    0x0e, /* mov ecx, [esi] */
    0x83,
    0xc6,
    0x04, /* add esi, 4 */
    0x8b,
    0x1e, /* loop: mov ebx, [esi] */
    0xfe,
    0x03, /* inc byte [ebx] */
    0x83,
    0xc6,
    0x04, /* add esi, 4 */
    0x49, /* dec ecx */
    0x75,
    0xf6, /* jnz loop */
    0xf4, /* hlt */
};

struct guest {
	int kvm, vm, vcpu;
	struct kvm_run *run;
	size_t run_size;
	uint8_t *mem0, *mem1;
	/* This KVM logs pages the guest only read (seen nested under QEMU's TCG). */
	bool reads_logged;
};

#define CODE_PAGE	 (CODE_GPA / PS)
#define TABLE_PAGE	 (TABLE_GPA / PS)
#define CALIBRATION_PAGE 200u

static int kvm_open_or_skip(void)
{
	int fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);

	if (fd < 0)
		cr_skip_test("/dev/kvm unavailable (%s): KVM dirty logging not testable on this "
			     "machine",
			     strerror(errno));
	int v = ioctl(fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION) {
		close(fd);
		cr_skip_test("KVM API version %d, expected %d", v, KVM_API_VERSION);
	}
	return fd;
}

static void set_slot(struct guest *g, uint32_t slot, uint64_t gpa, void *host, uint64_t len,
		     uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .flags = flags,
	    .guest_phys_addr = gpa,
	    .memory_size = len,
	    .userspace_addr = (uintptr_t)host,
	};

	cr_assert_eq(ioctl(g->vm, KVM_SET_USER_MEMORY_REGION, &r), 0,
		     "KVM_SET_USER_MEMORY_REGION slot %u: %s", slot, strerror(errno));
}

static void guest_run(struct guest *g, const uint32_t *gpas, size_t n);

/*
 * Does this KVM log pages the guest only reads? Asked of KVM directly, without
 * ferry: clear slot 0's log, let the guest write one page, read the log back.
 * Real hardware logs only the written page; KVM nested under QEMU's TCG was
 * seen to log the code and table pages as well.
 */
static void calibrate(struct guest *g)
{
	uint64_t bits[SLOT0_LEN / PS / 64];
	struct kvm_dirty_log d = {.slot = 0, .dirty_bitmap = bits};

	cr_assert_eq(ioctl(g->vm, KVM_GET_DIRTY_LOG, &d), 0, "KVM_GET_DIRTY_LOG: %s",
		     strerror(errno));
	guest_run(g, (uint32_t[]){CALIBRATION_PAGE * PS}, 1);
	cr_assert_eq(ioctl(g->vm, KVM_GET_DIRTY_LOG, &d), 0);
	cr_assert((bits[CALIBRATION_PAGE / 64] >> (CALIBRATION_PAGE % 64)) & 1,
		  "KVM did not log the guest's write at all");
	g->reads_logged = (bits[0] >> CODE_PAGE) & 1;
	/* Info, not a warning: Criterion makes the whole run exit 1 on any warning. */
	if (g->reads_logged)
		cr_log_info("this KVM logs pages the guest only reads (the code page): nested "
			    "virtualisation? The code and table pages are not checked");
}

/* A VM with slot 0 (and slot 1 when @two_slots), dirty logging on, and one vCPU. */
static void guest_create(struct guest *g, bool two_slots, uint32_t slot0_flags)
{
	memset(g, 0, sizeof(*g));
	g->kvm = kvm_open_or_skip();
	g->vm = ioctl(g->kvm, KVM_CREATE_VM, 0);
	if (g->vm < 0)
		cr_skip_test("KVM_CREATE_VM failed: %s", strerror(errno));
	/* Needed on Intel before the first vCPU runs; harmless elsewhere. */
	ioctl(g->vm, KVM_SET_TSS_ADDR, 0xfffbd000ul);
	g->mem0 = tdirty_map(SLOT0_LEN, PS, 0);
	memset(g->mem0, 0, SLOT0_LEN);
	memcpy(g->mem0 + CODE_GPA, guest_code, sizeof(guest_code));
	set_slot(g, 0, 0, g->mem0, SLOT0_LEN, slot0_flags);
	if (two_slots) {
		g->mem1 = tdirty_map(SLOT1_LEN, 2 * MIB, 0);
		memset(g->mem1, 0, SLOT1_LEN);
		set_slot(g, 1, SLOT1_GPA, g->mem1, SLOT1_LEN, KVM_MEM_LOG_DIRTY_PAGES);
	}
	g->vcpu = ioctl(g->vm, KVM_CREATE_VCPU, 0);
	cr_assert_geq(g->vcpu, 0, "KVM_CREATE_VCPU: %s", strerror(errno));
	int sz = ioctl(g->kvm, KVM_GET_VCPU_MMAP_SIZE, 0);
	cr_assert_gt(sz, 0);
	g->run_size = (size_t)sz;
	g->run = mmap(NULL, g->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, g->vcpu, 0);
	cr_assert_neq(g->run, MAP_FAILED);
	if (slot0_flags & KVM_MEM_LOG_DIRTY_PAGES)
		calibrate(g);
}

static void guest_destroy(struct guest *g)
{
	munmap(g->run, g->run_size);
	close(g->vcpu);
	close(g->vm);
	close(g->kvm);
	tdirty_unmap(g->mem0, SLOT0_LEN);
	if (g->mem1)
		tdirty_unmap(g->mem1, SLOT1_LEN);
}

/* Write the table (from the host: not in the KVM log) and run the vCPU to its hlt. */
static void guest_run(struct guest *g, const uint32_t *gpas, size_t n)
{
	struct kvm_sregs sregs;
	struct kvm_regs regs;

	cr_assert(n >= 1 && n <= TABLE_MAX);
	uint32_t table[TABLE_MAX + 1];
	table[0] = (uint32_t)n;
	memcpy(table + 1, gpas, n * sizeof(uint32_t));
	memcpy(g->mem0 + TABLE_GPA, table, (n + 1) * sizeof(uint32_t));

	cr_assert_eq(ioctl(g->vcpu, KVM_GET_SREGS, &sregs), 0);
	struct kvm_segment seg = {
	    .base = 0,
	    .limit = 0xffffffff,
	    .present = 1,
	    .dpl = 0,
	    .db = 1, /* 32-bit */
	    .s = 1,  /* code/data, not system */
	    .l = 0,
	    .g = 1, /* 4 KiB granularity: the limit covers 4 GiB */
	};
	seg.type = 11; /* code: execute/read, accessed */
	seg.selector = 1 << 3;
	sregs.cs = seg;
	seg.type = 3; /* data: read/write, accessed */
	seg.selector = 2 << 3;
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = seg;
	sregs.cr0 = (sregs.cr0 | 1u) & ~(1ull << 31); /* PE on, paging off */
	cr_assert_eq(ioctl(g->vcpu, KVM_SET_SREGS, &sregs), 0, "KVM_SET_SREGS: %s",
		     strerror(errno));
	memset(&regs, 0, sizeof(regs));
	regs.rip = CODE_GPA;
	regs.rflags = 2; /* bit 1 is always set */
	cr_assert_eq(ioctl(g->vcpu, KVM_SET_REGS, &regs), 0);

	for (int tries = 0; tries < 100; tries++) {
		int ret = ioctl(g->vcpu, KVM_RUN, 0);
		if (ret < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		cr_assert_eq(ret, 0, "KVM_RUN: %s", strerror(errno));
		if (g->run->exit_reason == KVM_EXIT_HLT)
			return;
		if (g->run->exit_reason == KVM_EXIT_INTR)
			continue;
		cr_skip_test("the guest did not reach hlt (exit reason %u): this KVM does not "
			     "run the tiny protected-mode guest",
			     g->run->exit_reason);
	}
	cr_assert_fail("the guest never reached hlt");
}

/* Assert the sync of @block reports exactly @pages; on a mismatch, say what it reported. */
/*
 * Assert the sync of @block reports exactly @pages, except that where this KVM
 * logs pages the guest only read, the code and table pages of block 0 may be
 * reported too. On a mismatch the message says what was reported.
 */
#define expect_sync(g, ...) expect_sync_at(__LINE__, g, __VA_ARGS__)

static void expect_sync_at(int line, const struct guest *g, struct ferry_dirty_log *log,
			   uint32_t block, const uint64_t *pages, size_t n)
{
	int count;
	uint64_t *m = tdirty_sync(log, block, &count);
	uint64_t npages = ferry_dirty_log_block_pages(log, block);
	char got[256] = "";
	size_t len = 0;

	for (uint64_t p = 0; p < npages && len < sizeof(got) - 24; p++)
		if ((m[p / 64] >> (p % 64)) & 1)
			len += (size_t)snprintf(got + len, sizeof(got) - len, " %llu",
						(unsigned long long)p);
	cr_log_info("line %d: block %u reported:%s", line, block, got);
	if (g->reads_logged && block == 0) {
		for (uint64_t p = CODE_PAGE; p <= TABLE_PAGE; p++) {
			if ((m[p / 64] >> (p % 64)) & 1) {
				m[p / 64] &= ~(1ull << (p % 64));
				count--;
			}
		}
	}
	tdirty_expect_exactly(m, npages, pages, n);
	cr_assert_eq(count, (int)n);
	free(m);
}

static struct ferry_dirty_log *slot0_log(struct guest *g, uint32_t flags)
{
	struct ferry_dirty_kvm_slot s = {
	    .block = {.host = g->mem0, .length = SLOT0_LEN, .page_size = PS},
	    .slot = 0,
	};
	struct ferry_dirty_kvm_attr a = {.size = sizeof(a), .flags = flags};
	struct ferry_dirty_log *log;

	cr_assert_eq(ferry_dirty_log_create_kvm(g->vm, &s, 1, &a, &log), 0);
	cr_assert_str_eq(ferry_dirty_log_kind(log), "kvm");
	return log;
}

/*
 * The guest writes pages 3, 5, 6, 40 and 255; exactly those are reported, not
 * the code page. After a clean sync the guest writes 5 (reported and cleared
 * before: it must have been protected again) and 10.
 */
static void guest_writes(uint32_t flags)
{
	struct guest g;

	guest_create(&g, false, KVM_MEM_LOG_DIRTY_PAGES);
	int manual = ioctl(g.vm, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	struct ferry_dirty_log *log = slot0_log(&g, flags);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	cr_log_info("KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 offers %#x; %s", manual,
		    (flags & FERRY_DIRTY_KVM_NO_MANUAL_PROTECT) ? "not used" : "used if offered");
	expect_sync(&g, log, 0, NULL, 0);

	guest_run(&g, (uint32_t[]){3 * PS, 5 * PS, 6 * PS + 100, 40 * PS + 4095, 255 * PS}, 5);
	cr_assert_eq(g.mem0[3 * PS], 1, "the guest did not write");
	cr_assert_eq(g.mem0[40 * PS + 4095], 1);
	expect_sync(&g, log, 0, (uint64_t[]){3, 5, 6, 40, 255}, 5);
	expect_sync(&g, log, 0, NULL, 0);

	guest_run(&g, (uint32_t[]){5 * PS, 10 * PS, 5 * PS}, 3);
	cr_assert_eq(g.mem0[5 * PS], 3);
	/* The host wrote the table into the code page: not a guest write, not logged. */
	expect_sync(&g, log, 0, (uint64_t[]){5, 10}, 2);
	expect_sync(&g, log, 0, NULL, 0);
	ferry_dirty_log_destroy(log);
	guest_destroy(&g);
}

Test(engine_dirty_kvm, guest_writes_are_logged, .timeout = 60)
{
	guest_writes(0);
}

Test(engine_dirty_kvm, guest_writes_without_manual_protect, .timeout = 60)
{
	guest_writes(FERRY_DIRTY_KVM_NO_MANUAL_PROTECT);
}

/* Writes by the host into guest memory are invisible to KVM: marks carry them. */
Test(engine_dirty_kvm, host_writes_need_marks, .timeout = 60)
{
	struct guest g;

	guest_create(&g, false, KVM_MEM_LOG_DIRTY_PAGES);
	struct ferry_dirty_log *log = slot0_log(&g, 0);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	g.mem0[20 * PS] = 7; /* e.g. device emulation writing into guest RAM */
	expect_sync(&g, log, 0, NULL, 0);
	cr_assert_eq(ferry_dirty_log_mark(log, 0, 20 * PS, 1), 0);
	guest_run(&g, (uint32_t[]){21 * PS}, 1);
	expect_sync(&g, log, 0, (uint64_t[]){20, 21}, 2);
	ferry_dirty_log_destroy(log);
	guest_destroy(&g);
}

/* Two slots, the second tracked in 2 MiB pages: KVM's 4 KiB bits are folded. */
Test(engine_dirty_kvm, two_slots_and_huge_block_pages, .timeout = 60)
{
	struct guest g;

	guest_create(&g, true, KVM_MEM_LOG_DIRTY_PAGES);
	struct ferry_dirty_kvm_slot s[2] = {
	    {.block = {.host = g.mem0, .length = SLOT0_LEN, .page_size = PS}, .slot = 0},
	    {.block = {.host = g.mem1, .length = SLOT1_LEN, .page_size = 2 * MIB}, .slot = 1},
	};
	struct ferry_dirty_log *log;
	cr_assert_eq(ferry_dirty_log_create_kvm(g.vm, s, 2, NULL, &log), 0);
	cr_assert_eq(ferry_dirty_log_block_pages(log, 1), 2);
	cr_assert_eq(ferry_dirty_log_start(log), 0);
	guest_run(&g, (uint32_t[]){7 * PS, SLOT1_GPA + 2 * MIB + PS, SLOT1_GPA + 2 * MIB + 9 * PS},
		  3);
	cr_assert_eq(g.mem1[2 * MIB + 9 * PS], 1);
	expect_sync(&g, log, 0, (uint64_t[]){7}, 1);
	expect_sync(&g, log, 1, (uint64_t[]){1}, 1);
	expect_sync(&g, log, 1, NULL, 0);
	ferry_dirty_log_destroy(log);
	guest_destroy(&g);
}

/* A slot without KVM_MEM_LOG_DIRTY_PAGES, or one that does not exist: start says so. */
Test(engine_dirty_kvm, slot_without_dirty_log, .timeout = 60)
{
	struct guest g;

	guest_create(&g, false, 0);
	struct ferry_dirty_log *log = slot0_log(&g, 0);
	cr_assert_eq(ferry_dirty_log_start(log), -ENOENT);
	uint64_t map[4] = {0};
	cr_assert_eq(ferry_dirty_log_sync(log, 0, map), FERRY_ESTATE);
	ferry_dirty_log_destroy(log);

	struct ferry_dirty_kvm_slot s = {
	    .block = {.host = g.mem0, .length = SLOT0_LEN, .page_size = PS},
	    .slot = 9,
	};
	cr_assert_eq(ferry_dirty_log_create_kvm(g.vm, &s, 1, NULL, &log), 0);
	cr_assert_eq(ferry_dirty_log_start(log), -ENOENT);
	ferry_dirty_log_destroy(log);
	guest_destroy(&g);
}

/* Arguments are checked before KVM is asked anything: runs without /dev/kvm. */
Test(engine_dirty_kvm, bad_arguments)
{
	uint8_t *mem = tdirty_map(2 * MIB, PS, 0);
	struct ferry_dirty_kvm_slot s[2] = {
	    {.block = {.host = mem, .length = MIB, .page_size = PS}, .slot = 0},
	    {.block = {.host = mem + MIB, .length = MIB, .page_size = PS}, .slot = 0},
	};
	struct ferry_dirty_log *log = (void *)1;

	cr_assert_eq(ferry_dirty_log_create_kvm(-1, s, 1, NULL, &log), -EINVAL);
	cr_assert_null(log);
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 2, NULL, &log), -EINVAL, "duplicate slot");
	s[1].slot = 1;
	s[1].block.host = mem + MIB / 2;
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 2, NULL, &log), -EINVAL, "overlap");
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 0, NULL, &log), -EINVAL);
	struct ferry_dirty_kvm_attr a = {.size = 1};
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 1, &a, &log), -EINVAL, "attr size");
	s[0].block.page_size = 5000;
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 1, NULL, &log), -EINVAL, "page size");
	/* A valid description is accepted without touching KVM (fd 0 is not a VM). */
	s[0].block.page_size = PS;
	cr_assert_eq(ferry_dirty_log_create_kvm(0, s, 1, NULL, &log), 0);
	cr_assert_eq(ferry_dirty_log_block_pages(log, 0), MIB / PS);
	ferry_dirty_log_destroy(log);
	tdirty_unmap(mem, 2 * MIB);
}
