/* SPDX-License-Identifier: MIT */
/*
 * fuzz_lanes: the destination side of the multi-channel data path
 * (channels/multi.c): one lane's HELLO, then its packets (PAGES with their
 * run tables and payload, SYNC, END), against two small registered blocks.
 *
 * The input goes into one end of a socketpair, which is then half-closed;
 * the other end is the lane, through the same HELLO check the engine's
 * accept uses (chan_mc_dest_admit) and then the worker's receive loop.
 *
 * Input layout: byte 0 picks the HELLO. Even: the harness sends a valid one
 * (this migration's id, lane 0 of 1) and the rest of the input is the
 * packets; odd: the rest of the input is the whole lane, HELLO included.
 *
 * Checks, besides the sanitizers: a refused HELLO never yields a lane; the
 * receive loop ends (every packet consumes input); nothing outside the
 * blocks is written (guard pages); a SYNC's round only grows.
 */
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/datapath.h>
#include <ferry/log.h>
#include <ferry/multichannel.h>

#include "channels/internal.h"
#include "fuzz_lanes.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

#define GUARD	   4096u
#define GUARD_FILL 0x5a
/* What one socketpair holds without a reader (the default buffers, with room to spare). */
#define MAX_INPUT (160u * 1024u)

static uint8_t *arena;
static struct ferry_listener *listener;
static struct ferry_dp_block blocks[2];
static char sock_dir[64];

static size_t arena_len(void)
{
	return GUARD + FZ_LANES_BLOCK0_PAGES * 4096u + GUARD + FZ_LANES_BLOCK1_PAGES * 4096u +
	       GUARD;
}

static void quiet(void *opaque, enum ferry_log_level level, const char *module, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)module;
	(void)msg;
}

static void cleanup(void)
{
	char path[128];

	ferry_listener_destroy(listener);
	snprintf(path, sizeof(path), "%s/l", sock_dir);
	unlink(path);
	rmdir(sock_dir);
}

static void setup_once(void)
{
	char text[160];
	struct ferry_uri uri;

	if (arena)
		return;
	ferry_set_log(quiet, NULL, FERRY_LOG_ERROR);
	arena = aligned_alloc(4096, arena_len());
	snprintf(sock_dir, sizeof(sock_dir), "/tmp/fuzz_lanes.XXXXXX");
	if (!arena || !mkdtemp(sock_dir))
		abort();
	/* create() wants the listener the lanes would come through; none comes here. */
	snprintf(text, sizeof(text), "unix:%s/l", sock_dir);
	if (ferry_uri_parse(text, &uri) < 0 || ferry_listener_create(&uri, &listener) < 0)
		abort();
	atexit(cleanup);
	blocks[0] = (struct ferry_dp_block){.name = "pc.ram",
					    .host = arena + GUARD,
					    .length = FZ_LANES_BLOCK0_PAGES * 4096u,
					    .numa_node = -1};
	blocks[1] =
	    (struct ferry_dp_block){.name = "vga.vram",
				    .host = arena + GUARD + FZ_LANES_BLOCK0_PAGES * 4096u + GUARD,
				    .length = FZ_LANES_BLOCK1_PAGES * 4096u,
				    .numa_node = -1};
}

static int write_all(int fd, const void *p, size_t len)
{
	while (len) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p = (const uint8_t *)p + n;
		len -= (size_t)n;
	}
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_dp_dest_attr attr = {
	    .uri = "unix:fuzz",
	    .blocks = blocks,
	    .nblocks = 2,
	    .page_size = 4096,
	    .lanes = 1,
	    .timeout_ms = 1000,
	};
	const struct ferry_dp_dest_ops *ops = &ferry_mc_dest_ops;
	struct ferry_channel *ch = NULL;
	struct ferry_uri uri = {.scheme = FERRY_URI_FD};
	void *ctx = NULL;
	uint64_t last_round = 0;
	int sv[2], ret, sndbuf = 1 << 20;

	if (size < 1 || size > MAX_INPUT)
		return 0;
	setup_once();
	attr.listener = listener;
	memcpy(attr.id, FZ_LANES_ID, FERRY_DP_ID_LEN);
	memset(arena, GUARD_FILL, arena_len());
	memset(blocks[0].host, 0, blocks[0].length);
	memset(blocks[1].host, 0, blocks[1].length);

	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0)
		abort();
	(void)setsockopt(sv[0], SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
	if (!(data[0] & 1)) {
		uint8_t hello[FZ_LANES_HELLO_LEN];

		fz_lanes_hello(hello, 0, 1);
		if (write_all(sv[0], hello, sizeof(hello)) < 0)
			abort();
	}
	if (write_all(sv[0], data + 1, size - 1) < 0)
		abort();
	shutdown(sv[0], SHUT_WR);

	uri.fd = sv[1];
	if (ferry_channel_open_incoming(&uri, 1000, &ch) < 0)
		abort();
	if (ops->create(&attr, &ctx) < 0)
		abort();
	ret = chan_mc_dest_admit(ctx, ch, chan_deadline(1000));
	if (ret != 0) {
		/* Refused or cut short: the connection is still ours. */
		ferry_channel_destroy(ch);
	} else {
		for (;;) {
			uint64_t round = 0;

			ret = ops->receive(ctx, 0, &round);
			if (ret != 1)
				break;
			CHECK(round > last_round);
			last_round = round;
		}
		CHECK(ret <= 0);
	}
	ops->close(ctx);
	close(sv[0]);
	for (size_t i = 0; i < GUARD; i++) {
		CHECK(arena[i] == GUARD_FILL);
		CHECK(arena[GUARD + blocks[0].length + i] == GUARD_FILL);
		CHECK(arena[arena_len() - GUARD + i] == GUARD_FILL);
	}
	return 0;
}
