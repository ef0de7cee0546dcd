/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ferry/stream.h>

#include "sample_devices.h"

/* ---- serial ---------------------------------------------------------------------- */

static bool uart_fifo_needed(void *opaque)
{
	const struct bench_uart *u = opaque;

	return u->fifo_len > 0;
}

static int uart_pre_load(void *opaque)
{
	struct bench_uart *u = opaque;

	/* An absent "serial/fifo" subsection means an empty FIFO. */
	u->fifo_len = 0;
	u->divider = 12; /* 9600 baud: what a version 1 stream implies */
	return 0;
}

static const struct ferry_vmsd uart_fifo_vmsd = {
    .name = "serial/fifo",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = uart_fifo_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct bench_uart, fifo_len),
	    FERRY_VMS_VARRAY_UINT8(struct bench_uart, fifo, 16, fifo_len, uint8_t, FERRY_VMS_UINT8),
	    FERRY_VMS_END(),
	},
};

const struct ferry_vmsd bench_uart_vmsd = {
    .name = "serial",
    .version_id = 2,
    .minimum_version_id = 1,
    .pre_load = uart_pre_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct bench_uart, rbr),
	    FERRY_VMS_UINT8(struct bench_uart, ier),
	    FERRY_VMS_UINT8(struct bench_uart, iir),
	    FERRY_VMS_UINT8(struct bench_uart, lcr),
	    FERRY_VMS_UINT8(struct bench_uart, mcr),
	    FERRY_VMS_UINT8(struct bench_uart, lsr),
	    FERRY_VMS_UINT8(struct bench_uart, msr),
	    FERRY_VMS_UINT8(struct bench_uart, scr),
	    FERRY_VMS_UINT16_V(struct bench_uart, divider, 2),
	    FERRY_VMS_BOOL(struct bench_uart, thr_ipending),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&uart_fifo_vmsd, NULL},
};

/* ---- clock ------------------------------------------------------------------------ */

const struct ferry_vmsd bench_clock_vmsd = {
    .name = "clock",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_APIC, /* timers before the devices that use them */
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_TIMER(struct bench_clock, expiry_ns),
	    FERRY_VMS_UINT64(struct bench_clock, ticks),
	    FERRY_VMS_BOOL(struct bench_clock, enabled),
	    FERRY_VMS_END(),
	},
};

/* ---- vdev: core / transport / device layers ------------------------------------------ */

static const struct ferry_vmsd vq_vmsd = {
    .name = "vdev-vq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct bench_vq, num),
	    FERRY_VMS_UINT64(struct bench_vq, desc),
	    FERRY_VMS_UINT64(struct bench_vq, avail),
	    FERRY_VMS_UINT64(struct bench_vq, used),
	    FERRY_VMS_UINT16(struct bench_vq, last_avail_idx),
	    FERRY_VMS_UINT16(struct bench_vq, vector),
	    FERRY_VMS_END(),
	},
};

static bool vdev_packed_needed(void *opaque)
{
	return ((struct bench_vdev *)opaque)->packed;
}

static bool vdev_reset_needed(void *opaque)
{
	return ((struct bench_vdev *)opaque)->reset_pending;
}

static int vdev_pre_load(void *opaque)
{
	struct bench_vdev *v = opaque;

	/* Defaults for state an older stream does not carry. */
	v->packed = false;
	memset(v->packed_wrap, 0, sizeof(v->packed_wrap));
	v->reset_pending = false;
	v->reset_mask = 0;
	return 0;
}

static int vdev_post_load(void *opaque, int version_id)
{
	struct bench_vdev *v = opaque;

	(void)version_id;
	/* The stream may not name more queues than the device has. */
	return v->nvq <= 8 && v->queue_sel < 8 ? 0 : -EINVAL;
}

static const struct ferry_vmsd vdev_packed_vmsd = {
    .name = "vdev/packed",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = vdev_packed_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct bench_vdev, packed),
	    FERRY_VMS_UINT16_ARRAY(struct bench_vdev, packed_wrap, 8),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd vdev_reset_vmsd = {
    .name = "vdev/reset",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = vdev_reset_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct bench_vdev, reset_pending),
	    FERRY_VMS_UINT32(struct bench_vdev, reset_mask),
	    FERRY_VMS_END(),
	},
};

const struct ferry_vmsd bench_vdev_vmsd = {
    .name = "vdev",
    .version_id = 3,
    .minimum_version_id = 1,
    .pre_load = vdev_pre_load,
    .post_load = vdev_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    /* core */
	    FERRY_VMS_UINT8(struct bench_vdev, status),
	    FERRY_VMS_UINT8(struct bench_vdev, isr),
	    FERRY_VMS_UINT64(struct bench_vdev, guest_features),
	    FERRY_VMS_UINT16(struct bench_vdev, queue_sel),
	    FERRY_VMS_UINT32(struct bench_vdev, nvq),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct bench_vdev, vq, 8, nvq, vq_vmsd, struct bench_vq),
	    /* transport */
	    FERRY_VMS_BUFFER(struct bench_vdev, pci_config),
	    FERRY_VMS_UINT16(struct bench_vdev, config_vector),
	    /* device */
	    FERRY_VMS_UINT64(struct bench_vdev, capacity),
	    FERRY_VMS_UINT32(struct bench_vdev, blk_size),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&vdev_packed_vmsd, &vdev_reset_vmsd, NULL},
};

/* ---- helpers ------------------------------------------------------------------------- */

static uint32_t next_rand(uint32_t *s)
{
	/* xorshift32: deterministic and good enough for test patterns. */
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

void bench_devices_fill(struct bench_devices *d, uint32_t seed)
{
	uint32_t s = seed ? seed : 0x9e3779b9u;
	uint8_t *regs = &d->uart.rbr;

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < 8; i++)
		regs[i] = (uint8_t)next_rand(&s);
	d->uart.divider = (uint16_t)next_rand(&s);
	d->uart.fifo_len = 1 + next_rand(&s) % 16;
	for (int i = 0; i < d->uart.fifo_len; i++)
		d->uart.fifo[i] = (uint8_t)next_rand(&s);
	d->uart.thr_ipending = true;

	d->clock.expiry_ns = (int64_t)(next_rand(&s) % 1000000) * 1000;
	d->clock.ticks = ((uint64_t)next_rand(&s) << 32) | next_rand(&s);
	d->clock.enabled = true;

	d->vdev.status = 0x0f;
	d->vdev.isr = (uint8_t)next_rand(&s);
	d->vdev.guest_features = ((uint64_t)next_rand(&s) << 32) | next_rand(&s);
	d->vdev.nvq = 1 + next_rand(&s) % 8;
	d->vdev.queue_sel = (uint16_t)(next_rand(&s) % d->vdev.nvq);
	for (uint32_t i = 0; i < d->vdev.nvq; i++) {
		struct bench_vq *q = &d->vdev.vq[i];

		q->num = 256;
		q->desc = 0x100000ull * (i + 1);
		q->avail = q->desc + 0x1000;
		q->used = q->desc + 0x2000;
		q->last_avail_idx = (uint16_t)next_rand(&s);
		q->vector = (uint16_t)i;
	}
	for (size_t i = 0; i < sizeof(d->vdev.pci_config); i++)
		d->vdev.pci_config[i] = (uint8_t)next_rand(&s);
	d->vdev.config_vector = 0xffff;
	d->vdev.capacity = 1ull << 21;
	d->vdev.blk_size = 512;
	d->vdev.packed = true;
	for (int i = 0; i < 8; i++)
		d->vdev.packed_wrap[i] = (uint16_t)next_rand(&s);
	d->vdev.reset_pending = true;
	d->vdev.reset_mask = next_rand(&s);
}

int bench_devices_register(struct bench_devices *d, struct ferry_devices *reg)
{
	int ret = ferry_devices_add(reg, "serial", 0, &bench_uart_vmsd, &d->uart);

	if (!ret)
		ret = ferry_devices_add(reg, "clock", 0, &bench_clock_vmsd, &d->clock);
	if (!ret)
		ret = ferry_devices_add(reg, "0000:00:04.0/vdev", 0, &bench_vdev_vmsd, &d->vdev);
	return ret;
}

#define CMP(field)                                                                                 \
	do {                                                                                       \
		if (memcmp(&a->field, &b->field, sizeof(a->field)) != 0) {                         \
			snprintf(why, whylen, "%s", #field);                                       \
			return -1;                                                                 \
		}                                                                                  \
	} while (0)

int bench_devices_compare(const struct bench_devices *a, const struct bench_devices *b, char *why,
			  size_t whylen)
{
	CMP(uart.rbr);
	CMP(uart.ier);
	CMP(uart.iir);
	CMP(uart.lcr);
	CMP(uart.mcr);
	CMP(uart.lsr);
	CMP(uart.msr);
	CMP(uart.scr);
	CMP(uart.divider);
	CMP(uart.fifo_len);
	if (memcmp(a->uart.fifo, b->uart.fifo, a->uart.fifo_len) != 0) {
		snprintf(why, whylen, "uart.fifo");
		return -1;
	}
	CMP(uart.thr_ipending);
	CMP(clock.expiry_ns);
	CMP(clock.ticks);
	CMP(clock.enabled);
	CMP(vdev.status);
	CMP(vdev.isr);
	CMP(vdev.guest_features);
	CMP(vdev.queue_sel);
	CMP(vdev.nvq);
	for (uint32_t i = 0; i < a->vdev.nvq && i < 8; i++) {
		CMP(vdev.vq[i].num);
		CMP(vdev.vq[i].desc);
		CMP(vdev.vq[i].avail);
		CMP(vdev.vq[i].used);
		CMP(vdev.vq[i].last_avail_idx);
		CMP(vdev.vq[i].vector);
	}
	CMP(vdev.pci_config);
	CMP(vdev.config_vector);
	CMP(vdev.capacity);
	CMP(vdev.blk_size);
	CMP(vdev.packed);
	CMP(vdev.packed_wrap);
	CMP(vdev.reset_pending);
	CMP(vdev.reset_mask);
	return 0;
}

int bench_write_sample_stream(int fd, struct bench_devices *d)
{
	const struct ferry_stream_config cfg = {
	    .machine = "ferry-sample",
	    .page_size = 4096,
	    .send_vmdesc = true,
	};
	struct ferry_devices *reg = NULL;
	struct ferry_writer *w = NULL;
	int ret;

	ret = ferry_devices_create(&reg);
	if (ret < 0)
		return ret;
	ret = bench_devices_register(d, reg);
	if (ret < 0)
		goto out_reg;
	ret = ferry_writer_create_fd(fd, false, &w);
	if (ret < 0)
		goto out_reg;
	ret = ferry_save_snapshot(w, reg, &cfg);
	if (ret < 0) {
		ferry_writer_destroy(w);
		goto out_reg;
	}
	ret = ferry_writer_close(w);
out_reg:
	ferry_devices_destroy(reg);
	return ret;
}
