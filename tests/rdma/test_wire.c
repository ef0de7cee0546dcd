/* SPDX-License-Identifier: MIT */
/*
 * The control messages and rdma_cm private data on the wire (golden bytes,
 * round trips, every truncation, hostile lengths and counts, random bytes),
 * and the chunk cache's LRU and reference rules. Pure code: runs anywhere.
 */
#include <criterion/criterion.h>
#include <string.h>

#include <ferry/error.h>

#include "rdma/internal.h"

static uint8_t buf[RDM_CTRL_BUF + 64];

Test(rdma_wire, hello_golden_bytes)
{
	struct rdm_msg m = {.type = RDM_MSG_HELLO, .req = 0x0102030405060708ull};
	static const uint8_t want[40] = {
	    0, 2, 0, 0, 0, 0,	 0,    40, 1, 2, 3, 4, 5, 6, 7, 8, /* header */
	    0, 0, 0, 1, 0, 0,	 0,    2,			   /* version, reg */
	    0, 0, 0, 0, 0, 0x10, 0,    0,			   /* chunk size 1 MiB */
	    0, 0, 0, 7, 0, 0,	 0x10, 0,			   /* budget 7, 4096 blocks */
	};

	m.u.hello.version = 1;
	m.u.hello.reg = FERRY_RDMA_REG_CHUNKED;
	m.u.hello.chunk_size = 1 << 20;
	m.u.hello.lane_budget = 7;
	m.u.hello.n_blocks = 4096;
	cr_assert_eq(rdm_msg_to_wire(&m, buf), 40);
	cr_assert_arr_eq(buf, want, 40);
}

Test(rdma_wire, flush_req_golden_bytes_and_counts)
{
	/* Version 2: the lane's byte counts ride on each flush request. */
	struct rdm_msg m = {.type = RDM_MSG_FLUSH_REQ, .req = 9}, back;
	static const uint8_t want[48] = {
	    0, 9, 0, 0, 0, 0,	 0,    48, 0, 0, 0, 0, 0, 0, 0, 9, /* header */
	    0, 0, 0, 0, 0, 0,	 0,    3,			   /* tag */
	    0, 0, 0, 0, 0, 0,	 0,    5,			   /* seq */
	    0, 0, 0, 0, 0, 0x10, 0,    0,			   /* bytes: 1 MiB */
	    0, 0, 0, 0, 0, 0,	 0x20, 0,			   /* zero bytes: 8 KiB */
	};
	const char *why;

	m.u.flush.tag = 3;
	m.u.flush.seq = 5;
	m.u.flush.bytes = 1 << 20;
	m.u.flush.zero_bytes = 8192;
	cr_assert_eq(rdm_msg_to_wire(&m, buf), 48);
	cr_assert_arr_eq(buf, want, 48);
	cr_assert_eq(rdm_msg_from_wire(buf, 48, &back, &why), 0, "%s", why);
	cr_assert_eq(back.u.flush.bytes, 1 << 20);
	cr_assert_eq(back.u.flush.zero_bytes, 8192);
	/* More zero bytes than bytes is no account: refused. */
	buf[46] = 0x20;
	buf[45] = 0x20;
	cr_assert_eq(rdm_msg_from_wire(buf, 48, &back, &why), FERRY_EBADSTREAM);
	cr_assert(strstr(why, "zero bytes"), "%s", why);
	/* A version 1 flush (32 bytes) is refused by its length. */
	memcpy(buf, want, 32);
	buf[7] = 32;
	cr_assert_eq(rdm_msg_from_wire(buf, 32, &back, &why), FERRY_EBADSTREAM);
}

static void roundtrip(struct rdm_msg *m)
{
	struct rdm_msg back;
	const char *why = NULL;
	uint32_t len = rdm_msg_to_wire(m, buf);

	cr_assert_gt(len, 0);
	m->length = len;
	cr_assert_eq(rdm_msg_from_wire(buf, len, &back, &why), 0, "%s: %s", rdm_msg_name(m->type),
		     why);
	cr_assert_eq(memcmp(&back, m, sizeof(back)), 0, "%s differs after a round trip",
		     rdm_msg_name(m->type));
	/* Every shorter and one longer length is refused. */
	for (uint32_t l = 0; l < len; l++)
		cr_assert_eq(rdm_msg_from_wire(buf, l, &back, &why), FERRY_EBADSTREAM,
			     "%s cut to %u bytes was accepted", rdm_msg_name(m->type), l);
	cr_assert_eq(rdm_msg_from_wire(buf, len + 1, &back, &why), FERRY_EBADSTREAM);
}

Test(rdma_wire, round_trips_and_truncations)
{
	struct rdm_msg m;

	for (uint16_t t = RDM_MSG_HELLO_REQ; t <= RDM_MSG_LAST; t++) {
		if (t == RDM_MSG_TABLE)
			continue;
		memset(&m, 0, sizeof(m));
		m.type = t;
		m.req = 77 + t;
		if (!(t & 1))
			m.status = RDM_ST_OK;
		switch (t) {
		case RDM_MSG_HELLO_REQ:
			m.u.hello_req.version = 1;
			m.u.hello_req.lane = 3;
			break;
		case RDM_MSG_HELLO:
			m.u.hello.version = 1;
			m.u.hello.reg = 1;
			m.u.hello.n_blocks = 9;
			break;
		case RDM_MSG_TABLE_REQ:
			m.u.table_req.first = 5;
			m.u.table_req.max = 100;
			break;
		case RDM_MSG_REG_REQ:
		case RDM_MSG_REG:
		case RDM_MSG_UNREG_REQ:
		case RDM_MSG_UNREG:
			m.u.chunk.block = 4;
			m.u.chunk.chunk = 1ull << 33;
			if (!(t & 1)) {
				m.u.chunk.addr = 0x7f0000001000ull;
				m.u.chunk.length = 1 << 20;
				m.u.chunk.rkey = 0xdeadbeef;
				m.status = RDM_ST_BUDGET;
			}
			break;
		case RDM_MSG_FLUSH_REQ:
		case RDM_MSG_FLUSH:
			m.u.flush.tag = ~0ull;
			m.u.flush.seq = 12;
			m.u.flush.bytes = 5ull << 30;
			m.u.flush.zero_bytes = 1ull << 30;
			break;
		}
		roundtrip(&m);
	}
}

Test(rdma_wire, table)
{
	struct rdm_table_entry e[RDM_TABLE_PER_MSG], back;
	struct rdm_msg m;
	const char *why;
	uint32_t len;

	for (uint32_t i = 0; i < RDM_TABLE_PER_MSG; i++)
		e[i] = (struct rdm_table_entry){0x1000ull * (i + 1), 4096ull << i % 20, i * 3 + 1};
	len = rdm_table_to_wire(9, 0, 40, e, RDM_TABLE_PER_MSG, buf);
	cr_assert_leq(len, RDM_CTRL_BUF);
	cr_assert_eq(rdm_msg_from_wire(buf, len, &m, &why), 0, "%s", why);
	cr_assert_eq(m.type, RDM_MSG_TABLE);
	cr_assert_eq(m.u.table.first, 40);
	cr_assert_eq(m.u.table.count, RDM_TABLE_PER_MSG);
	for (uint32_t i = 0; i < RDM_TABLE_PER_MSG; i++) {
		cr_assert_eq(rdm_table_entry_from_wire(buf, i, &back), 0);
		cr_assert(back.addr == e[i].addr && back.length == e[i].length &&
			  back.rkey == e[i].rkey);
	}
	/* An entry's reserved bytes (after its rkey) set: refused. */
	buf[24 + 2 * 24 + 21] = 1;
	cr_assert_eq(rdm_table_entry_from_wire(buf, 2, &back), -EBADMSG);
	cr_assert_eq(rdm_table_entry_from_wire(buf, 1, &back), 0);
	buf[24 + 2 * 24 + 21] = 0;
	/* Too many entries are never encoded. */
	cr_assert_eq(rdm_table_to_wire(9, 0, 0, e, RDM_TABLE_PER_MSG + 1, buf), 0);
	/* An empty table (the answer to a request out of range) decodes. */
	len = rdm_table_to_wire(9, RDM_ST_RANGE, 0, e, 0, buf);
	cr_assert_eq(rdm_msg_from_wire(buf, len, &m, &why), 0);
	cr_assert_eq(m.status, RDM_ST_RANGE);
	/* A count that disagrees with the length: refused, both ways. */
	len = rdm_table_to_wire(9, 0, 0, e, 3, buf);
	buf[23] = 4;
	cr_assert_eq(rdm_msg_from_wire(buf, len, &m, &why), FERRY_EBADSTREAM);
	buf[23] = 2;
	cr_assert_eq(rdm_msg_from_wire(buf, len, &m, &why), FERRY_EBADSTREAM);
	/* A length that is not a whole number of entries. */
	len = rdm_table_to_wire(9, 0, 0, e, 3, buf);
	buf[7] = (uint8_t)(len - 1);
	cr_assert_eq(rdm_msg_from_wire(buf, len - 1, &m, &why), FERRY_EBADSTREAM);
}

Test(rdma_wire, hostile_headers)
{
	struct rdm_msg m = {.type = RDM_MSG_FLUSH_REQ}, back;
	const char *why;
	uint32_t len = rdm_msg_to_wire(&m, buf);

	/* The length field must say what arrived. */
	buf[7] = (uint8_t)(len + 8);
	cr_assert_eq(rdm_msg_from_wire(buf, len, &back, &why), FERRY_EBADSTREAM);
	buf[7] = (uint8_t)len;
	buf[4] = 0x80;
	cr_assert_eq(rdm_msg_from_wire(buf, len, &back, &why), FERRY_EBADSTREAM);
	buf[4] = 0;
	/* Unknown types. */
	for (unsigned t = 0; t < 0x10000; t += (t < 20 ? 1 : 997)) {
		buf[0] = (uint8_t)(t >> 8);
		buf[1] = (uint8_t)t;
		if (t >= RDM_MSG_HELLO_REQ && t <= RDM_MSG_LAST)
			continue;
		cr_assert_eq(rdm_msg_from_wire(buf, len, &back, &why), FERRY_EBADSTREAM, "type %u",
			     t);
	}
	/* A request carrying a status. */
	len = rdm_msg_to_wire(&m, buf);
	buf[3] = 1;
	cr_assert_eq(rdm_msg_from_wire(buf, len, &back, &why), FERRY_EBADSTREAM);
}

Test(rdma_wire, random_bytes_never_crash)
{
	uint64_t s = 0x1234567;
	struct rdm_msg m;
	const char *why;
	unsigned ok = 0;

	for (int it = 0; it < 200000; it++) {
		uint32_t len;

		s ^= s << 13, s ^= s >> 7, s ^= s << 17;
		len = (uint32_t)(s % 80);
		for (uint32_t i = 0; i < len; i++)
			buf[i] = (uint8_t)(s >> (i % 8 * 8)) ^ (uint8_t)i;
		/* Every other one: a valid message of a random type with one byte changed. */
		if (it & 1) {
			struct rdm_msg v = {.type = (uint16_t)(1 + s % RDM_MSG_LAST), .req = s};

			if (v.type == RDM_MSG_TABLE)
				len = rdm_table_to_wire(s, 0, 0, NULL, 0, buf);
			else
				len = rdm_msg_to_wire(&v, buf);
			buf[(s >> 20) % len] ^= (uint8_t)(s >> 40);
		}
		if (!rdm_msg_from_wire(buf, len, &m, &why)) {
			ok++;
			cr_assert_eq(m.length, len);
			cr_assert(m.type >= RDM_MSG_HELLO_REQ && m.type <= RDM_MSG_LAST);
			if (m.type == RDM_MSG_TABLE)
				cr_assert_leq(m.u.table.count, RDM_TABLE_PER_MSG);
		}
	}
	cr_assert_gt(ok, 0, "no random message was ever valid: the generator is broken");
}

Test(rdma_wire, connect_private_data)
{
	struct rdm_conn_req r = {.version = RDM_VERSION, .lane = 3, .lanes = 4}, back;
	uint8_t pd[56] = {0};
	uint16_t status;
	uint32_t lanes;

	memset(r.id, 0x5a, sizeof(r.id));
	rdm_conn_req_to_wire(&r, pd);
	/* rdma_cm hands over the whole private data area, zero-padded. */
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), 0);
	cr_assert(back.lane == 3 && back.lanes == 4 && !memcmp(back.id, r.id, sizeof(r.id)));
	cr_assert_eq(rdm_conn_req_from_wire(pd, RDM_CONN_REQ_LEN - 1, &back), RDM_REJ_VERSION);
	cr_assert_eq(rdm_conn_req_from_wire(NULL, 0, &back), RDM_REJ_VERSION);
	pd[0] ^= 1; /* not ferry's */
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), RDM_REJ_VERSION);
	pd[0] ^= 1;
	r.version = RDM_VERSION + 1;
	rdm_conn_req_to_wire(&r, pd);
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), RDM_REJ_VERSION);

	rdm_conn_reply_to_wire(RDM_REJ_ID, 0, pd);
	cr_assert_eq(rdm_conn_reply_from_wire(pd, RDM_CONN_REPLY_LEN, &status, &lanes), 1);
	cr_assert_eq(status, RDM_REJ_ID);
	cr_assert_eq(rdm_conn_reply_from_wire(pd, RDM_CONN_REPLY_LEN - 1, &status, &lanes), 0);
	memset(pd, 0, sizeof(pd)); /* e.g. the CM's own reject: no ferry reply */
	cr_assert_eq(rdm_conn_reply_from_wire(pd, sizeof(pd), &status, &lanes), 0);
	cr_assert_str_eq(rdm_reject_name(RDM_REJ_ID), "wrong migration id");
}

/* The connect request with an authenticator: golden bytes, and what the tag binds. */
Test(rdma_wire, connect_authenticator)
{
	/* HMAC-SHA256(key 00..1f, "ferry-rdma-lane" | 16 x 0x5a | be16 3 | be16 4), first 16 bytes.
	 */
	static const uint8_t golden_tag[FERRY_RDMA_AUTH_TAG_LEN] = {
	    0xa8, 0xd8, 0x67, 0x53, 0x12, 0xde, 0xdf, 0x8b,
	    0x13, 0xa0, 0x41, 0xfc, 0xd0, 0x6b, 0xf3, 0x3d};
	static const uint8_t golden_head[16] = {
	    'F', 'R', 'D', 'M', 0, RDM_VERSION, 0, 3, 0, 4, 0, RDM_REQ_F_AUTH, 0, 0, 0, 0};
	struct rdm_conn_req r = {.version = RDM_VERSION, .lane = 3, .lanes = 4}, back;
	uint8_t key[FERRY_RDMA_AUTH_KEY_LEN], other[FERRY_RDMA_AUTH_KEY_LEN];
	uint8_t pd[56] = {0};

	cr_assert_leq(RDM_CONN_REQ_LEN, 56, "must fit an RC connect's private data");
	for (int i = 0; i < FERRY_RDMA_AUTH_KEY_LEN; i++)
		key[i] = (uint8_t)i;
	memcpy(other, key, sizeof(key));
	other[31] ^= 0x80;
	memset(r.id, 0x5a, sizeof(r.id));
	cr_assert_eq(rdm_auth_tag(key, r.id, 3, 4, r.auth), 0);
	cr_assert_eq(memcmp(r.auth, golden_tag, sizeof(golden_tag)), 0);
	r.has_auth = true;
	rdm_conn_req_to_wire(&r, pd);
	cr_assert_eq(memcmp(pd, golden_head, sizeof(golden_head)), 0);
	cr_assert_eq(memcmp(pd + 32, golden_tag, sizeof(golden_tag)), 0);
	for (size_t i = RDM_CONN_REQ_LEN; i < sizeof(pd); i++)
		cr_assert_eq(pd[i], 0);

	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), 0);
	cr_assert(back.has_auth);
	cr_assert(rdm_auth_check(key, &back));
	cr_assert(!rdm_auth_check(other, &back), "another key verifies");
	/* Every bit of the tag, and each field it binds, matters. */
	for (size_t i = 0; i < FERRY_RDMA_AUTH_TAG_LEN * 8; i++) {
		back.auth[i / 8] ^= (uint8_t)(1u << (i % 8));
		cr_assert(!rdm_auth_check(key, &back), "tag bit %zu flipped still verifies", i);
		back.auth[i / 8] ^= (uint8_t)(1u << (i % 8));
	}
	back.lane = 2;
	cr_assert(!rdm_auth_check(key, &back), "the tag does not bind the lane");
	back.lane = 3;
	back.lanes = 5;
	cr_assert(!rdm_auth_check(key, &back), "the tag does not bind the lane count");
	back.lanes = 4;
	back.id[7] ^= 1;
	cr_assert(!rdm_auth_check(key, &back), "the tag does not bind the id");
	back.id[7] ^= 1;
	cr_assert(rdm_auth_check(key, &back));

	/* Without the flag there is no tag to check, whatever the bytes say. */
	r.has_auth = false;
	rdm_conn_req_to_wire(&r, pd);
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), 0);
	cr_assert(!back.has_auth);
	cr_assert(!rdm_auth_check(key, &back));
	for (size_t i = 32; i < RDM_CONN_REQ_LEN; i++)
		cr_assert_eq(pd[i], 0, "a tag leaked into a request without one");
	/* Unknown flags and reserved bits come from another protocol. */
	pd[11] = 0x2;
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), RDM_REJ_VERSION);
	pd[11] = 0;
	pd[15] = 1;
	cr_assert_eq(rdm_conn_req_from_wire(pd, sizeof(pd), &back), RDM_REJ_VERSION);
	cr_assert_str_eq(rdm_reject_name(RDM_REJ_AUTH),
			 "the lane's authenticator is missing or does not verify");
	cr_assert(rdm_ct_equal("abc", "abc", 3));
	cr_assert(!rdm_ct_equal("abc", "abd", 3));
}

Test(rdma_cmap, lru_refs_and_capacity)
{
	struct rdm_cmap m;
	struct rdm_centry *a, *b, *c;

	cr_assert_eq(rdm_cmap_init(&m, 2), 0);
	a = rdm_cmap_insert(&m, 0, 1);
	b = rdm_cmap_insert(&m, 1, 1);
	cr_assert(a && b && a != b);
	cr_assert(rdm_cmap_full(&m));
	cr_assert_null(rdm_cmap_insert(&m, 2, 2));
	cr_assert_eq(rdm_cmap_find(&m, 0, 1), a); /* a is now the most recent */
	cr_assert_eq(rdm_cmap_victim(&m), b);
	b->refs = 1; /* in use by a write: never a victim */
	cr_assert_eq(rdm_cmap_victim(&m), a);
	a->refs = 1;
	cr_assert_null(rdm_cmap_victim(&m));
	b->refs = 0;
	rdm_cmap_remove(&m, rdm_cmap_victim(&m));
	cr_assert_null(rdm_cmap_find(&m, 1, 1));
	c = rdm_cmap_insert(&m, 1, 1ull << 40);
	cr_assert_not_null(c);
	cr_assert_eq(rdm_cmap_find(&m, 1, 1ull << 40), c);
	cr_assert_eq(rdm_cmap_find(&m, 0, 1), a);
	cr_assert_eq(m.count, 2);
	rdm_cmap_fini(&m);

	/* Many entries, hash collisions included. */
	cr_assert_eq(rdm_cmap_init(&m, 1000), 0);
	for (uint64_t i = 0; i < 1000; i++)
		cr_assert_not_null(rdm_cmap_insert(&m, (uint32_t)(i % 7), i * 4096));
	for (uint64_t i = 0; i < 1000; i++) {
		struct rdm_centry *e = rdm_cmap_find(&m, (uint32_t)(i % 7), i * 4096);

		cr_assert(e && e->chunk == i * 4096);
	}
	cr_assert_null(rdm_cmap_find(&m, 9, 0));
	rdm_cmap_fini(&m);
}
