/* SPDX-License-Identifier: MIT */
/*
 * hv: the reference KVM hypervisor that embeds libferry.
 *
 * A small but real virtual machine: two KVM memory slots (dirty-logged by KVM
 * once a migration is set up), N vCPU threads running a 32-bit flat
 * protected-mode guest, a serial port and a virtio-like device emulated in
 * port I/O exits. It uses libferry through its public headers only
 * (<ferry/...>), the way any hypervisor would; the walk-through is
 * docs/embedding.md.
 *
 * Guest physical memory:
 *
 *   slot 0 "pc.low"  0 .. 1 MiB      code at 0x1000, one mailbox per vCPU at
 *                                    0x2000, the vdev's queues at 0x3000
 *   slot 1 "pc.ram"  1 MiB .. +ram   the workload: vCPU i owns the i-th share
 *                                    of its pages
 *
 * The guest (PEER-TESTS.md, the A-B workload): each vCPU increments the first
 * byte of every page of its share, in ascending order, round after round;
 * every MiB it writes a POST code to port 0x80 (the exits the hypervisor
 * paces the dirty rate by); after each round it stores the round number in
 * its mailbox, writes one character to the serial port (0x3f8) and notifies
 * queue 0 of the vdev, whose emulation then writes the queue's used index
 * into guest memory from the host. The rest of every page holds a fixed pattern written at boot.
 *
 * Because the guest is this simple, the whole machine state can be checked
 * exactly (hv_vm_check()): from a vCPU's registers alone (RIP, ECX, EBX) the
 * value of every page's first byte, its mailbox, and how many bytes it has
 * written to each device follow. A migration that lost a page, sent a stale
 * one, or moved registers that do not match memory or devices is caught.
 *
 * Threads: create/boot/attach/start/stop/destroy from one thread (the main
 * thread). pause/resume (also the engine's vCPU ops) and the progress
 * snapshot are thread-safe. Once the vCPU threads run, they own their KVM
 * vCPU fds: every vCPU ioctl runs in the vCPU's own thread (before, boot
 * reads KVM's reset state from the main thread).
 */
#ifndef FERRY_EXAMPLE_HV_H
#define FERRY_EXAMPLE_HV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/engine.h>
#include <ferry/vmstate.h>

#define HV_MAX_VCPUS   8
#define HV_MAX_MSRS    16
#define HV_PAGE	       4096u
#define HV_LOW_BYTES   (1u << 20) /* slot 0 */
#define HV_RAM_GPA     HV_LOW_BYTES
#define HV_VDEV_QUEUES 2
#define HV_SERIAL_PORT 0x3f8
#define HV_VDEV_PORT   0xc000 /* 32 ports; the notify register is at +0x10 */
#define HV_MACHINE     "ferry-kvm-pc"

/**
 * struct hv_config - what machine to build.
 * @ram_bytes:  size of slot 1, a multiple of 2 MiB with at least one page per vCPU
 * @vcpus:      1..HV_MAX_VCPUS
 * @dirty_rate: bytes per second all vCPUs together write (each page write counts
 *              4096), held by sleeping in the serial exit at the end of a round;
 *              0 = as fast as the vCPUs run
 */
struct hv_config {
	uint64_t ram_bytes;
	uint32_t vcpus;
	uint64_t dirty_rate;
};

/* ---- migrated state: plain records described with VMState ---------------------------- */

/* A segment register as KVM reports it (struct kvm_segment, with fixed-width types). */
struct hv_segment {
	uint64_t base;
	uint32_t limit;
	uint16_t selector;
	uint8_t type, present, dpl, db, s, l, g, avl, unusable;
};

/* GDTR or IDTR. */
struct hv_dtable {
	uint64_t base;
	uint16_t limit;
};

struct hv_msr {
	uint32_t index;
	uint64_t data;
};

/* Pending events (struct kvm_vcpu_events); usually all zero at a stop. */
struct hv_cpu_events {
	uint8_t exception_injected, exception_nr, exception_has_error_code;
	uint32_t exception_error_code;
	uint8_t interrupt_injected, interrupt_nr, interrupt_soft, interrupt_shadow;
	uint8_t nmi_injected, nmi_pending, nmi_masked;
};

/*
 * One vCPU's registers while it does not run. KVM's structs use __u64, which
 * is not the C type uint64_t is (VMState checks member types at compile
 * time), and their layout is KVM's business: the hypervisor keeps this record
 * and converts at the ioctl boundary.
 */
struct hv_cpu_state {
	/* struct kvm_regs */
	uint64_t rax, rbx, rcx, rdx, rsi, rdi, rsp, rbp;
	uint64_t r8, r9, r10, r11, r12, r13, r14, r15;
	uint64_t rip, rflags;
	/* struct kvm_sregs */
	struct hv_segment cs, ds, es, fs, gs, ss, tr, ldt;
	struct hv_dtable gdt, idt;
	uint64_t cr0, cr2, cr3, cr4, cr8, efer, apic_base;
	uint64_t interrupt_bitmap[4];
	/* the MSRs this KVM offers from the hypervisor's list */
	uint32_t nmsrs;
	struct hv_msr msrs[HV_MAX_MSRS];
	/* subsection "cpu/events" */
	struct hv_cpu_events events;

	/* Not migrated: the record holds what KVM has (the vCPU is parked or gone). */
	bool synced;
	/* Not migrated: the record was loaded and must be put into KVM before running. */
	bool to_kvm;
};

/* A 16550-like UART, only as much as the guest uses, and the guest's progress counter. */
struct hv_serial {
	uint8_t rbr, ier, iir, lcr, mcr, lsr, msr, scr;
	uint16_t divider;
	uint64_t tx_count; /* bytes the guest wrote to the transmit register */
	uint8_t last_tx;
};

/* One virtqueue of the vdev: where the guest put its rings, and how far the device is. */
struct hv_vq {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t last_avail_idx;
};

/*
 * A virtio-like device in the layers QEMU's virtio devices migrate in: core
 * (status, features, queues), transport (port I/O here), device (a notify
 * counter); state added after version 1 travels in subsections or, for one
 * inline field, is gated by the section version. See hv_vdev_vmsd in state.c.
 */
struct hv_vdev {
	/* core */
	uint8_t status;
	uint8_t isr;
	uint32_t guest_features_lo;
	uint16_t queue_sel;
	uint32_t nvq;
	struct hv_vq vq[HV_VDEV_QUEUES];
	/* transport */
	uint16_t io_base;
	uint8_t irq;
	uint32_t config_generation; /* version 2 */
	/* device */
	uint64_t notify_count;
	/* later state, in subsections */
	uint32_t guest_features_hi;	   /* "vdev/features-hi" */
	uint16_t used_idx[HV_VDEV_QUEUES]; /* "vdev/used-idx" */

	/* Not migrated: guest memory holding the queues (slot 0), to read and write rings. */
	uint8_t *mem;
	uint64_t mem_len;
	/* Not migrated: the dirty log to report the device's writes to guest memory. */
	struct ferry_dirty_log *log;
	uint32_t log_block;
	/* Not migrated: set while loading when "vdev/used-idx" arrived. */
	bool used_idx_loaded;
};

#define HV_VIRTIO_STATUS_READY 0x0f /* ACKNOWLEDGE | DRIVER | DRIVER_OK | FEATURES_OK */

extern const struct ferry_vmsd hv_cpu_vmsd;
extern const struct ferry_vmsd hv_serial_vmsd;
extern const struct ferry_vmsd hv_vdev_vmsd;

/* Port I/O of the devices (state.c), called from vCPU threads under the device lock. */
void hv_serial_io(struct hv_serial *s, uint16_t port, bool out, uint8_t *data);
void hv_vdev_io(struct hv_vdev *v, uint16_t port, bool out, uint8_t *data, uint32_t size);
/* The state a freshly booted guest's driver leaves the vdev in; queues live at @ring_gpa. */
void hv_vdev_reset(struct hv_vdev *v, uint64_t ring_gpa);

/* ---- the VM ------------------------------------------------------------------------- */

struct hv_vm;

/**
 * hv_probe() - can this machine run the guest? Opens /dev/kvm, creates a VM
 * with one vCPU and runs the guest until its first serial write.
 * @why: receives the reason when it cannot.
 * Returns 0, or a negative errno.
 */
int hv_probe(char *why, size_t whylen);

/**
 * hv_vm_create() - a VM with its slots and vCPUs, not booted, not running.
 * @why: receives the reason on failure (which ioctl failed).
 * Returns 0 or a negative errno.
 */
int hv_vm_create(const struct hv_config *cfg, struct hv_vm **out, char *why, size_t whylen);

/** hv_vm_boot() - load the guest's code and data and its vCPUs' first registers (a source). */
int hv_vm_boot(struct hv_vm *vm);

/**
 * hv_vm_attach_source() - give the VM to @eng to migrate out: RAM blocks,
 * devices, a KVM dirty log over the slots, the vCPU ops. The VM may be running.
 */
int hv_vm_attach_source(struct hv_vm *vm, struct ferry_engine *eng);

/** hv_vm_attach_dest() - give the VM to @eng to migrate into: RAM blocks and devices. */
int hv_vm_attach_dest(struct hv_vm *vm, struct ferry_engine *eng);

/**
 * hv_vm_start() - start the vCPU threads; each puts its register record into
 * KVM (booted or loaded) before it first enters the guest.
 */
int hv_vm_start(struct hv_vm *vm);

/** hv_vm_pause() - kick every vCPU out of KVM_RUN and wait until all are parked (5 s at most). */
int hv_vm_pause(struct hv_vm *vm);

/** hv_vm_resume() - let parked vCPUs run again. */
int hv_vm_resume(struct hv_vm *vm);

/** hv_vm_stop() - end the vCPU threads (their registers are kept in the records). */
void hv_vm_stop(struct hv_vm *vm);

/* What the guest has done so far: read while it runs, so only roughly one instant. */
struct hv_progress {
	uint64_t serial_tx;	       /* bytes written to the serial port */
	uint64_t notifies;	       /* vdev notifications */
	uint32_t rounds[HV_MAX_VCPUS]; /* each vCPU's mailbox: rounds completed */
	uint64_t exits[HV_MAX_VCPUS];  /* KVM_RUN returns */
	int error;		       /* a vCPU failed (the guest is broken), or 0 */
	char error_msg[160];
};

/** hv_vm_progress() - a snapshot of the counters. Thread-safe. */
void hv_vm_progress(struct hv_vm *vm, struct hv_progress *p);

/**
 * hv_vm_check() - with the vCPUs paused or stopped: is the machine state
 * exactly what this guest can produce? Checks every page (its counter against
 * the owning vCPU's registers, and its pattern), the mailboxes, the serial and
 * vdev counters against all vCPUs' registers, and the used index in guest
 * memory against the vdev. Returns the number of problems; @why names the first.
 */
uint64_t hv_vm_check(struct hv_vm *vm, char *why, size_t whylen);

/**
 * hv_vm_check_ab() - the A-B check of PEER-TESTS.md alone: within each vCPU's
 * share the first bytes are equal but for one edge (previous - 1). Returns bad pages.
 */
uint64_t hv_vm_check_ab(struct hv_vm *vm, char *why, size_t whylen);

uint32_t hv_vm_vcpus(const struct hv_vm *vm);
/** The register record of vCPU @i (meaningful while it is parked or stopped). */
const struct hv_cpu_state *hv_vm_cpu(const struct hv_vm *vm, uint32_t i);
const struct hv_serial *hv_vm_serial(const struct hv_vm *vm);
const struct hv_vdev *hv_vm_vdev(const struct hv_vm *vm);
/** Guest memory of slot @slot (0: low, 1: the workload's RAM) and its length; NULL for others. */
uint8_t *hv_vm_memory(const struct hv_vm *vm, uint32_t slot, uint64_t *len);
/** The dirty log kind ("kvm") once attached as a source, else "none". */
const char *hv_vm_dirty_kind(const struct hv_vm *vm);

/** hv_vm_destroy() - stop the vCPUs, free everything. Destroy the engine first. NULL is allowed. */
void hv_vm_destroy(struct hv_vm *vm);

#endif
