/* SPDX-License-Identifier: MIT */
/* The stream layer: golden bytes of the primitives, errors that stick, truncation. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <pthread.h>
#include <stdint.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/stream.h>

static const uint8_t *mem_bytes(struct ferry_writer *w, size_t *len)
{
	const uint8_t *p = ferry_writer_mem_data(w, len);
	cr_assert_not_null(p);
	return p;
}

Test(vmstate_stream, primitives_golden_bytes)
{
	/* FORMAT.md §1: big-endian, be64 as two be32 high first, cstr = u8 len + bytes. */
	static const uint8_t expect[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef,
					 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07,
					 0x08, 0x03, 'r',  'a',	 'm',  0x00, 0xff};
	struct ferry_writer *w;
	size_t len;

	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	ferry_put_u8(w, 0xab);
	ferry_put_be16(w, 0x1234);
	ferry_put_be32(w, 0xdeadbeef);
	ferry_put_be64(w, 0x0102030405060708ull);
	ferry_put_cstr(w, "ram");
	ferry_put_buffer(w, "\x00\xff", 2);
	cr_assert_eq(ferry_writer_offset(w), sizeof(expect));
	const uint8_t *p = mem_bytes(w, &len);
	cr_assert_eq(len, sizeof(expect));
	cr_assert_arr_eq(p, expect, sizeof(expect));
	cr_assert_eq(ferry_writer_close(w), 0);
}

Test(vmstate_stream, read_back_primitives)
{
	static const uint8_t in[] = {0xab, 0x12, 0x34, 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02, 0x03,
				     0x04, 0x05, 0x06, 0x07, 0x08, 0x03, 'r',  'a',  'm'};
	struct ferry_reader *r;
	char name[256];

	cr_assert_eq(ferry_reader_create_mem(in, sizeof(in), &r), 0);
	cr_assert_eq(ferry_peek_u8(r), 0xab);
	cr_assert_eq(ferry_get_u8(r), 0xab);
	cr_assert_eq(ferry_get_be16(r), 0x1234);
	cr_assert_eq(ferry_get_be32(r), 0xdeadbeef);
	cr_assert_eq(ferry_get_be64(r), 0x0102030405060708ull);
	cr_assert_eq(ferry_get_cstr(r, name), 3);
	cr_assert_str_eq(name, "ram");
	cr_assert(ferry_reader_at_eof(r));
	cr_assert_eq(ferry_reader_error(r), 0);
	cr_assert_eq(ferry_reader_offset(r), sizeof(in));
	ferry_reader_destroy(r);
}

Test(vmstate_stream, cstr_too_long_is_an_error)
{
	char s[300];
	struct ferry_writer *w;

	memset(s, 'x', sizeof(s) - 1);
	s[sizeof(s) - 1] = '\0';
	cr_assert_eq(ferry_writer_create_mem(0, &w), 0);
	ferry_put_cstr(w, s);
	cr_assert_eq(ferry_writer_error(w), FERRY_ELIMIT);
	/* The error sticks: later puts are dropped, close reports it. */
	ferry_put_be32(w, 1);
	cr_assert_eq(ferry_writer_close(w), FERRY_ELIMIT);
}

Test(vmstate_stream, every_truncation_fails_with_offset)
{
	static const uint8_t in[] = {0x00, 0x00, 0x00, 0x07, 0x04, 'a', 'b', 'c', 'd'};

	for (size_t cut = 0; cut < sizeof(in); cut++) {
		struct ferry_reader *r;
		char name[256];

		cr_assert_eq(ferry_reader_create_mem(in, cut, &r), 0);
		uint32_t v = ferry_get_be32(r);
		int n = ferry_get_cstr(r, name);
		cr_assert_eq(ferry_reader_error(r), FERRY_ETRUNCATED, "cut %zu", cut);
		cr_assert_lt(n, 0);
		cr_assert(cut >= 4 || v == 0);
		/* The message says where the stream ended. */
		/* Partial reads consume what is there: the stream ends at @cut. */
		char want[64];
		snprintf(want, sizeof(want), "offset %zu: stream ends here", cut);
		cr_assert(strncmp(ferry_reader_errmsg(r), want, strlen(want)) == 0, "%s",
			  ferry_reader_errmsg(r));
		ferry_reader_destroy(r);
	}
}

Test(vmstate_stream, error_context_nests)
{
	static const uint8_t in[] = {0x01};
	struct ferry_reader *r;

	cr_assert_eq(ferry_reader_create_mem(in, sizeof(in), &r), 0);
	ferry_get_u8(r);
	ferry_reader_fail(r, FERRY_EVERSION, "version %d > max %d", 3, 2);
	ferry_reader_context(r, "field '%s'", "lsr");
	ferry_reader_context(r, "section '%s' instance %d", "serial", 0);
	cr_assert_str_eq(ferry_reader_errmsg(r),
			 "offset 1: section 'serial' instance 0: field 'lsr': version 3 > max 2");
	/* A second failure does not overwrite the first. */
	cr_assert_eq(ferry_reader_fail(r, FERRY_EBADSTREAM, "later"), FERRY_EVERSION);
	ferry_reader_destroy(r);
}

/* Pages written by reference and read back through a real pipe, in place. */
enum { PIPE_PAGES = 64, PAGE = 4096 };
static uint8_t pipe_src[PIPE_PAGES * PAGE], pipe_dst[PIPE_PAGES * PAGE];

static void *pipe_writer(void *arg)
{
	struct ferry_writer *w = arg;

	for (int i = 0; i < PIPE_PAGES; i++) {
		ferry_put_be64(w, (uint64_t)i * PAGE | 0x08);
		ferry_put_buffer_ref(w, pipe_src + (size_t)i * PAGE, PAGE);
	}
	return (void *)(intptr_t)ferry_writer_close(w);
}

Test(vmstate_stream, buffer_ref_and_direct_read_over_pipe)
{
	int fds[2];
	struct ferry_writer *w;
	struct ferry_reader *r;
	pthread_t th;
	void *wret;

	for (size_t i = 0; i < sizeof(pipe_src); i++)
		pipe_src[i] = (uint8_t)(i * 7 + i / PAGE);
	cr_assert_eq(pipe(fds), 0);
	cr_assert_eq(ferry_writer_create_fd(fds[1], true, &w), 0);
	cr_assert_eq(ferry_reader_create_fd(fds[0], true, &r), 0);
	cr_assert_eq(pthread_create(&th, NULL, pipe_writer, w), 0);
	for (int i = 0; i < PIPE_PAGES; i++) {
		uint64_t hdr = ferry_get_be64(r);
		cr_assert_eq(hdr, (uint64_t)i * PAGE | 0x08);
		cr_assert_eq(ferry_get_buffer(r, pipe_dst + (hdr & ~0xfffull), PAGE), 0);
	}
	cr_assert_eq(pthread_join(th, &wret), 0);
	cr_assert_eq((intptr_t)wret, 0);
	cr_assert(ferry_reader_at_eof(r));
	cr_assert_arr_eq(pipe_dst, pipe_src, sizeof(pipe_src));
	ferry_reader_destroy(r);
}

Test(vmstate_stream, closed_peer_is_an_error_not_a_signal)
{
	int sv[2];
	struct ferry_writer *w;
	static uint8_t big[1 << 20];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	close(sv[1]);
	cr_assert_eq(ferry_writer_create_fd(sv[0], true, &w), 0);
	ferry_put_buffer_ref(w, big, sizeof(big));
	cr_assert_eq(ferry_writer_flush(w), -EPIPE);
	cr_assert_eq(ferry_writer_close(w), -EPIPE);
}

Test(vmstate_stream, mem_writer_limit)
{
	struct ferry_writer *w;
	static uint8_t big[8192];

	cr_assert_eq(ferry_writer_create_mem(4096, &w), 0);
	ferry_put_buffer(w, big, sizeof(big));
	cr_assert_eq(ferry_writer_flush(w), FERRY_ELIMIT);
	ferry_writer_destroy(w);
}
