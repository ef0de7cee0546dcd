/* SPDX-License-Identifier: MIT */
/*
 * The hypervisor's devices and their VMState descriptions: the vCPU
 * registers, the serial port and the layered virtio-like device.
 */
#include <errno.h>
#include <string.h>

#include <ferry/dirty.h>
#include <ferry/vmstate.h>

#include "hv.h"

/* ---- vCPU ------------------------------------------------------------------------- */

static const struct ferry_vmsd segment_vmsd = {
    .name = "cpu-segment",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT64(struct hv_segment, base),
	    FERRY_VMS_UINT32(struct hv_segment, limit),
	    FERRY_VMS_UINT16(struct hv_segment, selector),
	    FERRY_VMS_UINT8(struct hv_segment, type),
	    FERRY_VMS_UINT8(struct hv_segment, present),
	    FERRY_VMS_UINT8(struct hv_segment, dpl),
	    FERRY_VMS_UINT8(struct hv_segment, db),
	    FERRY_VMS_UINT8(struct hv_segment, s),
	    FERRY_VMS_UINT8(struct hv_segment, l),
	    FERRY_VMS_UINT8(struct hv_segment, g),
	    FERRY_VMS_UINT8(struct hv_segment, avl),
	    FERRY_VMS_UINT8(struct hv_segment, unusable),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd dtable_vmsd = {
    .name = "cpu-dtable",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT64(struct hv_dtable, base),
	    FERRY_VMS_UINT16(struct hv_dtable, limit),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd msr_vmsd = {
    .name = "cpu-msr",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct hv_msr, index),
	    FERRY_VMS_UINT64(struct hv_msr, data),
	    FERRY_VMS_END(),
	},
};

static bool cpu_events_needed(void *opaque)
{
	const struct hv_cpu_events *e = &((struct hv_cpu_state *)opaque)->events;

	return e->exception_injected || e->interrupt_injected || e->interrupt_shadow ||
	       e->nmi_injected || e->nmi_pending || e->nmi_masked;
}

static const struct ferry_vmsd events_vmsd = {
    .name = "cpu-events",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct hv_cpu_events, exception_injected),
	    FERRY_VMS_UINT8(struct hv_cpu_events, exception_nr),
	    FERRY_VMS_UINT8(struct hv_cpu_events, exception_has_error_code),
	    FERRY_VMS_UINT32(struct hv_cpu_events, exception_error_code),
	    FERRY_VMS_UINT8(struct hv_cpu_events, interrupt_injected),
	    FERRY_VMS_UINT8(struct hv_cpu_events, interrupt_nr),
	    FERRY_VMS_UINT8(struct hv_cpu_events, interrupt_soft),
	    FERRY_VMS_UINT8(struct hv_cpu_events, interrupt_shadow),
	    FERRY_VMS_UINT8(struct hv_cpu_events, nmi_injected),
	    FERRY_VMS_UINT8(struct hv_cpu_events, nmi_pending),
	    FERRY_VMS_UINT8(struct hv_cpu_events, nmi_masked),
	    FERRY_VMS_END(),
	},
};

/* Pending events are rare at a stop, so they only travel when there are some. */
static const struct ferry_vmsd cpu_events_vmsd = {
    .name = "cpu/events",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = cpu_events_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_STRUCT(struct hv_cpu_state, events, events_vmsd, struct hv_cpu_events),
	    FERRY_VMS_END(),
	},
};

/*
 * The record must hold what KVM has: a running vCPU's record is stale. The
 * engine saves devices only after its stop callback returned, when every
 * vCPU thread has parked and synced; refusing here catches an embedder bug
 * (saving a running VM) instead of sending stale registers.
 */
static int cpu_pre_save(void *opaque)
{
	return ((struct hv_cpu_state *)opaque)->synced ? 0 : -EBUSY;
}

static int cpu_pre_load(void *opaque)
{
	struct hv_cpu_state *c = opaque;

	/* No "cpu/events" subsection: nothing was pending. */
	memset(&c->events, 0, sizeof(c->events));
	return 0;
}

static int cpu_post_load(void *opaque, int version_id)
{
	struct hv_cpu_state *c = opaque;

	(void)version_id;
	/*
	 * The guest runs in 32-bit protected mode without paging; a record that
	 * says otherwise did not come from this hypervisor. KVM would accept much
	 * of it and run the guest into the weeds, so refuse the load instead.
	 */
	if (!(c->cr0 & 1) || (c->cr0 & (1ull << 31)) || c->rip >= HV_LOW_BYTES)
		return -EINVAL;
	c->to_kvm = true;
	c->synced = true;
	return 0;
}

const struct ferry_vmsd hv_cpu_vmsd = {
    .name = "cpu",
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = cpu_pre_save,
    .pre_load = cpu_pre_load,
    .post_load = cpu_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT64(struct hv_cpu_state, rax),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rbx),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rcx),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rdx),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rsi),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rdi),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rsp),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rbp),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r8),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r9),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r10),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r11),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r12),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r13),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r14),
	    FERRY_VMS_UINT64(struct hv_cpu_state, r15),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rip),
	    FERRY_VMS_UINT64(struct hv_cpu_state, rflags),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, cs, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, ds, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, es, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, fs, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, gs, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, ss, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, tr, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, ldt, segment_vmsd, struct hv_segment),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, gdt, dtable_vmsd, struct hv_dtable),
	    FERRY_VMS_STRUCT(struct hv_cpu_state, idt, dtable_vmsd, struct hv_dtable),
	    FERRY_VMS_UINT64(struct hv_cpu_state, cr0),
	    FERRY_VMS_UINT64(struct hv_cpu_state, cr2),
	    FERRY_VMS_UINT64(struct hv_cpu_state, cr3),
	    FERRY_VMS_UINT64(struct hv_cpu_state, cr4),
	    FERRY_VMS_UINT64(struct hv_cpu_state, cr8),
	    FERRY_VMS_UINT64(struct hv_cpu_state, efer),
	    FERRY_VMS_UINT64(struct hv_cpu_state, apic_base),
	    FERRY_VMS_UINT64_ARRAY(struct hv_cpu_state, interrupt_bitmap, 4),
	    FERRY_VMS_UINT32(struct hv_cpu_state, nmsrs),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct hv_cpu_state, msrs, HV_MAX_MSRS, nmsrs, msr_vmsd,
					   struct hv_msr),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&cpu_events_vmsd, NULL},
};

/* ---- serial --------------------------------------------------------------------------- */

#define UART_LCR_DLAB 0x80
#define UART_LSR_IDLE 0x60 /* transmitter holding register and shift register empty */

void hv_serial_io(struct hv_serial *s, uint16_t port, bool out, uint8_t *data)
{
	unsigned reg = port - HV_SERIAL_PORT;
	bool dlab = s->lcr & UART_LCR_DLAB;

	if (out) {
		switch (reg) {
		case 0:
			if (dlab) {
				s->divider = (uint16_t)((s->divider & 0xff00) | *data);
			} else {
				/* Nothing is wired to the line: the byte only counts. */
				s->tx_count++;
				s->last_tx = *data;
			}
			break;
		case 1:
			if (dlab)
				s->divider = (uint16_t)((s->divider & 0x00ff) | (*data << 8));
			else
				s->ier = *data & 0x0f;
			break;
		case 3:
			s->lcr = *data;
			break;
		case 4:
			s->mcr = *data & 0x1f;
			break;
		case 7:
			s->scr = *data;
			break;
		default:
			break;
		}
		return;
	}
	switch (reg) {
	case 0:
		*data = dlab ? (uint8_t)s->divider : s->rbr;
		break;
	case 1:
		*data = dlab ? (uint8_t)(s->divider >> 8) : s->ier;
		break;
	case 2:
		*data = s->iir;
		break;
	case 3:
		*data = s->lcr;
		break;
	case 4:
		*data = s->mcr;
		break;
	case 5:
		*data = s->lsr;
		break;
	case 6:
		*data = s->msr;
		break;
	default:
		*data = s->scr;
		break;
	}
}

static int serial_post_load(void *opaque, int version_id)
{
	struct hv_serial *s = opaque;

	(void)version_id;
	/* A UART never has a zero divisor latch once programmed; nor can the line be busy here. */
	if (s->divider == 0)
		return -EINVAL;
	s->lsr |= UART_LSR_IDLE;
	return 0;
}

const struct ferry_vmsd hv_serial_vmsd = {
    .name = "serial",
    .version_id = 1,
    .minimum_version_id = 1,
    .post_load = serial_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct hv_serial, rbr),
	    FERRY_VMS_UINT8(struct hv_serial, ier),
	    FERRY_VMS_UINT8(struct hv_serial, iir),
	    FERRY_VMS_UINT8(struct hv_serial, lcr),
	    FERRY_VMS_UINT8(struct hv_serial, mcr),
	    FERRY_VMS_UINT8(struct hv_serial, lsr),
	    FERRY_VMS_UINT8(struct hv_serial, msr),
	    FERRY_VMS_UINT8(struct hv_serial, scr),
	    FERRY_VMS_UINT16(struct hv_serial, divider),
	    FERRY_VMS_UINT64(struct hv_serial, tx_count),
	    FERRY_VMS_UINT8(struct hv_serial, last_tx),
	    FERRY_VMS_END(),
	},
};

/* ---- vdev: a virtio-like device in layers ------------------------------------------------ */

#define VRING_USED_IDX_OFF 2 /* struct vring_used { le16 flags; le16 idx; ... } */

/* The used index the guest sees: written by the device into guest memory. */
static uint16_t used_idx_in_ram(const struct hv_vdev *v, unsigned q)
{
	uint64_t off = v->vq[q].used + VRING_USED_IDX_OFF;

	if (!v->mem || off + 2 > v->mem_len)
		return 0;
	return (uint16_t)(v->mem[off] | (v->mem[off + 1] << 8));
}

void hv_vdev_reset(struct hv_vdev *v, uint64_t ring_gpa)
{
	memset(v->vq, 0, sizeof(v->vq));
	memset(v->used_idx, 0, sizeof(v->used_idx));
	/* What the guest's driver would have negotiated and set up at boot. */
	v->status = HV_VIRTIO_STATUS_READY;
	v->isr = 0;
	v->guest_features_lo = 1u << 28; /* VIRTIO_RING_F_INDIRECT_DESC, say */
	v->guest_features_hi = 1u;	 /* VIRTIO_F_VERSION_1 is bit 32 */
	v->queue_sel = 0;
	v->nvq = HV_VDEV_QUEUES;
	for (unsigned q = 0; q < HV_VDEV_QUEUES; q++) {
		uint64_t base = ring_gpa + q * 0x1000u;

		v->vq[q].num = 256;
		v->vq[q].desc = base;
		v->vq[q].avail = base + 0x400;
		v->vq[q].used = base + 0x800;
	}
	v->io_base = HV_VDEV_PORT;
	v->irq = 11;
	v->config_generation = 1;
	v->notify_count = 0;
}

/*
 * Port I/O: +0x00 status (8 bit), +0x01 isr (read clears), +0x10 notify (16
 * bit queue index). A notify "completes" a request: the device bumps the
 * queue's used index and writes it into the used ring in guest memory.
 */
void hv_vdev_io(struct hv_vdev *v, uint16_t port, bool out, uint8_t *data, uint32_t size)
{
	unsigned reg = port - v->io_base;

	if (!out) {
		memset(data, 0, size);
		if (reg == 0)
			data[0] = v->status;
		else if (reg == 1) {
			data[0] = v->isr;
			v->isr = 0;
		}
		return;
	}
	if (reg == 0) {
		v->status = data[0];
		return;
	}
	if (reg != 0x10 || size != 2)
		return;
	unsigned q = (unsigned)(data[0] | (data[1] << 8));
	uint64_t off;

	if (q >= v->nvq || !(v->status & 0x04))
		return;
	off = v->vq[q].used + VRING_USED_IDX_OFF;
	if (!v->mem || off + 2 > v->mem_len)
		return;
	v->notify_count++;
	v->used_idx[q]++;
	v->vq[q].last_avail_idx++;
	v->mem[off] = (uint8_t)v->used_idx[q];
	v->mem[off + 1] = (uint8_t)(v->used_idx[q] >> 8);
	/*
	 * The host wrote guest memory: KVM's dirty log only sees the guest's own
	 * writes, so this page must be reported by hand, after the write.
	 */
	if (v->log)
		ferry_dirty_log_mark(v->log, v->log_block, off, 2);
	v->isr |= 1;
}

static bool vdev_features_hi_needed(void *opaque)
{
	return ((struct hv_vdev *)opaque)->guest_features_hi != 0;
}

static bool vdev_used_idx_needed(void *opaque)
{
	return ((struct hv_vdev *)opaque)->status & 0x04; /* DRIVER_OK: the queues are live */
}

static int vdev_used_idx_post_load(void *opaque, int version_id)
{
	(void)version_id;
	((struct hv_vdev *)opaque)->used_idx_loaded = true;
	return 0;
}

static int vdev_pre_load(void *opaque)
{
	struct hv_vdev *v = opaque;

	/* Defaults for what an older stream does not carry. */
	v->guest_features_hi = 0;
	v->config_generation = 0;
	v->used_idx_loaded = false;
	return 0;
}

static int vdev_post_load(void *opaque, int version_id)
{
	struct hv_vdev *v = opaque;

	(void)version_id;
	if (v->io_base != HV_VDEV_PORT || v->queue_sel >= v->nvq)
		return -EINVAL;
	for (unsigned q = 0; q < v->nvq; q++) {
		if (v->vq[q].used + VRING_USED_IDX_OFF + 2 > v->mem_len)
			return -EINVAL;
		/*
		 * Version 1 did not send the used index: the device's copy is the
		 * one it last wrote into the ring, and guest memory (loaded before
		 * the devices, RAM is section 0) still holds it.
		 */
		if (!v->used_idx_loaded)
			v->used_idx[q] = used_idx_in_ram(v, q);
	}
	return 0;
}

static const struct ferry_vmsd vq_vmsd = {
    .name = "vdev-vq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct hv_vq, num),
	    FERRY_VMS_UINT64(struct hv_vq, desc),
	    FERRY_VMS_UINT64(struct hv_vq, avail),
	    FERRY_VMS_UINT64(struct hv_vq, used),
	    FERRY_VMS_UINT16(struct hv_vq, last_avail_idx),
	    FERRY_VMS_END(),
	},
};

/* Added after version 1: the upper feature bits (virtio 1.0 and later). */
static const struct ferry_vmsd vdev_features_hi_vmsd = {
    .name = "vdev/features-hi",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = vdev_features_hi_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct hv_vdev, guest_features_hi),
	    FERRY_VMS_END(),
	},
};

/* Added after version 1: the device's used indexes (version 1 re-read them from the rings). */
static const struct ferry_vmsd vdev_used_idx_vmsd = {
    .name = "vdev/used-idx",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = vdev_used_idx_needed,
    .post_load = vdev_used_idx_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16_ARRAY(struct hv_vdev, used_idx, HV_VDEV_QUEUES),
	    FERRY_VMS_END(),
	},
};

const struct ferry_vmsd hv_vdev_vmsd = {
    .name = "vdev",
    .version_id = 2,
    .minimum_version_id = 1,
    .pre_load = vdev_pre_load,
    .post_load = vdev_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    /* core */
	    FERRY_VMS_UINT8(struct hv_vdev, status),
	    FERRY_VMS_UINT8(struct hv_vdev, isr),
	    FERRY_VMS_UINT32(struct hv_vdev, guest_features_lo),
	    FERRY_VMS_UINT16(struct hv_vdev, queue_sel),
	    /* the queue count is the device's configuration: both sides must agree */
	    FERRY_VMS_UINT32_EQUAL(struct hv_vdev, nvq),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct hv_vdev, vq, HV_VDEV_QUEUES, nvq, vq_vmsd,
					   struct hv_vq),
	    /* transport */
	    FERRY_VMS_UINT16_EQUAL(struct hv_vdev, io_base),
	    FERRY_VMS_UINT8(struct hv_vdev, irq),
	    FERRY_VMS_UINT32_V(struct hv_vdev, config_generation, 2),
	    /* device */
	    FERRY_VMS_UINT64(struct hv_vdev, notify_count),
	    FERRY_VMS_END(),
	},
    .subsections =
	(const struct ferry_vmsd *const[]){&vdev_features_hi_vmsd, &vdev_used_idx_vmsd, NULL},
};
