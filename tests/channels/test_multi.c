/* SPDX-License-Identifier: MIT */
/*
 * The multi-channel TCP data path (channels/multi.c) on its own, over real
 * loopback sockets: pages and zero runs landing in place, sync points,
 * MSG_ZEROCOPY, the handshake refusing strangers, and a destination fed
 * hostile packets built by hand from the documented wire format
 * (docs/data-path.md), which must refuse each before touching guest RAM.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <endian.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>
#include <ferry/log.h>
#include <ferry/multichannel.h>

#include "helpers.h"

#define PAGE	  4096u
#define BLK_PAGES 256u /* 1 MiB blocks */
#define MAGIC	  0x46525944u
#define T_PAGES	  1
#define T_SYNC	  2
#define T_END	  3
#define T_ACK	  4

static const uint8_t test_id[FERRY_DP_ID_LEN] = {1, 2,	3,  4,	5,  6,	7,  8,
						 9, 10, 11, 12, 13, 14, 15, 16};

/* ---- a destination under test ------------------------------------------------------------ */

struct dest {
	struct ferry_listener *l;
	uint8_t *ram[2];
	struct ferry_dp_block blocks[2];
	void *ctx;
	pthread_t th;
	int accept_ret;
	int port;
};

static void *accept_thread(void *arg)
{
	struct dest *d = arg;

	d->accept_ret = ferry_mc_dest_ops.accept(d->ctx);
	return NULL;
}

static void dest_start(struct dest *d, uint32_t lanes, int timeout_ms)
{
	struct ferry_uri uri;
	struct ferry_dp_dest_attr a = {
	    .uri = "tcp:127.0.0.1:0",
	    .blocks = d->blocks,
	    .nblocks = 2,
	    .page_size = PAGE,
	    .lanes = lanes,
	    .timeout_ms = timeout_ms,
	};

	memset(d, 0, sizeof(*d));
	for (int i = 0; i < 2; i++) {
		d->ram[i] = mmap(NULL, BLK_PAGES * PAGE, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(d->ram[i], MAP_FAILED);
		d->blocks[i] =
		    (struct ferry_dp_block){i ? "b1" : "b0", d->ram[i], BLK_PAGES * PAGE, -1};
	}
	cr_assert_eq(ferry_uri_parse("tcp:127.0.0.1:0", &uri), 0);
	cr_assert_eq(ferry_listener_create(&uri, &d->l), 0);
	d->port = ferry_listener_port(d->l);
	a.listener = d->l;
	memcpy(a.id, test_id, sizeof(a.id));
	cr_assert_eq(ferry_mc_dest_ops.create(&a, &d->ctx), 0);
	cr_assert_eq(pthread_create(&d->th, NULL, accept_thread, d), 0);
}

static int dest_accepted(struct dest *d)
{
	pthread_join(d->th, NULL);
	return d->accept_ret;
}

static void dest_free(struct dest *d)
{
	ferry_mc_dest_ops.close(d->ctx);
	ferry_listener_destroy(d->l);
	for (int i = 0; i < 2; i++)
		munmap(d->ram[i], BLK_PAGES * PAGE);
}

static bool ram_is_zero(const struct dest *d)
{
	for (int i = 0; i < 2; i++)
		for (size_t k = 0; k < BLK_PAGES * PAGE; k += 8)
			if (*(const uint64_t *)(const void *)(d->ram[i] + k))
				return false;
	return true;
}

/* ---- hand-built wire records ------------------------------------------------------------- */

static int raw_connect(int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	cr_assert_geq(fd, 0);
	cr_assert_eq(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	return fd;
}

static void put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static void put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static void put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

static void raw_send(int fd, const void *p, size_t n)
{
	cr_assert_eq(send(fd, p, n, MSG_NOSIGNAL), (ssize_t)n);
}

/* HELLO: magic, version 1, lane, lanes, flags 0, page size, id, 32 reserved zero bytes. */
static void hello(uint8_t out[64], uint16_t lane, uint16_t lanes, const uint8_t *id)
{
	memset(out, 0, 64);
	put32(out, MAGIC);
	put16(out + 4, 1);
	put16(out + 6, lane);
	put16(out + 8, lanes);
	put16(out + 10, 0);
	put32(out + 12, PAGE);
	memcpy(out + 16, id, FERRY_DP_ID_LEN);
}

/* Read the 16-byte WELCOME and return its status (-1 if none came). */
static int welcome(int fd)
{
	uint8_t w[16];
	uint32_t magic;
	uint16_t status;

	if (recv(fd, w, sizeof(w), MSG_WAITALL) != (ssize_t)sizeof(w))
		return -1;
	memcpy(&magic, w, 4);
	memcpy(&status, w + 6, 2);
	cr_assert_eq(be32toh(magic), MAGIC);
	return be16toh(status);
}

/* True when the peer closed the connection (after what it sent). */
static bool closed_by_peer(int fd)
{
	char c;
	struct timeval tv = {5, 0};

	setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	return recv(fd, &c, 1, 0) == 0;
}

/* A packet header: magic, type, flags, block, ndata, nzero, data pages, zero pages, seq. */
static void header(uint8_t out[32], uint16_t type, uint16_t flags, uint32_t block, uint16_t nd,
		   uint16_t nz, uint32_t dp, uint32_t zp, uint64_t seq)
{
	put32(out, MAGIC);
	put16(out + 4, type);
	put16(out + 6, flags);
	put32(out + 8, block);
	put16(out + 12, nd);
	put16(out + 14, nz);
	put32(out + 16, dp);
	put32(out + 20, zp);
	put64(out + 24, seq);
}

static void run_entry(uint8_t out[16], uint64_t first, uint32_t n, uint32_t reserved)
{
	put64(out, first);
	put32(out + 8, n);
	put32(out + 12, reserved);
}

/* A raw source lane 0 of 1, accepted by @d. */
static int raw_lane(struct dest *d)
{
	uint8_t h[64];
	int fd = raw_connect(d->port);

	hello(h, 0, 1, test_id);
	raw_send(fd, h, sizeof(h));
	cr_assert_eq(welcome(fd), 0);
	cr_assert_eq(dest_accepted(d), 0);
	return fd;
}

static void init(void)
{
	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
}

TestSuite(channels_multi, .init = init, .timeout = 60);

/* ---- the two halves together --------------------------------------------------------------- */

struct recv_ctx {
	void *ctx;
	uint32_t lane;
	int ret;
	uint64_t round;
	pthread_t th;
};

static void *recv_thread(void *arg)
{
	struct recv_ctx *r = arg;

	r->ret = ferry_mc_dest_ops.receive(r->ctx, r->lane, &r->round);
	return NULL;
}

static void recv_start(struct recv_ctx *r, void *ctx, uint32_t lane)
{
	r->ctx = ctx;
	r->lane = lane;
	r->ret = -1000;
	cr_assert_eq(pthread_create(&r->th, NULL, recv_thread, r), 0);
}

static int recv_join(struct recv_ctx *r)
{
	pthread_join(r->th, NULL);
	return r->ret;
}

static void roundtrip(uint32_t flags)
{
	struct dest d;
	uint8_t *src[2];
	struct ferry_dp_block sb[2];
	struct ferry_dp_source_attr a = {.blocks = sb,
					 .nblocks = 2,
					 .page_size = PAGE,
					 .lanes = 2,
					 .flags = flags,
					 .timeout_ms = 5000};
	struct ferry_dp_lane_stats st;
	struct recv_ctx r[2];
	char uri[64];
	void *s;

	dest_start(&d, 2, 5000);
	/* The destination's block 1 starts dirty: a zero run must clear it. */
	memset(d.ram[1], 0xee, BLK_PAGES * PAGE);
	for (int i = 0; i < 2; i++) {
		src[i] = mmap(NULL, BLK_PAGES * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (size_t k = 0; k < BLK_PAGES * PAGE; k++)
			src[i][k] = (uint8_t)(k * 7 + i * 13 + 1);
		sb[i] = (struct ferry_dp_block){i ? "b1" : "b0", src[i], BLK_PAGES * PAGE, -1};
	}
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", d.port);
	a.uri = uri;
	memcpy(a.id, test_id, sizeof(a.id));
	cr_assert_eq(ferry_mc_source_ops.create(&a, &s), 0);
	cr_assert_eq(ferry_mc_source_ops.connect(s), 0);
	cr_assert_eq(dest_accepted(&d), 0);

	/* Lane 0: all of block 0 in two runs; lane 1: block 1 as a zero run and pages 3-5. */
	{
		const struct ferry_dp_run l0[] = {{0, 0, 0, 200}, {0, 0, 200, 56}};
		const struct ferry_dp_run l1[] = {{1, FERRY_DP_RUN_ZERO, 0, BLK_PAGES}};
		const struct ferry_dp_run l1b[] = {{1, 0, 3, 3}};

		recv_start(&r[0], d.ctx, 0);
		recv_start(&r[1], d.ctx, 1);
		cr_assert_eq(ferry_mc_source_ops.send(s, 0, l0, 2), 0);
		cr_assert_eq(ferry_mc_source_ops.send(s, 1, l1, 1), 0);
		cr_assert_eq(ferry_mc_source_ops.flush(s, 0, 1), 0);
		cr_assert_eq(ferry_mc_source_ops.flush(s, 1, 1), 0);
		cr_assert_eq(recv_join(&r[0]), 1);
		cr_assert_eq(r[0].round, 1);
		cr_assert_eq(recv_join(&r[1]), 1);
		cr_assert_eq(memcmp(d.ram[0], src[0], BLK_PAGES * PAGE), 0);
		for (size_t k = 0; k < BLK_PAGES * PAGE; k++)
			cr_assert_eq(d.ram[1][k], 0, "byte %zu of block 1 not cleared", k);
		/* Round 2: the same page again on the same lane, newer content. */
		src[1][3 * PAGE] = 0x42;
		recv_start(&r[1], d.ctx, 1);
		cr_assert_eq(ferry_mc_source_ops.send(s, 1, l1b, 1), 0);
		cr_assert_eq(ferry_mc_source_ops.flush(s, 1, 2), 0);
		cr_assert_eq(recv_join(&r[1]), 1);
		cr_assert_eq(r[1].round, 2);
		cr_assert_eq(memcmp(d.ram[1] + 3 * PAGE, src[1] + 3 * PAGE, 3 * PAGE), 0);
		cr_assert_eq(d.ram[1][3 * PAGE], 0x42);
	}
	ferry_mc_source_ops.lane_stats(s, 0, &st);
	cr_assert_eq(st.pages, BLK_PAGES);
	cr_assert_eq(st.page_bytes, BLK_PAGES * PAGE);
	cr_assert_eq(st.memcpy_bytes, 0);
	cr_assert_eq(st.sync_round, 1);
	cr_assert_gt(st.wire_bytes, st.page_bytes);
	cr_assert_gt(st.syscalls, 0);
	if (flags & FERRY_DP_F_ZEROCOPY) {
		cr_assert_gt(st.zerocopy_sends, 0, "MSG_ZEROCOPY was not used");
		cr_log_info("zerocopy: %lu sends, %lu copied by the kernel",
			    (unsigned long)st.zerocopy_sends, (unsigned long)st.zerocopy_copied);
	}
	ferry_mc_dest_ops.lane_stats(d.ctx, 1, &st);
	cr_assert_eq(st.zero_pages, BLK_PAGES);
	cr_assert_eq(st.pages, 3);
	cr_assert_eq(st.sync_round, 2);
	cr_assert_eq(st.memcpy_bytes, 0);
	/* A normal end: END on each lane, receive() says so. */
	recv_start(&r[0], d.ctx, 0);
	recv_start(&r[1], d.ctx, 1);
	ferry_mc_source_ops.close(s, true);
	cr_assert_eq(recv_join(&r[0]), 0);
	cr_assert_eq(recv_join(&r[1]), 0);
	dest_free(&d);
	for (int i = 0; i < 2; i++)
		munmap(src[i], BLK_PAGES * PAGE);
}

Test(channels_multi, pages_and_zero_runs_land_in_place)
{
	roundtrip(0);
}

Test(channels_multi, zerocopy_sends_and_completions)
{
	roundtrip(FERRY_DP_F_ZEROCOPY);
}

/* ---- the handshake ------------------------------------------------------------------------- */

Test(channels_multi, wrong_id_is_refused_then_the_right_one_accepted)
{
	struct dest d;
	uint8_t h[64], bad[FERRY_DP_ID_LEN];
	int fd;

	dest_start(&d, 1, 5000);
	memcpy(bad, test_id, sizeof(bad));
	bad[15] ^= 1;
	fd = raw_connect(d.port);
	hello(h, 0, 1, bad);
	raw_send(fd, h, sizeof(h));
	cr_assert_eq(welcome(fd), 2, "a wrong id must be refused as such");
	cr_assert(closed_by_peer(fd));
	close(fd);
	/* The refusal did not count: the real lane still gets in. */
	fd = raw_lane(&d);
	close(fd);
	dest_free(&d);
}

Test(channels_multi, strangers_garbage_and_silence_are_dropped)
{
	struct dest d;
	uint8_t h[64];
	char junk[64] = "SSH-2.0-OpenSSH_9.2\r\n";
	int64_t t0;
	int g, q, dup1, dup2;

	dest_start(&d, 2, 10000);
	g = raw_connect(d.port);
	raw_send(g, junk, sizeof(junk));
	cr_assert_eq(welcome(g), 1, "not our protocol");
	cr_assert(closed_by_peer(g));
	close(g);
	/* Wrong lane count, then a lane index out of range. */
	g = raw_connect(d.port);
	hello(h, 0, 3, test_id);
	raw_send(g, h, sizeof(h));
	cr_assert_eq(welcome(g), 3);
	close(g);
	g = raw_connect(d.port);
	hello(h, 2, 2, test_id);
	raw_send(g, h, sizeof(h));
	cr_assert_eq(welcome(g), 3);
	close(g);
	/* Reserved bytes set. */
	g = raw_connect(d.port);
	hello(h, 0, 2, test_id);
	h[63] = 1;
	raw_send(g, h, sizeof(h));
	cr_assert_eq(welcome(g), 5);
	close(g);
	/* One that says nothing is dropped after the HELLO timeout. */
	t0 = ct_now_ms();
	q = raw_connect(d.port);
	dup1 = raw_connect(d.port);
	hello(h, 1, 2, test_id);
	raw_send(dup1, h, sizeof(h));
	cr_assert(closed_by_peer(q), "a silent connection must be dropped");
	cr_assert_geq(ct_now_ms() - t0, 1500);
	close(q);
	cr_assert_eq(welcome(dup1), 0);
	/* The same lane twice: the second is refused. */
	dup2 = raw_connect(d.port);
	raw_send(dup2, h, sizeof(h));
	cr_assert_eq(welcome(dup2), 4);
	close(dup2);
	g = raw_connect(d.port);
	hello(h, 0, 2, test_id);
	raw_send(g, h, sizeof(h));
	cr_assert_eq(welcome(g), 0);
	cr_assert_eq(dest_accepted(&d), 0);
	close(g);
	close(dup1);
	dest_free(&d);
}

Test(channels_multi, source_learns_it_was_refused)
{
	struct dest d;
	struct ferry_dp_block sb = {"b0", NULL, BLK_PAGES * PAGE, -1};
	struct ferry_dp_source_attr a = {
	    .blocks = &sb, .nblocks = 1, .page_size = PAGE, .lanes = 1, .timeout_ms = 3000};
	char uri[64];
	void *s;

	dest_start(&d, 1, 2000);
	sb.host = d.ram[0];
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", d.port);
	a.uri = uri;
	memset(a.id, 0x77, sizeof(a.id));
	cr_assert_eq(ferry_mc_source_ops.create(&a, &s), 0);
	cr_assert_eq(ferry_mc_source_ops.connect(s), FERRY_EPEERABORT);
	ferry_mc_source_ops.close(s, false);
	cr_assert_eq(dest_accepted(&d), -ETIMEDOUT);
	dest_free(&d);
}

Test(channels_multi, accept_gives_up_in_time_and_abort_cuts_it_short)
{
	struct dest d;
	int64_t t0 = ct_now_ms();

	dest_start(&d, 2, 700);
	cr_assert_eq(dest_accepted(&d), -ETIMEDOUT);
	cr_assert_lt(ct_now_ms() - t0, 3000);
	dest_free(&d);

	dest_start(&d, 2, 60000);
	usleep(100000);
	t0 = ct_now_ms();
	ferry_mc_dest_ops.abort(d.ctx);
	ferry_listener_shutdown(d.l);
	cr_assert_eq(dest_accepted(&d), -ECANCELED);
	cr_assert_lt(ct_now_ms() - t0, 2000);
	dest_free(&d);
}

Test(channels_multi, bad_parameters)
{
	struct ferry_dp_block b = {"b0", (uint8_t *)4096, BLK_PAGES * PAGE, -1};
	struct ferry_dp_source_attr a = {
	    .uri = "tcp:127.0.0.1:1", .blocks = &b, .nblocks = 1, .page_size = PAGE, .lanes = 0};
	struct ferry_dp_dest_attr da = {
	    .uri = "x", .blocks = &b, .nblocks = 1, .page_size = PAGE, .lanes = 1};
	void *ctx = (void *)1;

	cr_assert_eq(ferry_mc_source_ops.create(&a, &ctx), -EINVAL);
	cr_assert_null(ctx);
	a.lanes = FERRY_DP_MAX_LANES + 1;
	cr_assert_eq(ferry_mc_source_ops.create(&a, &ctx), -EINVAL);
	a.lanes = 1;
	a.page_size = 3000;
	cr_assert_eq(ferry_mc_source_ops.create(&a, &ctx), -EINVAL);
	/* The destination needs a listener to take lanes from. */
	cr_assert_eq(ferry_mc_dest_ops.create(&da, &ctx), -EINVAL);
	/* A source URI that is no socket. */
	a.page_size = PAGE;
	a.uri = "file:/tmp/x";
	cr_assert_eq(ferry_mc_source_ops.create(&a, &ctx), 0);
	cr_assert_eq(ferry_mc_source_ops.connect(ctx), FERRY_EBADURI);
	ferry_mc_source_ops.close(ctx, false);
}

/* ---- hostile packets ------------------------------------------------------------------------ */

/* Feed @len bytes after a good handshake; expect receive() to fail with @want, RAM untouched. */
static void hostile(const void *bytes, size_t len, bool then_close, int want, bool ram_untouched)
{
	struct dest d;
	uint64_t round = 0;
	int fd, ret;

	dest_start(&d, 1, 5000);
	fd = raw_lane(&d);
	if (len)
		raw_send(fd, bytes, len);
	if (then_close)
		shutdown(fd, SHUT_WR);
	ret = ferry_mc_dest_ops.receive(d.ctx, 0, &round);
	cr_assert_eq(ret, want, "receive() returned %d (%s), expected %d", ret, ferry_strerror(ret),
		     want);
	if (ram_untouched)
		cr_assert(ram_is_zero(&d), "guest RAM written by a refused packet");
	close(fd);
	dest_free(&d);
}

/* A PAGES packet of one data run, with its payload. */
static size_t one_run_packet(uint8_t *buf, uint32_t block, uint64_t first, uint32_t n,
			     uint32_t hdr_pages)
{
	header(buf, T_PAGES, 0, block, 1, 0, hdr_pages, 0, 1);
	run_entry(buf + 32, first, n, 0);
	memset(buf + 48, 0xab, (size_t)n * PAGE);
	return 48 + (size_t)n * PAGE;
}

Test(channels_multi, hostile_run_beyond_the_block)
{
	static uint8_t buf[48 + 2 * PAGE];
	size_t n = one_run_packet(buf, 0, BLK_PAGES - 1, 2, 2);

	hostile(buf, n, false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_run_with_a_huge_first_page)
{
	static uint8_t buf[48 + PAGE];
	size_t n = one_run_packet(buf, 0, UINT64_MAX - 1, 1, 1);

	hostile(buf, n, false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_block_out_of_range)
{
	static uint8_t buf[48 + PAGE];
	size_t n = one_run_packet(buf, 2, 0, 1, 1);

	hostile(buf, n, false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_page_count_mismatch)
{
	static uint8_t buf[48 + PAGE];
	size_t n = one_run_packet(buf, 0, 0, 1, 2);

	hostile(buf, n, false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_empty_run_and_reserved_bits)
{
	uint8_t buf[48];

	header(buf, T_PAGES, 0, 0, 0, 1, 0, 0, 1);
	run_entry(buf + 32, 0, 0, 0);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, T_PAGES, 0, 0, 0, 1, 0, 1, 1);
	run_entry(buf + 32, 0, 1, 7);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_counts_over_the_bounds)
{
	uint8_t buf[32];

	/* 513 runs, more than a packet may have: refused before the table is read. */
	header(buf, T_PAGES, 0, 0, 513, 0, 513, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, T_PAGES, 0, 0, 1, 0, 100000, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, T_PAGES, 0, 0, 0, 0, 0, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_magic_type_and_flags)
{
	uint8_t buf[32];

	header(buf, T_PAGES, 0, 0, 1, 0, 1, 0, 1);
	buf[0] ^= 0xff;
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, 9, 0, 0, 0, 0, 0, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, T_ACK, 0, 0, 0, 0, 0, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
	header(buf, T_PAGES, 1, 0, 1, 0, 1, 0, 1);
	hostile(buf, sizeof(buf), false, FERRY_EBADSTREAM, true);
}

Test(channels_multi, hostile_sync_rounds_must_grow)
{
	uint8_t buf[64];

	header(buf, T_SYNC, 0, 0, 0, 0, 0, 0, 0);
	hostile(buf, 32, false, FERRY_EBADSTREAM, true);
	/* Round 3, then round 3 again: the first is reported, the second refused. */
	{
		struct dest d;
		uint64_t round = 0;
		uint8_t ack[32];
		int fd;

		dest_start(&d, 1, 5000);
		fd = raw_lane(&d);
		header(buf, T_SYNC, 0, 0, 0, 0, 0, 0, 3);
		header(buf + 32, T_SYNC, 0, 0, 0, 0, 0, 0, 3);
		raw_send(fd, buf, 64);
		cr_assert_eq(ferry_mc_dest_ops.receive(d.ctx, 0, &round), 1);
		cr_assert_eq(round, 3);
		cr_assert_eq(recv(fd, ack, sizeof(ack), MSG_WAITALL), (ssize_t)sizeof(ack));
		cr_assert_eq(ack[5], T_ACK);
		cr_assert_eq(ack[31], 3);
		cr_assert_eq(ferry_mc_dest_ops.receive(d.ctx, 0, &round), FERRY_EBADSTREAM);
		close(fd);
		dest_free(&d);
	}
}

Test(channels_multi, truncated_and_closed_lanes)
{
	static uint8_t buf[48 + 4 * PAGE];
	size_t n = one_run_packet(buf, 0, 0, 4, 4);

	/* The payload stops half way: truncated (what arrived may be in place). */
	hostile(buf, n - 2 * PAGE, true, FERRY_ETRUNCATED, false);
	/* The header stops half way. */
	hostile(buf, 20, true, FERRY_ETRUNCATED, true);
	/* Closed between packets, without END: a reset, not a normal end. */
	hostile(NULL, 0, true, -ECONNRESET, true);
}

Test(channels_multi, abort_cuts_a_blocked_receive_short)
{
	struct dest d;
	struct recv_ctx r;
	int fd;

	dest_start(&d, 1, 5000);
	fd = raw_lane(&d);
	recv_start(&r, d.ctx, 0);
	usleep(100000);
	ferry_mc_dest_ops.abort(d.ctx);
	cr_assert_eq(recv_join(&r), -ECANCELED);
	close(fd);
	dest_free(&d);
}
