/* SPDX-License-Identifier: MIT */
/*
 * fuzz_stream: the reader's primitives, driven by the input.
 *
 * Input layout: byte 0 is the length N of a program, bytes 1..N the program
 * (one operation per byte), the rest the stream the reader reads. The source
 * hands the stream over in chunks whose sizes also come from the program, so
 * every buffer-refill boundary gets hit.
 *
 * Checks, besides the sanitizers: the first error sticks; the offset never
 * goes back nor past the end; a counted string is as long as returned; and
 * the writer, fed the values the reader returned, reproduces the stream bytes
 * read so far exactly (so reader and writer agree on every encoding).
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/stream.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct chunked {
	const uint8_t *p;
	size_t len, pos;
	const uint8_t *sizes; /* chunk sizes, cycled */
	size_t nsizes, next;
};

static ssize_t chunked_read(void *opaque, void *buf, size_t len)
{
	struct chunked *c = opaque;
	size_t n = c->len - c->pos;

	if (n == 0)
		return 0;
	if (c->nsizes) {
		size_t want = (size_t)c->sizes[c->next++ % c->nsizes] * 37 % 4099 + 1;
		if (n > want)
			n = want;
	}
	if (n > len)
		n = len;
	memcpy(buf, c->p + c->pos, n);
	c->pos += n;
	return (ssize_t)n;
}

static const struct ferry_source_ops chunked_ops = {.read = chunked_read};

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static uint8_t buf[1 << 16];
	struct chunked src = {0};
	struct ferry_reader *r;
	struct ferry_writer *w;
	const uint8_t *prog;
	size_t nprog;
	uint64_t good_off = 0, last_off = 0;
	int first_err = 0;

	if (size < 1)
		return 0;
	nprog = data[0];
	if (nprog > size - 1)
		nprog = size - 1;
	prog = data + 1;
	src.p = data + 1 + nprog;
	src.len = size - 1 - nprog;
	src.sizes = prog;
	src.nsizes = nprog;
	if (ferry_reader_create(&chunked_ops, &src, &r) < 0 || ferry_writer_create_mem(0, &w) < 0)
		abort();

	for (size_t pc = 0; pc < nprog; pc++) {
		uint8_t op = prog[pc], arg = pc + 1 < nprog ? prog[pc + 1] : 0;
		size_t n = (size_t)arg * (op >> 4) + (op >> 4); /* 0..4080 */
		char s[256];
		int ret;

		switch (op & 0x0f) {
		case 0: {
			uint8_t v = ferry_get_u8(r);
			if (!ferry_reader_error(r))
				ferry_put_u8(w, v);
			break;
		}
		case 1: {
			uint16_t v = ferry_get_be16(r);
			if (!ferry_reader_error(r))
				ferry_put_be16(w, v);
			break;
		}
		case 2: {
			uint32_t v = ferry_get_be32(r);
			if (!ferry_reader_error(r))
				ferry_put_be32(w, v);
			break;
		}
		case 3: {
			uint64_t v = ferry_get_be64(r);
			if (!ferry_reader_error(r))
				ferry_put_be64(w, v);
			break;
		}
		case 4:
			/* Large reads take the direct path into the destination. */
			n = n * 16 % sizeof(buf);
			if (ferry_get_buffer(r, buf, n) == 0)
				ferry_put_buffer(w, buf, n);
			break;
		case 5:
			ret = ferry_get_cstr(r, s);
			if (ret >= 0) {
				CHECK(ret <= 255 && s[ret] == '\0');
				ferry_put_u8(w, (uint8_t)ret);
				ferry_put_buffer(w, s, (size_t)ret);
			}
			break;
		case 6: {
			uint64_t before = ferry_reader_offset(r);
			if (ferry_reader_skip(r, n) == 0) {
				CHECK(ferry_reader_offset(r) == before + n);
				ferry_put_buffer(w, src.p + before, n);
			}
			break;
		}
		case 7:
			ret = ferry_peek_u8(r);
			if (ret >= 0)
				CHECK(ferry_reader_offset(r) < src.len &&
				      (uint8_t)ret == src.p[ferry_reader_offset(r)]);
			break;
		case 8: {
			/* Up to 1100: past the documented 1024 limit must be -EINVAL. */
			size_t len = n % 1101;
			uint64_t off = ferry_reader_offset(r);
			ret = ferry_peek_buffer(r, buf, len);
			if (len > 1024 && !ferry_reader_error(r))
				CHECK(ret == -EINVAL);
			if (ret > 0) {
				CHECK((size_t)ret <= len && off + (size_t)ret <= src.len);
				CHECK(memcmp(buf, src.p + off, (size_t)ret) == 0);
			}
			CHECK(ferry_reader_offset(r) == off);
			break;
		}
		case 9:
			(void)ferry_reader_at_eof(r);
			break;
		case 10:
			/* An error set by a user of the reader also sticks. */
			if (arg == 0xee)
				ferry_reader_fail(r, FERRY_EBADSTREAM, "op %zu", pc);
			break;
		case 11:
			ferry_reader_context(r, "ctx %zu", pc);
			break;
		default:
			pc++; /* the next byte was this one's argument */
			break;
		}

		uint64_t off = ferry_reader_offset(r);
		CHECK(off >= last_off && off <= src.len);
		last_off = off;
		if (first_err) {
			CHECK(ferry_reader_error(r) == first_err);
		} else if (ferry_reader_error(r)) {
			first_err = ferry_reader_error(r);
			CHECK(first_err < 0);
		} else {
			good_off = off;
		}
	}

	/* What the writer wrote is what the reader consumed, up to the first error. */
	size_t wlen;
	const uint8_t *wdata = ferry_writer_mem_data(w, &wlen);
	CHECK(wdata != NULL || wlen == 0);
	CHECK(wlen == good_off);
	CHECK(wlen == 0 || memcmp(wdata, src.p, wlen) == 0);
	if (first_err)
		CHECK(ferry_reader_errmsg(r) != NULL);

	ferry_writer_destroy(w);
	ferry_reader_destroy(r);
	return 0;
}
