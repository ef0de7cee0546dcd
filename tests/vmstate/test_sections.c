/* SPDX-License-Identifier: MIT */
/*
 * Whole streams through the public API (FORMAT.md §2-§6, §9, §13):
 *   vmstate_sections  the complete stream of a device set written by hand and
 *                     compared byte for byte; configuration subsections; the
 *                     vmdesc JSON and its sizes; COMMAND records.
 *   vmstate_versions  section versions, hooks, and every loader error with its
 *                     code and message.
 */
#include <criterion/criterion.h>
#include <ctype.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>
#include <ferry/vmstate.h>

#include "test_devices.h"

/* ---- the expected stream of td_set, by hand ----------------------------------------------
 *
 * SECTION IDS: FORMAT.md §3 says QEMU numbers handlers from a global counter at
 * registration; our headers do not say. These tests ASSUME ids are assigned in
 * registration order starting at 0 (blob 0, low-dev 1, legacy-dev 2, apic 3,
 * outer 4). Every id in the bytes below follows from that assumption.
 */
#define ID_BLOB	  0x00
#define ID_LOW	  0x01
#define ID_LEGACY 0x02
#define ID_APIC	  0x03
#define ID_OUTER  0x04

/* clang-format off */
#define HDR_BYTES 0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03
#define CONF_BYTES                                                                         \
	0x07, 0x00, 0x00, 0x00, 0x0a, 'f', 'e', 'r', 'r', 'y', '-', 't', 'e', 's', 't'
#define START_BYTES                                                                        \
	0x01, 0x00, 0x00, 0x00, ID_BLOB, 0x04, 'b', 'l', 'o', 'b',                         \
	0x00, 0x00, 0x00, 0x00, /* instance 0 */                                           \
	0x00, 0x00, 0x00, 0x04, /* version 4 */                                            \
	0xaa, 0xbb, 0x00, 0x10,                                                            \
	0x7e, 0x00, 0x00, 0x00, ID_BLOB
#define PART_BYTES 0x02, 0x00, 0x00, 0x00, ID_BLOB, 0x01, 0x02, 0x03, 0x7e, 0x00, 0x00, 0x00, ID_BLOB
#define END_BYTES  0x03, 0x00, 0x00, 0x00, ID_BLOB, 0xee, 0x7e, 0x00, 0x00, 0x00, ID_BLOB
#define APIC_BYTES                                                                         \
	0x04, 0x00, 0x00, 0x00, ID_APIC, 0x04, 'a', 'p', 'i', 'c',                         \
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,                                    \
	0x00, 0x00, 0x00, 0x0f,                         /* id */                           \
	0x10, 0x20, 0x30, 0x40,                         /* lvt[4] */                       \
	0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, /* timer: not armed */             \
	0x7e, 0x00, 0x00, 0x00, ID_APIC
#define LEGACY_BYTES                                                                       \
	0x04, 0x00, 0x00, 0x00, ID_LEGACY,                                                 \
	0x0a, 'l', 'e', 'g', 'a', 'c', 'y', '-', 'd', 'e', 'v',                            \
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x03,                                    \
	'o', 'p', 'a', 'q', 'u', 'e',                                                      \
	0x7e, 0x00, 0x00, 0x00, ID_LEGACY
#define OUTER_BYTES                                                                        \
	0x04, 0x00, 0x00, 0x00, ID_OUTER,                                                  \
	0x12, '0', '0', '0', '0', ':', '0', '0', ':', '0', '2', '.', '0',                  \
	'/', 'o', 'u', 't', 'e', 'r',                                                      \
	0x00, 0x00, 0x00, 0x01, /* instance 1 */                                           \
	0x00, 0x00, 0x00, 0x01,                                                            \
	0x11, 0x22, 0x33, 0x44,                                                            \
	0x05, 0x0b, 'i', 'n', 'n', 'e', 'r', '/', 'e', 'x', 't', 'r', 'a',                 \
	0x00, 0x00, 0x00, 0x02, 0x55, 0x66, 0x77, 0x88,                                    \
	0x99,                                                                              \
	0x05, 0x0a, 'o', 'u', 't', 'e', 'r', '/', 'm', 'o', 'r', 'e',                      \
	0x00, 0x00, 0x00, 0x01, 0xaa, 0xbb,                                                \
	0x7e, 0x00, 0x00, 0x00, ID_OUTER
#define LOW_BYTES                                                                          \
	0x04, 0x00, 0x00, 0x00, ID_LOW, 0x07, 'l', 'o', 'w', '-', 'd', 'e', 'v',           \
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,                                    \
	0x12, 0x34, 0x01, 0x02, 0x03,                                                      \
	0x7e, 0x00, 0x00, 0x00, ID_LOW
/* clang-format on */

/* The size of each part (compound literals: only their sizes are used). */
#define PART_SIZE(bytes) sizeof((const uint8_t[]){bytes})

/* The whole stream, send_vmdesc=false. FULL sections: APIC (6) first, then the
 * two priority-2 devices in registration order (legacy-dev before outer), then LOW. */
static const uint8_t golden[] = {
    HDR_BYTES,	CONF_BYTES,   START_BYTES, PART_BYTES, END_BYTES,
    APIC_BYTES, LEGACY_BYTES, OUTER_BYTES, LOW_BYTES,  0x00 /* EOF */,
};

/* Where each part begins in golden[]. */
#define OFF_CONF   (PART_SIZE(HDR_BYTES))
#define OFF_START  (OFF_CONF + PART_SIZE(CONF_BYTES))
#define OFF_PART   (OFF_START + PART_SIZE(START_BYTES))
#define OFF_END	   (OFF_PART + PART_SIZE(PART_BYTES))
#define OFF_APIC   (OFF_END + PART_SIZE(END_BYTES))
#define OFF_LEGACY (OFF_APIC + PART_SIZE(APIC_BYTES))
#define OFF_OUTER  (OFF_LEGACY + PART_SIZE(LEGACY_BYTES))
#define OFF_LOW	   (OFF_OUTER + PART_SIZE(OUTER_BYTES))
#define OFF_EOF	   (OFF_LOW + PART_SIZE(LOW_BYTES))

static const struct ferry_stream_config test_cfg = {.machine = "ferry-test", .page_size = 4096};

/* ---- helpers ------------------------------------------------------------------------------ */

/* Save @s with ferry_save_snapshot(); returns a malloc'd copy of the stream. */
static uint8_t *save_set(struct td_set *s, const struct ferry_stream_config *cfg, size_t *len)
{
	struct ferry_devices *devs;
	struct ferry_writer *w;

	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(td_set_register(s, devs), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = ferry_save_snapshot(w, devs, cfg);
	cr_assert_eq(ret, 0, "ferry_save_snapshot: %d (%s)", ret, ferry_err_name(ret));
	const uint8_t *p = ferry_writer_mem_data(w, len);
	cr_assert_not_null(p);
	uint8_t *copy = malloc(*len + 1);
	memcpy(copy, p, *len);
	ferry_writer_destroy(w);
	ferry_devices_destroy(devs);
	return copy;
}

/* Load @buf into a registry built by @reg(@ctx); the message goes to @msg (1024 bytes). */
static int load_with(const uint8_t *buf, size_t len, int (*reg)(void *, struct ferry_devices *),
		     void *ctx, const struct ferry_load_config *lc, char *msg)
{
	struct ferry_devices *devs;
	struct ferry_reader *r;
	struct ferry_load_config def = {.machine = "ferry-test"};

	cr_assert_eq(ferry_devices_create(&devs), 0);
	if (reg)
		cr_assert_eq(reg(ctx, devs), 0);
	cr_assert_eq(ferry_reader_create_mem(buf, len, &r), 0);
	int ret = ferry_load(r, devs, lc ? lc : &def);
	snprintf(msg, 1024, "%s", ferry_reader_errmsg(r));
	if (ret < 0)
		cr_assert_neq(msg[0], '\0', "error %d (%s) without a message", ret,
			      ferry_err_name(ret));
	ferry_reader_destroy(r);
	ferry_devices_destroy(devs);
	return ret;
}

static int reg_set(void *ctx, struct ferry_devices *devs)
{
	return td_set_register(ctx, devs);
}

/* True if the decimal number @n appears in @msg as a whole number. */
static bool has_number(const char *msg, long n)
{
	for (const char *p = msg; *p; p++) {
		if (isdigit((unsigned char)*p) && (p == msg || !isdigit((unsigned char)p[-1]))) {
			char *end;
			if (strtol(p, &end, 10) == n)
				return true;
			p = end - 1;
		}
	}
	return false;
}

/* ---- vmstate_sections ----------------------------------------------------------------------- */

Test(vmstate_sections, snapshot_golden_stream)
{
	struct td_set s;
	size_t len;

	td_set_fill(&s);
	uint8_t *buf = save_set(&s, &test_cfg, &len);
	td_expect_bytes(buf, len, golden, sizeof(golden), "snapshot stream");
	cr_assert_eq(s.blob.setups, 1);
	cr_assert_eq(s.blob.iterates, 1);
	cr_assert_eq(s.blob.completes, 1);
	cr_assert_eq(s.legacy.saves, 1);
	free(buf);
}

Test(vmstate_sections, golden_stream_loads)
{
	struct td_set d;
	char msg[1024];

	memset(&d, 0, sizeof(d));
	int ret = load_with(golden, sizeof(golden), reg_set, &d, NULL, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);

	static const uint8_t iter_bytes[] = {0xaa, 0xbb, 0x00, 0x10, 0x01, 0x02, 0x03, 0xee};
	cr_assert_eq(d.blob.ngot, 8);
	cr_assert_arr_eq(d.blob.got, iter_bytes, 8);
	cr_assert_eq(d.blob.load_start, 1);
	cr_assert_eq(d.blob.load_part, 1);
	cr_assert_eq(d.blob.load_end, 1);
	cr_assert_eq(d.blob.load_version, 4);
	cr_assert_eq(d.blob.cleanups, 1, "cleanup ran %d times", d.blob.cleanups);
	cr_assert_arr_eq(d.legacy.data, "opaque", 6);
	cr_assert_eq(d.legacy.load_version, 3);
	cr_assert_eq(d.apic.id, 0x0f);
	cr_assert_eq(d.apic.lvt[3], 0x40);
	cr_assert_eq(d.apic.timer, -1);
	cr_assert_eq(d.outer.head, 0x11);
	cr_assert_eq(d.outer.in.x, 0x2233);
	cr_assert_eq(d.outer.in.extra, 0x55667788);
	cr_assert_eq(d.outer.tail, 0x99);
	cr_assert_eq(d.outer.more, 0xaabb);
	cr_assert_eq(d.small.w, 0x1234);
	cr_assert_eq(d.small.arr[2], 3);

	/* Without a vmdesc after EOF, a loader that requires one refuses the stream. */
	struct ferry_load_config req = {.machine = "ferry-test",
					.vmdesc_mode = FERRY_VMDESC_REQUIRED};
	memset(&d, 0, sizeof(d));
	ret = load_with(golden, sizeof(golden), reg_set, &d, &req, msg);
	cr_assert_lt(ret, 0, "REQUIRED vmdesc missing, yet the load succeeded");
	td_expect_errmsg(msg, OFF_EOF, sizeof(golden), NULL, NULL, NULL);
	cr_assert_eq(d.blob.cleanups, 1, "cleanup must run on failure too");
}

Test(vmstate_sections, configuration_with_capabilities_and_uuid)
{
	static const char *const caps[] = {"x-ignore-shared", "mapped-ram"};
	static const uint8_t uuid[16] = {0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
					 0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21};
	struct ferry_stream_config cfg = {
	    .machine = "mach", .capabilities = caps, .ncaps = 2, .uuid = uuid};
	/* clang-format off */
	static const uint8_t exp[] = {
	    0x51, 0x45, 0x56, 0x4d, 0x00, 0x00, 0x00, 0x03,
	    0x07, 0x00, 0x00, 0x00, 0x04, 'm', 'a', 'c', 'h',
	    0x05, 0x1a, 'c', 'o', 'n', 'f', 'i', 'g', 'u', 'r', 'a', 't', 'i', 'o', 'n',
	    '/', 'c', 'a', 'p', 'a', 'b', 'i', 'l', 'i', 't', 'i', 'e', 's',
	    0x00, 0x00, 0x00, 0x01, /* version */
	    0x00, 0x00, 0x00, 0x02, /* count */
	    0x0f, 'x', '-', 'i', 'g', 'n', 'o', 'r', 'e', '-', 's', 'h', 'a', 'r', 'e', 'd',
	    0x0a, 'm', 'a', 'p', 'p', 'e', 'd', '-', 'r', 'a', 'm',
	    0x05, 0x12, 'c', 'o', 'n', 'f', 'i', 'g', 'u', 'r', 'a', 't', 'i', 'o', 'n',
	    '/', 'u', 'u', 'i', 'd',
	    0x00, 0x00, 0x00, 0x01,
	    0x12, 0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde, 0xf0,
	    0x0f, 0xed, 0xcb, 0xa9, 0x87, 0x65, 0x43, 0x21,
	};
	/* clang-format on */
	struct ferry_writer *w;
	size_t len;

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_begin(w, &cfg), 0);
	const uint8_t *p = ferry_writer_mem_data(w, &len);
	td_expect_bytes(p, len, exp, sizeof(exp), "configuration with subsections");
	ferry_writer_destroy(w);

	/* Loaded with EOF appended: the destination's checks. */
	uint8_t in[sizeof(exp) + 1];
	memcpy(in, exp, sizeof(exp));
	in[sizeof(exp)] = 0x00;
	char msg[1024];
	static const char *const caps_rev[] = {"mapped-ram", "x-ignore-shared"};
	static const char *const caps_one[] = {"x-ignore-shared"};
	uint8_t other_uuid[16];
	memcpy(other_uuid, uuid, 16);
	other_uuid[15] ^= 1;

	struct ferry_load_config lc = {
	    .machine = "mach", .capabilities = caps, .ncaps = 2, .uuid = uuid};
	int ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);

	lc.capabilities = caps_rev; /* the same set in another order */
	ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);

	lc.capabilities = caps_one;
	lc.ncaps = 1;
	ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "capability sets differ: %d (%s): %s", ret,
		     ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 17, 84, "configuration", NULL, NULL);

	lc.capabilities = caps;
	lc.ncaps = 2;
	lc.uuid = other_uuid;
	ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "uuid differs: %d (%s): %s", ret, ferry_err_name(ret),
		     msg);
	td_expect_errmsg(msg, 84, sizeof(exp), "configuration", "UUID", NULL);

	/* A destination with no UUID set does not check it (FORMAT.md §4). */
	lc.uuid = NULL;
	ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);

	/* The stream has capabilities the destination does not have on. */
	lc.capabilities = NULL;
	lc.ncaps = 0;
	ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "%d (%s): %s", ret, ferry_err_name(ret), msg);
}

Test(vmstate_sections, configuration_plain_has_no_subsections)
{
	struct ferry_writer *w;
	size_t len;
	static const uint8_t exp[] = {HDR_BYTES, CONF_BYTES};

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_begin(w, &test_cfg), 0);
	const uint8_t *p = ferry_writer_mem_data(w, &len);
	td_expect_bytes(p, len, exp, sizeof(exp), "plain configuration");
	ferry_writer_destroy(w);

	/* A destination with capabilities on refuses a stream without them. */
	static const char *const caps[] = {"x-ignore-shared"};
	uint8_t in[sizeof(exp) + 1];
	memcpy(in, exp, sizeof(exp));
	in[sizeof(exp)] = 0;
	char msg[1024];
	struct ferry_load_config lc = {.machine = "ferry-test", .capabilities = caps, .ncaps = 1};
	int ret = load_with(in, sizeof(in), NULL, NULL, &lc, msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_CONF, sizeof(in), "configuration", NULL, NULL);
}

/* ---- vmdesc ---------------------------------------------------------------------------------- */

/*
 * Walk a stream whose FULL sections are described by @vmdesc, the way an
 * analyzer does: the configuration and every FULL payload are skipped by the
 * sizes the vmdesc gives, and each must land exactly on its footer (or, for
 * the configuration, on the next record). START/PART/END payloads of "blob"
 * are 4/3/1 bytes. Returns the offset of the EOF byte.
 */
static size_t walk_with_vmdesc(const uint8_t *buf, size_t len, const json_t *vmdesc)
{
	size_t pos = 8, ndev = 0;
	const json_t *devices = json_object_get(vmdesc, "devices");
	const json_t *conf = json_object_get(vmdesc, "configuration");

	cr_assert(json_is_object(conf), "vmdesc has no \"configuration\" object");
	cr_assert_eq(buf[pos], 0x07);
	pos += 1 + td_desc_payload(conf);
	for (;;) {
		cr_assert_lt(pos, len, "walked off the end of the stream");
		uint8_t type = buf[pos];
		if (type == 0x00)
			break;
		uint32_t id = (uint32_t)buf[pos + 1] << 24 | (uint32_t)buf[pos + 2] << 16 |
			      (uint32_t)buf[pos + 3] << 8 | buf[pos + 4];
		size_t payload;
		if (type == 0x01 || type == 0x04) {
			uint8_t nlen = buf[pos + 5];
			char name[256];
			memcpy(name, buf + pos + 6, nlen);
			name[nlen] = '\0';
			size_t hdr = 1 + 4 + 1 + nlen + 4 + 4;
			uint32_t inst = (uint32_t)buf[pos + 6 + nlen] << 24 |
					(uint32_t)buf[pos + 7 + nlen] << 16 |
					(uint32_t)buf[pos + 8 + nlen] << 8 | buf[pos + 9 + nlen];
			if (type == 0x01) {
				cr_assert_str_eq(name, "blob");
				payload = 4;
			} else {
				const json_t *dev = json_array_get(devices, ndev++);
				cr_assert(json_is_object(dev), "FULL '%s' has no vmdesc entry",
					  name);
				cr_assert_str_eq(json_string_value(json_object_get(dev, "name")),
						 name, "vmdesc device %zu", ndev - 1);
				cr_assert_eq(
				    json_integer_value(json_object_get(dev, "instance_id")), inst,
				    "'%s' instance", name);
				const json_t *sz = json_object_get(dev, "size");
				if (!json_object_get(dev, "vmsd_name")) {
					/* old style: one buffer "data" of "size" bytes */
					cr_assert(json_is_integer(sz), "'%s': no size", name);
					payload = (size_t)json_integer_value(sz);
					cr_assert_eq(td_desc_payload(dev), payload);
				} else {
					payload = td_desc_payload(dev);
				}
			}
			pos += hdr;
		} else {
			cr_assert(type == 0x02 || type == 0x03, "record type %#x at %zu", type,
				  pos);
			payload = type == 0x02 ? 3 : 1;
			pos += 5;
		}
		pos += payload;
		cr_assert_lt(pos + 4, len);
		cr_assert_eq(buf[pos], 0x7e, "no footer where the vmdesc sizes say (offset %zu)",
			     pos);
		uint32_t fid = (uint32_t)buf[pos + 1] << 24 | (uint32_t)buf[pos + 2] << 16 |
			       (uint32_t)buf[pos + 3] << 8 | buf[pos + 4];
		cr_assert_eq(fid, id, "footer id %u for section %u", fid, id);
		pos += 5;
	}
	cr_assert_eq(ndev, json_array_size(devices), "%zu FULL sections, %zu vmdesc devices", ndev,
		     json_array_size(devices));
	return pos;
}

/* The vmdesc trailer after golden[]: returns the parsed JSON. */
static json_t *trailer_json(const uint8_t *buf, size_t len, size_t eof)
{
	cr_assert_gt(len, eof + 5);
	cr_assert_eq(buf[eof], 0x00);
	cr_assert_eq(buf[eof + 1], 0x06, "no vmdesc record after EOF");
	uint32_t jlen = (uint32_t)buf[eof + 2] << 24 | (uint32_t)buf[eof + 3] << 16 |
			(uint32_t)buf[eof + 4] << 8 | buf[eof + 5];
	cr_assert_eq((size_t)eof + 6 + jlen, len, "vmdesc length %u does not end the stream", jlen);
	const char *js = (const char *)buf + eof + 6;
	cr_assert_null(memchr(js, '\0', jlen), "NUL inside the vmdesc");
	cr_assert_null(memchr(js, '\n', jlen), "newline inside the vmdesc (must be compact)");
	json_error_t err;
	json_t *j = json_loadb(js, jlen, 0, &err);
	cr_assert_not_null(j, "vmdesc is not JSON: %s at %d", err.text, err.position);
	return j;
}

Test(vmstate_sections, vmdesc_trailer)
{
	struct td_set s;
	size_t len;
	struct ferry_stream_config cfg = test_cfg;

	cfg.send_vmdesc = true;
	td_set_fill(&s);
	uint8_t *buf = save_set(&s, &cfg, &len);
	/* Everything up to EOF is the same as without the vmdesc. */
	cr_assert_gt(len, sizeof(golden));
	td_expect_bytes(buf, sizeof(golden), golden, sizeof(golden), "stream before the vmdesc");
	json_t *j = trailer_json(buf, len, OFF_EOF);

	/* Top-level keys in the 8.2+ order. */
	static const char *const keys[] = {"configuration", "page_size", "devices"};
	size_t k = 0;
	const char *key;
	json_t *val;
	json_object_foreach(j, key, val)
	{
		cr_assert_lt(k, 3, "extra top-level key '%s'", key);
		cr_assert_str_eq(key, keys[k], "top-level key %zu is '%s'", k, key);
		k++;
	}
	cr_assert_eq(k, 3);
	cr_assert_eq(json_integer_value(json_object_get(j, "page_size")), 4096);
	const json_t *conf = json_object_get(j, "configuration");
	cr_assert_str_eq(json_string_value(json_object_get(conf, "vmsd_name")), "configuration");
	cr_assert_eq(td_desc_payload(conf), PART_SIZE(CONF_BYTES) - 1,
		     "configuration described as %llu bytes",
		     (unsigned long long)td_desc_payload(conf));

	const json_t *devs = json_object_get(j, "devices");
	cr_assert_eq(json_array_size(devs), 4,
		     "one device per FULL section, not the iterative one");

	/* apic */
	const json_t *d = json_array_get(devs, 0);
	cr_assert_str_eq(json_string_value(json_object_get(d, "name")), "apic");
	cr_assert_eq(json_integer_value(json_object_get(d, "instance_id")), 0);
	cr_assert_str_eq(json_string_value(json_object_get(d, "vmsd_name")), "apic");
	cr_assert_eq(json_integer_value(json_object_get(d, "version")), 1);
	const json_t *f = json_object_get(d, "fields");
	cr_assert_eq(json_array_size(f), 3);
	td_expect_desc_field(json_array_get(f, 0), "id", "uint32", 4, 0);
	td_expect_desc_field(json_array_get(f, 1), "lvt", "uint8", 1, 4);
	td_expect_desc_field(json_array_get(f, 2), "timer", "timer", 8, 0);
	cr_assert_eq(json_array_size(json_object_get(d, "subsections")), 0);

	/* legacy-dev: old style */
	d = json_array_get(devs, 1);
	cr_assert_str_eq(json_string_value(json_object_get(d, "name")), "legacy-dev");
	cr_assert_eq(json_integer_value(json_object_get(d, "instance_id")), 0);
	cr_assert_eq(json_integer_value(json_object_get(d, "size")), 6);
	f = json_object_get(d, "fields");
	cr_assert_eq(json_array_size(f), 1);
	td_expect_desc_field(json_array_get(f, 0), "data", "buffer", 6, 0);

	/* outer: idstr differs from the vmsd name; instance 1; struct with subsection */
	d = json_array_get(devs, 2);
	cr_assert_str_eq(json_string_value(json_object_get(d, "name")), "0000:00:02.0/outer");
	cr_assert_eq(json_integer_value(json_object_get(d, "instance_id")), 1);
	cr_assert_str_eq(json_string_value(json_object_get(d, "vmsd_name")), "outer");
	f = json_object_get(d, "fields");
	cr_assert_eq(json_array_size(f), 3);
	td_expect_desc_field(json_array_get(f, 1), "in", "struct", 24, 0);
	cr_assert_eq(json_array_size(json_object_get(d, "subsections")), 1);

	/* low-dev */
	d = json_array_get(devs, 3);
	cr_assert_str_eq(json_string_value(json_object_get(d, "name")), "low-dev");
	cr_assert_str_eq(json_string_value(json_object_get(d, "vmsd_name")), "small");
	f = json_object_get(d, "fields");
	td_expect_desc_field(json_array_get(f, 0), "w", "uint16", 2, 0);
	td_expect_desc_field(json_array_get(f, 1), "arr", "uint8", 1, 3);

	/* And the sizes find every footer. */
	cr_assert_eq(walk_with_vmdesc(buf, len, j), OFF_EOF);

	/* The destination hands the JSON back as it was sent. */
	struct td_set dst;
	char *got = NULL, msg[1024];
	struct ferry_load_config lc = {
	    .machine = "ferry-test", .vmdesc_mode = FERRY_VMDESC_REQUIRED, .vmdesc = &got};
	memset(&dst, 0, sizeof(dst));
	int ret = load_with(buf, len, reg_set, &dst, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_not_null(got);
	cr_assert_eq(strlen(got), len - OFF_EOF - 6);
	cr_assert_eq(memcmp(got, buf + OFF_EOF + 6, strlen(got)), 0);
	free(got);
	json_decref(j);
	free(buf);
}

/* A larger set: the layered device, nested subsections, varrays, buffers. */
struct big_set {
	struct td_vnet vnet;
	struct td_subdev sub;
	struct td_varrays va;
	struct td_buffers bufs;
	struct td_equal eq;
	struct td_arrays arr;
	struct td_scalars sc;
	struct td_versioned ver;
};

static int reg_big(void *ctx, struct ferry_devices *devs)
{
	struct big_set *b = ctx;
	int ret = 0;
	ret |= ferry_devices_add(devs, "0000:00:03.0/virtio-net", 0, &td_vnet_v2_vmsd, &b->vnet);
	ret |= ferry_devices_add(devs, "subdev", 0, &td_subdev_vmsd, &b->sub);
	ret |= ferry_devices_add(devs, "varrays", 0, &td_varrays_vmsd, &b->va);
	ret |= ferry_devices_add(devs, "buffers", 0, &td_buffers_vmsd, &b->bufs);
	ret |= ferry_devices_add(devs, "equal", 0, &td_equal_vmsd, &b->eq);
	ret |= ferry_devices_add(devs, "arrays", 0, &td_arrays_vmsd, &b->arr);
	ret |= ferry_devices_add(devs, "scalars", 3, &td_scalars_vmsd, &b->sc);
	ret |= ferry_devices_add(devs, "versioned", 0, &td_versioned_vmsd, &b->ver);
	return ret;
}

Test(vmstate_sections, vmdesc_sizes_add_up_for_every_device)
{
	struct big_set b;
	memset(&b, 0, sizeof(b));
	td_vnet_fill(&b.vnet);
	b.sub = (struct td_subdev){.base = 1,
				   .a = 2,
				   .deep = 3,
				   .b = 4,
				   .want_a = true,
				   .want_deep = true,
				   .want_b = true};
	b.va = (struct td_varrays){.n8 = 3, .n32 = 5, .n16 = 2, .ni32 = 1};
	b.bufs.vlen = 7;
	b.ver.has_t = true;
	b.sc.timer = -1;

	struct ferry_devices *devs;
	struct ferry_writer *w;
	struct ferry_stream_config cfg = {.machine = "big", .send_vmdesc = true};
	size_t len;
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(reg_big(&b, devs), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_snapshot(w, devs, &cfg), 0);
	const uint8_t *buf = ferry_writer_mem_data(w, &len);

	/* Find EOF by walking with the vmdesc: the JSON is at the end, located by its length. */
	size_t eof = 0;
	for (size_t i = len - 1; i > 5; i--) {
		/* the trailer is 00 06 be32(len) json; the JSON starts with '{' */
		uint32_t jl = (uint32_t)buf[i - 4] << 24 | (uint32_t)buf[i - 3] << 16 |
			      (uint32_t)buf[i - 2] << 8 | buf[i - 1];
		if (buf[i] == '{' && buf[i - 5] == 0x06 && buf[i - 6] == 0x00 && i + jl == len) {
			eof = i - 6;
			break;
		}
	}
	cr_assert_gt(eof, 0, "no vmdesc trailer found");
	json_t *j = trailer_json(buf, len, eof);
	cr_assert_eq(json_integer_value(json_object_get(j, "page_size")), 4096,
		     "page_size 0 means 4096");
	cr_assert_eq(json_array_size(json_object_get(j, "devices")), 8);
	cr_assert_eq(walk_with_vmdesc(buf, len, j), eof);
	json_decref(j);
	ferry_writer_destroy(w);
	ferry_devices_destroy(devs);
}

/* ---- COMMAND records ---------------------------------------------------------------------------
 */

Test(vmstate_sections, command_golden_bytes)
{
	struct ferry_writer *w;
	size_t len;
	static const uint8_t one[4] = {0x00, 0x00, 0x00, 0x01};
	/* clang-format off */
	static const uint8_t exp[] = {
	    0x08, 0x00, 0x01, 0x00, 0x00,			  /* OPEN_RETURN_PATH */
	    0x08, 0x00, 0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01, /* PING 1 */
	    0x08, 0x00, 0x0b, 0x00, 0x00,			  /* SWITCHOVER_START */
	};
	/* clang-format on */
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_command(w, FERRY_CMD_OPEN_RETURN_PATH, NULL, 0), 0);
	cr_assert_eq(ferry_save_command(w, FERRY_CMD_PING, one, 4), 0);
	cr_assert_eq(ferry_save_command(w, FERRY_CMD_SWITCHOVER_START, NULL, 0), 0);
	const uint8_t *p = ferry_writer_mem_data(w, &len);
	td_expect_bytes(p, len, exp, sizeof(exp), "commands");
	ferry_writer_destroy(w);
}

struct cmd_log {
	int calls;
	uint16_t cmd[8];
	uint16_t len[8];
	uint8_t data[8][16];
	int fail;
};

static int record_cmd(void *opaque, uint16_t cmd, const uint8_t *data, uint16_t len)
{
	struct cmd_log *l = opaque;
	if (l->calls < 8) {
		l->cmd[l->calls] = cmd;
		l->len[l->calls] = len;
		memcpy(l->data[l->calls], data, len < 16 ? len : 16);
	}
	l->calls++;
	return l->fail;
}

/* header + configuration + @cmd (n bytes) + EOF into @out; returns the length. */
static size_t with_command(uint8_t *out, const uint8_t *cmd, size_t n)
{
	static const uint8_t head[] = {HDR_BYTES, CONF_BYTES};
	memcpy(out, head, sizeof(head));
	memcpy(out + sizeof(head), cmd, n);
	out[sizeof(head) + n] = 0x00;
	return sizeof(head) + n + 1;
}

Test(vmstate_sections, commands_on_load)
{
	uint8_t in[128];
	char msg[1024];
	size_t n;
	int ret;
	struct cmd_log log;
	struct ferry_load_config lc = {.machine = "ferry-test"};
	const size_t at = OFF_START; /* where the command begins */

	/* OPEN_RETURN_PATH and PING pass without a callback. */
	static const uint8_t orp_ping[] = {0x08, 0x00, 0x01, 0x00, 0x00, 0x08, 0x00,
					   0x02, 0x00, 0x04, 0x00, 0x00, 0x00, 0x01};
	n = with_command(in, orp_ping, sizeof(orp_ping));
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);

	/* Anything else without a callback is refused. */
	static const uint8_t listen[] = {0x08, 0x00, 0x04, 0x00, 0x00};
	n = with_command(in, listen, sizeof(listen));
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_lt(ret, 0, "POSTCOPY_LISTEN with no callback was accepted");
	td_expect_errmsg(msg, at, at + 5, NULL, NULL, NULL);

	/* With a callback, a known command reaches it with its payload. */
	static const uint8_t advise[] = {0x08, 0x00, 0x03, 0x00, 0x10, 0, 0, 0, 0,    0,   0,
					 0x10, 0x00, 0,	   0,	 0,    0, 0, 0, 0x10, 0x00};
	memset(&log, 0, sizeof(log));
	lc.command = record_cmd;
	lc.opaque = &log;
	n = with_command(in, advise, sizeof(advise));
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_eq(log.calls, 1);
	cr_assert_eq(log.cmd[0], FERRY_CMD_POSTCOPY_ADVISE);
	cr_assert_eq(log.len[0], 16);
	cr_assert_arr_eq(log.data[0], advise + 5, 16);

	/* A callback's error stops the load. */
	memset(&log, 0, sizeof(log));
	log.fail = -ECANCELED;
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_lt(ret, 0, "the callback's error was ignored");

	/* Unknown commands are refused before any callback: 99, 0 (INVALID), 12. */
	static const uint16_t unknown[] = {99, 0, 12};
	for (size_t i = 0; i < 3; i++) {
		uint8_t c[] = {0x08, (uint8_t)(unknown[i] >> 8), (uint8_t)unknown[i], 0x00, 0x00};
		memset(&log, 0, sizeof(log));
		n = with_command(in, c, sizeof(c));
		ret = load_with(in, n, NULL, NULL, &lc, msg);
		cr_assert_lt(ret, 0, "command %u accepted", unknown[i]);
		cr_assert_eq(log.calls, 0, "unknown command %u reached the callback", unknown[i]);
		td_expect_errmsg(msg, at, at + 5, NULL, NULL, NULL);
	}

	/* A fixed-length command with the wrong length: PING with 2 bytes. */
	static const uint8_t bad_ping[] = {0x08, 0x00, 0x02, 0x00, 0x02, 0x00, 0x01};
	memset(&log, 0, sizeof(log));
	n = with_command(in, bad_ping, sizeof(bad_ping));
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_lt(ret, 0, "PING of length 2 accepted");
	td_expect_errmsg(msg, at, at + 7, NULL, NULL, NULL);

	/* PACKAGED is refused even with a callback. */
	static const uint8_t packaged[] = {0x08, 0x00, 0x07, 0x00, 0x04,
					   0x00, 0x00, 0x00, 0x01, 0x00};
	memset(&log, 0, sizeof(log));
	n = with_command(in, packaged, sizeof(packaged));
	ret = load_with(in, n, NULL, NULL, &lc, msg);
	cr_assert_lt(ret, 0, "PACKAGED accepted");
	cr_assert_eq(log.calls, 0);
}

/* ---- vmstate_versions --------------------------------------------------------------------------
 */

/* One device under one idstr, saved with its description and loaded into another. */
static uint8_t *save_one(const char *idstr, const struct ferry_vmsd *vmsd, void *dev, size_t *len)
{
	struct ferry_devices *devs;
	struct ferry_writer *w;

	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(ferry_devices_add(devs, idstr, 0, vmsd, dev), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = ferry_save_snapshot(w, devs, &test_cfg);
	cr_assert_eq(ret, 0, "save: %d (%s)", ret, ferry_err_name(ret));
	const uint8_t *p = ferry_writer_mem_data(w, len);
	uint8_t *copy = malloc(*len);
	memcpy(copy, p, *len);
	ferry_writer_destroy(w);
	ferry_devices_destroy(devs);
	return copy;
}

struct one_dev {
	const char *idstr;
	const struct ferry_vmsd *vmsd;
	void *dev;
};

static int reg_one(void *ctx, struct ferry_devices *devs)
{
	struct one_dev *o = ctx;
	return ferry_devices_add(devs, o->idstr, 0, o->vmsd, o->dev);
}

#define VNET_ID "0000:00:03.0/virtio-net"

Test(vmstate_versions, older_stream_into_newer_description)
{
	struct td_vnet s, d;
	char msg[1024];
	size_t len;

	td_vnet_fill(&s);
	uint8_t *buf = save_one(VNET_ID, &td_vnet_v1_vmsd, &s, &len);
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 5;
	d.rss_key_len = 40;
	d.rss_on = true;
	struct one_dev o = {VNET_ID, &td_vnet_v2_vmsd, &d};
	int ret = load_with(buf, len, reg_one, &o, NULL, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_eq(d.pre_load_calls, 1);
	cr_assert_eq(d.core.vq[1].desc, s.core.vq[1].desc);
	cr_assert_eq(d.core.packed_wrap[3], 0x0004);
	cr_assert_eq(d.mtu, 1500);
	cr_assert_eq(d.link_up, true, "version-gated field absent: pre_load default expected");
	cr_assert_eq(d.rss_on, false, "subsection absent: pre_load default expected");
	cr_assert_eq(d.rss_key_len, 0);
	free(buf);

	/* The newer stream loads into the newer description with everything. */
	buf = save_one(VNET_ID, &td_vnet_v2_vmsd, &s, &len);
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 5;
	ret = load_with(buf, len, reg_one, &o, NULL, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_eq(d.link_up, false);
	cr_assert_eq(d.rss_on, true);
	cr_assert_eq(d.rss_key_len, 4);
	cr_assert_arr_eq(d.rss_key, s.rss_key, 4);
	free(buf);
}

Test(vmstate_versions, newer_stream_into_older_description_fails)
{
	struct td_vnet s, d;
	char msg[1024];
	size_t len;

	td_vnet_fill(&s);
	uint8_t *buf = save_one(VNET_ID, &td_vnet_v2_vmsd, &s, &len);
	memset(&d, 0, sizeof(d));
	d.pci.nvectors = 5;
	struct one_dev o = {VNET_ID, &td_vnet_v1_vmsd, &d};
	int ret = load_with(buf, len, reg_one, &o, NULL, msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	/* FULL header at 23: 1+4+1+23+4 bytes before the be32 version, which ends at 60 */
	td_expect_errmsg(msg, 23, 60, VNET_ID, NULL, NULL);
	cr_assert(has_number(msg, 2) && has_number(msg, 1), "both versions not named: %s", msg);
	free(buf);
}

static const struct ferry_vmsd gen_v1 = {
    .name = "gen",
    .version_id = 1,
    .minimum_version_id = 1,
    .fields =
	(const struct ferry_vms_field[]){FERRY_VMS_UINT32(struct td_subdev, base), FERRY_VMS_END()},
};
static const struct ferry_vmsd gen_v9_min7 = {
    .name = "gen",
    .version_id = 9,
    .minimum_version_id = 7,
    .fields =
	(const struct ferry_vms_field[]){FERRY_VMS_UINT32(struct td_subdev, base), FERRY_VMS_END()},
};

Test(vmstate_versions, stream_below_minimum_version_fails)
{
	struct td_subdev s = {.base = 42}, d = {0};
	char msg[1024];
	size_t len;

	uint8_t *buf = save_one("gen-dev", &gen_v1, &s, &len);
	struct one_dev o = {"gen-dev", &gen_v9_min7, &d};
	int ret = load_with(buf, len, reg_one, &o, NULL, msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 23, 23 + 1 + 4 + 1 + 7 + 4 + 4, "gen-dev", NULL, NULL);
	cr_assert(has_number(msg, 1) && has_number(msg, 7), "versions not named: %s", msg);
	free(buf);
}

Test(vmstate_versions, unknown_subsection_in_a_section_fails)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    HDR_BYTES, CONF_BYTES,
	    0x04, 0x00, 0x00, 0x00, 0x07, 0x06, 's', 'u', 'b', 'd', 'e', 'v',
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	    0x00, 0x00, 0x00, 0x01,
	    0x05, 0x08, 's', 'u', 'b', 'd', 'e', 'v', '/', 'q', 0x00, 0x00, 0x00, 0x01, 0x00,
	    0x7e, 0x00, 0x00, 0x00, 0x07,
	    0x00,
	};
	/* clang-format on */
	struct td_subdev d = {0};
	char msg[1024];
	struct one_dev o = {"subdev", &td_subdev_vmsd, &d};
	int ret = load_with(in, sizeof(in), reg_one, &o, NULL, msg);
	cr_assert_eq(ret, FERRY_ENOSUBSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	/* FULL at 23, base ends at 47, the subsection header at 47..61 */
	td_expect_errmsg(msg, 47, 61, "'subdev'", "subdev/q", NULL);
}

Test(vmstate_versions, subsections_in_another_order_in_a_section)
{
	/* clang-format off */
	static const uint8_t in[] = {
	    HDR_BYTES, CONF_BYTES,
	    0x04, 0x00, 0x00, 0x00, 0x07, 0x06, 's', 'u', 'b', 'd', 'e', 'v',
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	    0x00, 0x00, 0x00, 0x01,
	    0x05, 0x08, 's', 'u', 'b', 'd', 'e', 'v', '/', 'b', 0x00, 0x00, 0x00, 0x02, 0x0b,
	    0x05, 0x08, 's', 'u', 'b', 'd', 'e', 'v', '/', 'a', 0x00, 0x00, 0x00, 0x01, 0x00, 0x0a,
	    0x7e, 0x00, 0x00, 0x00, 0x07,
	    0x00,
	};
	/* clang-format on */
	struct td_subdev d = {0};
	char msg[1024];
	struct one_dev o = {"subdev", &td_subdev_vmsd, &d};
	int ret = load_with(in, sizeof(in), reg_one, &o, NULL, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_eq(d.base, 1);
	cr_assert_eq(d.a, 0x0a);
	cr_assert_eq(d.b, 0x0b);
}

/* Two hooked devices "a" and "b" at the same priority, registered in that order. */
struct hook_pair {
	struct td_hooked a, b;
};

static int reg_hooks(void *ctx, struct ferry_devices *devs)
{
	struct hook_pair *h = ctx;
	int ret = ferry_devices_add(devs, "hooked-a", 0, &td_hooked_vmsd, &h->a);
	return ret ? ret : ferry_devices_add(devs, "hooked-b", 0, &td_hooked_vmsd, &h->b);
}

static int save_hooks(struct hook_pair *h, uint8_t **out, size_t *len)
{
	struct ferry_devices *devs;
	struct ferry_writer *w;

	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(reg_hooks(h, devs), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	int ret = ferry_save_snapshot(w, devs, &test_cfg);
	const uint8_t *p = ferry_writer_mem_data(w, len);
	if (!p)
		*len = 0;
	*out = malloc(*len + 1);
	if (p)
		memcpy(*out, p, *len);
	ferry_writer_destroy(w);
	ferry_devices_destroy(devs);
	return ret;
}

Test(vmstate_versions, hook_order_on_save_and_load)
{
	struct hook_pair h = {.a = {.value = 0x100, .sub_val = 0x5a, .tag = "a"},
			      .b = {.value = 0x200, .sub_val = 0x6b, .tag = "b"}};
	uint8_t *buf;
	size_t len;
	char msg[1024];

	td_log_reset();
	cr_assert_eq(save_hooks(&h, &buf, &len), 0);
	cr_assert_str_eq(td_log_str(), "a.pre_save,a.sub.pre_save,a.sub.post_save,a.post_save,"
				       "b.pre_save,b.sub.pre_save,b.sub.post_save,b.post_save");
	cr_assert_eq(h.a.saved_copy, 0, "post_save did not run after the fields");
	/* pre_save ran before the fields: saved_copy = 2 * value is in the stream. */
	/* clang-format off */
	static const uint8_t a_section[] = {
	    0x04, 0x00, 0x00, 0x00, 0x00, 0x08, 'h', 'o', 'o', 'k', 'e', 'd', '-', 'a',
	    0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05,
	    0x00, 0x00, 0x01, 0x00, /* value */
	    0x00, 0x00, 0x02, 0x00, /* saved_copy, set by pre_save */
	    0x05, 0x0a, 'h', 'o', 'o', 'k', 'e', 'd', '/', 's', 'u', 'b', 0x00, 0x00, 0x00, 0x01,
	    0x5a,
	    0x7e, 0x00, 0x00, 0x00, 0x00,
	};
	/* clang-format on */
	cr_assert_geq(len, OFF_START + sizeof(a_section));
	td_expect_bytes(buf + OFF_START, sizeof(a_section), a_section, sizeof(a_section),
			"hooked-a section (ids from 0 in registration order)");

	struct hook_pair d = {.a = {.value = 0xdead, .tag = "a"},
			      .b = {.value = 0xbeef, .tag = "b"}};
	td_log_reset();
	int ret = load_with(buf, len, reg_hooks, &d, NULL, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	cr_assert_str_eq(td_log_str(), "a.pre_load,a.sub.pre_load,a.sub.post_load,a.post_load,"
				       "b.pre_load,b.sub.pre_load,b.sub.post_load,b.post_load");
	cr_assert_eq(d.a.value_at_pre_load, 0xdead, "pre_load ran after the fields");
	cr_assert_eq(d.a.value_at_post_load, 0x100, "post_load ran before the fields");
	cr_assert_eq(d.a.sub_at_post_load, 0x5a, "post_load ran before the subsection");
	cr_assert_eq(d.a.post_load_version, 5);
	cr_assert_eq(d.b.value, 0x200);
	cr_assert_eq(d.b.saved_copy, 0x400);
	cr_assert_eq(d.b.sub_val, 0x6b);
	free(buf);
}

Test(vmstate_versions, failing_pre_save_aborts_the_save)
{
	struct hook_pair h = {.a = {.value = 1, .tag = "a", .fail_pre_save = -EIO},
			      .b = {.value = 2, .tag = "b"}};
	uint8_t *buf;
	size_t len;

	td_log_reset();
	int ret = save_hooks(&h, &buf, &len);
	cr_assert_eq(ret, -EIO, "save returned %d (%s), not pre_save's -EIO", ret,
		     ferry_err_name(ret));
	cr_assert_null(strstr(td_log_str(), ",b.pre_save"), "the save went on after a failure: %s",
		       td_log_str());
	free(buf);
}

Test(vmstate_versions, failing_post_load_fails_the_load)
{
	struct hook_pair h = {.a = {.value = 1, .tag = "a"}, .b = {.value = 2, .tag = "b"}};
	uint8_t *buf;
	size_t len;
	char msg[1024];

	cr_assert_eq(save_hooks(&h, &buf, &len), 0);
	struct hook_pair d = {.a = {.tag = "a", .fail_post_load = -EPROTO}, .b = {.tag = "b"}};
	td_log_reset();
	int ret = load_with(buf, len, reg_hooks, &d, NULL, msg);
	cr_assert_lt(ret, 0, "post_load failed, the load did not");
	/* a's FULL section: header at OFF_START, payload ends before its footer */
	td_expect_errmsg(msg, OFF_START, OFF_START + 53, "hooked-a", NULL, NULL);
	cr_assert_null(strstr(td_log_str(), ",b.pre_load"),
		       "the load went on after a failure: %s (%s)", td_log_str(), msg);
	free(buf);
}

/* ---- every loader error: code, offset, and what it names ----------------------------------------
 */

/* A copy of golden[] with @n bytes at @at replaced by @rep (@m bytes). */
static uint8_t *golden_edit(size_t at, size_t n, const uint8_t *rep, size_t m, size_t *len)
{
	uint8_t *b = malloc(sizeof(golden) + m);
	memcpy(b, golden, at);
	if (m)
		memcpy(b + at, rep, m);
	memcpy(b + at + m, golden + at + n, sizeof(golden) - at - n);
	*len = sizeof(golden) - n + m;
	return b;
}

static int load_golden_edit(size_t at, size_t n, const uint8_t *rep, size_t m, char *msg)
{
	struct td_set d;
	size_t len;
	memset(&d, 0, sizeof(d));
	uint8_t *b = golden_edit(at, n, rep, m, &len);
	int ret = load_with(b, len, reg_set, &d, NULL, msg);
	free(b);
	return ret;
}

Test(vmstate_versions, bad_magic_and_file_version)
{
	char msg[1024];
	static const uint8_t qevn[] = {0x51, 0x45, 0x56, 0x4e};
	int ret = load_golden_edit(0, 4, qevn, 4, msg);
	cr_assert_eq(ret, FERRY_EBADMAGIC, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 0, 4, NULL, NULL, NULL);

	static const uint8_t v2[] = {0x00, 0x00, 0x00, 0x02};
	ret = load_golden_edit(4, 4, v2, 4, msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, 4, 8, NULL, NULL, NULL);

	static const uint8_t v4[] = {0x00, 0x00, 0x00, 0x04};
	ret = load_golden_edit(4, 4, v4, 4, msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
}

Test(vmstate_versions, machine_mismatch)
{
	char msg[1024];
	struct td_set d;
	memset(&d, 0, sizeof(d));
	struct ferry_load_config lc = {.machine = "ferry-prod"};
	int ret = load_with(golden, sizeof(golden), reg_set, &d, &lc, msg);
	cr_assert_eq(ret, FERRY_EMISMATCH, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_CONF, OFF_START, "ferry-test", NULL, NULL);

	/* NULL accepts any machine. */
	lc.machine = NULL;
	memset(&d, 0, sizeof(d));
	ret = load_with(golden, sizeof(golden), reg_set, &d, &lc, msg);
	cr_assert_eq(ret, 0, "%d (%s): %s", ret, ferry_err_name(ret), msg);
}

static int reg_set_without_low(void *ctx, struct ferry_devices *devs)
{
	struct td_set *s = ctx;
	int ret = ferry_devices_add_iterative(devs, "blob", 0, &td_iter_ops, &s->blob);
	ret |= ferry_devices_add_legacy(devs, "legacy-dev", 0, &td_legacy_ops, &s->legacy);
	ret |= ferry_devices_add(devs, "apic", 0, &td_apic_vmsd, &s->apic);
	ret |= ferry_devices_add(devs, "0000:00:02.0/outer", 1, &td_outer_vmsd, &s->outer);
	return ret;
}

static int reg_set_outer_instance0(void *ctx, struct ferry_devices *devs)
{
	struct td_set *s = ctx;
	int ret = ferry_devices_add_iterative(devs, "blob", 0, &td_iter_ops, &s->blob);
	ret |= ferry_devices_add(devs, "low-dev", 0, &td_small_low_vmsd, &s->small);
	ret |= ferry_devices_add_legacy(devs, "legacy-dev", 0, &td_legacy_ops, &s->legacy);
	ret |= ferry_devices_add(devs, "apic", 0, &td_apic_vmsd, &s->apic);
	ret |= ferry_devices_add(devs, "0000:00:02.0/outer", 0, &td_outer_vmsd, &s->outer);
	return ret;
}

Test(vmstate_versions, unknown_section_is_named)
{
	char msg[1024];
	struct td_set d;

	memset(&d, 0, sizeof(d));
	int ret = load_with(golden, sizeof(golden), reg_set_without_low, &d, NULL, msg);
	cr_assert_eq(ret, FERRY_ENOSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_LOW, OFF_LOW + 21, "low-dev", NULL, NULL);
	cr_assert_eq(d.blob.cleanups, 1, "cleanup must run on failure");

	memset(&d, 0, sizeof(d));
	ret = load_with(golden, sizeof(golden), reg_set_outer_instance0, &d, NULL, msg);
	cr_assert_eq(ret, FERRY_ENOSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_OUTER, OFF_OUTER + 32, "0000:00:02.0/outer", NULL, NULL);
	cr_assert(has_number(msg, 1), "instance 1 not named: %s", msg);
}

Test(vmstate_versions, part_for_unknown_section_id)
{
	char msg[1024];
	/* PART with id 9: no START introduced it. */
	static const uint8_t part9[] = {0x02, 0x00, 0x00, 0x00, 0x09};
	int ret = load_golden_edit(OFF_PART, 5, part9, 5, msg);
	cr_assert_eq(ret, FERRY_ENOSECTION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_PART, OFF_PART + 5, NULL, NULL, NULL);
}

Test(vmstate_versions, footer_missing_or_mismatched)
{
	char msg[1024];
	const size_t apic_footer = OFF_APIC + PART_SIZE(APIC_BYTES) - 5;
	cr_assert_eq(golden[apic_footer], 0x7e);

	/* wrong id in the footer */
	static const uint8_t id9[] = {0x7e, 0x00, 0x00, 0x00, 0x09};
	int ret = load_golden_edit(apic_footer, 5, id9, 5, msg);
	cr_assert_eq(ret, FERRY_EFOOTER, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, apic_footer, apic_footer + 5, "'apic'", NULL, NULL);

	/* not a footer byte */
	static const uint8_t x7f[] = {0x7f};
	ret = load_golden_edit(apic_footer, 1, x7f, 1, msg);
	cr_assert_eq(ret, FERRY_EFOOTER, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, apic_footer, apic_footer + 1, "'apic'", NULL, NULL);

	/* footer missing: the last section's footer removed, EOF follows the payload */
	const size_t low_footer = OFF_LOW + PART_SIZE(LOW_BYTES) - 5;
	ret = load_golden_edit(low_footer, 5, NULL, 0, msg);
	cr_assert_eq(ret, FERRY_EFOOTER, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, low_footer, low_footer + 1, "'low-dev'", NULL, NULL);

	/* the payload is one byte longer than the device reads */
	static const uint8_t extra[] = {0x00, 0x7e};
	ret = load_golden_edit(apic_footer, 1, extra, 2, msg);
	cr_assert_eq(ret, FERRY_EFOOTER, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, apic_footer, apic_footer + 1, "'apic'", NULL, NULL);

	/* the iterative handler's footer, too */
	const size_t start_footer = OFF_START + PART_SIZE(START_BYTES) - 5;
	ret = load_golden_edit(start_footer + 4, 1, (const uint8_t[]){0x01}, 1, msg);
	cr_assert_eq(ret, FERRY_EFOOTER, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, start_footer, start_footer + 5, "'blob'", NULL, NULL);
}

Test(vmstate_versions, legacy_section_version_too_new)
{
	char msg[1024];
	struct td_set d;
	memset(&d, 0, sizeof(d));
	static const uint8_t v4[] = {0x00, 0x00, 0x00, 0x04};
	/* legacy-dev's header version: after type, id, cstr(10), instance */
	const size_t at = OFF_LEGACY + 1 + 4 + 11 + 4;
	cr_assert_eq(golden[at + 3], 0x03);
	int ret = load_golden_edit(at, 4, v4, 4, msg);
	cr_assert_eq(ret, FERRY_EVERSION, "%d (%s): %s", ret, ferry_err_name(ret), msg);
	td_expect_errmsg(msg, OFF_LEGACY, at + 4, "legacy-dev", NULL, NULL);
	cr_assert(has_number(msg, 4) && has_number(msg, 3), "versions not named: %s", msg);
}

Test(vmstate_versions, invalid_top_level_records)
{
	char msg[1024];
	/* 0x05, 0x06 and 0x7e are not valid where a section may start (FORMAT.md §13), nor 0x09. */
	static const uint8_t bad[] = {0x05, 0x06, 0x7e, 0x09, 0xff};
	for (size_t i = 0; i < sizeof(bad); i++) {
		int ret = load_golden_edit(OFF_APIC, 0, &bad[i], 1, msg);
		cr_assert_eq(ret, FERRY_EBADSTREAM, "byte %#x: %d (%s): %s", bad[i], ret,
			     ferry_err_name(ret), msg);
		td_expect_errmsg(msg, OFF_APIC, OFF_APIC + 1, NULL, NULL, NULL);
	}
}

Test(vmstate_versions, duplicate_registration_refused)
{
	struct ferry_devices *devs;
	struct td_small a, b;
	cr_assert_eq(ferry_devices_create(&devs), 0);
	cr_assert_eq(ferry_devices_add(devs, "dup", 0, &td_small_low_vmsd, &a), 0);
	cr_assert_eq(ferry_devices_add(devs, "dup", 0, &td_small_low_vmsd, &b), -EEXIST);
	cr_assert_eq(ferry_devices_add(devs, "dup", 1, &td_small_low_vmsd, &b), 0);
	ferry_devices_destroy(devs);
}
