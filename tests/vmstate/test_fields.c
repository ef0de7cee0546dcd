/* SPDX-License-Identifier: MIT */
/*
 * The field codec (FORMAT.md §1, §7): golden bytes for every field kind,
 * written by hand from FORMAT.md, then loaded back and compared field by
 * field. Uses the internal vms_save()/vms_load() so each case is one payload.
 */
#include <criterion/criterion.h>
#include <jansson.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/stream.h>
#include <ferry/vmstate.h>

#include "vmstate/internal.h"
#include "test_devices.h"

/* Names spelled out byte by byte, as they appear inside cstr and subsection headers. */
#define N_INNER_EXTRA	'i', 'n', 'n', 'e', 'r', '/', 'e', 'x', 't', 'r', 'a'
#define N_OUTER_MORE	'o', 'u', 't', 'e', 'r', '/', 'm', 'o', 'r', 'e'
#define N_WRAP_MORE	'w', 'r', 'a', 'p', '/', 'm', 'o', 'r', 'e'
#define N_SUBDEV_A	's', 'u', 'b', 'd', 'e', 'v', '/', 'a'
#define N_SUBDEV_B	's', 'u', 'b', 'd', 'e', 'v', '/', 'b'
#define N_SUBDEV_A_DEEP 's', 'u', 'b', 'd', 'e', 'v', '/', 'a', '/', 'd', 'e', 'e', 'p'
#define N_VCORE_PACKED                                                                             \
	'v', 'i', 'r', 't', 'i', 'o', '-', 'c', 'o', 'r', 'e', '/', 'p', 'a', 'c', 'k', 'e', 'd'
#define N_VNET_RSS 'v', 'i', 'r', 't', 'i', 'o', '-', 'n', 'e', 't', '/', 'r', 's', 's'

/* vms_save() @dev into memory and compare with the hand-written @exp. */
static void save_expect(const struct ferry_vmsd *vmsd, void *dev, const uint8_t *exp, size_t n,
			const char *what)
{
	struct ferry_writer *w;
	size_t len;

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = vms_save(w, vmsd, dev, NULL);
	cr_assert_eq(ret, 0, "%s: vms_save returned %d (%s)", what, ret, ferry_strerror(ret));
	const uint8_t *p = ferry_writer_mem_data(w, &len);
	cr_assert_not_null(p);
	td_expect_bytes(p, len, exp, n, what);
	ferry_writer_destroy(w);
}

/*
 * vms_load() @in into @dev at stream version @version. On success, asserts the
 * whole payload was consumed. The reader's message goes to @msg (512 bytes).
 */
static int load_bytes(const struct ferry_vmsd *vmsd, void *dev, int version, const uint8_t *in,
		      size_t n, char *msg)
{
	struct ferry_reader *r;

	cr_assert_eq(ferry_reader_create_mem(in, n, &r), 0);
	int ret = vms_load(r, vmsd, dev, version);
	snprintf(msg, 512, "%s", ferry_reader_errmsg(r));
	if (ret == 0)
		cr_assert_eq(ferry_reader_offset(r), n, "load consumed %llu of %zu bytes",
			     (unsigned long long)ferry_reader_offset(r), n);
	ferry_reader_destroy(r);
	return ret;
}

#define LOAD_OK(vmsd, dev, ver, arr)                                                               \
	do {                                                                                       \
		char m_[512];                                                                      \
		int r_ = load_bytes(vmsd, dev, ver, arr, sizeof(arr), m_);                         \
		cr_assert_eq(r_, 0, "load of " #arr " failed: %d (%s): %s", r_,                    \
			     ferry_err_name(r_), m_);                                              \
	} while (0)

/* ---- scalars ------------------------------------------------------------------------- */

Test(vmstate_fields, scalars_golden)
{
	struct td_scalars s = {
	    .b = true,
	    .i8 = -2,
	    .i16 = -300,
	    .i32 = -70000,
	    .i64 = -5000000000LL,
	    .u8 = 0xa5,
	    .u16 = 0xbeef,
	    .u32 = 0xdeadbeef,
	    .u64 = 0x0123456789abcdefULL,
	    .timer = 1000000007,
	};
	static const uint8_t exp[] = {
	    0x01,					    /* bool true */
	    0xfe,					    /* int8 -2 */
	    0xfe, 0xd4,					    /* int16 -300 */
	    0xff, 0xfe, 0xee, 0x90,			    /* int32 -70000 */
	    0xff, 0xff, 0xff, 0xfe, 0xd5, 0xfa, 0x0e, 0x00, /* int64 -5e9 */
	    0xa5,					    /* uint8 */
	    0xbe, 0xef,					    /* uint16 */
	    0xde, 0xad, 0xbe, 0xef,			    /* uint32 */
	    0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef, /* uint64 */
	    0x00, 0x00, 0x00, 0x00, 0x3b, 0x9a, 0xca, 0x07, /* timer 1000000007 ns */
	};
	save_expect(&td_scalars_vmsd, &s, exp, sizeof(exp), "scalars");

	struct td_scalars d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_scalars_vmsd, &d, 1, exp);
	cr_assert_eq(d.b, true);
	cr_assert_eq(d.i8, -2);
	cr_assert_eq(d.i16, -300);
	cr_assert_eq(d.i32, -70000);
	cr_assert_eq(d.i64, -5000000000LL);
	cr_assert_eq(d.u8, 0xa5);
	cr_assert_eq(d.u16, 0xbeef);
	cr_assert_eq(d.u32, 0xdeadbeef);
	cr_assert_eq(d.u64, 0x0123456789abcdefULL);
	cr_assert_eq(d.timer, 1000000007);
}

Test(vmstate_fields, scalars_extremes_and_disarmed_timer)
{
	struct td_scalars s = {
	    .b = false,
	    .i8 = INT8_MIN,
	    .i16 = INT16_MAX,
	    .i32 = INT32_MIN,
	    .i64 = INT64_MIN,
	    .u8 = UINT8_MAX,
	    .u16 = 0,
	    .u32 = UINT32_MAX,
	    .u64 = UINT64_MAX,
	    .timer = -1, /* not armed */
	};
	/* clang-format off */
	static const uint8_t exp[] = {
	    0x00,
	    0x80,
	    0x7f, 0xff,
	    0x80, 0x00, 0x00, 0x00,
	    0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
	    0xff,
	    0x00, 0x00,
	    0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* timer -1: all ones */
	};
	/* clang-format on */
	save_expect(&td_scalars_vmsd, &s, exp, sizeof(exp), "scalar extremes");

	struct td_scalars d;
	memset(&d, 0x5a, sizeof(d));
	LOAD_OK(&td_scalars_vmsd, &d, 1, exp);
	cr_assert_eq(d.b, false);
	cr_assert_eq(d.i8, INT8_MIN);
	cr_assert_eq(d.i16, INT16_MAX);
	cr_assert_eq(d.i32, INT32_MIN);
	cr_assert_eq(d.i64, INT64_MIN);
	cr_assert_eq(d.u8, UINT8_MAX);
	cr_assert_eq(d.u16, 0);
	cr_assert_eq(d.u32, UINT32_MAX);
	cr_assert_eq(d.u64, UINT64_MAX);
	cr_assert_eq(d.timer, -1);
}

/* ---- fixed arrays -------------------------------------------------------------------- */

Test(vmstate_fields, fixed_arrays_golden)
{
	struct td_arrays s = {
	    .a8 = {0x01, 0x02, 0xff},
	    .ai8 = {-1, 127},
	    .a16 = {0x0102, 0xfffe},
	    .ai16 = {-2, 0x1234},
	    .a32 = {0x01020304, 0x0a0b0c0d},
	    .ai32 = {-1, 5},
	    .a64 = {0x1122334455667788ULL, 1},
	    .ai64 = {-2},
	    .ab = {true, false, true},
	    .timers = {-1, 0x10},
	};
	static const uint8_t exp[] = {
	    0x01, 0x02, 0xff,				    /* a8 */
	    0xff, 0x7f,					    /* ai8 */
	    0x01, 0x02, 0xff, 0xfe,			    /* a16 */
	    0xff, 0xfe, 0x12, 0x34,			    /* ai16 */
	    0x01, 0x02, 0x03, 0x04, 0x0a, 0x0b, 0x0c, 0x0d, /* a32 */
	    0xff, 0xff, 0xff, 0xff, 0x00, 0x00, 0x00, 0x05, /* ai32 */
	    0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, /* a64[0] */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01, /* a64[1] */
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfe, /* ai64 */
	    0x01, 0x00, 0x01,				    /* ab */
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* timers[0] */
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x10, /* timers[1] */
	};
	save_expect(&td_arrays_vmsd, &s, exp, sizeof(exp), "fixed arrays");

	struct td_arrays d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_arrays_vmsd, &d, 1, exp);
	cr_assert_arr_eq(d.a8, s.a8, sizeof(s.a8));
	cr_assert_eq(d.ai8[0], -1);
	cr_assert_eq(d.ai8[1], 127);
	cr_assert_eq(d.a16[0], 0x0102);
	cr_assert_eq(d.a16[1], 0xfffe);
	cr_assert_eq(d.ai16[0], -2);
	cr_assert_eq(d.ai16[1], 0x1234);
	cr_assert_eq(d.a32[0], 0x01020304);
	cr_assert_eq(d.a32[1], 0x0a0b0c0d);
	cr_assert_eq(d.ai32[0], -1);
	cr_assert_eq(d.ai32[1], 5);
	cr_assert_eq(d.a64[0], 0x1122334455667788ULL);
	cr_assert_eq(d.a64[1], 1);
	cr_assert_eq(d.ai64[0], -2);
	cr_assert_eq(d.ab[0], true);
	cr_assert_eq(d.ab[1], false);
	cr_assert_eq(d.ab[2], true);
	cr_assert_eq(d.timers[0], -1);
	cr_assert_eq(d.timers[1], 0x10);
}

/* ---- variable arrays ----------------------------------------------------------------- */

Test(vmstate_fields, variable_arrays_golden)
{
	struct td_varrays s = {
	    .n8 = 2,
	    .v8 = {0x1122, 0x3344, 0x5566, 0x7788},
	    .n32 = 3,
	    .n16 = 1,
	    .v16 = {0xa1b2c3d4, 0xdeaddead},
	    .v32 = {1, 2, 3, 4, 5},
	    .ni32 = 2,
	    .vi32 = {0x0102030405060708ULL, UINT64_MAX, 9},
	};
	/* Each count travels where its field is declared; only `count` elements follow. */
	static const uint8_t exp[] = {
	    0x02,					    /* n8 */
	    0x11, 0x22, 0x33, 0x44,			    /* v8[0..1] */
	    0x00, 0x00, 0x00, 0x03,			    /* n32 */
	    0x00, 0x01,					    /* n16 */
	    0xa1, 0xb2, 0xc3, 0xd4,			    /* v16[0] */
	    0x01, 0x02, 0x03,				    /* v32[0..2] */
	    0x00, 0x00, 0x00, 0x02,			    /* ni32 */
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, /* vi32[0] */
	    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* vi32[1] */
	};
	save_expect(&td_varrays_vmsd, &s, exp, sizeof(exp), "variable arrays");

	/* Elements beyond each count are left as they were. */
	struct td_varrays d;
	memset(&d, 0x5a, sizeof(d));
	LOAD_OK(&td_varrays_vmsd, &d, 1, exp);
	cr_assert_eq(d.n8, 2);
	cr_assert_eq(d.v8[0], 0x1122);
	cr_assert_eq(d.v8[1], 0x3344);
	cr_assert_eq(d.v8[2], 0x5a5a);
	cr_assert_eq(d.n32, 3);
	cr_assert_eq(d.n16, 1);
	cr_assert_eq(d.v16[0], 0xa1b2c3d4);
	cr_assert_eq(d.v16[1], 0x5a5a5a5a);
	cr_assert_eq(d.v32[0], 1);
	cr_assert_eq(d.v32[2], 3);
	cr_assert_eq(d.v32[3], 0x5a);
	cr_assert_eq(d.ni32, 2);
	cr_assert_eq(d.vi32[0], 0x0102030405060708ULL);
	cr_assert_eq(d.vi32[1], UINT64_MAX);
	cr_assert_eq(d.vi32[2], 0x5a5a5a5a5a5a5a5aULL);
}

Test(vmstate_fields, variable_arrays_empty_and_full)
{
	struct td_varrays s;
	memset(&s, 0x77, sizeof(s));
	s.n8 = 0;
	s.n32 = 0;
	s.n16 = 0;
	s.ni32 = 0;
	/* clang-format off */
	static const uint8_t empty[] = {
	    0x00,
	    0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00,
	    0x00, 0x00, 0x00, 0x00,
	};
	/* clang-format on */
	save_expect(&td_varrays_vmsd, &s, empty, sizeof(empty), "empty variable arrays");

	/* Counts equal to the capacity: everything travels. */
	struct td_varrays f = {
	    .n8 = 4,
	    .v8 = {1, 2, 3, 4},
	    .n32 = 8,
	    .n16 = 4,
	    .v16 = {5, 6, 7, 8},
	    .v32 = {9, 10, 11, 12, 13, 14, 15, 16},
	    .ni32 = 3,
	    .vi32 = {17, 18, 19},
	};
	/* clang-format off */
	static const uint8_t full[] = {
	    0x04, 0x00, 0x01, 0x00, 0x02, 0x00, 0x03, 0x00, 0x04,
	    0x00, 0x00, 0x00, 0x08,
	    0x00, 0x04,
	    0x00, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x06,
	    0x00, 0x00, 0x00, 0x07, 0x00, 0x00, 0x00, 0x08,
	    0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f, 0x10,
	    0x00, 0x00, 0x00, 0x03,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x11,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x12,
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x13,
	};
	/* clang-format on */
	save_expect(&td_varrays_vmsd, &f, full, sizeof(full), "full variable arrays");

	struct td_varrays d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_varrays_vmsd, &d, 1, full);
	cr_assert_eq(d.n8, 4);
	cr_assert_arr_eq(d.v8, f.v8, sizeof(f.v8));
	cr_assert_eq(d.n32, 8);
	cr_assert_eq(d.n16, 4);
	cr_assert_arr_eq(d.v16, f.v16, sizeof(f.v16));
	cr_assert_arr_eq(d.v32, f.v32, sizeof(f.v32));
	cr_assert_eq(d.ni32, 3);
	cr_assert_arr_eq(d.vi32, f.vi32, sizeof(f.vi32));
	memset(&d, 0x33, sizeof(d));
	LOAD_OK(&td_varrays_vmsd, &d, 1, empty);
	cr_assert_eq(d.n8, 0);
	cr_assert_eq(d.ni32, 0);
	cr_assert_eq(d.v8[0], 0x3333);
}

/* ---- buffers and unused bytes --------------------------------------------------------- */

Test(vmstate_fields, buffers_and_unused_golden)
{
	struct td_buffers s = {
	    .fixed = {1, 2, 3, 4, 5},
	    .vlen = 4,
	    .vbuf = {0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7},
	    .last = 0x77,
	};
	static const uint8_t exp[] = {
	    0x01, 0x02, 0x03, 0x04, 0x05, /* fixed buffer: all 5 bytes */
	    0x00, 0x00, 0x00, 0x04,	  /* vlen */
	    0xa0, 0xa1, 0xa2, 0xa3,	  /* vbuf: vlen bytes */
	    0x00, 0x00, 0x00,		  /* unused: zeros */
	    0x77,			  /* last */
	};
	save_expect(&td_buffers_vmsd, &s, exp, sizeof(exp), "buffers");

	/* Unused bytes are ignored on load, whatever they hold. */
	/* clang-format off */
	static const uint8_t in[] = {
	    0x01, 0x02, 0x03, 0x04, 0x05,
	    0x00, 0x00, 0x00, 0x04,
	    0xa0, 0xa1, 0xa2, 0xa3,
	    0xde, 0xad, 0xbe,
	    0x77,
	};
	/* clang-format on */
	struct td_buffers d;
	memset(&d, 0x5a, sizeof(d));
	LOAD_OK(&td_buffers_vmsd, &d, 1, in);
	cr_assert_arr_eq(d.fixed, s.fixed, 5);
	cr_assert_eq(d.vlen, 4);
	cr_assert_arr_eq(d.vbuf, s.vbuf, 4);
	cr_assert_eq(d.vbuf[4], 0x5a, "vbuf beyond vlen was written");
	cr_assert_eq(d.last, 0x77);

	/* An empty variable buffer writes nothing after its length. */
	s.vlen = 0;
	/* clang-format off */
	static const uint8_t empty[] = {
	    0x01, 0x02, 0x03, 0x04, 0x05,
	    0x00, 0x00, 0x00, 0x00,
	    0x00, 0x00, 0x00,
	    0x77,
	};
	/* clang-format on */
	save_expect(&td_buffers_vmsd, &s, empty, sizeof(empty), "empty vbuffer");
	memset(&d, 0x5a, sizeof(d));
	LOAD_OK(&td_buffers_vmsd, &d, 1, empty);
	cr_assert_eq(d.vlen, 0);
	cr_assert_eq(d.last, 0x77);
}

/* ---- nested structs --------------------------------------------------------------------- */

static void outer_fill(struct td_outer *o, bool extra, bool more)
{
	memset(o, 0, sizeof(*o));
	o->head = 0x11;
	o->in.x = 0x2233;
	o->in.y = 0x44;
	o->in.extra = 0x55667788;
	o->in.has_extra = extra;
	o->tail = 0x99;
	o->more = 0xaabb;
	o->more_on = more;
}

Test(vmstate_fields, nested_struct_inline_without_header)
{
	struct td_outer s;
	outer_fill(&s, false, false);
	static const uint8_t exp[] = {0x11, 0x22, 0x33, 0x44, 0x99};
	save_expect(&td_outer_vmsd, &s, exp, sizeof(exp), "nested struct");

	struct td_outer d;
	memset(&d, 0, sizeof(d));
	d.in.extra = 0xfeedface;
	LOAD_OK(&td_outer_vmsd, &d, 1, exp);
	cr_assert_eq(d.head, 0x11);
	cr_assert_eq(d.in.x, 0x2233);
	cr_assert_eq(d.in.y, 0x44);
	cr_assert_eq(d.in.extra, 0xfeedface, "absent subsection changed its field");
	cr_assert_eq(d.tail, 0x99);
}

Test(vmstate_fields, nested_struct_with_its_own_subsection)
{
	struct td_outer s;
	outer_fill(&s, true, false);
	/* The child's subsection sits inside the child's payload, before the parent's next field.
	 */
	/* clang-format off */
	static const uint8_t exp[] = {
	    0x11,
	    0x22, 0x33, 0x44,
	    0x05, 0x0b, N_INNER_EXTRA, 0x00, 0x00, 0x00, 0x02, 0x55, 0x66, 0x77, 0x88,
	    0x99,
	};
	/* clang-format on */
	save_expect(&td_outer_vmsd, &s, exp, sizeof(exp), "nested struct + subsection");

	struct td_outer d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_outer_vmsd, &d, 1, exp);
	cr_assert_eq(d.in.x, 0x2233);
	cr_assert_eq(d.in.extra, 0x55667788);
	cr_assert_eq(d.tail, 0x99);
	cr_assert_eq(d.more, 0);
}

Test(vmstate_fields, nested_and_parent_subsections)
{
	struct td_outer s;
	outer_fill(&s, true, true);
	/* clang-format off */
	static const uint8_t exp[] = {
	    0x11,
	    0x22, 0x33, 0x44,
	    0x05, 0x0b, N_INNER_EXTRA, 0x00, 0x00, 0x00, 0x02, 0x55, 0x66, 0x77, 0x88,
	    0x99,
	    0x05, 0x0a, N_OUTER_MORE, 0x00, 0x00, 0x00, 0x01, 0xaa, 0xbb,
	};
	/* clang-format on */
	save_expect(&td_outer_vmsd, &s, exp, sizeof(exp), "both subsections");

	struct td_outer d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_outer_vmsd, &d, 1, exp);
	cr_assert_eq(d.head, 0x11);
	cr_assert_eq(d.in.extra, 0x55667788);
	cr_assert_eq(d.tail, 0x99);
	cr_assert_eq(d.more, 0xaabb);
}

/*
 * A struct as the last field: the parent's subsection follows the child's
 * payload directly. The child's loader sees 0x05 with a name outside its
 * prefix and must leave it to the parent (FORMAT.md §7).
 */
Test(vmstate_fields, parent_subsection_right_after_nested_struct)
{
	struct td_wrap s = {.head = 0x01,
			    .in = {.x = 0x0203, .y = 0x04, .extra = 0x05060708, .has_extra = true},
			    .more = 0x090a,
			    .more_on = true};
	/* clang-format off */
	static const uint8_t both[] = {
	    0x01, 0x02, 0x03, 0x04,
	    0x05, 0x0b, N_INNER_EXTRA, 0x00, 0x00, 0x00, 0x02, 0x05, 0x06, 0x07, 0x08,
	    0x05, 0x09, N_WRAP_MORE, 0x00, 0x00, 0x00, 0x01, 0x09, 0x0a,
	};
	/* clang-format on */
	save_expect(&td_wrap_vmsd, &s, both, sizeof(both), "wrap, both subsections");
	s.in.has_extra = false;
	/* clang-format off */
	static const uint8_t parent_only[] = {
	    0x01, 0x02, 0x03, 0x04,
	    0x05, 0x09, N_WRAP_MORE, 0x00, 0x00, 0x00, 0x01, 0x09, 0x0a,
	};
	/* clang-format on */
	save_expect(&td_wrap_vmsd, &s, parent_only, sizeof(parent_only), "wrap, parent's only");

	struct td_wrap d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_wrap_vmsd, &d, 1, both);
	cr_assert_eq(d.in.extra, 0x05060708);
	cr_assert_eq(d.more, 0x090a);
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_wrap_vmsd, &d, 1, parent_only);
	cr_assert_eq(d.in.x, 0x0203);
	cr_assert_eq(d.in.extra, 0);
	cr_assert_eq(d.more, 0x090a);
}

/*
 * A field byte that happens to be 0x05 right after a nested struct is not a
 * subsection: with no name behind it that has the child's prefix, the child's
 * loader must leave it for the parent's next field.
 */
Test(vmstate_fields, byte_0x05_after_struct_is_a_field)
{
	struct td_outer s;
	outer_fill(&s, false, false);
	s.tail = 0x05;
	static const uint8_t exp[] = {0x11, 0x22, 0x33, 0x44, 0x05};
	save_expect(&td_outer_vmsd, &s, exp, sizeof(exp), "tail 0x05");
	struct td_outer d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_outer_vmsd, &d, 1, exp);
	cr_assert_eq(d.tail, 0x05);
}

/* ---- arrays of structs and of pointers ----------------------------------------------------- */

Test(vmstate_fields, arrays_of_structs_and_pointers)
{
	struct td_pt p0 = {.px = 0x3031, .py = 0x32}; /* first byte 0x30, like the marker */
	struct td_pt p2 = {.px = 0x0001, .py = 0x02};
	struct td_poly s = {
	    .pts = {{0x0102, 0x03}, {-1, 0x04}, {0x7fff, 0x05}},
	    .nv = 2,
	    .vpts = {{0x0a0b, 0x0c}, {0x0d0e, 0x0f}, {0x1111, 0x11}},
	    .ptrs = {&p0, NULL, &p2, NULL},
	};
	static const uint8_t exp[] = {
	    0x01, 0x02, 0x03, 0xff, 0xff, 0x04, 0x7f, 0xff, 0x05, /* pts[3] */
	    0x00, 0x00, 0x00, 0x02,				  /* nv */
	    0x0a, 0x0b, 0x0c, 0x0d, 0x0e, 0x0f,			  /* vpts[0..1] */
	    0x30, 0x31, 0x32,					  /* *ptrs[0] */
	    0x30,						  /* ptrs[1] NULL */
	    0x00, 0x01, 0x02,					  /* *ptrs[2] */
	    0x30,						  /* ptrs[3] NULL */
	};
	save_expect(&td_poly_vmsd, &s, exp, sizeof(exp), "arrays of structs");

	/* The destination's pointers decide: it has the same objects, the same NULLs. */
	struct td_pt q0 = {0}, q2 = {0};
	struct td_poly d;
	memset(&d, 0, sizeof(d));
	d.vpts[2] = (struct td_pt){0x5a5a, 0x5a};
	d.ptrs[0] = &q0;
	d.ptrs[2] = &q2;
	LOAD_OK(&td_poly_vmsd, &d, 1, exp);
	for (int i = 0; i < 3; i++) {
		cr_assert_eq(d.pts[i].px, s.pts[i].px, "pts[%d]", i);
		cr_assert_eq(d.pts[i].py, s.pts[i].py, "pts[%d]", i);
	}
	cr_assert_eq(d.nv, 2);
	cr_assert_eq(d.vpts[1].px, 0x0d0e);
	cr_assert_eq(d.vpts[1].py, 0x0f);
	cr_assert_eq(d.vpts[2].px, 0x5a5a, "vpts beyond nv was written");
	cr_assert_eq(d.ptrs[0], &q0);
	cr_assert_eq(q0.px, 0x3031);
	cr_assert_eq(q0.py, 0x32);
	cr_assert_null(d.ptrs[1]);
	cr_assert_eq(q2.px, 1);
	cr_assert_eq(q2.py, 2);
	cr_assert_null(d.ptrs[3]);
}

Test(vmstate_fields, pointer_null_on_destination_but_not_in_stream_fails)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    0x01, 0x02, 0x03, 0xff, 0xff, 0x04, 0x7f, 0xff, 0x05, /* pts[3] */
	    0x00, 0x00, 0x00, 0x00,				  /* nv = 0 */
	    0x30, 0x31, 0x32,					  /* *ptrs[0] */
	    0x30,						  /* ptrs[1] NULL */
	    0x00, 0x01, 0x02,					  /* *ptrs[2] */
	    0x30,						  /* ptrs[3] NULL */
	};
	/* clang-format on */
	struct td_pt q0 = {0};
	struct td_poly d;
	char msg[512];
	memset(&d, 0, sizeof(d));
	d.ptrs[0] = &q0; /* ptrs[2] NULL here, but the stream carries a struct (00 01 02) */
	int ret = load_bytes(&td_poly_vmsd, &d, 1, in, sizeof(in), msg);
	cr_assert_lt(ret, 0, "a struct loaded into a NULL pointer slot");
	td_expect_errmsg(msg, 17, 18, "ptrs", NULL, NULL);
}

/* ---- "equal" fields ------------------------------------------------------------------------- */

static void equal_fill(struct td_equal *e)
{
	*e = (struct td_equal){
	    .e8 = 0x12, .e16 = 0x3456, .e32 = 0x789abcde, .ei32 = -2, .ei64 = -3, .after = 0x55};
}

/* clang-format off */
static const uint8_t equal_bytes[] = {
    0x12,
    0x34, 0x56,
    0x78, 0x9a, 0xbc, 0xde,
    0xff, 0xff, 0xff, 0xfe,
    0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xfd,
    0x55,
};
/* clang-format on */

Test(vmstate_fields, equal_fields_golden_and_match)
{
	struct td_equal s;
	equal_fill(&s);
	save_expect(&td_equal_vmsd, &s, equal_bytes, sizeof(equal_bytes), "equal");
	struct td_equal d;
	equal_fill(&d);
	d.after = 0;
	LOAD_OK(&td_equal_vmsd, &d, 1, equal_bytes);
	cr_assert_eq(d.after, 0x55);
	cr_assert_eq(d.ei64, -3);
}

Test(vmstate_fields, equal_fields_mismatch_fails)
{
	/* field, its first byte in equal_bytes, the byte after it */
	static const struct {
		const char *name;
		uint64_t start, end;
	} f[] = {{"e8", 0, 1}, {"e16", 1, 3}, {"e32", 3, 7}, {"ei32", 7, 11}, {"ei64", 11, 19}};

	for (size_t i = 0; i < sizeof(f) / sizeof(f[0]); i++) {
		struct td_equal d;
		char msg[512];
		equal_fill(&d);
		switch (i) {
		case 0:
			d.e8 = 0x13;
			break;
		case 1:
			d.e16 = 0x3457;
			break;
		case 2:
			d.e32 = 0;
			break;
		case 3:
			d.ei32 = 2;
			break;
		case 4:
			d.ei64 = -4;
			break;
		}
		int ret = load_bytes(&td_equal_vmsd, &d, 1, equal_bytes, sizeof(equal_bytes), msg);
		cr_assert_eq(ret, FERRY_EMISMATCH, "%s: %d (%s), expected EMISMATCH: %s", f[i].name,
			     ret, ferry_err_name(ret), msg);
		char quoted[16];
		snprintf(quoted, sizeof(quoted), "'%s'", f[i].name);
		td_expect_errmsg(msg, f[i].start, f[i].end, quoted, NULL, NULL);
	}
}

/* ---- version_id and field_exists gates ---------------------------------------------------------
 */

Test(vmstate_fields, version_gated_fields_save)
{
	struct td_versioned s = {
	    .a = 0x01020304, .b_v2 = 0x0506, .c_v3 = 0x07, .t = 0x08, .has_t = true};
	static const uint8_t v3_t[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08};
	save_expect(&td_versioned_vmsd, &s, v3_t, sizeof(v3_t), "v3 with t");
	cr_assert_eq(s.t_exists_version, 3, "field_exists was asked about version %d",
		     s.t_exists_version);
	s.has_t = false;
	static const uint8_t v3[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
	save_expect(&td_versioned_vmsd, &s, v3, sizeof(v3), "v3 without t");
}

Test(vmstate_fields, version_gated_fields_load_older_streams)
{
	struct td_versioned d;

	/* Version 1: b_v2 and c_v3 absent, they keep what the destination had. */
	static const uint8_t v1[] = {0x01, 0x02, 0x03, 0x04, 0x08};
	d = (struct td_versioned){.b_v2 = 0xbbbb, .c_v3 = 0xcc, .has_t = true};
	LOAD_OK(&td_versioned_vmsd, &d, 1, v1);
	cr_assert_eq(d.a, 0x01020304);
	cr_assert_eq(d.b_v2, 0xbbbb);
	cr_assert_eq(d.c_v3, 0xcc);
	cr_assert_eq(d.t, 0x08);
	cr_assert_eq(d.t_exists_version, 1, "field_exists got version %d, not the stream's",
		     d.t_exists_version);

	/* Version 2: b_v2 present. */
	static const uint8_t v2[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x08};
	d = (struct td_versioned){.b_v2 = 0xbbbb, .c_v3 = 0xcc, .has_t = true};
	LOAD_OK(&td_versioned_vmsd, &d, 2, v2);
	cr_assert_eq(d.b_v2, 0x0506);
	cr_assert_eq(d.c_v3, 0xcc);
	cr_assert_eq(d.t, 0x08);

	/* Version 3, field_exists false on the destination: t is not read. */
	static const uint8_t v3[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
	d = (struct td_versioned){.t = 0x77, .has_t = false};
	LOAD_OK(&td_versioned_vmsd, &d, 3, v3);
	cr_assert_eq(d.c_v3, 0x07);
	cr_assert_eq(d.t, 0x77);
}

Test(vmstate_fields, version_outside_range_fails)
{
	static const uint8_t v3[] = {0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07};
	struct td_versioned d = {0};
	char msg[512];
	int ret = load_bytes(&td_versioned_vmsd, &d, 4, v3, sizeof(v3), msg);
	cr_assert_eq(ret, FERRY_EVERSION, "version 4 > 3: %d (%s): %s", ret, ferry_err_name(ret),
		     msg);
	cr_assert_not_null(strstr(msg, "versioned"), "message does not name the vmsd: %s", msg);
	ret = load_bytes(&td_versioned_vmsd, &d, 0, v3, sizeof(v3), msg);
	cr_assert_eq(ret, FERRY_EVERSION, "version 0 < minimum 1: %d (%s): %s", ret,
		     ferry_err_name(ret), msg);
}

/* ---- subsections --------------------------------------------------------------------------------
 */

static void subdev_fill(struct td_subdev *s, bool a, bool deep, bool b)
{
	*s = (struct td_subdev){.base = 0xcafef00d,
				.a = 0xa1a2,
				.deep = 0x0102030405060708ULL,
				.b = 0xb1,
				.want_a = a,
				.want_deep = deep,
				.want_b = b};
}

/* clang-format off */
static const uint8_t subdev_all[] = {
    0xca, 0xfe, 0xf0, 0x0d,
    0x05, 0x08, N_SUBDEV_A, 0x00, 0x00, 0x00, 0x01, 0xa1, 0xa2,
    0x05, 0x0d, N_SUBDEV_A_DEEP, 0x00, 0x00, 0x00, 0x03,
    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
    0x05, 0x08, N_SUBDEV_B, 0x00, 0x00, 0x00, 0x02, 0xb1,
};
/* clang-format on */

Test(vmstate_fields, subsections_golden)
{
	struct td_subdev s;

	subdev_fill(&s, true, true, true);
	save_expect(&td_subdev_vmsd, &s, subdev_all, sizeof(subdev_all), "all subsections");

	subdev_fill(&s, false, false, true);
	/* clang-format off */
	static const uint8_t b_only[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x08, N_SUBDEV_B, 0x00, 0x00, 0x00, 0x02, 0xb1,
	};
	/* clang-format on */
	save_expect(&td_subdev_vmsd, &s, b_only, sizeof(b_only), "b only");

	subdev_fill(&s, true, false, false);
	/* clang-format off */
	static const uint8_t a_only[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x08, N_SUBDEV_A, 0x00, 0x00, 0x00, 0x01, 0xa1, 0xa2,
	};
	/* clang-format on */
	save_expect(&td_subdev_vmsd, &s, a_only, sizeof(a_only), "a without deep");

	/* deep lives inside a: without a it does not travel either. */
	subdev_fill(&s, false, true, false);
	static const uint8_t none[] = {0xca, 0xfe, 0xf0, 0x0d};
	save_expect(&td_subdev_vmsd, &s, none, sizeof(none), "no subsection");

	struct td_subdev d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_subdev_vmsd, &d, 1, subdev_all);
	cr_assert_eq(d.base, 0xcafef00d);
	cr_assert_eq(d.a, 0xa1a2);
	cr_assert_eq(d.deep, 0x0102030405060708ULL);
	cr_assert_eq(d.b, 0xb1);

	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_subdev_vmsd, &d, 1, b_only);
	cr_assert_eq(d.b, 0xb1);
	cr_assert_eq(d.a, 0);
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_subdev_vmsd, &d, 1, a_only);
	cr_assert_eq(d.a, 0xa1a2);
	cr_assert_eq(d.deep, 0);
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_subdev_vmsd, &d, 1, none);
	cr_assert_eq(d.base, 0xcafef00d);
}

Test(vmstate_fields, subsections_in_another_order_load)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x08, N_SUBDEV_B, 0x00, 0x00, 0x00, 0x02, 0xb1,
	    0x05, 0x08, N_SUBDEV_A, 0x00, 0x00, 0x00, 0x01, 0xa1, 0xa2,
	    0x05, 0x0d, N_SUBDEV_A_DEEP, 0x00, 0x00, 0x00, 0x03,
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	/* clang-format on */
	struct td_subdev d;
	memset(&d, 0, sizeof(d));
	LOAD_OK(&td_subdev_vmsd, &d, 1, in);
	cr_assert_eq(d.a, 0xa1a2);
	cr_assert_eq(d.deep, 0x0102030405060708ULL);
	cr_assert_eq(d.b, 0xb1);
}

Test(vmstate_fields, unknown_subsection_fails)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x09, 's', 'u', 'b', 'd', 'e', 'v', '/', 'z', 'z', 0x00, 0x00, 0x00, 0x01,
	    0x00,
	};
	/* clang-format on */
	struct td_subdev d = {0};
	char msg[512];
	int ret = load_bytes(&td_subdev_vmsd, &d, 1, in, sizeof(in), msg);
	cr_assert_eq(ret, FERRY_ENOSUBSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 4, 19, "subdev/zz", NULL, NULL);
}

Test(vmstate_fields, grandchild_subsection_at_top_level_fails)
{
	/* "subdev/a/deep" has the right prefix but is a subsection of "subdev/a", not of "subdev".
	 */
	/* clang-format off */
	static const uint8_t in[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x0d, N_SUBDEV_A_DEEP, 0x00, 0x00, 0x00, 0x03,
	    0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	};
	/* clang-format on */
	struct td_subdev d = {0};
	char msg[512];
	int ret = load_bytes(&td_subdev_vmsd, &d, 1, in, sizeof(in), msg);
	cr_assert_eq(ret, FERRY_ENOSUBSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 4, 23, "subdev/a/deep", NULL, NULL);
}

Test(vmstate_fields, subsection_version_outside_range_fails)
{
	struct td_subdev d = {0};
	char msg[512];
	/* clang-format off */
	static const uint8_t too_new[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x08, N_SUBDEV_B, 0x00, 0x00, 0x00, 0x03, 0xb1,
	};
	/* clang-format on */
	int ret = load_bytes(&td_subdev_vmsd, &d, 1, too_new, sizeof(too_new), msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 4, 18, "subdev/b", NULL, NULL);
	/* clang-format off */
	static const uint8_t too_old[] = {
	    0xca, 0xfe, 0xf0, 0x0d,
	    0x05, 0x08, N_SUBDEV_B, 0x00, 0x00, 0x00, 0x00, 0xb1,
	};
	/* clang-format on */
	ret = load_bytes(&td_subdev_vmsd, &d, 1, too_old, sizeof(too_old), msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
}

/* ---- the layered virtio-like device -------------------------------------------------------- */

/* transport, then core (with its packed-ring subsection), then the device's own fields */
/* clang-format off */
#define VNET_COMMON_BYTES                                                                  \
	0xc0, 0xc1, 0xc2, 0xc3, 0xc4, 0xc5, 0xc6, 0xc7,                 /* pci.cfg */      \
	0xc8, 0xc9, 0xca, 0xcb, 0xcc, 0xcd, 0xce, 0xcf,                                    \
	0x00, 0x03,                                     /* pci.config_vector */            \
	0x00, 0x05,                                     /* pci.nvectors */                 \
	0x0f, 0x01, 0x00, 0x01,                         /* core.status, isr, queue_sel */  \
	0x00, 0x00, 0x00, 0x05, 0x30, 0x00, 0x00, 0x21, /* core.features */                \
	0x00, 0x00, 0x00, 0x02,                         /* core.nvq */                     \
	0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0xab, 0xcd, 0x00, 0x00, /* vq[0] num, desc */  \
	0x00, 0x07, 0x00, 0x01,                         /* vq[0] last_avail, vector */     \
	0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0xab, 0xce, 0x00, 0x00, /* vq[1] num, desc */  \
	0x01, 0x02, 0x00, 0x02,                         /* vq[1] last_avail, vector */     \
	0x05, 0x12, N_VCORE_PACKED, 0x00, 0x00, 0x00, 0x01, /* core's subsection */        \
	0x80, 0x01, 0x00, 0x02, 0x80, 0x03, 0x00, 0x04, /* packed_wrap[4] */               \
	0x52, 0x54, 0x00, 0x12, 0x34, 0x56,             /* mac */                          \
	0x05, 0xdc                                      /* mtu 1500 */
/* clang-format on */

Test(vmstate_fields, virtio_like_layers_golden)
{
	struct td_vnet s;
	td_vnet_fill(&s);
	/* clang-format off */
	static const uint8_t v2[] = {
	    VNET_COMMON_BYTES,
	    0x00, /* link_up (version 2) */
	    0x05, 0x0e, N_VNET_RSS, 0x00, 0x00, 0x00, 0x01,
	    0x00, 0x00, 0x00, 0x04, 0x6d, 0x5a, 0x56, 0xda,
	};
	/* clang-format on */
	save_expect(&td_vnet_v2_vmsd, &s, v2, sizeof(v2), "virtio-net v2");
	static const uint8_t v1[] = {VNET_COMMON_BYTES};
	cr_assert_eq(sizeof(v1), 20 + 76 + 8, "hand-written bytes miscounted");
	save_expect(&td_vnet_v1_vmsd, &s, v1, sizeof(v1), "virtio-net v1");

	struct td_vnet d;
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 5; /* the "equal" field: same build on both sides */
	LOAD_OK(&td_vnet_v2_vmsd, &d, 2, v2);
	cr_assert_eq(d.pre_load_calls, 1);
	cr_assert_arr_eq(d.pci.cfg, s.pci.cfg, 16);
	cr_assert_eq(d.pci.config_vector, 3);
	cr_assert_eq(d.core.features, s.core.features);
	cr_assert_eq(d.core.nvq, 2);
	cr_assert_eq(d.core.vq[1].desc, 0xabce0000ULL);
	cr_assert_eq(d.core.vq[1].last_avail, 0x0102);
	cr_assert_eq(d.core.packed_wrap[2], 0x8003);
	cr_assert_arr_eq(d.mac, s.mac, 6);
	cr_assert_eq(d.mtu, 1500);
	cr_assert_eq(d.link_up, false);
	cr_assert_eq(d.rss_on, true);
	cr_assert_eq(d.rss_key_len, 4);
	cr_assert_arr_eq(d.rss_key, s.rss_key, 4);

	/* The older stream into the newer description: pre_load's defaults stay. */
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 5;
	d.rss_key_len = 9;
	LOAD_OK(&td_vnet_v2_vmsd, &d, 1, v1);
	cr_assert_eq(d.mtu, 1500);
	cr_assert_eq(d.link_up, true, "link_up not the pre_load default");
	cr_assert_eq(d.rss_on, false);
	cr_assert_eq(d.rss_key_len, 0);

	/* The transport's vector count differs: refused. */
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 4;
	char msg[512];
	int ret = load_bytes(&td_vnet_v2_vmsd, &d, 2, v2, sizeof(v2), msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 18, 20, "nvectors", NULL, NULL);
}

/* ---- the vmdesc description of fields ------------------------------------------------------- */

/* vms_save() with a description object; returns it and the payload length. */
static json_t *save_desc(const struct ferry_vmsd *vmsd, void *dev, size_t *len)
{
	struct ferry_writer *w;
	json_t *desc = json_object();

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = vms_save(w, vmsd, dev, desc);
	cr_assert_eq(ret, 0, "vms_save: %d", ret);
	cr_assert_not_null(ferry_writer_mem_data(w, len));
	ferry_writer_destroy(w);
	cr_assert_str_eq(json_string_value(json_object_get(desc, "vmsd_name")), vmsd->name);
	cr_assert_eq(json_integer_value(json_object_get(desc, "version")), vmsd->version_id);
	uint64_t described = td_desc_payload(desc);
	if (described != *len)
		json_decref(desc); /* no leak in a failing test */
	cr_assert_eq(described, *len, "described %llu bytes, wrote %zu",
		     (unsigned long long)described, *len);
	return desc;
}

static const json_t *desc_field(const json_t *desc, size_t i)
{
	return json_array_get(json_object_get(desc, "fields"), i);
}

Test(vmstate_fields, vmdesc_types_of_scalars_and_arrays)
{
	struct td_scalars s = {.timer = -1};
	size_t len;
	json_t *d = save_desc(&td_scalars_vmsd, &s, &len);
	static const struct {
		const char *name, *type;
		int size;
	} sc[] = {{"b", "bool", 1},	{"i8", "int8", 1},    {"i16", "int16", 2},
		  {"i32", "int32", 4},	{"i64", "int64", 8},  {"u8", "uint8", 1},
		  {"u16", "uint16", 2}, {"u32", "uint32", 4}, {"u64", "uint64", 8},
		  {"timer", "timer", 8}};
	cr_assert_eq(json_array_size(json_object_get(d, "fields")), 10);
	for (size_t i = 0; i < 10; i++)
		td_expect_desc_field(desc_field(d, i), sc[i].name, sc[i].type, sc[i].size, 0);
	json_decref(d);

	struct td_arrays a = {0};
	d = save_desc(&td_arrays_vmsd, &a, &len);
	cr_assert_eq(len, 72);
	td_expect_desc_field(desc_field(d, 0), "a8", "uint8", 1, 3);
	td_expect_desc_field(desc_field(d, 1), "ai8", "int8", 1, 2);
	td_expect_desc_field(desc_field(d, 2), "a16", "uint16", 2, 2);
	td_expect_desc_field(desc_field(d, 3), "ai16", "int16", 2, 2);
	td_expect_desc_field(desc_field(d, 4), "a32", "uint32", 4, 2);
	td_expect_desc_field(desc_field(d, 5), "ai32", "int32", 4, 2);
	td_expect_desc_field(desc_field(d, 6), "a64", "uint64", 8, 2);
	td_expect_desc_field(desc_field(d, 8), "ab", "bool", 1, 3);
	td_expect_desc_field(desc_field(d, 9), "timers", "timer", 8, 2);
	json_decref(d);
}

Test(vmstate_fields, vmdesc_of_varrays_buffers_equal)
{
	size_t len;
	struct td_varrays v = {.n8 = 2, .n32 = 3, .n16 = 2, .ni32 = 3};
	json_t *d = save_desc(&td_varrays_vmsd, &v, &len);
	td_expect_desc_field(desc_field(d, 0), "n8", "uint8", 1, 0);
	td_expect_desc_field(desc_field(d, 1), "v8", "uint16", 2, 2);
	td_expect_desc_field(desc_field(d, 2), "n32", "uint32", 4, 0);
	td_expect_desc_field(desc_field(d, 4), "v16", "uint32", 4, 2);
	td_expect_desc_field(desc_field(d, 5), "v32", "uint8", 1, 3);
	td_expect_desc_field(desc_field(d, 7), "vi32", "uint64", 8, 3);
	json_decref(d);

	struct td_buffers b = {.vlen = 6};
	d = save_desc(&td_buffers_vmsd, &b, &len);
	td_expect_desc_field(desc_field(d, 0), "fixed", "buffer", 5, 0);
	td_expect_desc_field(desc_field(d, 1), "vlen", "uint32", 4, 0);
	td_expect_desc_field(desc_field(d, 2), "vbuf", "buffer", 6, 0);
	td_expect_desc_field(desc_field(d, 3), "unused", "unused_buffer", 3, 0);
	td_expect_desc_field(desc_field(d, 4), "last", "uint8", 1, 0);
	json_decref(d);

	struct td_equal e;
	equal_fill(&e);
	d = save_desc(&td_equal_vmsd, &e, &len);
	td_expect_desc_field(desc_field(d, 0), "e8", "uint8 equal", 1, 0);
	td_expect_desc_field(desc_field(d, 1), "e16", "uint16 equal", 2, 0);
	td_expect_desc_field(desc_field(d, 2), "e32", "uint32 equal", 4, 0);
	td_expect_desc_field(desc_field(d, 3), "ei32", "int32 equal", 4, 0);
	td_expect_desc_field(desc_field(d, 4), "ei64", "int64 equal", 8, 0);
	json_decref(d);
}

Test(vmstate_fields, vmdesc_of_structs_and_subsections)
{
	size_t len;
	struct td_outer o;
	outer_fill(&o, true, true);
	json_t *d = save_desc(&td_outer_vmsd, &o, &len);
	cr_assert_eq(len, 44);
	td_expect_desc_field(desc_field(d, 0), "head", "uint8", 1, 0);
	/* a struct's size includes its own subsections: 3 + (1+1+11+4) + 4 */
	td_expect_desc_field(desc_field(d, 1), "in", "struct", 24, 0);
	const json_t *st = json_object_get(desc_field(d, 1), "struct");
	cr_assert(json_is_object(st), "struct field without its \"struct\" description");
	cr_assert_str_eq(json_string_value(json_object_get(st, "vmsd_name")), "inner");
	td_expect_desc_field(json_array_get(json_object_get(st, "fields"), 0), "x", "uint16", 2, 0);
	const json_t *ss = json_array_get(json_object_get(st, "subsections"), 0);
	cr_assert(json_is_object(ss), "nested subsection missing from the struct's description");
	cr_assert_str_eq(json_string_value(json_object_get(ss, "vmsd_name")), "inner/extra");
	cr_assert_eq(json_integer_value(json_object_get(ss, "version")), 2);
	td_expect_desc_field(json_array_get(json_object_get(ss, "fields"), 0), "extra", "uint32", 4,
			     0);
	td_expect_desc_field(desc_field(d, 2), "tail", "uint8", 1, 0);
	const json_t *subs = json_object_get(d, "subsections");
	cr_assert_eq(json_array_size(subs), 1);
	cr_assert_str_eq(json_string_value(json_object_get(json_array_get(subs, 0), "vmsd_name")),
			 "outer/more");
	json_decref(d);

	/* No subsection sent: none described. */
	outer_fill(&o, false, false);
	d = save_desc(&td_outer_vmsd, &o, &len);
	cr_assert_eq(len, 5);
	cr_assert_eq(json_array_size(json_object_get(d, "subsections")), 0);
	json_decref(d);

	/* The layered device: every size adds up to what was written. */
	struct td_vnet n;
	td_vnet_fill(&n);
	d = save_desc(&td_vnet_v2_vmsd, &n, &len);
	cr_assert_eq(len, 133);
	json_decref(d);
}

/*
 * An array of pointers with NULL elements: every element is described (NULLs as
 * "nullptr", size 1, FORMAT.md §7, §9), so the sizes add up to the bytes written.
 */
Test(vmstate_fields, vmdesc_of_pointer_array_with_nulls)
{
	size_t len;
	json_t *d;
	struct td_pt p0 = {1, 2};
	struct td_poly p = {.nv = 2, .ptrs = {&p0, NULL, NULL, &p0}};
	d = save_desc(&td_poly_vmsd, &p, &len);
	cr_assert_eq(len, 9 + 4 + 6 + 3 + 1 + 1 + 3);
	td_expect_desc_field(desc_field(d, 0), "pts", "struct", 3, 3);
	bool saw_nullptr = false;
	size_t i;
	const json_t *f;
	json_array_foreach(json_object_get(d, "fields"), i, f)
	{
		const char *t = json_string_value(json_object_get(f, "type"));
		if (t && strcmp(t, "nullptr") == 0) {
			saw_nullptr = true;
			cr_assert_eq(json_integer_value(json_object_get(f, "size")), 1);
		}
	}
	cr_assert(saw_nullptr, "no \"nullptr\" entry for the NULL elements");
	json_decref(d);
}
