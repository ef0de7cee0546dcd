/* SPDX-License-Identifier: MIT */
/* Whole streams of the sample devices: save, load into fresh devices, compare. */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/savevm.h>

#include "bench/sample_devices.h"

static const struct ferry_stream_config cfg = {
    .machine = "ferry-sample", .page_size = 4096, .send_vmdesc = true};

static uint8_t *save_sample(struct bench_devices *d, size_t *len)
{
	struct ferry_devices *reg;
	struct ferry_writer *w;
	const uint8_t *p;
	uint8_t *copy;

	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(bench_devices_register(d, reg), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	cr_assert_eq(ferry_save_snapshot(w, reg, &cfg), 0);
	p = ferry_writer_mem_data(w, len);
	copy = malloc(*len);
	memcpy(copy, p, *len);
	ferry_writer_destroy(w);
	ferry_devices_destroy(reg);
	return copy;
}

static int load_sample(const uint8_t *buf, size_t len, struct bench_devices *d, char **vmdesc,
		       char *msg, size_t msglen)
{
	struct ferry_devices *reg;
	struct ferry_reader *r;
	struct ferry_load_config lc = {.machine = "ferry-sample", .vmdesc = vmdesc};
	int ret;

	cr_assert_eq(ferry_devices_create(&reg), 0);
	cr_assert_eq(bench_devices_register(d, reg), 0);
	cr_assert_eq(ferry_reader_create_mem(buf, len, &r), 0);
	ret = ferry_load(r, reg, &lc);
	snprintf(msg, msglen, "%s", ferry_reader_errmsg(r));
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	return ret;
}

Test(vmstate_roundtrip, sample_devices_equal_after_load)
{
	struct bench_devices src, dst;
	char why[64] = "", msg[600], *vmdesc = NULL;
	size_t len;

	for (uint32_t seed = 1; seed <= 20; seed++) {
		bench_devices_fill(&src, seed);
		/* Vary which subsections travel. */
		src.uart.fifo_len = seed % 3 ? src.uart.fifo_len : 0;
		src.vdev.packed = seed % 2;
		src.vdev.reset_pending = seed % 5 == 0;
		if (!src.vdev.packed)
			memset(src.vdev.packed_wrap, 0, sizeof(src.vdev.packed_wrap));
		if (!src.vdev.reset_pending)
			src.vdev.reset_mask = 0;
		uint8_t *buf = save_sample(&src, &len);
		memset(&dst, 0xa5, sizeof(dst));
		cr_assert_eq(load_sample(buf, len, &dst, &vmdesc, msg, sizeof(msg)), 0, "%s", msg);
		cr_assert_eq(bench_devices_compare(&src, &dst, why, sizeof(why)), 0,
			     "seed %u: %s differs", seed, why);
		cr_assert_not_null(vmdesc);
		json_error_t jerr;
		json_t *j = json_loads(vmdesc, 0, &jerr);
		cr_assert_not_null(j, "vmdesc is not JSON: %s", jerr.text);
		cr_assert_eq(json_array_size(json_object_get(j, "devices")), 3);
		json_decref(j);
		free(vmdesc);
		free(buf);
	}
}

Test(vmstate_roundtrip, every_truncation_fails)
{
	struct bench_devices src, dst;
	char msg[600];
	size_t len;

	bench_devices_fill(&src, 7);
	uint8_t *buf = save_sample(&src, &len);
	/* The vmdesc is optional for a file, so cutting exactly before it is a valid stream. */
	size_t eof_end = 0;
	for (size_t cut = 0; cut < len; cut++) {
		int ret = load_sample(buf, cut, &dst, NULL, msg, sizeof(msg));
		if (ret == 0) {
			cr_assert_eq(eof_end, 0, "two prefixes load: %zu and %zu", eof_end, cut);
			eof_end = cut;
			continue;
		}
		cr_assert_lt(ret, 0);
		cr_assert(strncmp(msg, "offset ", 7) == 0, "cut %zu: message '%s'", cut, msg);
	}
	cr_assert_gt(eof_end, 0);
	cr_assert_eq(buf[eof_end - 1], FERRY_VM_EOF);
	cr_assert_eq(buf[eof_end], FERRY_VM_VMDESCRIPTION);
	free(buf);
}

Test(vmstate_roundtrip, every_corrupted_byte_loads_or_fails_cleanly)
{
	struct bench_devices src, dst;
	char msg[600];
	size_t len;
	int failed = 0;

	bench_devices_fill(&src, 3);
	uint8_t *buf = save_sample(&src, &len);
	uint8_t *bad = malloc(len);
	for (size_t off = 0; off < len; off++) {
		static const uint8_t flips[] = {0xff, 0x01, 0x80};
		for (size_t k = 0; k < sizeof(flips); k++) {
			memcpy(bad, buf, len);
			bad[off] ^= flips[k];
			int ret = load_sample(bad, len, &dst, NULL, msg, sizeof(msg));
			if (ret < 0) {
				failed++;
				cr_assert(msg[0] != '\0', "offset %zu: error without a message",
					  off);
			}
		}
	}
	/* Most flips in the framing must be caught; field values may legitimately change. */
	cr_assert_gt(failed, 0);
	free(bad);
	free(buf);
}

Test(vmstate_roundtrip, newer_layout_loads_older_stream_subsection_absent)
{
	struct bench_devices src, dst;
	char why[64], msg[600];
	size_t len;

	bench_devices_fill(&src, 11);
	src.vdev.reset_pending = false; /* the "vdev/reset" subsection stays out */
	src.vdev.reset_mask = 0;
	uint8_t *buf = save_sample(&src, &len);
	bench_devices_fill(&dst, 99);
	dst.vdev.reset_pending = true; /* must be reset to the default by pre_load */
	cr_assert_eq(load_sample(buf, len, &dst, NULL, msg, sizeof(msg)), 0, "%s", msg);
	cr_assert_eq(bench_devices_compare(&src, &dst, why, sizeof(why)), 0, "%s differs", why);
	cr_assert_eq(dst.vdev.reset_pending, false);
	free(buf);
}
