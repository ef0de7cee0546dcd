/* SPDX-License-Identifier: MIT */
/*
 * Test devices shared by the VMState suites (test_fields.c, test_sections.c,
 * test_robust.c). Every description here is `static const` and every hook
 * `static inline`, so each test file gets its own copy and no symbol clashes.
 *
 * The expected bytes of these devices are written by hand in the tests from
 * FORMAT.md; nothing here computes an encoding.
 *
 * Hooks record their calls in a per-process log (td_log()); Criterion runs each
 * test in its own process, so tests never see each other's entries.
 */
#ifndef FERRY_TESTS_VMSTATE_TEST_DEVICES_H
#define FERRY_TESTS_VMSTATE_TEST_DEVICES_H

#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <criterion/criterion.h>
#include <jansson.h>

#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>
#include <ferry/vmstate.h>

/* ---- a call log for hooks ---------------------------------------------------------- */

#define TD_LOG_MAX 64

struct td_log {
	int n;
	char entry[TD_LOG_MAX][48];
};

static inline struct td_log *td_log(void)
{
	static struct td_log log;
	return &log;
}

static inline void td_log_reset(void)
{
	memset(td_log(), 0, sizeof(struct td_log));
}

static inline void td_log_add(const char *what)
{
	struct td_log *l = td_log();
	if (l->n < TD_LOG_MAX)
		snprintf(l->entry[l->n++], sizeof(l->entry[0]), "%s", what);
}

/* The whole log as "a,b,c" for one string comparison. */
static inline const char *td_log_str(void)
{
	static char out[TD_LOG_MAX * 48];
	struct td_log *l = td_log();
	out[0] = '\0';
	for (int i = 0; i < l->n; i++) {
		if (i)
			strcat(out, ",");
		strcat(out, l->entry[i]);
	}
	return out;
}

/* ---- every scalar kind -------------------------------------------------------------- */

struct td_scalars {
	bool b;
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t timer;
};

static const struct ferry_vmsd td_scalars_vmsd = {
    .name = "scalars",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BOOL(struct td_scalars, b),
	    FERRY_VMS_INT8(struct td_scalars, i8),
	    FERRY_VMS_INT16(struct td_scalars, i16),
	    FERRY_VMS_INT32(struct td_scalars, i32),
	    FERRY_VMS_INT64(struct td_scalars, i64),
	    FERRY_VMS_UINT8(struct td_scalars, u8),
	    FERRY_VMS_UINT16(struct td_scalars, u16),
	    FERRY_VMS_UINT32(struct td_scalars, u32),
	    FERRY_VMS_UINT64(struct td_scalars, u64),
	    FERRY_VMS_TIMER(struct td_scalars, timer),
	    FERRY_VMS_END(),
	},
};

/* ---- fixed arrays of each width ------------------------------------------------------ */

struct td_arrays {
	uint8_t a8[3];
	int8_t ai8[2];
	uint16_t a16[2];
	int16_t ai16[2];
	uint32_t a32[2];
	int32_t ai32[2];
	uint64_t a64[2];
	int64_t ai64[1];
	bool ab[3];
	int64_t timers[2];
};

static const struct ferry_vmsd td_arrays_vmsd = {
    .name = "arrays",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8_ARRAY(struct td_arrays, a8, 3),
	    FERRY_VMS_ARRAY(struct td_arrays, ai8, 2, int8_t, FERRY_VMS_INT8),
	    FERRY_VMS_UINT16_ARRAY(struct td_arrays, a16, 2),
	    FERRY_VMS_ARRAY(struct td_arrays, ai16, 2, int16_t, FERRY_VMS_INT16),
	    FERRY_VMS_UINT32_ARRAY(struct td_arrays, a32, 2),
	    FERRY_VMS_INT32_ARRAY(struct td_arrays, ai32, 2),
	    FERRY_VMS_UINT64_ARRAY(struct td_arrays, a64, 2),
	    FERRY_VMS_INT64_ARRAY(struct td_arrays, ai64, 1),
	    FERRY_VMS_BOOL_ARRAY(struct td_arrays, ab, 3),
	    FERRY_VMS_ARRAY(struct td_arrays, timers, 2, int64_t, FERRY_VMS_TIMER),
	    FERRY_VMS_END(),
	},
};

/* ---- variable arrays, one per count type ------------------------------------------- */

/*
 * The count members are ordinary fields that travel where they are declared;
 * n32 is deliberately declared two fields before the array it counts.
 */
struct td_varrays {
	uint8_t n8;
	uint16_t v8[4];
	uint32_t n32;
	uint16_t n16;
	uint32_t v16[4];
	uint8_t v32[8];
	int32_t ni32;
	uint64_t vi32[3];
};

static const struct ferry_vmsd td_varrays_vmsd = {
    .name = "varrays",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_varrays, n8),
	    FERRY_VMS_VARRAY_UINT8(struct td_varrays, v8, 4, n8, uint16_t, FERRY_VMS_UINT16),
	    FERRY_VMS_UINT32(struct td_varrays, n32),
	    FERRY_VMS_UINT16(struct td_varrays, n16),
	    FERRY_VMS_VARRAY_UINT16(struct td_varrays, v16, 4, n16, uint32_t, FERRY_VMS_UINT32),
	    FERRY_VMS_VARRAY_UINT32(struct td_varrays, v32, 8, n32, uint8_t, FERRY_VMS_UINT8),
	    FERRY_VMS_INT32(struct td_varrays, ni32),
	    FERRY_VMS_VARRAY_INT32(struct td_varrays, vi32, 3, ni32, uint64_t, FERRY_VMS_UINT64),
	    FERRY_VMS_END(),
	},
};

/* ---- buffers and unused bytes --------------------------------------------------------- */

struct td_buffers {
	uint8_t fixed[5];
	uint32_t vlen;
	uint8_t vbuf[8];
	uint8_t last;
};

static const struct ferry_vmsd td_buffers_vmsd = {
    .name = "buffers",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BUFFER(struct td_buffers, fixed),
	    FERRY_VMS_UINT32(struct td_buffers, vlen),
	    FERRY_VMS_VBUFFER_UINT32(struct td_buffers, vbuf, 8, vlen),
	    FERRY_VMS_UNUSED(3),
	    FERRY_VMS_UINT8(struct td_buffers, last),
	    FERRY_VMS_END(),
	},
};

/* ---- nested structs with their own subsections ---------------------------------------- */

struct td_inner {
	uint16_t x;
	uint8_t y;
	uint32_t extra;
	bool has_extra; /* not migrated: decides whether "inner/extra" travels */
};

static inline bool td_inner_extra_needed(void *opaque)
{
	return ((struct td_inner *)opaque)->has_extra;
}

static const struct ferry_vmsd td_inner_extra_vmsd = {
    .name = "inner/extra",
    .version_id = 2,
    .minimum_version_id = 1,
    .needed = td_inner_extra_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_inner, extra),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_inner_vmsd = {
    .name = "inner",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_inner, x),
	    FERRY_VMS_UINT8(struct td_inner, y),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_inner_extra_vmsd, NULL},
};

struct td_outer {
	uint8_t head;
	struct td_inner in;
	uint8_t tail;
	uint16_t more;
	bool more_on; /* not migrated: decides whether "outer/more" travels */
};

static inline bool td_outer_more_needed(void *opaque)
{
	return ((struct td_outer *)opaque)->more_on;
}

static const struct ferry_vmsd td_outer_more_vmsd = {
    .name = "outer/more",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = td_outer_more_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_outer, more),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_outer_vmsd = {
    .name = "outer",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_NORMAL, /* explicit 2: same rank as a priority of 0 */
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_outer, head),
	    FERRY_VMS_STRUCT(struct td_outer, in, td_inner_vmsd, struct td_inner),
	    FERRY_VMS_UINT8(struct td_outer, tail),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_outer_more_vmsd, NULL},
};

/* The struct is the last field, so the parent's subsection directly follows the child's. */
struct td_wrap {
	uint8_t head;
	struct td_inner in;
	uint16_t more;
	bool more_on;
};

static inline bool td_wrap_more_needed(void *opaque)
{
	return ((struct td_wrap *)opaque)->more_on;
}

static const struct ferry_vmsd td_wrap_more_vmsd = {
    .name = "wrap/more",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = td_wrap_more_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_wrap, more),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_wrap_vmsd = {
    .name = "wrap",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_wrap, head),
	    FERRY_VMS_STRUCT(struct td_wrap, in, td_inner_vmsd, struct td_inner),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_wrap_more_vmsd, NULL},
};

/* ---- arrays of structs and of pointers to structs -------------------------------------- */

struct td_pt {
	int16_t px;
	uint8_t py;
};

static const struct ferry_vmsd td_pt_vmsd = {
    .name = "pt",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_INT16(struct td_pt, px),
	    FERRY_VMS_UINT8(struct td_pt, py),
	    FERRY_VMS_END(),
	},
};

struct td_poly {
	struct td_pt pts[3];
	uint32_t nv;
	struct td_pt vpts[3];
	struct td_pt *ptrs[4];
};

static const struct ferry_vmsd td_poly_vmsd = {
    .name = "poly",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_STRUCT_ARRAY(struct td_poly, pts, 3, td_pt_vmsd, struct td_pt),
	    FERRY_VMS_UINT32(struct td_poly, nv),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct td_poly, vpts, 3, nv, td_pt_vmsd, struct td_pt),
	    FERRY_VMS_STRUCT_PTR_ARRAY(struct td_poly, ptrs, 4, td_pt_vmsd, struct td_pt),
	    FERRY_VMS_END(),
	},
};

/* ---- "equal" fields -------------------------------------------------------------------- */

struct td_equal {
	uint8_t e8;
	uint16_t e16;
	uint32_t e32;
	int32_t ei32;
	int64_t ei64;
	uint8_t after;
};

static const struct ferry_vmsd td_equal_vmsd = {
    .name = "equal",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8_EQUAL(struct td_equal, e8),
	    FERRY_VMS_UINT16_EQUAL(struct td_equal, e16),
	    FERRY_VMS_UINT32_EQUAL(struct td_equal, e32),
	    FERRY_VMS_INT32_EQUAL(struct td_equal, ei32),
	    FERRY_VMS_INT64_EQUAL(struct td_equal, ei64),
	    FERRY_VMS_UINT8(struct td_equal, after),
	    FERRY_VMS_END(),
	},
};

/* ---- fields gated by version and by field_exists ----------------------------------------- */

struct td_versioned {
	uint32_t a;
	uint16_t b_v2;
	uint8_t c_v3;
	uint8_t t;
	bool has_t;	      /* not migrated: the field_exists test reads it, on both sides */
	int t_exists_version; /* the version the test was last asked about */
};

static inline bool td_versioned_t_exists(void *opaque, int version_id)
{
	struct td_versioned *v = opaque;
	v->t_exists_version = version_id;
	return v->has_t;
}

static const struct ferry_vmsd td_versioned_vmsd = {
    .name = "versioned",
    .version_id = 3,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_versioned, a),
	    FERRY_VMS_UINT16_V(struct td_versioned, b_v2, 2),
	    FERRY_VMS_UINT8_V(struct td_versioned, c_v3, 3),
	    FERRY_VMS_UINT8_TEST(struct td_versioned, t, td_versioned_t_exists),
	    FERRY_VMS_END(),
	},
};

/* ---- subsections, nested, with needed() ----------------------------------------------------- */

struct td_subdev {
	uint32_t base;
	uint16_t a;
	uint64_t deep;
	uint8_t b;
	bool want_a, want_deep, want_b; /* not migrated */
};

static inline bool td_subdev_a_needed(void *opaque)
{
	return ((struct td_subdev *)opaque)->want_a;
}
static inline bool td_subdev_deep_needed(void *opaque)
{
	return ((struct td_subdev *)opaque)->want_deep;
}
static inline bool td_subdev_b_needed(void *opaque)
{
	return ((struct td_subdev *)opaque)->want_b;
}

static const struct ferry_vmsd td_subdev_deep_vmsd = {
    .name = "subdev/a/deep",
    .version_id = 3,
    .minimum_version_id = 1,
    .needed = td_subdev_deep_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT64(struct td_subdev, deep),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_subdev_a_vmsd = {
    .name = "subdev/a",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = td_subdev_a_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_subdev, a),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_subdev_deep_vmsd, NULL},
};

static const struct ferry_vmsd td_subdev_b_vmsd = {
    .name = "subdev/b",
    .version_id = 2,
    .minimum_version_id = 1,
    .needed = td_subdev_b_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_subdev, b),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_subdev_vmsd = {
    .name = "subdev",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_subdev, base),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_subdev_a_vmsd, &td_subdev_b_vmsd, NULL},
};

/* ---- hooks, recorded in order ------------------------------------------------------------ */

/*
 * pre_save doubles `value` into `saved_copy` so the test sees that it ran before
 * the fields were written; post_save clears `saved_copy` again. pre_load and
 * post_load record what the fields held when they ran.
 */
struct td_hooked {
	uint32_t value;
	uint32_t saved_copy;
	uint8_t sub_val;
	int fail_pre_save;  /* error pre_save returns (0: none) */
	int fail_post_load; /* error post_load returns (0: none) */
	uint32_t value_at_pre_load, value_at_post_load;
	uint8_t sub_at_post_load;
	int post_load_version;
	const char *tag; /* distinguishes devices in the log */
};

static inline void td_hook_log(const char *tag, const char *what)
{
	char buf[48];
	snprintf(buf, sizeof(buf), "%s.%s", tag ? tag : "dev", what);
	td_log_add(buf);
}

static inline int td_hooked_pre_save(void *opaque)
{
	struct td_hooked *h = opaque;
	td_hook_log(h->tag, "pre_save");
	if (h->fail_pre_save)
		return h->fail_pre_save;
	h->saved_copy = h->value * 2;
	return 0;
}
static inline int td_hooked_post_save(void *opaque)
{
	struct td_hooked *h = opaque;
	td_hook_log(h->tag, "post_save");
	h->saved_copy = 0;
	return 0;
}
static inline int td_hooked_pre_load(void *opaque)
{
	struct td_hooked *h = opaque;
	td_hook_log(h->tag, "pre_load");
	h->value_at_pre_load = h->value;
	h->sub_val = 0xee; /* the default an absent subsection leaves */
	return 0;
}
static inline int td_hooked_post_load(void *opaque, int version_id)
{
	struct td_hooked *h = opaque;
	td_hook_log(h->tag, "post_load");
	h->value_at_post_load = h->value;
	h->sub_at_post_load = h->sub_val;
	h->post_load_version = version_id;
	return h->fail_post_load;
}
static inline int td_hooked_sub_pre_save(void *opaque)
{
	td_hook_log(((struct td_hooked *)opaque)->tag, "sub.pre_save");
	return 0;
}
static inline int td_hooked_sub_post_save(void *opaque)
{
	td_hook_log(((struct td_hooked *)opaque)->tag, "sub.post_save");
	return 0;
}
static inline int td_hooked_sub_pre_load(void *opaque)
{
	td_hook_log(((struct td_hooked *)opaque)->tag, "sub.pre_load");
	return 0;
}
static inline int td_hooked_sub_post_load(void *opaque, int version_id)
{
	td_hook_log(((struct td_hooked *)opaque)->tag, "sub.post_load");
	return 0;
}

static const struct ferry_vmsd td_hooked_sub_vmsd = {
    .name = "hooked/sub",
    .version_id = 1,
    .minimum_version_id = 1,
    .pre_save = td_hooked_sub_pre_save,
    .post_save = td_hooked_sub_post_save,
    .pre_load = td_hooked_sub_pre_load,
    .post_load = td_hooked_sub_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_hooked, sub_val),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_hooked_vmsd = {
    .name = "hooked",
    .version_id = 5,
    .minimum_version_id = 2,
    .pre_save = td_hooked_pre_save,
    .post_save = td_hooked_post_save,
    .pre_load = td_hooked_pre_load,
    .post_load = td_hooked_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_hooked, value),
	    FERRY_VMS_UINT32(struct td_hooked, saved_copy),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_hooked_sub_vmsd, NULL},
};

/* ---- a layered virtio-like device ------------------------------------------------------------
 *
 * Like QEMU's virtio migration: the transport (a PCI function: config space,
 * MSI-X vectors), the virtio core (status, features, virtqueues; packed-ring
 * state in a subsection needed only when that feature was negotiated), then
 * the device's own fields (a network device). Version 2 of the device added
 * `link_up` (version-gated) and RSS state (a subsection); version 1 of the
 * description is kept to produce and read the older streams.
 */

#define TD_VIRTIO_F_RING_PACKED (1ull << 34)

struct td_vq {
	uint16_t num;
	uint64_t desc;
	uint16_t last_avail;
	uint16_t vector;
};

static const struct ferry_vmsd td_vq_vmsd = {
    .name = "virtio-vq",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_vq, num),
	    FERRY_VMS_UINT64(struct td_vq, desc),
	    FERRY_VMS_UINT16(struct td_vq, last_avail),
	    FERRY_VMS_UINT16(struct td_vq, vector),
	    FERRY_VMS_END(),
	},
};

struct td_vcore {
	uint8_t status;
	uint8_t isr;
	uint16_t queue_sel;
	uint64_t features;
	uint32_t nvq;
	struct td_vq vq[4];
	uint16_t packed_wrap[4];
};

static inline bool td_vcore_packed_needed(void *opaque)
{
	return (((struct td_vcore *)opaque)->features & TD_VIRTIO_F_RING_PACKED) != 0;
}

static const struct ferry_vmsd td_vcore_packed_vmsd = {
    .name = "virtio-core/packed",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = td_vcore_packed_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16_ARRAY(struct td_vcore, packed_wrap, 4),
	    FERRY_VMS_END(),
	},
};

static const struct ferry_vmsd td_vcore_vmsd = {
    .name = "virtio-core",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT8(struct td_vcore, status),
	    FERRY_VMS_UINT8(struct td_vcore, isr),
	    FERRY_VMS_UINT16(struct td_vcore, queue_sel),
	    FERRY_VMS_UINT64(struct td_vcore, features),
	    FERRY_VMS_UINT32(struct td_vcore, nvq),
	    FERRY_VMS_STRUCT_VARRAY_UINT32(struct td_vcore, vq, 4, nvq, td_vq_vmsd, struct td_vq),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_vcore_packed_vmsd, NULL},
};

struct td_vpci {
	uint8_t cfg[16];
	uint16_t config_vector;
	uint16_t nvectors; /* must match: the destination was built with the same count */
};

static const struct ferry_vmsd td_vpci_vmsd = {
    .name = "virtio-pci",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_BUFFER(struct td_vpci, cfg),
	    FERRY_VMS_UINT16(struct td_vpci, config_vector),
	    FERRY_VMS_UINT16_EQUAL(struct td_vpci, nvectors),
	    FERRY_VMS_END(),
	},
};

struct td_vnet {
	struct td_vpci pci;
	struct td_vcore core;
	uint8_t mac[6];
	uint16_t mtu;
	bool link_up;	      /* version 2 */
	uint32_t rss_key_len; /* "virtio-net/rss", version 2 */
	uint8_t rss_key[40];
	bool rss_on; /* not migrated: the subsection's presence sets it */
	int pre_load_calls;
};

static inline bool td_vnet_rss_needed(void *opaque)
{
	return ((struct td_vnet *)opaque)->rss_on;
}

static inline int td_vnet_pre_load(void *opaque)
{
	struct td_vnet *n = opaque;
	/* What a destination assumes for state an older source does not send. */
	n->link_up = true;
	n->rss_on = false;
	n->rss_key_len = 0;
	n->pre_load_calls++;
	return 0;
}

static inline int td_vnet_post_load(void *opaque, int version_id)
{
	struct td_vnet *n = opaque;
	n->rss_on = n->rss_key_len != 0;
	return 0;
}

static const struct ferry_vmsd td_vnet_rss_vmsd = {
    .name = "virtio-net/rss",
    .version_id = 1,
    .minimum_version_id = 1,
    .needed = td_vnet_rss_needed,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_vnet, rss_key_len),
	    FERRY_VMS_VBUFFER_UINT32(struct td_vnet, rss_key, 40, rss_key_len),
	    FERRY_VMS_END(),
	},
};

/* Version 1: what an older build writes and reads. */
static const struct ferry_vmsd td_vnet_v1_vmsd = {
    .name = "virtio-net",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_STRUCT(struct td_vnet, pci, td_vpci_vmsd, struct td_vpci),
	    FERRY_VMS_STRUCT(struct td_vnet, core, td_vcore_vmsd, struct td_vcore),
	    FERRY_VMS_BUFFER(struct td_vnet, mac),
	    FERRY_VMS_UINT16(struct td_vnet, mtu),
	    FERRY_VMS_END(),
	},
};

/* Version 2: link_up added (version-gated), RSS added (subsection). */
static const struct ferry_vmsd td_vnet_v2_vmsd = {
    .name = "virtio-net",
    .version_id = 2,
    .minimum_version_id = 1,
    .pre_load = td_vnet_pre_load,
    .post_load = td_vnet_post_load,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_STRUCT(struct td_vnet, pci, td_vpci_vmsd, struct td_vpci),
	    FERRY_VMS_STRUCT(struct td_vnet, core, td_vcore_vmsd, struct td_vcore),
	    FERRY_VMS_BUFFER(struct td_vnet, mac),
	    FERRY_VMS_UINT16(struct td_vnet, mtu),
	    FERRY_VMS_BOOL_V(struct td_vnet, link_up, 2),
	    FERRY_VMS_END(),
	},
    .subsections = (const struct ferry_vmsd *const[]){&td_vnet_rss_vmsd, NULL},
};

/* A filled-in virtio-net with two queues, packed ring and RSS on. */
static inline void td_vnet_fill(struct td_vnet *n)
{
	memset(n, 0, sizeof(*n));
	for (int i = 0; i < 16; i++)
		n->pci.cfg[i] = (uint8_t)(0xc0 + i);
	n->pci.config_vector = 0x0003;
	n->pci.nvectors = 0x0005;
	n->core.status = 0x0f;
	n->core.isr = 0x01;
	n->core.queue_sel = 0x0001;
	n->core.features = TD_VIRTIO_F_RING_PACKED | 0x0000000130000021ull;
	n->core.nvq = 2;
	n->core.vq[0] = (struct td_vq){0x0100, 0x00000000abcd0000ull, 0x0007, 0x0001};
	n->core.vq[1] = (struct td_vq){0x0080, 0x00000000abce0000ull, 0x0102, 0x0002};
	n->core.packed_wrap[0] = 0x8001;
	n->core.packed_wrap[1] = 0x0002;
	n->core.packed_wrap[2] = 0x8003;
	n->core.packed_wrap[3] = 0x0004;
	static const uint8_t mac[6] = {0x52, 0x54, 0x00, 0x12, 0x34, 0x56};
	memcpy(n->mac, mac, 6);
	n->mtu = 1500;
	n->link_up = false;
	n->rss_on = true;
	n->rss_key_len = 4;
	n->rss_key[0] = 0x6d;
	n->rss_key[1] = 0x5a;
	n->rss_key[2] = 0x56;
	n->rss_key[3] = 0xda;
}

/* ---- section-level test devices ----------------------------------------------------------- */

/* A small device at LOW priority. */
struct td_small {
	uint16_t w;
	uint8_t arr[3];
};

static const struct ferry_vmsd td_small_low_vmsd = {
    .name = "small",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_LOW,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT16(struct td_small, w),
	    FERRY_VMS_UINT8_ARRAY(struct td_small, arr, 3),
	    FERRY_VMS_END(),
	},
};

/* An interrupt controller at APIC priority: must come before every default device. */
struct td_apic {
	uint32_t id;
	uint8_t lvt[4];
	int64_t timer;
};

static const struct ferry_vmsd td_apic_vmsd = {
    .name = "apic",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_APIC,
    .fields =
	(const struct ferry_vms_field[]){
	    FERRY_VMS_UINT32(struct td_apic, id),
	    FERRY_VMS_UINT8_ARRAY(struct td_apic, lvt, 4),
	    FERRY_VMS_TIMER(struct td_apic, timer),
	    FERRY_VMS_END(),
	},
};

/* A legacy device: its own save/load of an opaque 6-byte payload "opaque". */
struct td_legacy {
	uint8_t data[6];
	int load_version;
	int saves, loads;
};

static inline int td_legacy_save(struct ferry_writer *w, void *opaque)
{
	struct td_legacy *l = opaque;
	l->saves++;
	ferry_put_buffer(w, l->data, sizeof(l->data));
	return ferry_writer_error(w);
}

static inline int td_legacy_load(struct ferry_reader *r, void *opaque, int version_id)
{
	struct td_legacy *l = opaque;
	l->loads++;
	l->load_version = version_id;
	return ferry_get_buffer(r, l->data, sizeof(l->data));
}

static const struct ferry_legacy_ops td_legacy_ops = {
    .version_id = 3,
    .priority = 0, /* default: ranks with FERRY_PRI_NORMAL */
    .save = td_legacy_save,
    .load = td_legacy_load,
};

/*
 * An iterative handler with fixed payloads: START aa bb 00 10, one PART
 * 01 02 03, END ee. pending() is 3 until the PART is written.
 */
struct td_iter {
	int setups, iterates, completes, cleanups;
	int load_start, load_part, load_end;
	int load_version;
	uint8_t got[8];
	int ngot;
};

static inline int td_iter_setup(struct ferry_writer *w, void *opaque)
{
	struct td_iter *it = opaque;
	static const uint8_t start[4] = {0xaa, 0xbb, 0x00, 0x10};
	it->setups++;
	ferry_put_buffer(w, start, sizeof(start));
	return ferry_writer_error(w);
}

static inline uint64_t td_iter_pending(void *opaque)
{
	struct td_iter *it = opaque;
	return it->iterates ? 0 : 3;
}

static inline int td_iter_iterate(struct ferry_writer *w, void *opaque)
{
	struct td_iter *it = opaque;
	static const uint8_t part[3] = {0x01, 0x02, 0x03};
	it->iterates++;
	ferry_put_buffer(w, part, sizeof(part));
	return ferry_writer_error(w) ? ferry_writer_error(w) : 1;
}

static inline int td_iter_complete(struct ferry_writer *w, void *opaque)
{
	struct td_iter *it = opaque;
	it->completes++;
	ferry_put_u8(w, 0xee);
	return ferry_writer_error(w);
}

static inline int td_iter_load(struct ferry_reader *r, void *opaque, int version_id,
			       enum ferry_vm_record type)
{
	struct td_iter *it = opaque;
	size_t n;

	it->load_version = version_id;
	switch (type) {
	case FERRY_VM_SECTION_START:
		it->load_start++;
		n = 4;
		break;
	case FERRY_VM_SECTION_PART:
		it->load_part++;
		n = 3;
		break;
	case FERRY_VM_SECTION_END:
		it->load_end++;
		n = 1;
		break;
	default:
		return ferry_reader_fail(r, FERRY_EBADSTREAM, "td_iter: record type %d", type);
	}
	if ((size_t)it->ngot + n > sizeof(it->got))
		return ferry_reader_fail(r, FERRY_EBADSTREAM, "td_iter: too many sections");
	int ret = ferry_get_buffer(r, it->got + it->ngot, n);
	it->ngot += (int)n;
	return ret;
}

static inline void td_iter_cleanup(void *opaque)
{
	((struct td_iter *)opaque)->cleanups++;
}

static const struct ferry_iter_ops td_iter_ops = {
    .version_id = 4,
    .setup = td_iter_setup,
    .pending = td_iter_pending,
    .iterate = td_iter_iterate,
    .complete = td_iter_complete,
    .load = td_iter_load,
    .cleanup = td_iter_cleanup,
};

/* ---- the device set the section tests save and load ------------------------------------------
 *
 * Registered in this order (ids 0..4 if ids follow registration order):
 *   0 "blob"               iterative, version 4
 *   1 "low-dev"            small, priority LOW
 *   2 "legacy-dev"         legacy, version 3, priority 0 (= NORMAL)
 *   3 "apic"               apic, priority APIC
 *   4 "0000:00:02.0/outer" instance 1, outer (priority NORMAL, explicit)
 */
struct td_set {
	struct td_iter blob;
	struct td_small small;
	struct td_legacy legacy;
	struct td_apic apic;
	struct td_outer outer;
};

static inline void td_set_fill(struct td_set *s)
{
	memset(s, 0, sizeof(*s));
	s->small = (struct td_small){.w = 0x1234, .arr = {1, 2, 3}};
	memcpy(s->legacy.data, "opaque", 6);
	s->apic = (struct td_apic){.id = 0x0f, .lvt = {0x10, 0x20, 0x30, 0x40}, .timer = -1};
	s->outer.head = 0x11;
	s->outer.in.x = 0x2233;
	s->outer.in.y = 0x44;
	s->outer.in.has_extra = true;
	s->outer.in.extra = 0x55667788;
	s->outer.tail = 0x99;
	s->outer.more_on = true;
	s->outer.more = 0xaabb;
}

static inline int td_set_register(struct td_set *s, struct ferry_devices *devs)
{
	int ret;
	if ((ret = ferry_devices_add_iterative(devs, "blob", 0, &td_iter_ops, &s->blob)) < 0)
		return ret;
	if ((ret = ferry_devices_add(devs, "low-dev", 0, &td_small_low_vmsd, &s->small)) < 0)
		return ret;
	if ((ret = ferry_devices_add_legacy(devs, "legacy-dev", 0, &td_legacy_ops, &s->legacy)) < 0)
		return ret;
	if ((ret = ferry_devices_add(devs, "apic", 0, &td_apic_vmsd, &s->apic)) < 0)
		return ret;
	return ferry_devices_add(devs, "0000:00:02.0/outer", 1, &td_outer_vmsd, &s->outer);
}

/* ---- helpers shared by the suites ----------------------------------------------------------- */

/* Assert that @got (@glen bytes) equals @exp (@elen bytes), showing the first difference. */
static inline void td_expect_bytes(const uint8_t *got, size_t glen, const uint8_t *exp, size_t elen,
				   const char *what)
{
	size_t n = glen < elen ? glen : elen, i = 0;
	while (i < n && got[i] == exp[i])
		i++;
	if (i == n && glen == elen)
		return;
	char g[64] = "", e[64] = "";
	for (size_t k = i; k < i + 12 && k < glen; k++)
		snprintf(g + strlen(g), sizeof(g) - strlen(g), "%02x ", got[k]);
	for (size_t k = i; k < i + 12 && k < elen; k++)
		snprintf(e + strlen(e), sizeof(e) - strlen(e), "%02x ", exp[k]);
	cr_assert_fail("%s: %zu bytes written, %zu expected; first difference at offset %zu:\n"
		       "  written:  %s\n  expected: %s",
		       what, glen, elen, i, g, e);
}

/*
 * Assert that an error message carries "offset N:" with @lo <= N <= @hi, and
 * contains each of the (up to three, NULL-terminated) @needles.
 */
static inline void td_expect_errmsg(const char *msg, uint64_t lo, uint64_t hi, const char *n1,
				    const char *n2, const char *n3)
{
	const char *p = strstr(msg, "offset ");
	cr_assert_not_null(p, "no \"offset N:\" in the message: '%s'", msg);
	char *end;
	unsigned long long off = strtoull(p + 7, &end, 10);
	cr_assert(end > p + 7 && *end == ':', "no \"offset N:\" in the message: '%s'", msg);
	cr_assert(off >= lo && off <= hi, "offset %llu not within [%llu, %llu]: '%s'", off,
		  (unsigned long long)lo, (unsigned long long)hi, msg);
	const char *needles[3] = {n1, n2, n3};
	for (int i = 0; i < 3; i++)
		if (needles[i])
			cr_assert_not_null(strstr(msg, needles[i]), "'%s' not in the message: '%s'",
					   needles[i], msg);
}

/* The payload length a vmdesc object (device, subsection or struct body) describes. */
static inline uint64_t td_desc_payload(const json_t *obj)
{
	uint64_t sum = 0;
	const json_t *fields = json_object_get(obj, "fields");
	const json_t *subs = json_object_get(obj, "subsections");
	size_t i;
	const json_t *f;

	cr_assert(json_is_array(fields), "vmdesc object without \"fields\"");
	json_array_foreach(fields, i, f)
	{
		const json_t *size = json_object_get(f, "size");
		const json_t *alen = json_object_get(f, "array_len");
		cr_assert(json_is_integer(size), "field %zu without an integer \"size\"", i);
		sum += (uint64_t)json_integer_value(size) *
		       (alen ? (uint64_t)json_integer_value(alen) : 1u);
	}
	if (subs) {
		cr_assert(json_is_array(subs), "\"subsections\" is not an array");
		json_array_foreach(subs, i, f)
		{
			const char *name = json_string_value(json_object_get(f, "vmsd_name"));
			cr_assert_not_null(name, "subsection %zu without \"vmsd_name\"", i);
			sum += 1 + 1 + strlen(name) + 4 + td_desc_payload(f);
		}
	}
	return sum;
}

/* Check one vmdesc field entry: name, type, size, and array_len (0: must be absent). */
static inline void td_expect_desc_field(const json_t *f, const char *name, const char *type,
					int64_t size, int64_t array_len)
{
	cr_assert(json_is_object(f), "field '%s' missing from the vmdesc", name);
	cr_assert_str_eq(json_string_value(json_object_get(f, "name")), name);
	const char *t = json_string_value(json_object_get(f, "type"));
	cr_assert_not_null(t, "field '%s' without a type", name);
	cr_assert_str_eq(t, type, "field '%s': type '%s', expected '%s'", name, t, type);
	cr_assert_eq(json_integer_value(json_object_get(f, "size")), size,
		     "field '%s': size %lld, expected %lld", name,
		     (long long)json_integer_value(json_object_get(f, "size")), (long long)size);
	const json_t *alen = json_object_get(f, "array_len");
	if (array_len)
		cr_assert_eq(json_integer_value(alen), array_len,
			     "field '%s': array_len %lld, expected %lld", name,
			     (long long)json_integer_value(alen), (long long)array_len);
	else
		cr_assert_null(alen, "field '%s' has an array_len", name);
}

#endif
