/* SPDX-License-Identifier: MIT */
/*
 * The control protocol of two-host `ferry bench`: the source (--peer) and the
 * destination (--server) agree on each run over one TCP connection.
 *
 * Every message is a 16-byte header and a fixed-size payload, little-endian:
 *   u32 magic "FBNC" (0x434e4246 as bytes 'F','B','N','C'), u16 version (1),
 *   u16 type, u32 payload length, u32 reserved (0).
 * The payload length must be exactly the size of its type; strings are
 * fixed fields, NUL-terminated within them, printable ASCII.
 *
 *   peer -> server            server -> peer
 *   HELLO (max_ram 0)         HELLO (the largest guest it accepts)
 *   RUN (a scenario)          READY (the port its migration listens on)
 *   ... migration on that port ...
 *                             RESULT (status, verification, CPU, registration)
 *   CEIL (transport, streams) READY (the sink's port)
 *   ... streams for ms ...    CEIL_RESULT (bytes and ns from first to last byte)
 *   BYE
 * Either side may send ERROR instead of a reply and close.
 *
 * A received message is treated as hostile: the header is checked before the
 * payload is read (length bounded by BENCH_CTRL_MAX), and every field is
 * range-checked by bench_msg_from_wire(); a failure is FERRY_EBADSTREAM.
 */
#ifndef FERRY_BENCH_CTRL_H
#define FERRY_BENCH_CTRL_H

#include <stddef.h>
#include <stdint.h>

#include "harness.h"

#define BENCH_CTRL_MAGIC   0x434e4246u
#define BENCH_CTRL_VERSION 1
#define BENCH_CTRL_HDR	   16
#define BENCH_CTRL_MAX	   256 /* header and payload */
#define BENCH_CTRL_STR	   128

enum bench_msg_type {
	BENCH_MSG_HELLO = 1,
	BENCH_MSG_RUN,
	BENCH_MSG_READY,
	BENCH_MSG_RESULT,
	BENCH_MSG_CEIL,
	BENCH_MSG_CEIL_RESULT,
	BENCH_MSG_ERROR,
	BENCH_MSG_BYE,
};

/* Payload sizes on the wire. */
#define BENCH_HELLO_LEN	      16
#define BENCH_RUN_LEN	      72
#define BENCH_READY_LEN	      8
#define BENCH_RESULT_LEN      176
#define BENCH_CEIL_LEN	      24
#define BENCH_CEIL_RESULT_LEN 16
#define BENCH_ERROR_LEN	      136

struct bench_msg {
	uint16_t type;
	union {
		struct {
			uint64_t max_ram;
		} hello;
		struct {
			struct bench_scenario sc;
			uint32_t rep;
			uint32_t seed;
			uint64_t timeout_ms;
		} run;
		struct {
			uint32_t port;
		} ready;
		struct {
			uint32_t verified;
			char status[16];
			uint64_t cpu_us;
			uint64_t memcpy_bytes;
			char verify_error[BENCH_CTRL_STR];
			uint64_t registration_us; /* UINT64_MAX: nothing registered */
		} result;
		struct {
			uint32_t transport;
			uint32_t streams;
			uint64_t msg_size;
			uint64_t ms;
		} ceil;
		struct {
			uint64_t bytes;
			uint64_t ns;
		} ceil_result;
		struct {
			int32_t code;
			char msg[BENCH_CTRL_STR];
		} error;
	} u;
};

/**
 * bench_msg_to_wire() - encode @m into @buf (at least BENCH_CTRL_MAX bytes).
 * Strings longer than their field are cut. Returns the length, or -EINVAL.
 */
int bench_msg_to_wire(const struct bench_msg *m, uint8_t *buf, size_t cap);

/**
 * bench_msg_from_wire() - decode exactly @len bytes. Returns 0, or
 * FERRY_EBADSTREAM for a bad magic, version, type, length, reserved field,
 * string or a value out of range.
 */
int bench_msg_from_wire(const uint8_t *buf, size_t len, struct bench_msg *m);

/** bench_msg_send() - write one message to @fd. Returns 0 or -errno. */
int bench_msg_send(int fd, const struct bench_msg *m);

/**
 * bench_msg_recv() - read one message from @fd within @timeout_ms (each read).
 * Returns 0, -ETIMEDOUT, -ECONNRESET (EOF), FERRY_EBADSTREAM or -errno.
 */
int bench_msg_recv(int fd, struct bench_msg *m, int timeout_ms);

#endif
