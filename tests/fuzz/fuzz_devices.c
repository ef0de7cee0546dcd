/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/stream.h>

#include "fuzz_devices.h"

/* ---- "fz": every field kind ----------------------------------------------------------- */

static bool regs_shadow_needed(void *opaque)
{
	return ((struct fz_regs *)opaque)->shadowed;
}

static const struct ferry_vmsd regs_shadow_vmsd = {
    .name = "fz-regs/shadow",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = regs_shadow_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct fz_regs, shadowed),
	    FERRY_VMS_UINT64(struct fz_regs, shadow),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd regs_vmsd = {
    .name = "fz-regs",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct fz_regs, ctrl),
	    FERRY_VMS_UINT16(struct fz_regs, mask),
	    FERRY_VMS_INT8(struct fz_regs, bias),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&regs_shadow_vmsd, NULL},
};

static bool dev_gated_exists(void *opaque, int version_id)
{
	(void)version_id;
	return ((struct fz_dev *)opaque)->enabled;
}

static bool dev_extra_needed(void *opaque)
{
	return ((struct fz_dev *)opaque)->extra_on;
}

static int dev_pre_load(void *opaque)
{
	struct fz_dev *d = opaque;

	d->extra_on = false;
	d->since_v2 = 0;
	return 0;
}

static int dev_post_load(void *opaque, int version_id)
{
	struct fz_dev *d = opaque;

	(void)version_id;
	/* The loader bounds the counts by their capacity; check it did. */
	return d->nvals <= FZ_NVALS_MAX && d->blob_len <= FZ_BLOB_MAX ? 0 : -ERANGE;
}

static const struct ferry_vmsd dev_extra_vmsd = {
    .name = "fz/extra",
    .version_id = 2,
    .minimum_version_id = 1,
    .needed = dev_extra_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct fz_dev, extra_on),
	    FERRY_VMS_UINT64(struct fz_dev, extra),
	    FERRY_VMS_STRUCT_V(struct fz_dev, extra_regs, regs_vmsd, struct fz_regs, 2),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd dev_vmsd = {
    .name = "fz",
    .version_id = 3,
    .minimum_version_id = 1,
    .pre_load = dev_pre_load,
    .post_load = dev_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct fz_dev, enabled),
	    FERRY_VMS_INT8(struct fz_dev, i8),
	    FERRY_VMS_INT16(struct fz_dev, i16),
	    FERRY_VMS_INT32(struct fz_dev, i32),
	    FERRY_VMS_INT64(struct fz_dev, i64),
	    FERRY_VMS_UINT8_EQUAL(struct fz_dev, id),
	    FERRY_VMS_UINT16(struct fz_dev, u16),
	    FERRY_VMS_UINT32(struct fz_dev, u32),
	    FERRY_VMS_UINT64(struct fz_dev, u64),
	    FERRY_VMS_TIMER(struct fz_dev, deadline_ns),
	    FERRY_VMS_UINT16(struct fz_dev, nvals),
	    FERRY_VMS_VARRAY_UINT16(struct fz_dev, vals, FZ_NVALS_MAX, nvals, uint32_t,
				    FERRY_VMS_UINT32),
	    FERRY_VMS_UINT32(struct fz_dev, blob_len),
	    FERRY_VMS_VBUFFER_UINT32(struct fz_dev, blob, FZ_BLOB_MAX, blob_len),
	    FERRY_VMS_UNUSED(4),
	    FERRY_VMS_STRUCT(struct fz_dev, regs, regs_vmsd, struct fz_regs),
	    FERRY_VMS_STRUCT_ARRAY(struct fz_dev, banks, 3, regs_vmsd, struct fz_regs),
	    FERRY_VMS_STRUCT_PTR_ARRAY(struct fz_dev, ports, 2, regs_vmsd, struct fz_regs),
	    FERRY_VMS_UINT32_V(struct fz_dev, since_v2, 2),
	    FERRY_VMS_UINT16_TEST(struct fz_dev, gated, dev_gated_exists),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&dev_extra_vmsd, NULL},
};

/* ---- "fzlegacy": its own save/load pair ------------------------------------------------- */

static int legacy_save(struct ferry_writer *w, void *opaque)
{
	const struct fz_legacy *l = opaque;

	ferry_put_u8(w, l->count);
	for (unsigned int i = 0; i < l->count && i < FZ_LEGACY_MAX; i++)
		ferry_put_be16(w, l->items[i]);
	return ferry_writer_error(w);
}

static int legacy_load(struct ferry_reader *r, void *opaque, int version_id)
{
	struct fz_legacy *l = opaque;
	uint8_t count = ferry_get_u8(r);

	(void)version_id;
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (count > FZ_LEGACY_MAX)
		return ferry_reader_fail(r, FERRY_ELIMIT, "%u items, at most %d", count,
					 FZ_LEGACY_MAX);
	l->count = count;
	for (unsigned int i = 0; i < count; i++)
		l->items[i] = ferry_get_be16(r);
	return ferry_reader_error(r);
}

static const struct ferry_legacy_ops legacy_ops = {
    .version_id = 1,
    .save = legacy_save,
    .load = legacy_load,
};

/* ---- "fzram": an iterative handler ------------------------------------------------------- */

static uint64_t ram_sum(uint64_t sum, const uint8_t *p, size_t n)
{
	for (size_t i = 0; i < n; i++)
		sum = sum * 31 + p[i];
	return sum;
}

static int ram_setup(struct ferry_writer *w, void *opaque)
{
	struct fz_ram *m = opaque;

	m->done = 0;
	ferry_put_be32(w, m->total);
	return ferry_writer_error(w);
}

static uint64_t ram_pending(void *opaque)
{
	const struct fz_ram *m = opaque;

	return m->total - m->done;
}

/* A PART is a be32 length and that many bytes; 0 when nothing is left. */
static int ram_iterate(struct ferry_writer *w, void *opaque)
{
	struct fz_ram *m = opaque;
	uint32_t n = m->total - m->done;

	if (n > FZ_RAM_CHUNK)
		n = FZ_RAM_CHUNK;
	ferry_put_be32(w, n);
	ferry_put_buffer(w, m->data + m->done, n);
	m->done += n;
	if (ferry_writer_error(w))
		return ferry_writer_error(w);
	return m->done == m->total ? 1 : 0;
}

/* END: the checksum of everything, for the destination to compare. */
static int ram_complete(struct ferry_writer *w, void *opaque)
{
	struct fz_ram *m = opaque;

	ferry_put_be64(w, ram_sum(0, m->data, m->total));
	return ferry_writer_error(w);
}

static int ram_load(struct ferry_reader *r, void *opaque, int version_id, enum ferry_vm_record type)
{
	struct fz_ram *m = opaque;
	uint32_t n;
	uint64_t sum;

	(void)version_id;
	switch (type) {
	case FERRY_VM_SECTION_START:
		n = ferry_get_be32(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (n > FZ_RAM_MAX)
			return ferry_reader_fail(r, FERRY_ELIMIT, "%u bytes announced, at most %d",
						 n, FZ_RAM_MAX);
		m->total = n;
		m->done = 0;
		m->sum = 0;
		m->started = true;
		return 0;
	case FERRY_VM_SECTION_PART:
		n = ferry_get_be32(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (n > FZ_RAM_CHUNK || n > m->total - m->done)
			return ferry_reader_fail(r, FERRY_ELIMIT,
						 "chunk of %u bytes, %u left, at most %d at once",
						 n, m->total - m->done, FZ_RAM_CHUNK);
		if (ferry_get_buffer(r, m->data + m->done, n) < 0)
			return ferry_reader_error(r);
		m->sum = ram_sum(m->sum, m->data + m->done, n);
		m->done += n;
		return 0;
	case FERRY_VM_SECTION_END:
		sum = ferry_get_be64(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (m->done != m->total)
			return ferry_reader_fail(r, FERRY_EBADSTREAM, "END after %u of %u bytes",
						 m->done, m->total);
		if (sum != m->sum)
			return ferry_reader_fail(r, FERRY_EBADSTREAM, "checksum differs");
		m->ended = true;
		return 0;
	default:
		return ferry_reader_fail(r, FERRY_EBADSTREAM, "record type %d", (int)type);
	}
}

static const struct ferry_iter_ops ram_ops = {
    .version_id = 1,
    .setup = ram_setup,
    .pending = ram_pending,
    .iterate = ram_iterate,
    .complete = ram_complete,
    .load = ram_load,
};

/* ---- the VMState suites' devices --------------------------------------------------------- */

#ifdef FZ_HAVE_TEST_DEVICES
static uint32_t next_rand(uint32_t *s);

/*
 * Both sides: what is not migrated but must agree (EQUAL fields, the
 * field_exists input, which pointers are NULL).
 */
static void td_common(struct fz_td *t)
{
	t->poly.ptrs[0] = &t->poly_store[0];
	t->poly.ptrs[2] = &t->poly_store[2];
	t->equal =
	    (struct td_equal){.e8 = 0x11, .e16 = 0x2222, .e32 = 0x33333333, .ei32 = -4, .ei64 = -5};
	t->versioned.has_t = true;
	t->vnet.pci.nvectors = 0x0005; /* EQUAL, as td_vnet_fill() sets it */
}

static void td_fill(struct fz_td *t, uint32_t *s)
{
	uint8_t *p;

	td_set_fill(&t->set);
	/* Plain data: any bytes will do, then counts brought within capacity. */
	p = (uint8_t *)&t->scalars;
	for (size_t i = 0; i < sizeof(t->scalars); i++)
		p[i] = (uint8_t)next_rand(s);
	t->scalars.b = true;
	p = (uint8_t *)&t->arrays;
	for (size_t i = 0; i < sizeof(t->arrays); i++)
		p[i] = (uint8_t)next_rand(s);
	for (int i = 0; i < 3; i++)
		t->arrays.ab[i] = i != 1;
	p = (uint8_t *)&t->varrays;
	for (size_t i = 0; i < sizeof(t->varrays); i++)
		p[i] = (uint8_t)next_rand(s);
	t->varrays.n8 %= 5;
	t->varrays.n16 %= 5;
	t->varrays.n32 %= 9;
	t->varrays.ni32 = (int32_t)(next_rand(s) % 4);
	memset(&t->buffers, 0x5b, sizeof(t->buffers));
	t->buffers.vlen = next_rand(s) % 9;
	t->wrap = (struct td_wrap){.head = 1,
				   .in = {.x = 2, .y = 3, .extra = 4, .has_extra = true},
				   .more = 5,
				   .more_on = true};
	for (int i = 0; i < 3; i++) {
		t->poly.pts[i] = (struct td_pt){.px = (int16_t)-i, .py = (uint8_t)i};
		t->poly.vpts[i] = (struct td_pt){.px = (int16_t)(10 * i), .py = (uint8_t)(i + 7)};
	}
	t->poly.nv = 2;
	t->poly_store[0] = (struct td_pt){.px = 100, .py = 1};
	t->poly_store[2] = (struct td_pt){.px = 300, .py = 3};
	t->versioned = (struct td_versioned){.a = 7, .b_v2 = 8, .c_v3 = 9, .t = 10, .has_t = true};
	t->subdev = (struct td_subdev){.base = 1,
				       .a = 2,
				       .deep = 3,
				       .b = 4,
				       .want_a = true,
				       .want_deep = true,
				       .want_b = true};
	t->hooked = (struct td_hooked){.value = 0x1234, .sub_val = 0x56, .tag = "fz"};
	td_vnet_fill(&t->vnet);
}

static int td_register(struct fz_td *t, struct ferry_devices *reg)
{
	const struct {
		const char *idstr;
		const struct ferry_vmsd *vmsd;
		void *opaque;
	} devs[] = {
	    {"td-scalars", &td_scalars_vmsd, &t->scalars},
	    {"td-arrays", &td_arrays_vmsd, &t->arrays},
	    {"td-varrays", &td_varrays_vmsd, &t->varrays},
	    {"td-buffers", &td_buffers_vmsd, &t->buffers},
	    {"td-wrap", &td_wrap_vmsd, &t->wrap},
	    {"td-poly", &td_poly_vmsd, &t->poly},
	    {"td-equal", &td_equal_vmsd, &t->equal},
	    {"td-versioned", &td_versioned_vmsd, &t->versioned},
	    {"td-subdev", &td_subdev_vmsd, &t->subdev},
	    {"td-hooked", &td_hooked_vmsd, &t->hooked},
	    {"td-vnet", &td_vnet_v2_vmsd, &t->vnet},
	};
	int ret = td_set_register(&t->set, reg);

	for (size_t i = 0; !ret && i < sizeof(devs) / sizeof(devs[0]); i++)
		ret = ferry_devices_add(reg, devs[i].idstr, 0, devs[i].vmsd, devs[i].opaque);
	return ret;
}
#endif

/* ---- the set ------------------------------------------------------------------------------ */

static uint32_t next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static void fill_regs(struct fz_regs *g, uint32_t *s, bool shadowed)
{
	g->ctrl = next_rand(s);
	g->mask = (uint16_t)next_rand(s);
	g->bias = (int8_t)next_rand(s);
	g->shadowed = shadowed;
	g->shadow = shadowed ? ((uint64_t)next_rand(s) << 32 | next_rand(s)) : 0;
}

void fz_devices_init(struct fz_devices *d, uint32_t seed)
{
	uint32_t s = seed;
	struct fz_dev *v = &d->dev;

	memset(d, 0, sizeof(*d));
	v->ports[0] = &v->port_store[0];
	v->id = FZ_ID_EXPECTED;
	v->deadline_ns = -1;
#ifdef FZ_HAVE_TEST_DEVICES
	if (seed)
		td_fill(&d->td, &s);
	td_common(&d->td);
#endif
	if (!seed)
		return;

	v->enabled = seed % 2;
	v->i8 = (int8_t)next_rand(&s);
	v->i16 = (int16_t)next_rand(&s);
	v->i32 = (int32_t)next_rand(&s);
	v->i64 = (int64_t)((uint64_t)next_rand(&s) << 32 | next_rand(&s));
	v->u16 = (uint16_t)next_rand(&s);
	v->u32 = next_rand(&s);
	v->u64 = (uint64_t)next_rand(&s) << 32 | next_rand(&s);
	v->deadline_ns = seed % 3 ? (int64_t)(next_rand(&s) % 1000000) : -1;
	v->nvals = (uint16_t)(next_rand(&s) % (FZ_NVALS_MAX + 1));
	for (unsigned int i = 0; i < v->nvals; i++)
		v->vals[i] = next_rand(&s);
	v->blob_len = next_rand(&s) % (FZ_BLOB_MAX + 1);
	for (unsigned int i = 0; i < v->blob_len; i++)
		v->blob[i] = (uint8_t)next_rand(&s);
	fill_regs(&v->regs, &s, seed % 2 == 0);
	for (int i = 0; i < 3; i++)
		fill_regs(&v->banks[i], &s, i == 1);
	fill_regs(v->ports[0], &s, false);
	v->since_v2 = next_rand(&s);
	v->gated = (uint16_t)next_rand(&s);
	v->extra_on = seed % 4 != 1;
	if (v->extra_on) {
		v->extra = (uint64_t)next_rand(&s) << 32 | next_rand(&s);
		fill_regs(&v->extra_regs, &s, true);
	}

	d->legacy.count = (uint8_t)(next_rand(&s) % (FZ_LEGACY_MAX + 1));
	for (unsigned int i = 0; i < d->legacy.count; i++)
		d->legacy.items[i] = (uint16_t)next_rand(&s);

	/*
	 * Odd seeds: a few PARTs, the last one short. Even seeds: one, since the
	 * suites' iterative device ("blob") takes exactly one PART and every
	 * round of ferry_save_iterate() calls every handler.
	 */
	d->ram.total = seed % 2 ? 2 * FZ_RAM_CHUNK + seed % FZ_RAM_CHUNK : seed % FZ_RAM_CHUNK;
	for (uint32_t i = 0; i < d->ram.total; i++)
		d->ram.data[i] = (uint8_t)next_rand(&s);

	bench_devices_fill(&d->bench, seed);
}

int fz_devices_register(struct fz_devices *d, struct ferry_devices *reg, bool with_test_devices)
{
	int ret = ferry_devices_add(reg, "fz", 0, &dev_vmsd, &d->dev);

	if (!ret)
		ret = ferry_devices_add_legacy(reg, "fzlegacy", 0, &legacy_ops, &d->legacy);
	if (!ret)
		ret = ferry_devices_add_iterative(reg, "fzram", 0, &ram_ops, &d->ram);
	if (!ret)
		ret = bench_devices_register(&d->bench, reg);
#ifdef FZ_HAVE_TEST_DEVICES
	if (!ret && with_test_devices)
		ret = td_register(&d->td, reg);
#else
	(void)with_test_devices;
#endif
	return ret;
}
