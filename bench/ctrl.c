/* SPDX-License-Identifier: MIT */
/* The two-host control protocol (ctrl.h): encoding, validation, socket I/O. */
#include <errno.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>

#include "ctrl.h"

static void put16(uint8_t *p, uint16_t v)
{
	p[0] = (uint8_t)v;
	p[1] = (uint8_t)(v >> 8);
}

static void put32(uint8_t *p, uint32_t v)
{
	for (int i = 0; i < 4; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static uint16_t get16(const uint8_t *p)
{
	return (uint16_t)(p[0] | p[1] << 8);
}

static uint32_t get32(const uint8_t *p)
{
	uint32_t v = 0;

	for (int i = 3; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static uint64_t get64(const uint8_t *p)
{
	uint64_t v = 0;

	for (int i = 7; i >= 0; i--)
		v = v << 8 | p[i];
	return v;
}

static void put_str(uint8_t *p, size_t field, const char *s)
{
	size_t n = strnlen(s, field - 1);

	memset(p, 0, field);
	memcpy(p, s, n);
}

/* A string field: NUL within it, printable ASCII before it, zeros after. */
static int get_str(const uint8_t *p, size_t field, char *out)
{
	size_t n = strnlen((const char *)p, field);

	if (n == field)
		return -1;
	for (size_t i = 0; i < n; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return -1;
	for (size_t i = n; i < field; i++)
		if (p[i])
			return -1;
	memcpy(out, p, n + 1);
	return 0;
}

static size_t payload_len(uint16_t type)
{
	switch (type) {
	case BENCH_MSG_HELLO:
		return BENCH_HELLO_LEN;
	case BENCH_MSG_RUN:
		return BENCH_RUN_LEN;
	case BENCH_MSG_READY:
		return BENCH_READY_LEN;
	case BENCH_MSG_RESULT:
		return BENCH_RESULT_LEN;
	case BENCH_MSG_CEIL:
		return BENCH_CEIL_LEN;
	case BENCH_MSG_CEIL_RESULT:
		return BENCH_CEIL_RESULT_LEN;
	case BENCH_MSG_ERROR:
		return BENCH_ERROR_LEN;
	case BENCH_MSG_BYE:
		return 0;
	}
	return SIZE_MAX;
}

_Static_assert(BENCH_CTRL_HDR + BENCH_RESULT_LEN <= BENCH_CTRL_MAX, "largest message fits");

int bench_msg_to_wire(const struct bench_msg *m, uint8_t *buf, size_t cap)
{
	size_t len = payload_len(m->type);
	uint8_t *p = buf + BENCH_CTRL_HDR;

	if (len == SIZE_MAX || cap < BENCH_CTRL_HDR + len)
		return -EINVAL;
	memset(buf, 0, BENCH_CTRL_HDR + len);
	put32(buf, BENCH_CTRL_MAGIC);
	put16(buf + 4, BENCH_CTRL_VERSION);
	put16(buf + 6, m->type);
	put32(buf + 8, (uint32_t)len);
	switch (m->type) {
	case BENCH_MSG_HELLO:
		put32(p, BENCH_CTRL_VERSION);
		put64(p + 8, m->u.hello.max_ram);
		break;
	case BENCH_MSG_RUN: {
		const struct bench_scenario *sc = &m->u.run.sc;

		put32(p, sc->index);
		put32(p + 4, m->u.run.rep);
		put64(p + 8, sc->ram_bytes);
		put64(p + 16, sc->dirty_rate);
		put32(p + 24, (uint32_t)sc->pattern);
		put32(p + 28, (uint32_t)sc->transport);
		put32(p + 32, sc->channels);
		put32(p + 36, (uint32_t)sc->reg);
		put64(p + 40, sc->page_size);
		put64(p + 48, sc->downtime_ms);
		put32(p + 56, sc->vcpus);
		put32(p + 60, m->u.run.seed);
		put64(p + 64, m->u.run.timeout_ms);
		break;
	}
	case BENCH_MSG_READY:
		put32(p, m->u.ready.port);
		break;
	case BENCH_MSG_RESULT:
		put32(p, m->u.result.verified);
		put_str(p + 8, 16, m->u.result.status);
		put64(p + 24, m->u.result.cpu_us);
		put64(p + 32, m->u.result.memcpy_bytes);
		put_str(p + 40, BENCH_CTRL_STR, m->u.result.verify_error);
		put64(p + 168, m->u.result.registration_us);
		break;
	case BENCH_MSG_CEIL:
		put32(p, m->u.ceil.transport);
		put32(p + 4, m->u.ceil.streams);
		put64(p + 8, m->u.ceil.msg_size);
		put64(p + 16, m->u.ceil.ms);
		break;
	case BENCH_MSG_CEIL_RESULT:
		put64(p, m->u.ceil_result.bytes);
		put64(p + 8, m->u.ceil_result.ns);
		break;
	case BENCH_MSG_ERROR:
		put32(p, (uint32_t)m->u.error.code);
		put_str(p + 8, BENCH_CTRL_STR, m->u.error.msg);
		break;
	}
	return (int)(BENCH_CTRL_HDR + len);
}

static int check_header(const uint8_t *buf, uint16_t *type, uint32_t *len)
{
	*type = get16(buf + 6);
	*len = get32(buf + 8);
	if (get32(buf) != BENCH_CTRL_MAGIC || get16(buf + 4) != BENCH_CTRL_VERSION ||
	    get32(buf + 12) != 0 || payload_len(*type) != *len)
		return FERRY_EBADSTREAM;
	return 0;
}

static int bad(void)
{
	return FERRY_EBADSTREAM;
}

static int run_from_wire(const uint8_t *p, struct bench_msg *m)
{
	struct bench_scenario *sc = &m->u.run.sc;
	int32_t reg = (int32_t)get32(p + 36);

	memset(sc, 0, sizeof(*sc));
	sc->index = get32(p);
	m->u.run.rep = get32(p + 4);
	sc->ram_bytes = get64(p + 8);
	sc->dirty_rate = get64(p + 16);
	sc->pattern = (enum bench_pattern)get32(p + 24);
	sc->transport = (enum bench_transport)get32(p + 28);
	sc->channels = get32(p + 32);
	sc->reg = reg;
	sc->page_size = get64(p + 40);
	sc->downtime_ms = get64(p + 48);
	sc->vcpus = get32(p + 56);
	m->u.run.seed = get32(p + 60);
	m->u.run.timeout_ms = get64(p + 64);
	if (sc->index >= BENCH_MAX_SCENARIOS || m->u.run.rep >= BENCH_MAX_REPS ||
	    sc->ram_bytes < (2u << 20) || sc->ram_bytes > (1ull << 40) ||
	    sc->ram_bytes % (2u << 20) || sc->dirty_rate > (1ull << 40) ||
	    get32(p + 24) > BENCH_PATTERN_SEQUENTIAL || get32(p + 28) >= BENCH_TR_COUNT ||
	    sc->channels > FERRY_MAX_CHANNELS || reg < BENCH_REG_NONE || reg > 3 ||
	    (sc->page_size != 4096 && sc->page_size != (2u << 20)) || sc->downtime_ms < 1 ||
	    sc->downtime_ms > 600000 || sc->vcpus > 64 || (sc->dirty_rate && !sc->vcpus) ||
	    m->u.run.seed == 0 || m->u.run.timeout_ms < 1000 ||
	    m->u.run.timeout_ms > 24ull * 3600 * 1000)
		return bad();
	return 0;
}

int bench_msg_from_wire(const uint8_t *buf, size_t len, struct bench_msg *m)
{
	const uint8_t *p = buf + BENCH_CTRL_HDR;
	uint16_t type;
	uint32_t plen;

	memset(m, 0, sizeof(*m));
	if (len < BENCH_CTRL_HDR || check_header(buf, &type, &plen) || len != BENCH_CTRL_HDR + plen)
		return bad();
	m->type = type;
	switch (type) {
	case BENCH_MSG_HELLO:
		if (get32(p) != BENCH_CTRL_VERSION || get32(p + 4))
			return bad();
		m->u.hello.max_ram = get64(p + 8);
		return 0;
	case BENCH_MSG_RUN:
		return run_from_wire(p, m);
	case BENCH_MSG_READY:
		m->u.ready.port = get32(p);
		return m->u.ready.port > 65535 || get32(p + 4) ? bad() : 0;
	case BENCH_MSG_RESULT:
		m->u.result.verified = get32(p);
		m->u.result.cpu_us = get64(p + 24);
		m->u.result.memcpy_bytes = get64(p + 32);
		m->u.result.registration_us = get64(p + 168);
		if (m->u.result.verified > 1 || get32(p + 4) ||
		    get_str(p + 8, 16, m->u.result.status) ||
		    get_str(p + 40, BENCH_CTRL_STR, m->u.result.verify_error))
			return bad();
		return 0;
	case BENCH_MSG_CEIL:
		m->u.ceil.transport = get32(p);
		m->u.ceil.streams = get32(p + 4);
		m->u.ceil.msg_size = get64(p + 8);
		m->u.ceil.ms = get64(p + 16);
		if (m->u.ceil.transport >= BENCH_TR_COUNT || m->u.ceil.streams < 1 ||
		    m->u.ceil.streams > FERRY_MAX_CHANNELS || m->u.ceil.msg_size < 4096 ||
		    m->u.ceil.msg_size > (64u << 20) || m->u.ceil.ms > 60000)
			return bad();
		return 0;
	case BENCH_MSG_CEIL_RESULT:
		m->u.ceil_result.bytes = get64(p);
		m->u.ceil_result.ns = get64(p + 8);
		return 0;
	case BENCH_MSG_ERROR:
		m->u.error.code = (int32_t)get32(p);
		if (get32(p + 4) || get_str(p + 8, BENCH_CTRL_STR, m->u.error.msg))
			return bad();
		return 0;
	case BENCH_MSG_BYE:
		return 0;
	}
	return bad();
}

int bench_msg_send(int fd, const struct bench_msg *m)
{
	uint8_t buf[BENCH_CTRL_MAX];
	int len = bench_msg_to_wire(m, buf, sizeof(buf));
	size_t off = 0;

	if (len < 0)
		return len;
	while (off < (size_t)len) {
		ssize_t w = send(fd, buf + off, (size_t)len - off, MSG_NOSIGNAL);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0)
			return -errno;
		off += (size_t)w;
	}
	return 0;
}

static int read_full(int fd, uint8_t *buf, size_t len, int timeout_ms)
{
	size_t off = 0;

	while (off < len) {
		struct pollfd pf = {fd, POLLIN, 0};
		int n = poll(&pf, 1, timeout_ms);
		ssize_t r;

		if (n < 0 && errno == EINTR)
			return -EINTR;
		if (n < 0)
			return -errno;
		if (n == 0)
			return -ETIMEDOUT;
		r = recv(fd, buf + off, len - off, 0);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ECONNRESET;
		off += (size_t)r;
	}
	return 0;
}

int bench_msg_recv(int fd, struct bench_msg *m, int timeout_ms)
{
	uint8_t buf[BENCH_CTRL_MAX];
	uint16_t type;
	uint32_t plen;
	int ret = read_full(fd, buf, BENCH_CTRL_HDR, timeout_ms);

	if (ret)
		return ret;
	/* Bounded before anything more is read. */
	if (check_header(buf, &type, &plen) || plen > BENCH_CTRL_MAX - BENCH_CTRL_HDR)
		return FERRY_EBADSTREAM;
	ret = read_full(fd, buf + BENCH_CTRL_HDR, plen, timeout_ms);
	if (ret)
		return ret;
	return bench_msg_from_wire(buf, BENCH_CTRL_HDR + plen, m);
}
