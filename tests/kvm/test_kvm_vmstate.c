/* SPDX-License-Identifier: MIT */
/*
 * The reference hypervisor's device descriptions, without KVM: the layered
 * vdev loads a stream written by its version 1 layout (defaults for what
 * that stream lacks, the used index re-read from guest memory), refuses to
 * go the other way, checks its configuration fields; the vCPU record travels
 * whole and is refused when stale or impossible.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/savevm.h>

#include "hv.h"

/* ---- version 1 of the vdev, as an older build of the hypervisor had it ---------------- */

struct vq_v1 {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t last_avail_idx;
};

struct vdev_v1 {
	uint8_t status, isr;
	uint32_t guest_features_lo;
	uint16_t queue_sel;
	uint32_t nvq;
	struct vq_v1 vq[HV_VDEV_QUEUES];
	uint16_t io_base;
	uint8_t irq;
	uint64_t notify_count;
};

static const struct ferry_vmsd vq_v1_vmsd = {
    .name = "vdev-vq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct vq_v1, num),
	    FERRY_VMS_UINT64(struct vq_v1, desc),
	    FERRY_VMS_UINT64(struct vq_v1, avail),
	    FERRY_VMS_UINT64(struct vq_v1, used),
	    FERRY_VMS_UINT16(struct vq_v1, last_avail_idx),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd vdev_v1_vmsd = {
    .name = "vdev",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct vdev_v1, status),
	    FERRY_VMS_UINT8(struct vdev_v1, isr),
	    FERRY_VMS_UINT32(struct vdev_v1, guest_features_lo),
	    FERRY_VMS_UINT16(struct vdev_v1, queue_sel),
	    FERRY_VMS_UINT32(struct vdev_v1, nvq),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct vdev_v1, vq, HV_VDEV_QUEUES, nvq, vq_v1_vmsd,
					   struct vq_v1),
	    FERRY_VMS_UINT16(struct vdev_v1, io_base),
	    FERRY_VMS_UINT8(struct vdev_v1, irq),
	    FERRY_VMS_UINT64(struct vdev_v1, notify_count),
	    FERRY_VMS_END(),
	},
};

/* ---- one-device streams ------------------------------------------------------------------ */

static const struct ferry_stream_config save_cfg = {
    .machine = HV_MACHINE, .page_size = HV_PAGE, .send_vmdesc = true};

static uint8_t *save_one(const char *idstr, const struct ferry_vmsd *vmsd, void *dev, size_t *len,
			 int *ret)
{
	struct ferry_devices *reg;
	struct ferry_writer *w;
	const uint8_t *p;
	uint8_t *copy = NULL;

	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(ferry_devices_add(reg, idstr, 0, vmsd, dev), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	*ret = ferry_save_snapshot(w, reg, &save_cfg);
	if (*ret == 0) {
		p = ferry_writer_mem_data(w, len);
		copy = malloc(*len);
		cr_assert_not_null(copy);
		memcpy(copy, p, *len);
	}
	ferry_writer_destroy(w);
	ferry_devices_destroy(reg);
	return copy;
}

static int load_one(const uint8_t *buf, size_t len, const char *idstr,
		    const struct ferry_vmsd *vmsd, void *dev, char *msg, size_t msglen,
		    char **vmdesc)
{
	struct ferry_devices *reg;
	struct ferry_reader *r;
	struct ferry_load_config lc = {.machine = HV_MACHINE, .vmdesc = vmdesc};
	int ret;

	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(ferry_devices_add(reg, idstr, 0, vmsd, dev), 0);
	cr_assert_eq(ferry_reader_create_mem(buf, len, &r), 0);
	ret = ferry_load(r, reg, &lc);
	snprintf(msg, msglen, "%s", ferry_reader_errmsg(r));
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	return ret;
}

/* A destination vdev at power-on, over a zeroed copy of slot 0. */
static void dest_vdev(struct hv_vdev *v, uint8_t *mem)
{
	memset(v, 0, sizeof(*v));
	v->mem = mem;
	v->mem_len = HV_LOW_BYTES;
	hv_vdev_reset(v, 0x3000);
}

static void put_le16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void notify(struct hv_vdev *v, uint16_t queue)
{
	uint8_t data[2] = {(uint8_t)queue, (uint8_t)(queue >> 8)};

	hv_vdev_io(v, HV_VDEV_PORT + 0x10, true, data, 2);
}

Test(kvm_vmstate, vdev_version1_stream_loads)
{
	struct vdev_v1 old = {
	    .status = HV_VIRTIO_STATUS_READY,
	    .isr = 1,
	    .guest_features_lo = 0x10000000,
	    .queue_sel = 1,
	    .nvq = 2,
	    .vq = {{256, 0x3000, 0x3400, 0x3800, 7}, {128, 0x4000, 0x4400, 0x4800, 3}},
	    .io_base = HV_VDEV_PORT,
	    .irq = 11,
	    .notify_count = 10,
	};
	struct hv_vdev v;
	uint8_t *mem = calloc(1, HV_LOW_BYTES);
	char msg[512], *vmdesc = NULL;
	size_t len;
	int ret;
	uint8_t *stream = save_one("vdev", &vdev_v1_vmsd, &old, &len, &ret);

	cr_assert_eq(ret, 0);
	/* Guest memory (loaded before the devices) holds the used rings the device wrote. */
	put_le16(mem + 0x3800 + 2, 7);
	put_le16(mem + 0x4800 + 2, 3);
	dest_vdev(&v, mem);
	/* Not in a version 1 stream: must end up at their defaults, whatever was here. */
	v.guest_features_hi = 0xdead;
	v.config_generation = 99;
	v.used_idx[0] = v.used_idx[1] = 0x5555;

	ret = load_one(stream, len, "vdev", &hv_vdev_vmsd, &v, msg, sizeof(msg), &vmdesc);
	cr_assert_eq(ret, 0, "a version 1 stream did not load: %s", msg);
	cr_assert_eq(v.status, HV_VIRTIO_STATUS_READY);
	cr_assert_eq(v.isr, 1);
	cr_assert_eq(v.guest_features_lo, 0x10000000);
	cr_assert_eq(v.guest_features_hi, 0, "absent subsection: upper features default to 0");
	cr_assert_eq(v.config_generation, 0, "a version 1 stream has no config_generation");
	cr_assert_eq(v.queue_sel, 1);
	cr_assert_eq(v.nvq, 2);
	for (int q = 0; q < 2; q++) {
		cr_assert_eq(v.vq[q].num, old.vq[q].num);
		cr_assert_eq(v.vq[q].desc, old.vq[q].desc);
		cr_assert_eq(v.vq[q].avail, old.vq[q].avail);
		cr_assert_eq(v.vq[q].used, old.vq[q].used);
		cr_assert_eq(v.vq[q].last_avail_idx, old.vq[q].last_avail_idx);
	}
	cr_assert_eq(v.used_idx[0], 7, "the used index is re-read from guest memory");
	cr_assert_eq(v.used_idx[1], 3);
	cr_assert_eq(v.io_base, HV_VDEV_PORT);
	cr_assert_eq(v.irq, 11);
	cr_assert_eq(v.notify_count, 10);
	/* The old stream's self-description has neither of the later subsections. */
	cr_assert_not_null(vmdesc);
	cr_assert_null(strstr(vmdesc, "vdev/used-idx"));
	cr_assert_null(strstr(vmdesc, "config_generation"));
	free(vmdesc);
	free(stream);
	free(mem);
}

Test(kvm_vmstate, vdev_current_stream_round_trip)
{
	uint8_t *smem = calloc(1, HV_LOW_BYTES), *dmem = calloc(1, HV_LOW_BYTES);
	struct hv_vdev s, d;
	char msg[512], *vmdesc = NULL;
	size_t len;
	int ret;
	uint8_t *stream;

	dest_vdev(&s, smem);
	for (int i = 0; i < 5; i++)
		notify(&s, 0);
	notify(&s, 1);
	notify(&s, 7); /* no such queue: ignored */
	cr_assert_eq(s.notify_count, 6);
	cr_assert_eq(s.used_idx[0], 5);
	cr_assert_eq(smem[0x3800 + 2], 5, "the device wrote its used index into guest memory");
	s.config_generation = 4;
	stream = save_one("vdev", &hv_vdev_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);

	dest_vdev(&d, dmem);
	/* A stale ring in the destination's memory: the subsection must win. */
	put_le16(dmem + 0x3800 + 2, 99);
	ret = load_one(stream, len, "vdev", &hv_vdev_vmsd, &d, msg, sizeof(msg), &vmdesc);
	cr_assert_eq(ret, 0, "%s", msg);
	cr_assert_eq(d.used_idx[0], 5);
	cr_assert_eq(d.used_idx[1], 1);
	cr_assert_eq(d.guest_features_hi, s.guest_features_hi);
	cr_assert_eq(d.guest_features_lo, s.guest_features_lo);
	cr_assert_eq(d.config_generation, 4);
	cr_assert_eq(d.notify_count, 6);
	cr_assert_eq(d.isr, s.isr);
	cr_assert_eq(d.vq[0].last_avail_idx, 5);
	cr_assert_eq(d.vq[1].last_avail_idx, 1);
	cr_assert_not_null(strstr(vmdesc, "vdev/used-idx"));
	cr_assert_not_null(strstr(vmdesc, "vdev/features-hi"));
	free(vmdesc);
	free(stream);
	free(smem);
	free(dmem);
}

Test(kvm_vmstate, vdev_current_stream_refused_by_version1)
{
	uint8_t *mem = calloc(1, HV_LOW_BYTES);
	struct hv_vdev s;
	struct vdev_v1 old;
	char msg[512];
	size_t len;
	int ret;
	uint8_t *stream;

	dest_vdev(&s, mem);
	stream = save_one("vdev", &hv_vdev_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	memset(&old, 0, sizeof(old));
	ret = load_one(stream, len, "vdev", &vdev_v1_vmsd, &old, msg, sizeof(msg), NULL);
	cr_log_info("%s", msg);
	cr_assert_eq(ret, FERRY_EVERSION, "got %d: %s", ret, msg);
	cr_assert_not_null(strstr(msg, "version 2"), "message: %s", msg);
	cr_assert_not_null(strstr(msg, "vdev"), "message: %s", msg);
	free(stream);
	free(mem);
}

Test(kvm_vmstate, vdev_configuration_must_match)
{
	uint8_t *mem = calloc(1, HV_LOW_BYTES);
	struct hv_vdev s, d;
	char msg[512];
	size_t len;
	int ret;
	uint8_t *stream;

	dest_vdev(&s, mem);
	stream = save_one("vdev", &hv_vdev_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	/* A destination built with one queue cannot take a two-queue device. */
	dest_vdev(&d, mem);
	d.nvq = 1;
	ret = load_one(stream, len, "vdev", &hv_vdev_vmsd, &d, msg, sizeof(msg), NULL);
	cr_assert_eq(ret, FERRY_EMISMATCH, "got %d: %s", ret, msg);
	cr_assert_not_null(strstr(msg, "nvq"), "message: %s", msg);
	/* Nor one whose device sits at another port. */
	dest_vdev(&d, mem);
	d.io_base = 0xd000;
	ret = load_one(stream, len, "vdev", &hv_vdev_vmsd, &d, msg, sizeof(msg), NULL);
	cr_assert_eq(ret, FERRY_EMISMATCH, "got %d: %s", ret, msg);
	cr_assert_not_null(strstr(msg, "io_base"), "message: %s", msg);
	free(stream);
	free(mem);
}

/* ---- vCPU record ------------------------------------------------------------------------- */

/* The general registers, RIP and RFLAGS of @c, in kvm_regs order. */
static void gprs(struct hv_cpu_state *c, uint64_t *r[18])
{
	uint64_t *p[18] = {&c->rax, &c->rbx, &c->rcx, &c->rdx, &c->rsi, &c->rdi,
			   &c->rsp, &c->rbp, &c->r8,  &c->r9,  &c->r10, &c->r11,
			   &c->r12, &c->r13, &c->r14, &c->r15, &c->rip, &c->rflags};

	memcpy(r, p, sizeof(p));
}

static void fill_cpu(struct hv_cpu_state *c, uint64_t seed)
{
	uint64_t *r[18];

	memset(c, 0, sizeof(*c));
	gprs(c, r);
	for (int i = 0; i < 18; i++)
		*r[i] = seed * 0x1000193u + (uint64_t)i * 0x9e3779b97f4a7c15ull;
	c->rip = 0x1005;
	c->cs = (struct hv_segment){0, 0xffffffff, 8, 11, 1, 0, 1, 1, 0, 1, 0, 0};
	c->ds = (struct hv_segment){0, 0xffffffff, 16, 3, 1, 0, 1, 1, 0, 1, 0, 0};
	c->es = c->fs = c->gs = c->ss = c->ds;
	c->tr = (struct hv_segment){0, 0xffff, 0, 11, 1, 0, 0, 0, 0, 0, 0, 0};
	c->ldt = (struct hv_segment){0, 0xffff, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0};
	c->gdt = (struct hv_dtable){0x1234, 0xffff};
	c->idt = (struct hv_dtable){0x5678, 0x3ff};
	c->cr0 = 0x60000011;
	c->cr4 = seed;
	c->apic_base = 0xfee00900;
	c->interrupt_bitmap[2] = 1ull << 33;
	c->nmsrs = 3;
	c->msrs[0] = (struct hv_msr){0x10, seed * 12345};
	c->msrs[1] = (struct hv_msr){0x174, 8};
	c->msrs[2] = (struct hv_msr){0x277, 0x0007040600070406ull};
	c->synced = true;
}

/* Every migrated member equal (the two bookkeeping flags are not migrated). */
static void expect_cpu_equal(const struct hv_cpu_state *a, const struct hv_cpu_state *b)
{
	struct hv_cpu_state x = *a, y = *b;
	uint64_t *rx[18], *ry[18];

	gprs(&x, rx);
	gprs(&y, ry);
	for (int i = 0; i < 18; i++)
		cr_assert_eq(*rx[i], *ry[i], "general register %d differs", i);
	cr_assert_eq(x.cs.base, y.cs.base);
	cr_assert_eq(x.cs.limit, y.cs.limit);
	cr_assert_eq(x.cs.selector, y.cs.selector);
	cr_assert_eq(x.cs.type, y.cs.type);
	cr_assert_eq(x.cs.db, y.cs.db);
	cr_assert_eq(x.cs.g, y.cs.g);
	cr_assert_eq(x.ss.selector, y.ss.selector);
	cr_assert_eq(x.tr.type, y.tr.type);
	cr_assert_eq(x.ldt.type, y.ldt.type);
	cr_assert_eq(x.gdt.base, y.gdt.base);
	cr_assert_eq(x.idt.limit, y.idt.limit);
	cr_assert_eq(x.cr0, y.cr0);
	cr_assert_eq(x.cr4, y.cr4);
	cr_assert_eq(x.apic_base, y.apic_base);
	cr_assert_eq(x.interrupt_bitmap[2], y.interrupt_bitmap[2]);
	cr_assert_eq(x.nmsrs, y.nmsrs);
	for (uint32_t i = 0; i < x.nmsrs; i++) {
		cr_assert_eq(x.msrs[i].index, y.msrs[i].index);
		cr_assert_eq(x.msrs[i].data, y.msrs[i].data);
	}
	cr_assert_eq(x.events.nmi_pending, y.events.nmi_pending);
	cr_assert_eq(x.events.interrupt_shadow, y.events.interrupt_shadow);
	cr_assert_eq(x.events.exception_injected, y.events.exception_injected);
}

Test(kvm_vmstate, cpu_record_travels_whole)
{
	struct hv_cpu_state s, d;
	char msg[512], *vmdesc = NULL;
	size_t len;
	int ret;
	uint8_t *stream;

	for (int pending = 0; pending < 2; pending++) {
		fill_cpu(&s, 7 + (uint64_t)pending);
		if (pending) {
			s.events.nmi_pending = 1;
			s.events.interrupt_shadow = 1;
		}
		stream = save_one("cpu", &hv_cpu_vmsd, &s, &len, &ret);
		cr_assert_eq(ret, 0);
		memset(&d, 0xa5, sizeof(d));
		ret = load_one(stream, len, "cpu", &hv_cpu_vmsd, &d, msg, sizeof(msg), &vmdesc);
		cr_assert_eq(ret, 0, "%s", msg);
		expect_cpu_equal(&s, &d);
		cr_assert(d.to_kvm, "a loaded record must be put into KVM before running");
		/* Pending events travel only when there are some. */
		cr_assert_eq(strstr(vmdesc, "cpu/events") != NULL, pending != 0);
		free(vmdesc);
		vmdesc = NULL;
		free(stream);
	}
}

Test(kvm_vmstate, cpu_record_stale_or_impossible_is_refused)
{
	struct hv_cpu_state s, d;
	char msg[512];
	size_t len;
	int ret;
	uint8_t *stream;

	/* A running vCPU's record is stale: saving it is refused, not sent. */
	fill_cpu(&s, 1);
	s.synced = false;
	stream = save_one("cpu", &hv_cpu_vmsd, &s, &len, &ret);
	cr_assert_lt(ret, 0);
	cr_assert_null(stream);

	/* Paging on: not a record this hypervisor's guest can have. */
	fill_cpu(&s, 1);
	s.cr0 |= 1ull << 31;
	stream = save_one("cpu", &hv_cpu_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	memset(&d, 0, sizeof(d));
	ret = load_one(stream, len, "cpu", &hv_cpu_vmsd, &d, msg, sizeof(msg), NULL);
	cr_assert_lt(ret, 0);
	cr_assert_not_null(strstr(msg, "cpu"), "message: %s", msg);
	free(stream);

	/* More MSRs than the record holds: refused before anything is written past it. */
	fill_cpu(&s, 1);
	stream = save_one("cpu", &hv_cpu_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	{
		/* nmsrs is the be32 right before the first MSR's index (0x10). */
		static const uint8_t pat[] = {0, 0, 0, 3, 0, 0, 0, 0x10};
		uint8_t *p = memmem(stream, len, pat, sizeof(pat));

		cr_assert_not_null(p);
		p[3] = HV_MAX_MSRS + 1;
	}
	ret = load_one(stream, len, "cpu", &hv_cpu_vmsd, &d, msg, sizeof(msg), NULL);
	cr_log_info("%s", msg);
	cr_assert_eq(ret, FERRY_ELIMIT, "got %d: %s", ret, msg);
	cr_assert_not_null(strstr(msg, "msrs"), "message: %s", msg);
	free(stream);
}

Test(kvm_vmstate, serial_round_trip_and_io)
{
	struct hv_serial s = {.lsr = 0x60, .iir = 1, .lcr = 3, .divider = 12}, d;
	uint8_t b;
	char msg[512];
	size_t len;
	int ret;
	uint8_t *stream;

	for (int i = 0; i < 5; i++) {
		b = (uint8_t)('a' + i);
		hv_serial_io(&s, HV_SERIAL_PORT, true, &b);
	}
	/* Program the divisor latch through DLAB, as a driver does. */
	b = 0x83;
	hv_serial_io(&s, HV_SERIAL_PORT + 3, true, &b);
	b = 1;
	hv_serial_io(&s, HV_SERIAL_PORT, true, &b);
	b = 0;
	hv_serial_io(&s, HV_SERIAL_PORT + 1, true, &b);
	b = 3;
	hv_serial_io(&s, HV_SERIAL_PORT + 3, true, &b);
	cr_assert_eq(s.tx_count, 5, "writes with DLAB set are not characters");
	cr_assert_eq(s.divider, 1);
	cr_assert_eq(s.last_tx, 'e');
	hv_serial_io(&s, HV_SERIAL_PORT + 5, false, &b);
	cr_assert_eq(b & 0x60, 0x60);

	stream = save_one("serial", &hv_serial_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	memset(&d, 0, sizeof(d));
	ret = load_one(stream, len, "serial", &hv_serial_vmsd, &d, msg, sizeof(msg), NULL);
	cr_assert_eq(ret, 0, "%s", msg);
	cr_assert_eq(d.tx_count, 5);
	cr_assert_eq(d.last_tx, 'e');
	cr_assert_eq(d.divider, 1);
	cr_assert_eq(d.lcr, 3);
	cr_assert_eq(d.iir, 1);
	cr_assert_eq(d.lsr & 0x60, 0x60);
	free(stream);

	/* A zero divisor is not a state a UART can be in. */
	s.divider = 0;
	stream = save_one("serial", &hv_serial_vmsd, &s, &len, &ret);
	cr_assert_eq(ret, 0);
	ret = load_one(stream, len, "serial", &hv_serial_vmsd, &d, msg, sizeof(msg), NULL);
	cr_assert_lt(ret, 0);
	free(stream);
}

Test(kvm_vmstate, more_vcpus_than_the_destination_has)
{
	struct hv_cpu_state s[2], d;
	struct ferry_devices *reg;
	struct ferry_writer *w;
	struct ferry_reader *r;
	const struct ferry_load_config lc = {.machine = HV_MACHINE};
	const uint8_t *p;
	size_t len;
	int ret;

	fill_cpu(&s[0], 1);
	fill_cpu(&s[1], 2);
	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(ferry_devices_add(reg, "cpu", 0, &hv_cpu_vmsd, &s[0]), 0);
	cr_assert_eq(ferry_devices_add(reg, "cpu", 1, &hv_cpu_vmsd, &s[1]), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_snapshot(w, reg, &save_cfg), 0);
	ferry_devices_destroy(reg);
	p = ferry_writer_mem_data(w, &len);

	/* A destination built with one vCPU: the second "cpu" section has no home. */
	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(ferry_devices_add(reg, "cpu", 0, &hv_cpu_vmsd, &d), 0);
	cr_assert_eq(ferry_reader_create_mem(p, len, &r), 0);
	ret = ferry_load(r, reg, &lc);
	cr_log_info("%s", ferry_reader_errmsg(r));
	cr_assert_eq(ret, FERRY_ENOSECTION, "got %d: %s", ret, ferry_reader_errmsg(r));
	cr_assert_not_null(strstr(ferry_reader_errmsg(r), "cpu"), "%s", ferry_reader_errmsg(r));
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	ferry_writer_destroy(w);
}
