/* SPDX-License-Identifier: MIT */
/*
 * A destination of a test's making that talks on the return path: it accepts
 * the main stream on HOST:0, reads whatever comes and, 300 ms in, writes one
 * message there. A source's data lanes connect to the same port and wait in
 * its backlog, unanswered (and queue pairs find no rdma_cm listener on
 * PORT + 1), so the source is connecting its lanes when the message comes
 * (engine_datapath, rdma_engine).
 *
 * Threads: its own, between talker_start() and talker_stop().
 */
#ifndef FERRY_TESTS_TALKER_H
#define FERRY_TESTS_TALKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct talker {
	int listen_fd, port;
	uint8_t msg[256];
	size_t msg_len;
	bool hang_up; /* close the main stream 200 ms after the message */
	pthread_t th;
};

/* Listen on @host (an IPv4 address) and start; asserts on failure. With
 * @hang_up the main stream is closed 200 ms after the message, while the
 * source reads it (a message cut short). */
void talker_start(struct talker *t, const char *host, const uint8_t *msg, size_t len, bool hang_up);
void talker_stop(struct talker *t);

/* A return-path message into @b: be16 type, be16 len, be32 value, then @text
 * (without its NUL; may be NULL). Returns its size: 8 + strlen(text). */
size_t talker_rp_msg(uint8_t *b, uint16_t type, uint16_t len, uint32_t value, const char *text);

#endif
