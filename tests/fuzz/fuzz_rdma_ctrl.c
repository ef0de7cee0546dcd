/* SPDX-License-Identifier: MIT */
/*
 * fuzz_rdma_ctrl: the RDMA module's decoders of what a peer sends: control
 * messages (rdm_msg_from_wire, rdm_table_entry_from_wire) and the rdma_cm
 * private data of a connect request and of its reply. No device is needed:
 * these are the functions that turn received bytes into values before
 * anything acts on them.
 *
 * Input layout: byte 0 picks the decoder (0-1: control message, 2: connect
 * request, 3: connect reply), the rest is the received bytes.
 *
 * Checks, besides the sanitizers: a refusal says why; an accepted message
 * encodes back to exactly the bytes received (every field is decoded, no
 * byte is ignored, so nothing unchecked can hide in one), and a TABLE's
 * entries do too; an accepted connect request has the version and magic
 * this side speaks and encodes back to the same values.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rdma/internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static void fuzz_msg(const uint8_t *p, size_t len)
{
	static uint8_t buf[RDM_CTRL_BUF], again[RDM_CTRL_BUF];
	struct rdm_msg m;
	const char *why = NULL;
	uint32_t n;

	/* A receive slot holds RDM_CTRL_BUF bytes; the NIC delivers no more. */
	if (len > RDM_CTRL_BUF)
		len = RDM_CTRL_BUF;
	memcpy(buf, p, len);
	if (rdm_msg_from_wire(buf, (uint32_t)len, &m, &why) != 0) {
		CHECK(why && why[0]);
		return;
	}
	CHECK(m.length == len);
	if (m.type == RDM_MSG_TABLE) {
		struct rdm_table_entry e[RDM_TABLE_PER_MSG];

		CHECK(m.u.table.count <= RDM_TABLE_PER_MSG);
		for (uint32_t i = 0; i < m.u.table.count; i++)
			if (rdm_table_entry_from_wire(buf, i, &e[i]))
				return; /* reserved bytes set: refused */
		n = rdm_table_to_wire(m.req, m.status, m.u.table.first, e, m.u.table.count, again);
		CHECK(n == len);
		/* Every entry accepted: the message encodes back to the same bytes. */
		CHECK(memcmp(again, buf, len) == 0);
		return;
	}
	n = rdm_msg_to_wire(&m, again);
	CHECK(n == len);
	CHECK(memcmp(again, buf, len) == 0);
	/* And it decodes again to the same message. */
	{
		struct rdm_msg m2;

		CHECK(rdm_msg_from_wire(again, n, &m2, &why) == 0);
		CHECK(memcmp(&m, &m2, sizeof(m)) == 0);
	}
}

static void fuzz_conn_req(const uint8_t *p, size_t len)
{
	uint8_t buf[256], again[RDM_CONN_REQ_LEN];
	struct rdm_conn_req r, r2;
	int ret;

	/* rdma_cm hands over a uint8_t length. */
	if (len > sizeof(buf))
		len = sizeof(buf);
	memcpy(buf, p, len);
	ret = rdm_conn_req_from_wire(len ? buf : NULL, (uint8_t)len, &r);
	if (ret != 0) {
		CHECK(ret > 0 && ret <= RDM_REJ_FAILED);
		return;
	}
	CHECK(len >= RDM_CONN_REQ_LEN);
	CHECK(r.version == RDM_VERSION);
	rdm_conn_req_to_wire(&r, again);
	CHECK(rdm_conn_req_from_wire(again, RDM_CONN_REQ_LEN, &r2) == 0);
	CHECK(r2.version == r.version && r2.lane == r.lane && r2.lanes == r.lanes);
	CHECK(memcmp(r2.id, r.id, sizeof(r.id)) == 0);
	/* The authenticator tag travels only when its flag says so, and then whole. */
	CHECK(r2.has_auth == r.has_auth);
	CHECK(!r.has_auth || memcmp(r2.auth, r.auth, sizeof(r.auth)) == 0);
}

static void fuzz_conn_reply(const uint8_t *p, size_t len)
{
	uint8_t buf[256];
	uint16_t status = 0xffff;
	uint32_t lanes = 0;

	if (len > sizeof(buf))
		len = sizeof(buf);
	memcpy(buf, p, len);
	if (rdm_conn_reply_from_wire(len ? buf : NULL, (uint8_t)len, &status, &lanes) == 1) {
		uint8_t again[RDM_CONN_REPLY_LEN];
		uint16_t s2;
		uint32_t l2;

		CHECK(len >= RDM_CONN_REPLY_LEN);
		rdm_conn_reply_to_wire(status, lanes, again);
		CHECK(rdm_conn_reply_from_wire(again, sizeof(again), &s2, &l2) == 1);
		CHECK(s2 == status && l2 == lanes);
		/* The names a log line would print exist for every value. */
		CHECK(rdm_reject_name(status) != NULL);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	switch (data[0] & 3) {
	case 0:
	case 1:
		fuzz_msg(data + 1, size - 1);
		break;
	case 2:
		fuzz_conn_req(data + 1, size - 1);
		break;
	default:
		fuzz_conn_reply(data + 1, size - 1);
		break;
	}
	return 0;
}
