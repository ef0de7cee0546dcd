/* SPDX-License-Identifier: MIT */
/*
 * The loader against hostile input (DESIGN.md: the incoming stream is
 * hostile): every truncation of a complete stream, every byte flipped, counts
 * and lengths beyond their bounds. Each case must fail cleanly with a code and
 * a message, or load; never crash, overrun or leak (run this suite under ASan
 * and valgrind too).
 */
#include <criterion/criterion.h>
#include <malloc.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>
#include <ferry/vmstate.h>

#include "vmstate/internal.h"
#include "test_devices.h"

/* ---- the sample: td_set plus the layered device and every field kind ------------------------ */

struct sample {
	struct td_set set;
	struct td_vnet vnet;
	struct td_subdev sub;
	struct td_varrays va;
	struct td_buffers bufs;
	struct td_equal eq;
	struct td_poly poly;
	struct td_pt pts[2];
};

static void sample_fill(struct sample *s, bool source)
{
	memset(s, 0, sizeof(*s));
	if (source) {
		td_set_fill(&s->set);
		td_vnet_fill(&s->vnet);
		s->sub = (struct td_subdev){.base = 7,
					    .a = 8,
					    .deep = 9,
					    .b = 10,
					    .want_a = true,
					    .want_deep = true,
					    .want_b = true};
		s->va = (struct td_varrays){.n8 = 3,
					    .v8 = {1, 2, 3},
					    .n32 = 4,
					    .n16 = 2,
					    .v16 = {4, 5},
					    .v32 = {6, 7, 8, 9},
					    .ni32 = 2,
					    .vi32 = {10, 11}};
		s->bufs = (struct td_buffers){
		    .fixed = {1, 2, 3, 4, 5}, .vlen = 3, .vbuf = {6, 7, 8}, .last = 9};
		s->pts[0] = (struct td_pt){0x3031, 0x32};
		s->pts[1] = (struct td_pt){-5, 6};
		s->poly.nv = 2;
	}
	/* What must match on both sides: "equal" fields and the pointer layout. */
	s->vnet.pci.nvectors = 5;
	s->eq = (struct td_equal){.e8 = 1, .e16 = 2, .e32 = 3, .ei32 = -4, .ei64 = -5, .after = 6};
	s->poly.ptrs[0] = &s->pts[0];
	s->poly.ptrs[2] = &s->pts[1];
}

static int sample_register(struct sample *s, struct ferry_devices *devs)
{
	int ret = td_set_register(&s->set, devs);
	ret |= ferry_devices_add(devs, "0000:00:03.0/virtio-net", 0, &td_vnet_v2_vmsd, &s->vnet);
	ret |= ferry_devices_add(devs, "subdev", 0, &td_subdev_vmsd, &s->sub);
	ret |= ferry_devices_add(devs, "varrays", 0, &td_varrays_vmsd, &s->va);
	ret |= ferry_devices_add(devs, "buffers", 0, &td_buffers_vmsd, &s->bufs);
	ret |= ferry_devices_add(devs, "equal", 0, &td_equal_vmsd, &s->eq);
	ret |= ferry_devices_add(devs, "poly", 0, &td_poly_vmsd, &s->poly);
	return ret;
}

static uint8_t *sample_stream(size_t *len)
{
	struct sample s;
	struct ferry_devices *devs;
	struct ferry_writer *w;
	struct ferry_stream_config cfg = {.machine = "ferry-test", .send_vmdesc = true};

	sample_fill(&s, true);
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(sample_register(&s, devs), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = ferry_save_snapshot(w, devs, &cfg);
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, ferry_err_name(ret));
	const uint8_t *p = ferry_writer_mem_data(w, len);
	uint8_t *copy = malloc(*len);
	memcpy(copy, p, *len);
	ferry_writer_destroy(w);
	ferry_devices_destroy(devs);
	return copy;
}

/*
 * Load @len bytes of @buf into a fresh destination sample. The message goes to
 * @msg (1024 bytes); a failure must come with one.
 */
static int sample_load(const uint8_t *buf, size_t len, enum ferry_vmdesc_mode mode, char *msg)
{
	struct sample d;
	struct ferry_devices *devs;
	struct ferry_reader *r;
	char *vmdesc = NULL;
	struct ferry_load_config lc = {
	    .machine = "ferry-test", .vmdesc_mode = mode, .vmdesc = &vmdesc};

	sample_fill(&d, false);
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(sample_register(&d, devs), 0);
	cr_assert_eq(ferry_reader_create_mem(buf, len, &r), 0);
	int ret = ferry_load(r, devs, &lc);
	snprintf(msg, 1024, "%s", ferry_reader_errmsg(r));
	if (ret < 0) {
		cr_assert_null(vmdesc, "a failed load handed back a vmdesc");
		cr_assert_not_null(strstr(msg, "offset "),
				   "error %d (%s) without \"offset N:\": '%s'", ret,
				   ferry_err_name(ret), msg);
		/* The blamed offset lies within what the loader was given. */
		unsigned long long off = strtoull(strstr(msg, "offset ") + 7, NULL, 10);
		cr_assert_leq(off, len, "offset %llu past the end (%zu): %s", off, len, msg);
	} else {
		cr_assert_eq(ret, 0);
	}
	free(vmdesc);
	ferry_reader_destroy(r);
	ferry_devices_destroy(devs);
	return ret;
}

Test(vmstate_robust, sample_stream_loads)
{
	size_t len;
	char msg[1024];
	uint8_t *buf = sample_stream(&len);
	int ret = sample_load(buf, len, FERRY_VMDESC_REQUIRED, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	free(buf);
}

Test(vmstate_robust, every_truncation_fails)
{
	size_t len;
	char msg[1024];
	uint8_t *buf = sample_stream(&len);

	for (size_t cut = 0; cut < len; cut++) {
		int ret = sample_load(buf, cut, FERRY_VMDESC_REQUIRED, msg);
		cr_assert_lt(ret, 0, "a stream cut at %zu of %zu bytes loaded", cut, len);
	}
	free(buf);
}

Test(vmstate_robust, optional_vmdesc_only_the_cut_at_eof_loads)
{
	size_t len, loaded = 0, nloaded = 0;
	char msg[1024];
	uint8_t *buf = sample_stream(&len);

	for (size_t cut = 0; cut < len; cut++) {
		if (sample_load(buf, cut, FERRY_VMDESC_OPTIONAL, msg) == 0) {
			loaded = cut;
			nloaded++;
		}
	}
	cr_assert_eq(nloaded, 1, "%zu prefixes loaded", nloaded);
	cr_assert_eq(buf[loaded - 1], FERRY_VM_EOF);
	cr_assert_eq(buf[loaded], FERRY_VM_VMDESCRIPTION);
	free(buf);
}

/* Offsets in the sample whose corruption must be detected: framing, not field values. */
static bool must_fail(size_t off)
{
	/* td_set's sections come first: same offsets as golden[] in test_sections.c */
	static const size_t framing[] = {
	    0,	1,   2,	  3,   4,   5,	 6, 7, /* magic, version */
	    8,				       /* CONFIGURATION */
	    23, 24,  25,  26,  27,	       /* START type, id */
	    45, 46,  47,  48,  49,	       /* START footer */
	    50, 58,  59,  60,  61,  62,	       /* PART type, footer */
	    63, 69,  70,  71,  72,  73,	       /* END type, footer */
	    74, 108, 109, 110, 111, 112,       /* FULL apic type, footer */
	};
	for (size_t i = 0; i < sizeof(framing) / sizeof(framing[0]); i++)
		if (framing[i] == off)
			return true;
	return off >= 13 && off < 23; /* the machine name */
}

Test(vmstate_robust, every_byte_flipped_fails_cleanly_or_loads)
{
	size_t len;
	char msg[1024];
	uint8_t *buf = sample_stream(&len);
	uint8_t *bad = malloc(len);
	size_t failed = 0, loaded = 0;

	cr_assert_eq(buf[74], FERRY_VM_SECTION_FULL, "sample layout changed");
	cr_assert_eq(buf[108], FERRY_VM_SECTION_FOOTER, "sample layout changed");
	for (size_t off = 0; off < len; off++) {
		static const int how[] = {-1 /* xor 0xff */, 0x00};
		for (size_t k = 0; k < 2; k++) {
			memcpy(bad, buf, len);
			bad[off] = how[k] < 0 ? (uint8_t)(bad[off] ^ 0xff) : (uint8_t)how[k];
			if (bad[off] == buf[off])
				continue;
			int ret = sample_load(bad, len, FERRY_VMDESC_REQUIRED, msg);
			if (ret < 0)
				failed++;
			else
				loaded++;
			if (how[k] < 0 && must_fail(off))
				cr_assert_lt(ret, 0, "byte %zu ^ 0xff went unnoticed", off);
		}
	}
	cr_log_info("byte flips: %zu failed cleanly, %zu loaded", failed, loaded);
	free(bad);
	free(buf);
}

/* ---- hostile counts and lengths -----------------------------------------------------------------
 */

static int load_field_bytes(const struct ferry_vmsd *vmsd, void *dev, const uint8_t *in, size_t n,
			    char *msg)
{
	struct ferry_reader *r;
	cr_assert_eq(ferry_reader_create_mem(in, n, &r), 0);
	int ret = vms_load(r, vmsd, dev, 1);
	snprintf(msg, 1024, "%s", ferry_reader_errmsg(r));
	ferry_reader_destroy(r);
	return ret;
}

#define EXPECT_BOUND_ERROR(ret, msg, field)                                                        \
	do {                                                                                       \
		cr_assert((ret) == FERRY_ELIMIT || (ret) == FERRY_EBADSTREAM,                      \
			  "%s: %d (%s), expected ELIMIT or EBADSTREAM: %s", field, ret,            \
			  ferry_err_name(ret), msg);                                               \
		cr_assert_not_null(strstr(msg, "'" field "'"), "field " field " not named: %s",    \
				   msg);                                                           \
		cr_assert_not_null(strstr(msg, "offset "), "no offset: %s", msg);                  \
		cr_log_info("%s: %s: %s", field, ferry_err_name(ret), msg);                        \
	} while (0)

Test(vmstate_robust, variable_array_counts_beyond_capacity)
{
	struct td_varrays d;
	char msg[1024];
	int ret;

	/* n8 = 5 > 4: nothing of v8 may be written */
	static const uint8_t n8[] = {0x05, 0, 1, 0, 2, 0, 3, 0, 4, 0, 5};
	memset(&d, 0, sizeof(d));
	ret = load_field_bytes(&td_varrays_vmsd, &d, n8, sizeof(n8), msg);
	EXPECT_BOUND_ERROR(ret, msg, "v8");

	/* n16 = 5 > 4 */
	static const uint8_t n16[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05};
	ret = load_field_bytes(&td_varrays_vmsd, &d, n16, sizeof(n16), msg);
	EXPECT_BOUND_ERROR(ret, msg, "v16");

	/* n32 = 9 > 8 (declared before n16; checked where v32 is loaded) */
	static const uint8_t n32[] = {0x00, 0x00, 0x00, 0x00, 0x09, 0x00, 0x00};
	ret = load_field_bytes(&td_varrays_vmsd, &d, n32, sizeof(n32), msg);
	EXPECT_BOUND_ERROR(ret, msg, "v32");

	/* n32 = 0xffffffff */
	static const uint8_t n32max[] = {0x00, 0xff, 0xff, 0xff, 0xff, 0x00, 0x00};
	ret = load_field_bytes(&td_varrays_vmsd, &d, n32max, sizeof(n32max), msg);
	EXPECT_BOUND_ERROR(ret, msg, "v32");

	/* ni32 = 4 > 3, and ni32 = -1 */
	static const uint8_t ni32[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
				       0x00, 0x00, 0x00, 0x00, 0x04};
	ret = load_field_bytes(&td_varrays_vmsd, &d, ni32, sizeof(ni32), msg);
	EXPECT_BOUND_ERROR(ret, msg, "vi32");
	static const uint8_t neg[] = {0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
				      0x00, 0xff, 0xff, 0xff, 0xff};
	ret = load_field_bytes(&td_varrays_vmsd, &d, neg, sizeof(neg), msg);
	EXPECT_BOUND_ERROR(ret, msg, "vi32");
	for (int i = 0; i < 3; i++)
		cr_assert_eq(d.vi32[i], 0);

	/* A struct array's count: nvq = 5 > 4 inside the core of the layered device */
	struct td_vcore c;
	memset(&c, 0, sizeof(c));
	static const uint8_t nvq[] = {0x00, 0x00, 0x00, 0x00, 0,    0,	  0,	0,
				      0,    0,	  0,	0,    0x00, 0x00, 0x00, 0x05};
	ret = load_field_bytes(&td_vcore_vmsd, &c, nvq, sizeof(nvq), msg);
	EXPECT_BOUND_ERROR(ret, msg, "vq");
}

Test(vmstate_robust, variable_buffer_length_beyond_capacity)
{
	struct td_buffers d;
	char msg[1024];

	static const uint8_t nine[] = {1, 2, 3, 4, 5, 0x00, 0x00, 0x00, 0x09,
				       1, 2, 3, 4, 5, 6,    7,	  8,	9};
	memset(&d, 0, sizeof(d));
	int ret = load_field_bytes(&td_buffers_vmsd, &d, nine, sizeof(nine), msg);
	EXPECT_BOUND_ERROR(ret, msg, "vbuf");
	cr_assert_eq(d.last, 0, "a field after vbuf was loaded");

	static const uint8_t huge[] = {1, 2, 3, 4, 5, 0xff, 0xff, 0xff, 0xff, 0};
	ret = load_field_bytes(&td_buffers_vmsd, &d, huge, sizeof(huge), msg);
	EXPECT_BOUND_ERROR(ret, msg, "vbuf");

	/* The same inside a FULL section: the message names the section as well. */
	/* clang-format off */
	static const uint8_t in[] = {
	    0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03,
	    0x07, 0x00, 0x00, 0x00, 0x0a, 'f', 'e', 'r', 'r', 'y', '-', 't', 'e', 's', 't',
	    0x04, 0x00, 0x00, 0x00, 0x05, 0x07, 'b', 'u', 'f', 'f', 'e', 'r', 's',
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	    1, 2, 3, 4, 5, 0xff, 0xff, 0xff, 0xff, 0x00,
	    0x7e, 0x00, 0x00, 0x00, 0x05,
	    0x00,
	};
	/* clang-format on */
	struct ferry_devices *devs;
	struct ferry_reader *r;
	struct ferry_load_config lc = {.machine = "ferry-test"};
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(ferry_devices_add(devs, "buffers", 0, &td_buffers_vmsd, &d), 0);
	cr_assert_eq(ferry_reader_create_mem(in, sizeof(in), &r), 0);
	ret = ferry_load(r, devs, &lc);
	snprintf(msg, sizeof(msg), "%s", ferry_reader_errmsg(r));
	EXPECT_BOUND_ERROR(ret, msg, "vbuf");
	td_expect_errmsg(msg, 44, 53, "'buffers'", NULL, NULL);
	ferry_reader_destroy(r);
	ferry_devices_destroy(devs);
}

/*
 * A source that hands out one byte per read and notes the largest amount of
 * mmap'd heap seen while the loader reads: a loader that allocates a buffer
 * of the declared vmdesc length before reading it shows up here (glibc serves
 * large blocks by mmap; under ASan mallinfo2() reports nothing and the check
 * is void, the error code check still holds).
 */
struct trickle {
	const uint8_t *buf;
	size_t len, pos;
	size_t max_mmapped;
};

static ssize_t trickle_read(void *opaque, void *dst, size_t len)
{
	struct trickle *t = opaque;
	struct mallinfo2 mi = mallinfo2();
	if (mi.hblkhd > t->max_mmapped)
		t->max_mmapped = mi.hblkhd;
	if (t->pos == t->len || len == 0)
		return 0;
	((uint8_t *)dst)[0] = t->buf[t->pos++];
	return 1;
}

static const struct ferry_source_ops trickle_ops = {.read = trickle_read};

Test(vmstate_robust, vmdesc_length_beyond_limit_refused_without_allocating)
{
	static const uint32_t lens[] = {FERRY_VMDESC_MAX_LEN + 1, 0x7fffffff, 0xffffffff};
	for (size_t i = 0; i < 3; i++) {
		/* clang-format off */
		uint8_t in[] = {
		    0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03,
		    0x07, 0x00, 0x00, 0x00, 0x0a, 'f', 'e', 'r', 'r', 'y', '-', 't', 'e', 's', 't',
		    0x00,
		    0x06, (uint8_t)(lens[i] >> 24), (uint8_t)(lens[i] >> 16),
		    (uint8_t)(lens[i] >> 8), (uint8_t)lens[i],
		    '{', '}', ' ', ' ', ' ', ' ', ' ', ' ', ' ', ' ',
		};
		/* clang-format on */
		for (int want = 0; want < 2; want++) {
			struct trickle t = {.buf = in, .len = sizeof(in)};
			struct ferry_devices *devs;
			struct ferry_reader *r;
			char *vmdesc = NULL;
			struct ferry_load_config lc = {.machine = "ferry-test",
						       .vmdesc_mode = FERRY_VMDESC_REQUIRED,
						       .vmdesc = want ? &vmdesc : NULL};
			size_t before = mallinfo2().hblkhd;

			cr_assert_eq(ferry_devices_create(&devs), 0);
			cr_assert_eq(ferry_reader_create(&trickle_ops, &t, &r), 0);
			int ret = ferry_load(r, devs, &lc);
			const char *msg = ferry_reader_errmsg(r);
			cr_assert_lt(ret, 0, "vmdesc of %u bytes (limit %u) accepted", lens[i],
				     FERRY_VMDESC_MAX_LEN);
			cr_assert_null(vmdesc);
			if (want) {
				/* Refused for its length, not by running out of bytes after
				 * allocating. */
				cr_assert(ret == FERRY_ELIMIT || ret == FERRY_EBADSTREAM,
					  "len %u: %d (%s): %s", lens[i], ret, ferry_err_name(ret),
					  msg);
				td_expect_errmsg(msg, 24, 29, NULL, NULL, NULL);
				cr_log_info("vmdesc %u: %s: %s", lens[i], ferry_err_name(ret), msg);
			}
			cr_assert_lt(t.max_mmapped, before + FERRY_VMDESC_MAX_LEN / 2,
				     "%zu bytes mapped while loading a %u-byte vmdesc claim",
				     t.max_mmapped - before, lens[i]);
			ferry_reader_destroy(r);
			ferry_devices_destroy(devs);
		}
	}
}

Test(vmstate_robust, command_length_beyond_the_stream)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03,
	    0x07, 0x00, 0x00, 0x00, 0x0a, 'f', 'e', 'r', 'r', 'y', '-', 't', 'e', 's', 't',
	    0x08, 0x00, 0x06, 0xff, 0xff, 0x00, 0x01, 0x02,
	};
	/* clang-format on */
	struct ferry_devices *devs;
	struct ferry_reader *r;
	struct ferry_load_config lc = {.machine = "ferry-test"};
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(ferry_reader_create_mem(in, sizeof(in), &r), 0);
	int ret = ferry_load(r, devs, &lc);
	cr_assert_lt(ret, 0);
	td_expect_errmsg(ferry_reader_errmsg(r), 23, sizeof(in), NULL, NULL, NULL);
	ferry_reader_destroy(r);
	ferry_devices_destroy(devs);
}

Test(vmstate_robust, part_without_start_is_refused)
{
	size_t len;
	char msg[1024];
	uint8_t *buf = sample_stream(&len);
	/* Remove the START section (23..49): PART 0 then names a section never introduced. */
	cr_assert_eq(buf[23], FERRY_VM_SECTION_START);
	cr_assert_eq(buf[50], FERRY_VM_SECTION_PART);
	memmove(buf + 23, buf + 50, len - 50);
	int ret = sample_load(buf, len - 27, FERRY_VMDESC_REQUIRED, msg);
	cr_assert_lt(ret, 0, "a PART without its START was dispatched");
	td_expect_errmsg(msg, 23, 28, NULL, NULL, NULL);
	free(buf);
}
