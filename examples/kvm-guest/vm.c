/* SPDX-License-Identifier: MIT */
/*
 * The virtual machine: KVM slots and vCPUs, the guest program, the vCPU
 * threads and their exits, and the exact state check.
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <linux/kvm.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ferry/dirty.h>
#include <ferry/engine.h>

#include "hv.h"

#define CODE_GPA	 0x1000u
#define MAILBOX_GPA	 0x2000u
#define MAILBOX_SIZE	 64u
#define RING_GPA	 0x3000u
#define SLOT_LOW	 0u
#define SLOT_RAM	 1u
#define KICK_SIGNAL	 SIGUSR1
#define PAUSE_TIMEOUT_MS 5000
#define MAX_RAM		 (64ull << 30)
#define HUGE_2M		 (2ull << 20)

/*
 * The guest, 32-bit code at CODE_GPA. On entry ESI/EDI bound the vCPU's
 * share of slot 1, EBP points at its mailbox (round counter at +0, the
 * character it prints at +4), EBX = 0 and ECX = EDI (as if a round had just
 * ended).
 *
 *  0 top:	inc ebx			43		round EBX begins
 *  1		mov ecx, esi		89 F1
 *  3 loop:	inc byte [ecx]		FE 01		the A-B write
 *  5		add ecx, 0x1000		81 C1 00 10 00 00
 * 11		test ecx, 0xff000	F7 C1 00 F0 0F 00
 * 17		jnz skip		75 02
 * 19		out 0x80, al		E6 80		a POST code at every MiB
 * 21 skip:	cmp ecx, edi		39 F9
 * 23		jb loop			72 EA
 * 25		mov [ebp], ebx		89 5D 00	round EBX done
 * 28		mov dx, 0x3f8		66 BA F8 03
 * 32		mov al, [ebp+4]		8A 45 04
 * 35		out dx, al		EE		serial: one character per round
 * 36		mov dx, 0xc010		66 BA 10 C0
 * 40		xor eax, eax		31 C0
 * 42		out dx, ax		66 EF		vdev: notify queue 0
 * 44		jmp top			EB D2
 *
 * The POST code writes (port 0x80, the classic I/O delay port) give the
 * hypervisor a regular exit to pace the guest's dirty rate by, and the
 * engine's throttle a place to act.
 */
enum {
	OFF_TOP = 0,
	OFF_SET_ECX = 1,
	OFF_LOOP = 3,
	OFF_ADD = 5,
	OFF_MAILBOX = 25,
	OFF_SERIAL_OUT = 35,
	OFF_VDEV_OUT = 42,
	CODE_LEN = 46,
};

#define POST_PORT  0x80
#define POST_EVERY (1u << 20)

static const uint8_t guest_code[CODE_LEN] = {
    0x43,				/* inc ebx */
    0x89, 0xf1,				/* mov ecx, esi */
    0xfe, 0x01,				/* inc byte [ecx] */
    0x81, 0xc1, 0x00, 0x10, 0x00, 0x00, /* add ecx, 0x1000 */
    0xf7, 0xc1, 0x00, 0xf0, 0x0f, 0x00, /* test ecx, 0xff000 */
    0x75, 0x02,				/* jnz skip */
    0xe6, 0x80,				/* out 0x80, al */
    0x39, 0xf9,				/* cmp ecx, edi */
    0x72, 0xea,				/* jb loop */
    0x89, 0x5d, 0x00,			/* mov [ebp+0], ebx */
    0x66, 0xba, 0xf8, 0x03,		/* mov dx, 0x3f8 */
    0x8a, 0x45, 0x04,			/* mov al, [ebp+4] */
    0xee,				/* out dx, al */
    0x66, 0xba, 0x10, 0xc0,		/* mov dx, 0xc010 */
    0x31, 0xc0,				/* xor eax, eax */
    0x66, 0xef,				/* out dx, ax */
    0xeb, 0xd2,				/* jmp top */
};

/* Instruction boundaries: the only places a stopped vCPU's RIP can be. */
static const uint8_t insn_offsets[] = {0,  1,  3,  5,  11, 17, 19, 21, 23,
				       25, 28, 32, 35, 36, 40, 42, 44};

/*
 * The MSRs migrated, where this KVM has them. The guest uses none of them,
 * but any guest OS does, and they show how a variable set travels.
 */
static const uint32_t msr_candidates[] = {
    0x00000010, /* IA32_TSC */
    0x00000174, /* IA32_SYSENTER_CS */
    0x00000175, /* IA32_SYSENTER_ESP */
    0x00000176, /* IA32_SYSENTER_EIP */
    0x00000277, /* IA32_PAT */
};

struct hv_vcpu {
	struct hv_vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool started;
	/* The last KVM_RUN returned an exit that completes on the next entry. */
	bool exit_pending;
	struct hv_cpu_state state;
	atomic_uint_fast64_t exits;
	/* Pacing (dirty rate, throttle): since the last resume. */
	uint64_t pace_t0_ns, pace_bytes, last_pace_ns;
	uint32_t posts_in_round;
};

struct hv_vm {
	struct hv_config cfg;
	int kvm_fd, vm_fd;
	size_t run_size;
	uint8_t *low, *ram;
	uint64_t npages;
	uint32_t msr_index[HV_MAX_MSRS];
	uint32_t nmsrs;
	struct hv_vcpu vcpu[HV_MAX_VCPUS];
	uint32_t nvcpus_created;

	/* The devices, touched by vCPU threads in their exits. */
	pthread_mutex_t dev_lock;
	struct hv_serial serial;
	struct hv_vdev vdev;

	/* Run control. */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool paused, quit;
	uint32_t parked; /* threads waiting in vcpu_park() */
	uint32_t alive;	 /* threads not yet ended */
	bool threads;	 /* vCPU threads were started and not joined */
	atomic_int throttle_pct;
	int error;
	char error_msg[160];

	struct ferry_dirty_log *log; /* source only */
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* ---- kicking a vCPU out of KVM_RUN ------------------------------------------------------- */

static void kick_handler(int sig)
{
	/* Its only job is to exist: a signal makes KVM_RUN return with EINTR. */
	(void)sig;
}

/* Idempotent: the same handler each time, process-wide. */
static int install_kick_handler(void)
{
	struct sigaction sa;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = kick_handler;
	sigemptyset(&sa.sa_mask);
	/* No SA_RESTART: the point is that the interrupted ioctl returns. */
	return sigaction(KICK_SIGNAL, &sa, NULL) < 0 ? -errno : 0;
}

static void set_immediate_exit(struct hv_vcpu *c, uint8_t v)
{
	__atomic_store_n(&c->run->immediate_exit, v, __ATOMIC_SEQ_CST);
}

/*
 * Make every running vCPU leave the guest soon. immediate_exit covers the
 * race with a thread about to enter KVM_RUN (it returns at once), the signal
 * the case of a thread already inside it.
 */
static void kick_all(struct hv_vm *vm)
{
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		struct hv_vcpu *c = &vm->vcpu[i];

		if (!c->started)
			continue;
		set_immediate_exit(c, 1);
		pthread_kill(c->thread, KICK_SIGNAL);
	}
}

/* ---- register records <-> KVM ------------------------------------------------------------ */

static void seg_from_kvm(struct hv_segment *d, const struct kvm_segment *s)
{
	d->base = s->base;
	d->limit = s->limit;
	d->selector = s->selector;
	d->type = s->type;
	d->present = s->present;
	d->dpl = s->dpl;
	d->db = s->db;
	d->s = s->s;
	d->l = s->l;
	d->g = s->g;
	d->avl = s->avl;
	d->unusable = s->unusable;
}

static void seg_to_kvm(struct kvm_segment *d, const struct hv_segment *s)
{
	memset(d, 0, sizeof(*d));
	d->base = s->base;
	d->limit = s->limit;
	d->selector = s->selector;
	d->type = s->type;
	d->present = s->present;
	d->dpl = s->dpl;
	d->db = s->db;
	d->s = s->s;
	d->l = s->l;
	d->g = s->g;
	d->avl = s->avl;
	d->unusable = s->unusable;
}

static void sregs_from_kvm(struct hv_cpu_state *c, const struct kvm_sregs *s)
{
	seg_from_kvm(&c->cs, &s->cs);
	seg_from_kvm(&c->ds, &s->ds);
	seg_from_kvm(&c->es, &s->es);
	seg_from_kvm(&c->fs, &s->fs);
	seg_from_kvm(&c->gs, &s->gs);
	seg_from_kvm(&c->ss, &s->ss);
	seg_from_kvm(&c->tr, &s->tr);
	seg_from_kvm(&c->ldt, &s->ldt);
	c->gdt.base = s->gdt.base;
	c->gdt.limit = s->gdt.limit;
	c->idt.base = s->idt.base;
	c->idt.limit = s->idt.limit;
	c->cr0 = s->cr0;
	c->cr2 = s->cr2;
	c->cr3 = s->cr3;
	c->cr4 = s->cr4;
	c->cr8 = s->cr8;
	c->efer = s->efer;
	c->apic_base = s->apic_base;
	for (int i = 0; i < 4; i++)
		c->interrupt_bitmap[i] = s->interrupt_bitmap[i];
}

static void sregs_to_kvm(struct kvm_sregs *s, const struct hv_cpu_state *c)
{
	memset(s, 0, sizeof(*s));
	seg_to_kvm(&s->cs, &c->cs);
	seg_to_kvm(&s->ds, &c->ds);
	seg_to_kvm(&s->es, &c->es);
	seg_to_kvm(&s->fs, &c->fs);
	seg_to_kvm(&s->gs, &c->gs);
	seg_to_kvm(&s->ss, &c->ss);
	seg_to_kvm(&s->tr, &c->tr);
	seg_to_kvm(&s->ldt, &c->ldt);
	s->gdt.base = c->gdt.base;
	s->gdt.limit = c->gdt.limit;
	s->idt.base = c->idt.base;
	s->idt.limit = c->idt.limit;
	s->cr0 = c->cr0;
	s->cr2 = c->cr2;
	s->cr3 = c->cr3;
	s->cr4 = c->cr4;
	s->cr8 = c->cr8;
	s->efer = c->efer;
	s->apic_base = c->apic_base;
	for (int i = 0; i < 4; i++)
		s->interrupt_bitmap[i] = c->interrupt_bitmap[i];
}

static void regs_from_kvm(struct hv_cpu_state *c, const struct kvm_regs *r)
{
	c->rax = r->rax, c->rbx = r->rbx, c->rcx = r->rcx, c->rdx = r->rdx;
	c->rsi = r->rsi, c->rdi = r->rdi, c->rsp = r->rsp, c->rbp = r->rbp;
	c->r8 = r->r8, c->r9 = r->r9, c->r10 = r->r10, c->r11 = r->r11;
	c->r12 = r->r12, c->r13 = r->r13, c->r14 = r->r14, c->r15 = r->r15;
	c->rip = r->rip, c->rflags = r->rflags;
}

static void regs_to_kvm(struct kvm_regs *r, const struct hv_cpu_state *c)
{
	memset(r, 0, sizeof(*r));
	r->rax = c->rax, r->rbx = c->rbx, r->rcx = c->rcx, r->rdx = c->rdx;
	r->rsi = c->rsi, r->rdi = c->rdi, r->rsp = c->rsp, r->rbp = c->rbp;
	r->r8 = c->r8, r->r9 = c->r9, r->r10 = c->r10, r->r11 = c->r11;
	r->r12 = c->r12, r->r13 = c->r13, r->r14 = c->r14, r->r15 = c->r15;
	r->rip = c->rip, r->rflags = c->rflags;
}

/* struct kvm_msrs ends in a flexible array: room for our list. */
union msr_buf {
	struct kvm_msrs hdr;
	uint8_t room[sizeof(struct kvm_msrs) + HV_MAX_MSRS * sizeof(struct kvm_msr_entry)];
};

static int msrs_from_kvm(struct hv_vcpu *c)
{
	struct hv_vm *vm = c->vm;
	union msr_buf b;
	int n;

	memset(&b, 0, sizeof(b));
	b.hdr.nmsrs = vm->nmsrs;
	for (uint32_t i = 0; i < vm->nmsrs; i++)
		b.hdr.entries[i].index = vm->msr_index[i];
	n = ioctl(c->fd, KVM_GET_MSRS, &b);
	if (n < 0)
		return -errno;
	if ((uint32_t)n != vm->nmsrs)
		return -EIO;
	c->state.nmsrs = vm->nmsrs;
	for (uint32_t i = 0; i < vm->nmsrs; i++) {
		c->state.msrs[i].index = b.hdr.entries[i].index;
		c->state.msrs[i].data = b.hdr.entries[i].data;
	}
	return 0;
}

static int msrs_to_kvm(struct hv_vcpu *c)
{
	union msr_buf b;
	int n;

	memset(&b, 0, sizeof(b));
	b.hdr.nmsrs = c->state.nmsrs;
	for (uint32_t i = 0; i < c->state.nmsrs; i++) {
		b.hdr.entries[i].index = c->state.msrs[i].index;
		b.hdr.entries[i].data = c->state.msrs[i].data;
	}
	n = ioctl(c->fd, KVM_SET_MSRS, &b);
	if (n < 0)
		return -errno;
	/* KVM stops at the first MSR it refuses and returns how many it set. */
	return (uint32_t)n == c->state.nmsrs ? 0 : -EINVAL;
}

static void events_from_kvm(struct hv_cpu_events *e, const struct kvm_vcpu_events *k)
{
	e->exception_injected = k->exception.injected;
	e->exception_nr = k->exception.nr;
	e->exception_has_error_code = k->exception.has_error_code;
	e->exception_error_code = k->exception.error_code;
	e->interrupt_injected = k->interrupt.injected;
	e->interrupt_nr = k->interrupt.nr;
	e->interrupt_soft = k->interrupt.soft;
	e->interrupt_shadow = k->interrupt.shadow;
	e->nmi_injected = k->nmi.injected;
	e->nmi_pending = k->nmi.pending;
	e->nmi_masked = k->nmi.masked;
}

static void events_to_kvm(struct kvm_vcpu_events *k, const struct hv_cpu_events *e)
{
	memset(k, 0, sizeof(*k));
	k->exception.injected = e->exception_injected;
	k->exception.nr = e->exception_nr;
	k->exception.has_error_code = e->exception_has_error_code;
	k->exception.error_code = e->exception_error_code;
	k->interrupt.injected = e->interrupt_injected;
	k->interrupt.nr = e->interrupt_nr;
	k->interrupt.soft = e->interrupt_soft;
	k->interrupt.shadow = e->interrupt_shadow;
	k->nmi.injected = e->nmi_injected;
	k->nmi.pending = e->nmi_pending;
	k->nmi.masked = e->nmi_masked;
	k->flags = KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SHADOW;
}

static void vcpu_fail(struct hv_vcpu *c, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void vcpu_fail(struct hv_vcpu *c, int err, const char *fmt, ...)
{
	struct hv_vm *vm = c->vm;
	va_list ap;

	pthread_mutex_lock(&vm->lock);
	if (!vm->error) {
		int n;

		vm->error = err;
		n = snprintf(vm->error_msg, sizeof(vm->error_msg), "vCPU %u: ", c->index);
		va_start(ap, fmt);
		vsnprintf(vm->error_msg + n, sizeof(vm->error_msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	pthread_mutex_unlock(&vm->lock);
}

/*
 * KVM -> record, in the vCPU's thread. An I/O exit is only complete (RIP past
 * the instruction, IN data consumed) once KVM_RUN is entered again, so a
 * stopped vCPU first re-enters with immediate_exit set: KVM finishes the
 * instruction and returns EINTR without running the guest further.
 */
static int state_from_kvm(struct hv_vcpu *c)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events ev;
	int ret;

	if (c->exit_pending) {
		set_immediate_exit(c, 1);
		if (ioctl(c->fd, KVM_RUN, 0) == 0 || errno != EINTR) {
			vcpu_fail(c, -EIO, "KVM_RUN did not complete the pending exit");
			return -EIO;
		}
		c->exit_pending = false;
	}
	if (ioctl(c->fd, KVM_GET_REGS, &regs) < 0 || ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(c->fd, KVM_GET_VCPU_EVENTS, &ev) < 0) {
		ret = -errno;
		vcpu_fail(c, ret, "reading registers: %s", strerror(-ret));
		return ret;
	}
	ret = msrs_from_kvm(c);
	if (ret < 0) {
		vcpu_fail(c, ret, "KVM_GET_MSRS: %s", strerror(-ret));
		return ret;
	}
	regs_from_kvm(&c->state, &regs);
	sregs_from_kvm(&c->state, &sregs);
	events_from_kvm(&c->state.events, &ev);
	c->state.synced = true;
	return 0;
}

/* Record -> KVM, in the vCPU's thread, before it runs a booted or loaded record. */
static int state_to_kvm(struct hv_vcpu *c)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_vcpu_events ev;
	const char *what = "KVM_SET_SREGS";
	int ret = 0;

	sregs_to_kvm(&sregs, &c->state);
	regs_to_kvm(&regs, &c->state);
	events_to_kvm(&ev, &c->state.events);
	if (ioctl(c->fd, KVM_SET_SREGS, &sregs) < 0) {
		ret = -errno;
	} else if (ioctl(c->fd, KVM_SET_REGS, &regs) < 0) {
		what = "KVM_SET_REGS";
		ret = -errno;
	} else if (ioctl(c->fd, KVM_SET_VCPU_EVENTS, &ev) < 0) {
		what = "KVM_SET_VCPU_EVENTS";
		ret = -errno;
	} else {
		what = "KVM_SET_MSRS";
		ret = msrs_to_kvm(c);
	}
	if (ret < 0) {
		vcpu_fail(c, ret, "%s: %s", what, strerror(-ret));
		return ret;
	}
	c->state.to_kvm = false;
	return 0;
}

/* ---- the vCPU thread ------------------------------------------------------------------- */

/*
 * Sleep up to @ns, waking early when the VM is paused or stopped, so a
 * pacing vCPU does not delay a stop.
 */
static void nap(struct hv_vm *vm, uint64_t ns)
{
	uint64_t end = now_ns() + ns;
	struct timespec ts = {.tv_sec = (time_t)(end / 1000000000ull),
			      .tv_nsec = (long)(end % 1000000000ull)};

	pthread_mutex_lock(&vm->lock);
	while (!atomic_load(&vm->paused) && !atomic_load(&vm->quit) && now_ns() < end)
		if (pthread_cond_timedwait(&vm->cond, &vm->lock, &ts) == ETIMEDOUT)
			break;
	pthread_mutex_unlock(&vm->lock);
}

/*
 * The guest reported progress (a POST code every MiB, the serial write at
 * the end of a round): hold the configured dirty rate and the engine's
 * throttle by sleeping here, outside KVM_RUN.
 */
static void pace(struct hv_vcpu *c, bool round_end)
{
	struct hv_vm *vm = c->vm;
	uint64_t t = now_ns(), share = vm->npages / vm->cfg.vcpus * HV_PAGE;
	int pct = atomic_load(&vm->throttle_pct);

	if (!round_end) {
		c->pace_bytes += POST_EVERY;
		c->posts_in_round++;
	} else {
		/* The part of the round after the last POST code. */
		if (share > (uint64_t)c->posts_in_round * POST_EVERY)
			c->pace_bytes += share - (uint64_t)c->posts_in_round * POST_EVERY;
		c->posts_in_round = 0;
	}
	if (vm->cfg.dirty_rate) {
		uint64_t rate = vm->cfg.dirty_rate / vm->cfg.vcpus;
		uint64_t due;

		if (rate == 0)
			rate = 1;
		due = c->pace_t0_ns + (uint64_t)((double)c->pace_bytes * 1e9 / (double)rate);
		if (due > t)
			nap(vm, due - t);
	}
	if (pct > 0 && c->last_pace_ns) {
		uint64_t ran = t - c->last_pace_ns;

		nap(vm, ran * (uint64_t)pct / (uint64_t)(100 - pct));
	}
	c->last_pace_ns = now_ns();
}

static int handle_io(struct hv_vcpu *c)
{
	struct hv_vm *vm = c->vm;
	struct kvm_run *run = c->run;
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	bool out = run->io.direction == KVM_EXIT_IO_OUT;
	uint16_t port = run->io.port;
	bool round_end = false, post = false;

	if (run->io.size > 4 ||
	    run->io.data_offset + (uint64_t)run->io.size * run->io.count > vm->run_size) {
		vcpu_fail(c, -EIO, "malformed I/O exit");
		return -EIO;
	}
	pthread_mutex_lock(&vm->dev_lock);
	for (uint32_t i = 0; i < run->io.count; i++, data += run->io.size) {
		if (port >= HV_SERIAL_PORT && port < HV_SERIAL_PORT + 8 && run->io.size == 1) {
			hv_serial_io(&vm->serial, port, out, data);
			round_end = out && port == HV_SERIAL_PORT && !(vm->serial.lcr & 0x80);
		} else if (port == POST_PORT) {
			post = out;
		} else if (port >= vm->vdev.io_base && port < vm->vdev.io_base + 0x20) {
			hv_vdev_io(&vm->vdev, port, out, data, run->io.size);
		} else if (!out) {
			memset(data, 0xff, run->io.size); /* nothing there: the bus floats */
		}
	}
	pthread_mutex_unlock(&vm->dev_lock);
	if (round_end || post)
		pace(c, round_end);
	return 0;
}

static int handle_exit(struct hv_vcpu *c)
{
	struct kvm_run *run = c->run;

	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		return handle_io(c);
	case KVM_EXIT_MMIO:
		if (!run->mmio.is_write)
			memset(run->mmio.data, 0xff, sizeof(run->mmio.data));
		return 0;
	case KVM_EXIT_INTR:
		return 0;
	case KVM_EXIT_HLT:
		vcpu_fail(c, -EIO, "the guest halted");
		return -EIO;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(c, -EIO, "the guest shut down (triple fault) at rip %#llx",
			  (unsigned long long)c->state.rip);
		return -EIO;
	case KVM_EXIT_FAIL_ENTRY:
		vcpu_fail(c, -EIO, "VM entry failed, hardware reason %#llx",
			  (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		return -EIO;
	case KVM_EXIT_INTERNAL_ERROR:
		vcpu_fail(c, -EIO, "KVM internal error, suberror %u", run->internal.suberror);
		return -EIO;
	default:
		vcpu_fail(c, -EIO, "unexpected exit reason %u", run->exit_reason);
		return -EIO;
	}
}

/*
 * Wait here while the VM is paused: save the registers first (the engine
 * may save devices as soon as every vCPU is parked), and put a loaded
 * record into KVM before running again. Returns 0 to run on, or -ECANCELED
 * when the VM is stopping (or a negative errno).
 */
static int vcpu_park(struct hv_vcpu *c)
{
	struct hv_vm *vm = c->vm;
	bool quit;
	int ret = state_from_kvm(c);

	if (ret < 0)
		return ret;
	pthread_mutex_lock(&vm->lock);
	vm->parked++;
	pthread_cond_broadcast(&vm->cond);
	while (atomic_load(&vm->paused) && !atomic_load(&vm->quit))
		pthread_cond_wait(&vm->cond, &vm->lock);
	vm->parked--;
	quit = atomic_load(&vm->quit);
	pthread_mutex_unlock(&vm->lock);
	if (quit)
		return -ECANCELED;
	/* Cleared before the caller checks `paused` again: a new pause sets it after. */
	set_immediate_exit(c, 0);
	if (c->state.to_kvm && (ret = state_to_kvm(c)) < 0)
		return ret;
	c->state.synced = false;
	c->pace_t0_ns = now_ns();
	c->pace_bytes = 0;
	c->last_pace_ns = 0;
	return 0;
}

static void *vcpu_main(void *arg)
{
	struct hv_vcpu *c = arg;
	struct hv_vm *vm = c->vm;
	int ret = 0;

	if (c->state.to_kvm)
		ret = state_to_kvm(c);
	c->state.synced = false;
	c->pace_t0_ns = now_ns();
	while (ret == 0) {
		if (atomic_load(&vm->paused) || atomic_load(&vm->quit)) {
			ret = vcpu_park(c);
			continue;
		}
		ret = ioctl(c->fd, KVM_RUN, 0);
		atomic_fetch_add(&c->exits, 1);
		if (ret < 0) {
			ret = -errno;
			c->exit_pending = false;
			if (ret == -EINTR || ret == -EAGAIN) {
				ret = 0;
				continue;
			}
			vcpu_fail(c, ret, "KVM_RUN: %s", strerror(-ret));
			break;
		}
		c->exit_pending = true;
		ret = handle_exit(c);
	}
	/* Leave the registers in the record, whatever ended the thread. */
	if (!c->state.synced && ret != -ECANCELED)
		state_from_kvm(c);
	pthread_mutex_lock(&vm->lock);
	vm->alive--;
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return NULL;
}

int hv_vm_start(struct hv_vm *vm)
{
	sigset_t all, old;
	int ret = 0;

	if (vm->threads)
		return -EALREADY;
	atomic_store(&vm->quit, false);
	atomic_store(&vm->paused, false);
	/* The kick signal must reach the vCPU threads: start them with it unblocked. */
	sigemptyset(&all);
	sigaddset(&all, KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &all, &old);
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		struct hv_vcpu *c = &vm->vcpu[i];

		set_immediate_exit(c, 0);
		pthread_mutex_lock(&vm->lock);
		vm->alive++;
		pthread_mutex_unlock(&vm->lock);
		ret = -pthread_create(&c->thread, NULL, vcpu_main, c);
		if (ret < 0) {
			pthread_mutex_lock(&vm->lock);
			vm->alive--;
			pthread_mutex_unlock(&vm->lock);
			break;
		}
		c->started = true;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	vm->threads = true;
	if (ret < 0)
		hv_vm_stop(vm);
	return ret;
}

int hv_vm_pause(struct hv_vm *vm)
{
	struct timespec ts;
	int ret = 0;

	if (!vm->threads)
		return 0;
	atomic_store(&vm->paused, true);
	kick_all(vm);
	clock_gettime(CLOCK_MONOTONIC, &ts);
	ts.tv_sec += PAUSE_TIMEOUT_MS / 1000;
	pthread_mutex_lock(&vm->lock);
	pthread_cond_broadcast(&vm->cond); /* wake pacing naps */
	while (vm->parked < vm->alive && ret == 0)
		ret = pthread_cond_timedwait(&vm->cond, &vm->lock, &ts);
	if (vm->parked >= vm->alive)
		ret = 0;
	pthread_mutex_unlock(&vm->lock);
	return ret ? -ETIMEDOUT : 0;
}

int hv_vm_resume(struct hv_vm *vm)
{
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->paused, false);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	return 0;
}

void hv_vm_stop(struct hv_vm *vm)
{
	if (!vm->threads)
		return;
	pthread_mutex_lock(&vm->lock);
	atomic_store(&vm->quit, true);
	pthread_cond_broadcast(&vm->cond);
	pthread_mutex_unlock(&vm->lock);
	kick_all(vm);
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		struct hv_vcpu *c = &vm->vcpu[i];

		if (c->started)
			pthread_join(c->thread, NULL);
		c->started = false;
	}
	vm->threads = false;
}

/* ---- creation -------------------------------------------------------------------------- */

/*
 * (Re-)register a slot. Dirty logging is only turned on when a migration is
 * set up (hv_vm_attach_source()): while it is on, KVM maps the slot with 4
 * KiB pages only and write-protects pages it has reported, which costs the
 * guest. KVM lets the flags of a live slot change.
 */
static int set_slot(struct hv_vm *vm, uint32_t slot, uint64_t gpa, void *host, uint64_t len,
		    uint32_t flags)
{
	struct kvm_userspace_memory_region r = {
	    .slot = slot,
	    .flags = flags,
	    .guest_phys_addr = gpa,
	    .memory_size = len,
	    .userspace_addr = (uintptr_t)host,
	};

	return ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &r) < 0 ? -errno : 0;
}

/* Keep the candidate MSRs this KVM can save and restore. */
static int pick_msrs(struct hv_vm *vm)
{
	struct kvm_msr_list probe = {.nmsrs = 0};
	struct kvm_msr_list *list;
	int ret = 0;

	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) == 0 || errno != E2BIG)
		return errno == 0 ? 0 : -errno;
	if (probe.nmsrs > 65536)
		return -E2BIG;
	list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(vm->kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		ret = -errno;
		goto out;
	}
	for (size_t i = 0; i < sizeof(msr_candidates) / sizeof(msr_candidates[0]); i++)
		for (uint32_t j = 0; j < list->nmsrs; j++)
			if (list->indices[j] == msr_candidates[i] && vm->nmsrs < HV_MAX_MSRS) {
				vm->msr_index[vm->nmsrs++] = msr_candidates[i];
				break;
			}
out:
	free(list);
	return ret;
}

static void *map_guest(uint64_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

#define FAIL(err, ...)                                                                             \
	do {                                                                                       \
		ret = (err);                                                                       \
		snprintf(why, whylen, __VA_ARGS__);                                                \
		goto fail;                                                                         \
	} while (0)

int hv_vm_create(const struct hv_config *cfg, struct hv_vm **out, char *why, size_t whylen)
{
	struct hv_vm *vm;
	pthread_condattr_t ca;
	int ret, v;

	*out = NULL;
	if (cfg->vcpus < 1 || cfg->vcpus > HV_MAX_VCPUS || cfg->ram_bytes % HUGE_2M ||
	    cfg->ram_bytes < (uint64_t)cfg->vcpus * HV_PAGE || cfg->ram_bytes > MAX_RAM) {
		snprintf(why, whylen, "bad configuration: 1..%d vCPUs, RAM a multiple of 2 MiB",
			 HV_MAX_VCPUS);
		return -EINVAL;
	}
	vm = calloc(1, sizeof(*vm));
	if (!vm) {
		snprintf(why, whylen, "out of memory");
		return -ENOMEM;
	}
	vm->cfg = *cfg;
	vm->npages = cfg->ram_bytes / HV_PAGE;
	vm->kvm_fd = vm->vm_fd = -1;
	for (uint32_t i = 0; i < HV_MAX_VCPUS; i++)
		vm->vcpu[i].fd = -1;
	pthread_mutex_init(&vm->lock, NULL);
	pthread_mutex_init(&vm->dev_lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&vm->cond, &ca);
	pthread_condattr_destroy(&ca);

	ret = install_kick_handler();
	if (ret < 0)
		FAIL(ret, "sigaction: %s", strerror(-ret));
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0)
		FAIL(-errno, "/dev/kvm: %s", strerror(errno));
	v = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (v != KVM_API_VERSION)
		FAIL(-ENOTSUP, "KVM API version %d, this hypervisor speaks %d", v, KVM_API_VERSION);
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_IMMEDIATE_EXIT) <= 0)
		FAIL(-ENOTSUP, "KVM lacks KVM_CAP_IMMEDIATE_EXIT (Linux 4.11)");
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0)
		FAIL(-errno, "KVM_CREATE_VM: %s", strerror(errno));
	/* Intel needs a TSS region for real-mode emulation; AMD ignores it. */
	ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, 0xfffbd000ul);

	vm->low = map_guest(HV_LOW_BYTES);
	vm->ram = map_guest(cfg->ram_bytes);
	if (!vm->low || !vm->ram)
		FAIL(-ENOMEM, "cannot map %" PRIu64 " MiB of guest memory", cfg->ram_bytes >> 20);
	ret = set_slot(vm, SLOT_LOW, 0, vm->low, HV_LOW_BYTES, 0);
	if (!ret)
		ret = set_slot(vm, SLOT_RAM, HV_RAM_GPA, vm->ram, cfg->ram_bytes, 0);
	if (ret)
		FAIL(ret, "KVM_SET_USER_MEMORY_REGION: %s", strerror(-ret));
	ret = pick_msrs(vm);
	if (ret)
		FAIL(ret, "KVM_GET_MSR_INDEX_LIST: %s", strerror(-ret));

	v = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (v < (int)sizeof(struct kvm_run))
		FAIL(-EIO, "KVM_GET_VCPU_MMAP_SIZE: %s", strerror(errno));
	vm->run_size = (size_t)v;
	for (uint32_t i = 0; i < cfg->vcpus; i++) {
		struct hv_vcpu *c = &vm->vcpu[i];
		void *run;

		c->vm = vm;
		c->index = i;
		c->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)i);
		if (c->fd < 0)
			FAIL(-errno, "KVM_CREATE_VCPU %u: %s", i, strerror(errno));
		vm->nvcpus_created = i + 1;
		run = mmap(NULL, vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, c->fd, 0);
		if (run == MAP_FAILED)
			FAIL(-errno, "mmap of vCPU %u: %s", i, strerror(errno));
		c->run = run;
	}

	/* Devices at power-on. */
	vm->serial.lsr = 0x60;
	vm->serial.iir = 0x01; /* no interrupt pending */
	vm->serial.lcr = 0x03; /* 8N1 */
	vm->serial.divider = 12;
	vm->vdev.mem = vm->low;
	vm->vdev.mem_len = HV_LOW_BYTES;
	hv_vdev_reset(&vm->vdev, RING_GPA);
	*out = vm;
	return 0;
fail:
	hv_vm_destroy(vm);
	return ret;
}

/* Bytes 8..4095 of every page of slot 1: a fixed pattern, so a misplaced page shows. */
static uint64_t pattern_word(uint64_t gpa, unsigned w)
{
	return (gpa + w * 8u) * 0x9e3779b97f4a7c15ull;
}

static void vcpu_share(const struct hv_vm *vm, uint32_t i, uint64_t *first, uint64_t *count)
{
	uint64_t share = vm->npages / vm->cfg.vcpus;

	*first = share * i;
	*count = i + 1 == vm->cfg.vcpus ? vm->npages - *first : share;
}

int hv_vm_boot(struct hv_vm *vm)
{
	if (vm->threads)
		return -EBUSY;
	memset(vm->low, 0, HV_LOW_BYTES);
	memcpy(vm->low + CODE_GPA, guest_code, sizeof(guest_code));
	for (uint64_t pg = 0; pg < vm->npages; pg++) {
		uint64_t *w = (uint64_t *)(void *)(vm->ram + pg * HV_PAGE);
		uint64_t gpa = HV_RAM_GPA + pg * HV_PAGE;

		w[0] = 0;
		for (unsigned i = 1; i < HV_PAGE / 8; i++)
			w[i] = pattern_word(gpa, i);
	}
	pthread_mutex_lock(&vm->dev_lock);
	hv_vdev_reset(&vm->vdev, RING_GPA);
	vm->serial.tx_count = 0;
	vm->serial.last_tx = 0;
	pthread_mutex_unlock(&vm->dev_lock);

	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		struct hv_vcpu *c = &vm->vcpu[i];
		struct hv_cpu_state *s = &c->state;
		struct kvm_sregs sregs;
		struct hv_segment seg = {
		    .base = 0,
		    .limit = 0xffffffff,
		    .present = 1,
		    .db = 1, /* 32-bit */
		    .s = 1,  /* code or data, not a system segment */
		    .g = 1,  /* page granularity: the limit spans 4 GiB */
		};
		uint64_t first, count;
		int ret;

		vcpu_share(vm, i, &first, &count);
		vm->low[MAILBOX_GPA + i * MAILBOX_SIZE + 4] = (uint8_t)('0' + i);
		/* Start from KVM's reset state and switch to flat protected mode. */
		if (ioctl(c->fd, KVM_GET_SREGS, &sregs) < 0)
			return -errno;
		memset(s, 0, sizeof(*s));
		sregs_from_kvm(s, &sregs);
		seg.type = 11; /* code: execute/read, accessed */
		seg.selector = 1 << 3;
		s->cs = seg;
		seg.type = 3; /* data: read/write, accessed */
		seg.selector = 2 << 3;
		s->ds = s->es = s->fs = s->gs = s->ss = seg;
		s->cr0 = (s->cr0 | 1u) & ~(1ull << 31); /* PE on, paging off */
		s->rip = CODE_GPA;
		s->rflags = 2; /* interrupts off; bit 1 always reads 1 */
		s->rsi = HV_RAM_GPA + first * HV_PAGE;
		s->rdi = s->rsi + count * HV_PAGE;
		s->rcx = s->rdi;
		s->rbp = MAILBOX_GPA + i * MAILBOX_SIZE;
		s->rsp = 0x1000;
		/* Whatever values this KVM starts its MSRs with. */
		ret = msrs_from_kvm(c);
		if (ret < 0)
			return ret;
		s->to_kvm = true;
		s->synced = true;
	}
	return 0;
}

/* ---- libferry ----------------------------------------------------------------------------- */

static int op_stop(void *opaque)
{
	return hv_vm_pause(opaque);
}

static int op_resume(void *opaque)
{
	return hv_vm_resume(opaque);
}

static int op_throttle(void *opaque, int pct)
{
	struct hv_vm *vm = opaque;

	if (pct < 0 || pct > 99)
		return -EINVAL;
	atomic_store(&vm->throttle_pct, pct);
	return 0;
}

/* Both sides: the slots as RAM blocks (in slot order), then the devices. */
static int attach_common(struct hv_vm *vm, struct ferry_engine *eng)
{
	struct ferry_devices *devs = ferry_engine_devices(eng);
	const struct ferry_ram_block low = {
	    .name = "pc.low",
	    .host = vm->low,
	    .length = HV_LOW_BYTES,
	    .page_size = HV_PAGE,
	    .numa_node = -1,
	};
	const struct ferry_ram_block ram = {
	    .name = "pc.ram",
	    .host = vm->ram,
	    .length = vm->cfg.ram_bytes,
	    .page_size = HV_PAGE,
	    .numa_node = -1,
	};
	int ret = ferry_engine_add_ram(eng, &low);

	if (ret >= 0)
		ret = ferry_engine_add_ram(eng, &ram);
	for (uint32_t i = 0; ret >= 0 && i < vm->cfg.vcpus; i++)
		ret = ferry_devices_add(devs, "cpu", i, &hv_cpu_vmsd, &vm->vcpu[i].state);
	if (ret >= 0)
		ret = ferry_devices_add(devs, "serial", 0, &hv_serial_vmsd, &vm->serial);
	if (ret >= 0)
		ret = ferry_devices_add(devs, "vdev", 0, &hv_vdev_vmsd, &vm->vdev);
	return ret < 0 ? ret : 0;
}

int hv_vm_attach_source(struct hv_vm *vm, struct ferry_engine *eng)
{
	const struct ferry_dirty_kvm_slot slots[2] = {
	    {.block = {.host = vm->low, .length = HV_LOW_BYTES, .page_size = HV_PAGE},
	     .slot = SLOT_LOW},
	    {.block = {.host = vm->ram, .length = vm->cfg.ram_bytes, .page_size = HV_PAGE},
	     .slot = SLOT_RAM},
	};
	const struct ferry_vcpu_ops ops = {
	    .stop = op_stop,
	    .resume = op_resume,
	    .throttle = op_throttle,
	    .opaque = vm,
	};
	int ret = attach_common(vm, eng);

	if (ret < 0)
		return ret;
	if (!vm->log) {
		/* The dirty log reads KVM's bitmaps of these slots: log them from now on. */
		ret = set_slot(vm, SLOT_LOW, 0, vm->low, HV_LOW_BYTES, KVM_MEM_LOG_DIRTY_PAGES);
		if (!ret)
			ret = set_slot(vm, SLOT_RAM, HV_RAM_GPA, vm->ram, vm->cfg.ram_bytes,
				       KVM_MEM_LOG_DIRTY_PAGES);
		if (ret)
			return ret;
		ret = ferry_dirty_log_create_kvm(vm->vm_fd, slots, 2, NULL, &vm->log);
		if (ret < 0)
			return ret;
		/* From now on the vdev reports its writes into guest memory (block 0). */
		pthread_mutex_lock(&vm->dev_lock);
		vm->vdev.log = vm->log;
		vm->vdev.log_block = 0;
		pthread_mutex_unlock(&vm->dev_lock);
	}
	ret = ferry_engine_set_dirty_log(eng, vm->log);
	if (ret >= 0)
		ret = ferry_engine_set_vcpu_ops(eng, &ops);
	return ret < 0 ? ret : 0;
}

int hv_vm_attach_dest(struct hv_vm *vm, struct ferry_engine *eng)
{
	return attach_common(vm, eng);
}

/* ---- observing the guest ------------------------------------------------------------------ */

static uint32_t mailbox_round(const struct hv_vm *vm, uint32_t i)
{
	const uint8_t *m = vm->low + MAILBOX_GPA + i * MAILBOX_SIZE;
	uint32_t v;

	/* The guest stores it with one aligned 32-bit write. */
	v = __atomic_load_n((const uint32_t *)(const void *)m, __ATOMIC_RELAXED);
	return v;
}

void hv_vm_progress(struct hv_vm *vm, struct hv_progress *p)
{
	memset(p, 0, sizeof(*p));
	pthread_mutex_lock(&vm->dev_lock);
	p->serial_tx = vm->serial.tx_count;
	p->notifies = vm->vdev.notify_count;
	pthread_mutex_unlock(&vm->dev_lock);
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		p->rounds[i] = mailbox_round(vm, i);
		p->exits[i] = atomic_load(&vm->vcpu[i].exits);
	}
	pthread_mutex_lock(&vm->lock);
	p->error = vm->error;
	snprintf(p->error_msg, sizeof(p->error_msg), "%s", vm->error_msg);
	pthread_mutex_unlock(&vm->lock);
}

struct problems {
	uint64_t n;
	char *why;
	size_t len, used;
};

static void problem(struct problems *pr, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void problem(struct problems *pr, const char *fmt, ...)
{
	va_list ap;

	if (pr->n++ < 6 && pr->used + 1 < pr->len) {
		int n;

		va_start(ap, fmt);
		n = vsnprintf(pr->why + pr->used, pr->len - pr->used, fmt, ap);
		va_end(ap);
		if (n > 0)
			pr->used += (size_t)n;
		if (pr->used + 2 < pr->len) {
			pr->why[pr->used++] = ';';
			pr->why[pr->used++] = ' ';
			pr->why[pr->used] = '\0';
		}
	}
}

/*
 * Where vCPU @i is in its program, and so what memory and devices must hold.
 * Counts its completed serial writes and notifications into @tx and @notes.
 */
static void check_vcpu(struct hv_vm *vm, uint32_t i, struct problems *pr, uint64_t *tx,
		       uint64_t *notes)
{
	const struct hv_cpu_state *s = &vm->vcpu[i].state;
	uint64_t first, count, off = s->rip - CODE_GPA, boundary;
	uint32_t ebx = (uint32_t)s->rbx, ecx = (uint32_t)s->rcx, mailbox;
	bool known = false;
	uint64_t bad = 0;

	vcpu_share(vm, i, &first, &count);
	for (size_t k = 0; k < sizeof(insn_offsets); k++)
		known |= s->rip >= CODE_GPA && off == insn_offsets[k];
	if (!known) {
		problem(pr, "vCPU %u: rip %#" PRIx64 " is not an instruction of the guest", i,
			s->rip);
		return;
	}
	if (s->rsi != HV_RAM_GPA + first * HV_PAGE || s->rdi != s->rsi + count * HV_PAGE ||
	    s->rbp != MAILBOX_GPA + i * MAILBOX_SIZE) {
		problem(pr,
			"vCPU %u: esi/edi/ebp %#" PRIx64 "/%#" PRIx64 "/%#" PRIx64
			" do not bound its share",
			i, s->rsi, s->rdi, s->rbp);
		return;
	}
	if (ecx < s->rsi || ecx > s->rdi || (ecx - s->rsi) % HV_PAGE) {
		problem(pr, "vCPU %u: ecx %#x outside its share", i, ecx);
		return;
	}
	/* Pages below the boundary were incremented in round EBX, the others not yet. */
	if (off == OFF_TOP)
		boundary = s->rdi;
	else if (off == OFF_SET_ECX)
		boundary = s->rsi;
	else if (off == OFF_ADD)
		boundary = (uint64_t)ecx + HV_PAGE; /* page ECX written, ECX not advanced */
	else
		boundary = ecx;
	for (uint64_t k = 0; k < count; k++) {
		uint64_t pg = first + k, gpa = HV_RAM_GPA + pg * HV_PAGE;
		uint8_t want = (uint8_t)(gpa < boundary ? ebx : ebx - 1);
		uint8_t got = vm->ram[pg * HV_PAGE];

		if (got != want && bad++ < 3)
			problem(pr,
				"vCPU %u: page %" PRIu64 " (gpa %#" PRIx64
				") holds %u, its registers "
				"say %u",
				i, pg, gpa, got, want);
	}
	if (bad > 3)
		problem(pr, "vCPU %u: %" PRIu64 " pages disagree with its registers", i, bad);
	pr->n += bad > 3 ? bad - 4 : 0;
	mailbox = mailbox_round(vm, i);
	if (mailbox != (off == OFF_TOP || off > OFF_MAILBOX ? ebx : ebx - 1))
		problem(pr, "vCPU %u: mailbox %u, round %u at rip offset %" PRIu64, i, mailbox, ebx,
			off);
	*tx += off == OFF_TOP || off > OFF_SERIAL_OUT ? ebx : ebx - 1;
	*notes += off == OFF_TOP || off > OFF_VDEV_OUT ? ebx : ebx - 1;
}

uint64_t hv_vm_check(struct hv_vm *vm, char *why, size_t whylen)
{
	struct problems pr = {.why = why, .len = whylen};
	uint64_t tx = 0, notes = 0, bad_pattern = 0;

	if (whylen)
		why[0] = '\0';
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++) {
		if (!vm->vcpu[i].state.synced) {
			problem(&pr, "vCPU %u is running: pause the VM first", i);
			return pr.n;
		}
	}
	for (uint32_t i = 0; i < vm->cfg.vcpus; i++)
		check_vcpu(vm, i, &pr, &tx, &notes);
	for (uint64_t pg = 0; pg < vm->npages; pg++) {
		const uint64_t *w = (const uint64_t *)(const void *)(vm->ram + pg * HV_PAGE);
		uint64_t gpa = HV_RAM_GPA + pg * HV_PAGE;
		bool ok = (w[0] >> 8) == 0;

		for (unsigned k = 1; ok && k < HV_PAGE / 8; k++)
			ok = w[k] == pattern_word(gpa, k);
		if (!ok && bad_pattern++ < 3)
			problem(&pr, "page %" PRIu64 ": contents are not the boot pattern", pg);
	}
	if (bad_pattern > 3) {
		problem(&pr, "%" PRIu64 " pages lost their boot pattern", bad_pattern);
		pr.n += bad_pattern - 4;
	}
	if (memcmp(vm->low + CODE_GPA, guest_code, sizeof(guest_code)) != 0)
		problem(&pr, "the guest's code changed");
	if (vm->serial.tx_count != tx)
		problem(&pr, "serial: %" PRIu64 " bytes sent, the vCPUs' registers say %" PRIu64,
			vm->serial.tx_count, tx);
	if (vm->vdev.notify_count != notes)
		problem(&pr, "vdev: %" PRIu64 " notifications, the vCPUs' registers say %" PRIu64,
			vm->vdev.notify_count, notes);
	if (vm->vdev.used_idx[0] != (uint16_t)notes)
		problem(&pr, "vdev: used index %u, expected %u", vm->vdev.used_idx[0],
			(uint16_t)notes);
	{
		uint64_t off = vm->vdev.vq[0].used + 2;
		uint16_t in_ram = (uint16_t)(vm->low[off] | (vm->low[off + 1] << 8));

		if (in_ram != vm->vdev.used_idx[0])
			problem(&pr,
				"vdev: the used ring in guest memory says %u, the device %u "
				"(a host write not reported to the dirty log?)",
				in_ram, vm->vdev.used_idx[0]);
	}
	return pr.n;
}

uint64_t hv_vm_check_ab(struct hv_vm *vm, char *why, size_t whylen)
{
	struct problems pr = {.why = why, .len = whylen};

	if (whylen)
		why[0] = '\0';
	for (uint32_t v = 0; v < vm->cfg.vcpus; v++) {
		uint64_t first, count;
		int edges = 0;

		vcpu_share(vm, v, &first, &count);
		for (uint64_t k = 1; k < count; k++) {
			uint8_t prev = vm->ram[(first + k - 1) * HV_PAGE];
			uint8_t cur = vm->ram[(first + k) * HV_PAGE];

			if (cur == prev)
				continue;
			if ((uint8_t)(prev - 1) == cur && edges++ == 0)
				continue;
			problem(&pr, "page %" PRIu64 ": %u after %u", first + k, cur, prev);
		}
	}
	return pr.n;
}

uint32_t hv_vm_vcpus(const struct hv_vm *vm)
{
	return vm->cfg.vcpus;
}

const struct hv_cpu_state *hv_vm_cpu(const struct hv_vm *vm, uint32_t i)
{
	return i < vm->cfg.vcpus ? &vm->vcpu[i].state : NULL;
}

const struct hv_serial *hv_vm_serial(const struct hv_vm *vm)
{
	return &vm->serial;
}

const struct hv_vdev *hv_vm_vdev(const struct hv_vm *vm)
{
	return &vm->vdev;
}

uint8_t *hv_vm_memory(const struct hv_vm *vm, uint32_t slot, uint64_t *len)
{
	if (slot > SLOT_RAM)
		return NULL;
	if (len)
		*len = slot == SLOT_LOW ? HV_LOW_BYTES : vm->cfg.ram_bytes;
	return slot == SLOT_LOW ? vm->low : vm->ram;
}

const char *hv_vm_dirty_kind(const struct hv_vm *vm)
{
	return vm->log ? ferry_dirty_log_kind(vm->log) : "none";
}

void hv_vm_destroy(struct hv_vm *vm)
{
	if (!vm)
		return;
	hv_vm_stop(vm);
	for (uint32_t i = 0; i < vm->nvcpus_created; i++) {
		if (vm->vcpu[i].run)
			munmap(vm->vcpu[i].run, vm->run_size);
		if (vm->vcpu[i].fd >= 0)
			close(vm->vcpu[i].fd);
	}
	ferry_dirty_log_destroy(vm->log);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->ram)
		munmap(vm->ram, vm->cfg.ram_bytes);
	if (vm->low)
		munmap(vm->low, HV_LOW_BYTES);
	pthread_cond_destroy(&vm->cond);
	pthread_mutex_destroy(&vm->lock);
	pthread_mutex_destroy(&vm->dev_lock);
	free(vm);
}

/* ---- probe ------------------------------------------------------------------------------ */

int hv_probe(char *why, size_t whylen)
{
	const struct hv_config cfg = {.ram_bytes = HUGE_2M, .vcpus = 1};
	struct hv_vm *vm;
	struct hv_progress p;
	char cwhy[256];
	uint64_t t_end;
	int ret = hv_vm_create(&cfg, &vm, why, whylen);

	if (ret < 0)
		return ret;
	ret = hv_vm_boot(vm);
	if (ret == 0)
		ret = hv_vm_start(vm);
	if (ret < 0) {
		snprintf(why, whylen, "cannot start the guest: %s", strerror(-ret));
		goto out;
	}
	/* Under nested virtualisation emulated by TCG the first entry can take a while. */
	t_end = now_ns() + 10ull * 1000000000ull;
	do {
		usleep(2000);
		hv_vm_progress(vm, &p);
	} while (p.serial_tx < 2 && !p.error && now_ns() < t_end);
	hv_vm_stop(vm);
	if (p.error) {
		snprintf(why, whylen, "the guest failed: %s", p.error_msg);
		ret = p.error;
	} else if (p.serial_tx < 2) {
		snprintf(why, whylen, "the guest made no progress in 10 s");
		ret = -ETIMEDOUT;
	} else if (hv_vm_check(vm, cwhy, sizeof(cwhy)) != 0) {
		snprintf(why, whylen, "the guest ran but its state is wrong: %s", cwhy);
		ret = -EIO;
	} else {
		snprintf(why, whylen, "KVM runs the guest");
	}
out:
	hv_vm_destroy(vm);
	return ret;
}
