/* SPDX-License-Identifier: MIT */
/*
 * bench_ctrl: the two-host control protocol. Every message round-trips; the
 * header's bytes are fixed; truncated, padded and corrupted messages and
 * out-of-range values are refused; the socket reader bounds what it reads.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/error.h>

#include "ctrl.h"

#define MIB (1ull << 20)

static struct bench_msg run_msg(void)
{
	struct bench_msg m = {.type = BENCH_MSG_RUN};

	m.u.run.sc = (struct bench_scenario){.index = 7,
					     .ram_bytes = 256 * MIB,
					     .dirty_rate = 50 * MIB,
					     .pattern = BENCH_PATTERN_HOT,
					     .transport = BENCH_TR_RDMA,
					     .channels = 4,
					     .reg = 2,
					     .page_size = 2 * MIB,
					     .downtime_ms = 300,
					     .vcpus = 2};
	m.u.run.rep = 1;
	m.u.run.seed = 42;
	m.u.run.timeout_ms = 120000;
	return m;
}

static struct bench_msg all_msgs(int i)
{
	struct bench_msg m = {0};

	switch (i) {
	case 0:
		m.type = BENCH_MSG_HELLO;
		m.u.hello.max_ram = 4ull << 30;
		break;
	case 1:
		m = run_msg();
		break;
	case 2:
		m.type = BENCH_MSG_READY;
		m.u.ready.port = 45678;
		break;
	case 3:
		m.type = BENCH_MSG_RESULT;
		m.u.result.verified = 1;
		strcpy(m.u.result.status, "completed");
		m.u.result.cpu_us = 123456;
		m.u.result.memcpy_bytes = 1ull << 33;
		strcpy(m.u.result.verify_error, "none");
		m.u.result.registration_us = 4321;
		break;
	case 4:
		m.type = BENCH_MSG_CEIL;
		m.u.ceil.transport = BENCH_TR_TCP;
		m.u.ceil.streams = 2;
		m.u.ceil.msg_size = 2 * MIB;
		m.u.ceil.ms = 2000;
		break;
	case 5:
		m.type = BENCH_MSG_CEIL_RESULT;
		m.u.ceil_result.bytes = 1ull << 34;
		m.u.ceil_result.ns = 2000000000;
		break;
	case 6:
		m.type = BENCH_MSG_ERROR;
		m.u.error.code = -EINVAL;
		strcpy(m.u.error.msg, "guest larger than --max-ram");
		break;
	default:
		m.type = BENCH_MSG_BYE;
		break;
	}
	return m;
}

Test(bench_ctrl, every_message_round_trips)
{
	for (int i = 0; i < 8; i++) {
		struct bench_msg m = all_msgs(i), back;
		uint8_t buf[BENCH_CTRL_MAX];
		int len = bench_msg_to_wire(&m, buf, sizeof(buf));

		cr_assert_gt(len, 0);
		cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), 0, "message %d", i);
		cr_assert_eq(back.type, m.type);
		cr_assert_eq(memcmp(&back.u, &m.u, sizeof(m.u)), 0, "message %d changed", i);
	}
}

Test(bench_ctrl, header_bytes)
{
	struct bench_msg m = all_msgs(2);
	uint8_t buf[BENCH_CTRL_MAX];
	static const uint8_t golden[] = {
	    'F', 'B', 'N', 'C', 1, 0, BENCH_MSG_READY, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0x6e, 0xb2,
	    0,	 0,   0,   0,	0, 0};

	cr_assert_eq(bench_msg_to_wire(&m, buf, sizeof(buf)), 24);
	cr_assert_arr_eq(buf, golden, sizeof(golden));
	m = run_msg();
	cr_assert_eq(bench_msg_to_wire(&m, buf, sizeof(buf)), BENCH_CTRL_HDR + BENCH_RUN_LEN);
	/* ram at payload offset 8, little-endian */
	cr_assert_eq(buf[16 + 8 + 3], 0x10);
	cr_assert_eq(bench_msg_to_wire(&m, buf, 40), -EINVAL); /* no room */
}

Test(bench_ctrl, truncated_and_padded_messages_are_refused)
{
	for (int i = 0; i < 8; i++) {
		struct bench_msg m = all_msgs(i), back;
		uint8_t buf[BENCH_CTRL_MAX + 1];
		int len = bench_msg_to_wire(&m, buf, sizeof(buf));

		for (int cut = 0; cut < len; cut++)
			cr_assert_eq(bench_msg_from_wire(buf, (size_t)cut, &back), FERRY_EBADSTREAM,
				     "message %d cut at %d accepted", i, cut);
		buf[len] = 0;
		cr_assert_eq(bench_msg_from_wire(buf, (size_t)len + 1, &back), FERRY_EBADSTREAM);
	}
}

Test(bench_ctrl, corrupt_headers_are_refused)
{
	struct bench_msg m = all_msgs(0), back;
	uint8_t good[BENCH_CTRL_MAX], buf[BENCH_CTRL_MAX];
	int len = bench_msg_to_wire(&m, good, sizeof(good));

	/* Any single changed byte of the header breaks it, except none. */
	for (int at = 0; at < BENCH_CTRL_HDR; at++) {
		memcpy(buf, good, (size_t)len);
		buf[at] ^= 0x40;
		cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM,
			     "header byte %d flipped, accepted", at);
	}
	/* A type this version does not know, with any length. */
	memcpy(buf, good, (size_t)len);
	buf[6] = 99;
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* HELLO's own version field and reserved word. */
	memcpy(buf, good, (size_t)len);
	buf[16] = 2;
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	memcpy(buf, good, (size_t)len);
	buf[20] = 1;
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
}

/* Encode RUN, patch payload bytes at @off with @v (width @w), decode. */
static int run_with(size_t off, uint64_t v, int w)
{
	struct bench_msg m = run_msg(), back;
	uint8_t buf[BENCH_CTRL_MAX];
	int len = bench_msg_to_wire(&m, buf, sizeof(buf));

	for (int i = 0; i < w; i++)
		buf[BENCH_CTRL_HDR + off + (size_t)i] = (uint8_t)(v >> (8 * i));
	return bench_msg_from_wire(buf, (size_t)len, &back);
}

Test(bench_ctrl, run_values_out_of_range_are_refused)
{
	static const struct {
		size_t off;
		uint64_t v;
		int w;
		const char *what;
	} bad[] = {
	    {0, BENCH_MAX_SCENARIOS, 4, "scenario index"},
	    {4, BENCH_MAX_REPS, 4, "rep"},
	    {8, 0, 8, "ram 0"},
	    {8, 3 * MIB, 8, "ram not 2 MiB aligned"},
	    {8, 1ull << 50, 8, "ram 1 PiB"},
	    {16, 1ull << 41, 8, "dirty rate"},
	    {24, 4, 4, "pattern"},
	    {28, 3, 4, "transport"},
	    {32, 65, 4, "channels"},
	    {36, 4, 4, "registration 4"},
	    {36, (uint32_t)-2, 4, "registration -2"},
	    {40, 8192, 8, "page size"},
	    {48, 0, 8, "downtime 0"},
	    {48, 600001, 8, "downtime"},
	    {56, 65, 4, "vcpus"},
	    {56, 0, 4, "no vcpus with a dirty rate"},
	    {60, 0, 4, "seed 0"},
	    {64, 999, 8, "timeout"},
	    {64, 1ull << 40, 8, "timeout"},
	};

	cr_assert_eq(run_with(0, 7, 4), 0);
	cr_assert_eq(run_with(36, (uint32_t)BENCH_REG_NONE, 4), 0);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		cr_assert_eq(run_with(bad[i].off, bad[i].v, bad[i].w), FERRY_EBADSTREAM,
			     "%s accepted", bad[i].what);
}

Test(bench_ctrl, strings_and_other_fields_are_checked)
{
	struct bench_msg m = all_msgs(3), back;
	uint8_t buf[BENCH_CTRL_MAX], good[BENCH_CTRL_MAX];
	int len = bench_msg_to_wire(&m, good, sizeof(good));

	/* status field (payload 8..23) without its NUL */
	memcpy(buf, good, (size_t)len);
	memset(buf + BENCH_CTRL_HDR + 8, 'a', 16);
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* a control character in the verification message */
	memcpy(buf, good, (size_t)len);
	buf[BENCH_CTRL_HDR + 41] = '\n';
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* bytes hidden after the NUL */
	memcpy(buf, good, (size_t)len);
	buf[BENCH_CTRL_HDR + 40 + 100] = 'x';
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* verified is a boolean */
	memcpy(buf, good, (size_t)len);
	buf[BENCH_CTRL_HDR] = 2;
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* READY: a port above 65535 */
	m = all_msgs(2);
	len = bench_msg_to_wire(&m, buf, sizeof(buf));
	buf[BENCH_CTRL_HDR + 2] = 1;
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM);
	/* CEIL: no streams, too many, a tiny or huge message, too long */
	for (int k = 0; k < 5; k++) {
		m = all_msgs(4);
		if (k == 0)
			m.u.ceil.streams = 0;
		if (k == 1)
			m.u.ceil.streams = 65;
		if (k == 2)
			m.u.ceil.msg_size = 100;
		if (k == 3)
			m.u.ceil.msg_size = 1ull << 30;
		if (k == 4)
			m.u.ceil.ms = 3600000;
		len = bench_msg_to_wire(&m, buf, sizeof(buf));
		cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), FERRY_EBADSTREAM,
			     "case %d", k);
	}
	/* A too-long string is cut to its field when sent, and still decodes. */
	m = all_msgs(6);
	memset(m.u.error.msg, 'z', sizeof(m.u.error.msg));
	len = bench_msg_to_wire(&m, buf, sizeof(buf));
	cr_assert_eq(bench_msg_from_wire(buf, (size_t)len, &back), 0);
	cr_assert_eq(strlen(back.u.error.msg), BENCH_CTRL_STR - 1);
}

Test(bench_ctrl, socket_reader_bounds_and_eof)
{
	int sv[2];
	struct bench_msg m = all_msgs(4), back;
	uint8_t buf[BENCH_CTRL_MAX];
	int len;

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(bench_msg_send(sv[0], &m), 0);
	cr_assert_eq(bench_msg_recv(sv[1], &back, 1000), 0);
	cr_assert_eq(back.type, BENCH_MSG_CEIL);
	cr_assert_eq(back.u.ceil.streams, 2);
	/* A header announcing 1 GiB: refused before any payload is read. */
	len = bench_msg_to_wire(&m, buf, sizeof(buf));
	buf[8] = 0;
	buf[11] = 0x40;
	cr_assert_eq(write(sv[0], buf, (size_t)len), len);
	cr_assert_eq(bench_msg_recv(sv[1], &back, 1000), FERRY_EBADSTREAM);
	/* Nothing more is waiting: the reader did not consume the payload. */
	cr_assert_eq(recv(sv[1], buf, sizeof(buf), MSG_DONTWAIT), len - BENCH_CTRL_HDR);
	/* Silence times out; half a message then EOF is a reset. */
	cr_assert_eq(bench_msg_recv(sv[1], &back, 50), -ETIMEDOUT);
	len = bench_msg_to_wire(&m, buf, sizeof(buf));
	cr_assert_eq(write(sv[0], buf, 20), 20);
	close(sv[0]);
	cr_assert_eq(bench_msg_recv(sv[1], &back, 1000), -ECONNRESET);
	close(sv[1]);
}
