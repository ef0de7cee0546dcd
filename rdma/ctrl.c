/* SPDX-License-Identifier: MIT */
/*
 * Control messages: the small SEND/RECV messages each lane carries beside its
 * RDMA WRITEs (hello, block table, chunk registration, flush), and the rdma_cm
 * private data of connect, accept and reject.
 *
 * Every message is an explicit wire struct of fixed-width big-endian fields
 * with explicit padding and a static_assert on its size, converted only by the
 * _to_wire() and _from_wire() functions below. Whoever receives a message
 * treats it as hostile: the length must be exactly what the type says, counts
 * are bounded, and nothing is allocated from a peer's number.
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include <gnutls/crypto.h>
#include <gnutls/gnutls.h>

#include "internal.h"

struct rdm_wire_hdr {
	uint16_t type;
	uint16_t status;
	uint32_t length; /* of the whole message, header included */
	uint64_t req;	 /* request number; a reply carries its request's */
};
static_assert(sizeof(struct rdm_wire_hdr) == 16, "wire header");

struct rdm_wire_hello_req {
	struct rdm_wire_hdr h;
	uint32_t version;
	uint32_t lane;
};
static_assert(sizeof(struct rdm_wire_hello_req) == 24, "hello request");

struct rdm_wire_hello {
	struct rdm_wire_hdr h;
	uint32_t version;
	uint32_t reg;
	uint64_t chunk_size;
	uint32_t lane_budget;
	uint32_t n_blocks;
};
static_assert(sizeof(struct rdm_wire_hello) == 40, "hello");

struct rdm_wire_table_req {
	struct rdm_wire_hdr h;
	uint32_t first;
	uint32_t max;
};
static_assert(sizeof(struct rdm_wire_table_req) == 24, "table request");

struct rdm_wire_table {
	struct rdm_wire_hdr h;
	uint32_t first;
	uint32_t count;
	/* followed by count struct rdm_wire_table_entry */
};
static_assert(sizeof(struct rdm_wire_table) == 24, "table");

struct rdm_wire_table_entry {
	uint64_t addr;
	uint64_t length;
	uint32_t rkey;
	uint32_t reserved;
};
static_assert(sizeof(struct rdm_wire_table_entry) == 24, "table entry");
static_assert(sizeof(struct rdm_wire_table) +
		      RDM_TABLE_PER_MSG * sizeof(struct rdm_wire_table_entry) <=
		  RDM_CTRL_BUF,
	      "a full table message fits a control buffer");

/* REG_REQ, REG, UNREG_REQ and UNREG share one layout; a request leaves rkey/addr/length 0. */
struct rdm_wire_chunk {
	struct rdm_wire_hdr h;
	uint32_t block;
	uint32_t rkey;
	uint64_t chunk;
	uint64_t addr;
	uint64_t length;
};
static_assert(sizeof(struct rdm_wire_chunk) == 48, "chunk");

struct rdm_wire_flush {
	struct rdm_wire_hdr h;
	uint64_t tag;
	uint64_t seq;
	uint64_t bytes;
	uint64_t zero_bytes;
};
static_assert(sizeof(struct rdm_wire_flush) == 48, "flush");

/* rdma_cm private data of the source's connect (RC REQ carries at least 56 bytes). */
struct rdm_wire_conn_req {
	uint32_t magic;
	uint16_t version;
	uint16_t lane;
	uint16_t lanes;
	uint16_t flags; /* RDM_REQ_F_AUTH: @auth holds a tag */
	uint32_t reserved;
	uint8_t id[FERRY_RDMA_ID_LEN];
	uint8_t auth[FERRY_RDMA_AUTH_TAG_LEN]; /* zeros without RDM_REQ_F_AUTH */
};
static_assert(sizeof(struct rdm_wire_conn_req) == RDM_CONN_REQ_LEN, "conn request");
static_assert(RDM_CONN_REQ_LEN <= 56, "fits the private data of an RC connect");

/* Private data of the destination's accept and reject. */
struct rdm_wire_conn_reply {
	uint32_t magic;
	uint16_t version;
	uint16_t status; /* 0 on accept, an RDM_REJ_* reason on reject */
	uint32_t lanes;
	uint32_t reserved;
};
static_assert(sizeof(struct rdm_wire_conn_reply) == RDM_CONN_REPLY_LEN, "conn reply");

const char *rdm_msg_name(uint16_t type)
{
	static const char *const names[] = {
	    [RDM_MSG_HELLO_REQ] = "HELLO_REQ", [RDM_MSG_HELLO] = "HELLO",
	    [RDM_MSG_TABLE_REQ] = "TABLE_REQ", [RDM_MSG_TABLE] = "TABLE",
	    [RDM_MSG_REG_REQ] = "REG_REQ",     [RDM_MSG_REG] = "REG",
	    [RDM_MSG_UNREG_REQ] = "UNREG_REQ", [RDM_MSG_UNREG] = "UNREG",
	    [RDM_MSG_FLUSH_REQ] = "FLUSH_REQ", [RDM_MSG_FLUSH] = "FLUSH",
	    [RDM_MSG_NOP_REQ] = "NOP_REQ",     [RDM_MSG_NOP] = "NOP",
	    [RDM_MSG_BYE_REQ] = "BYE_REQ",     [RDM_MSG_BYE] = "BYE",
	};

	if (type < sizeof(names) / sizeof(names[0]) && names[type])
		return names[type];
	return "unknown";
}

const char *rdm_reject_name(uint16_t reason)
{
	switch (reason) {
	case RDM_REJ_VERSION:
		return "protocol version not supported";
	case RDM_REJ_ID:
		return "wrong migration id";
	case RDM_REJ_LANES:
		return "lane count differs from the destination's";
	case RDM_REJ_LANE:
		return "lane index out of range";
	case RDM_REJ_DUPLICATE:
		return "lane already connected";
	case RDM_REJ_DEVICE:
		return "connection arrived on another RDMA device";
	case RDM_REJ_INTERNAL:
		return "the destination could not set the lane up";
	case RDM_REJ_FAILED:
		return "the destination has failed";
	case RDM_REJ_AUTH:
		return "the lane's authenticator is missing or does not verify";
	}
	return "unknown reason";
}

static uint32_t msg_size(uint16_t type)
{
	switch (type) {
	case RDM_MSG_HELLO_REQ:
		return sizeof(struct rdm_wire_hello_req);
	case RDM_MSG_HELLO:
		return sizeof(struct rdm_wire_hello);
	case RDM_MSG_TABLE_REQ:
		return sizeof(struct rdm_wire_table_req);
	case RDM_MSG_TABLE:
		return sizeof(struct rdm_wire_table);
	case RDM_MSG_REG_REQ:
	case RDM_MSG_REG:
	case RDM_MSG_UNREG_REQ:
	case RDM_MSG_UNREG:
		return sizeof(struct rdm_wire_chunk);
	case RDM_MSG_FLUSH_REQ:
	case RDM_MSG_FLUSH:
		return sizeof(struct rdm_wire_flush);
	case RDM_MSG_NOP_REQ:
	case RDM_MSG_NOP:
	case RDM_MSG_BYE_REQ:
	case RDM_MSG_BYE:
		return sizeof(struct rdm_wire_hdr);
	}
	return 0;
}

static void hdr_to_wire(const struct rdm_msg *m, uint32_t len, struct rdm_wire_hdr *h)
{
	h->type = htobe16(m->type);
	h->status = htobe16(m->status);
	h->length = htobe32(len);
	h->req = htobe64(m->req);
}

uint32_t rdm_msg_to_wire(const struct rdm_msg *m, void *buf)
{
	uint32_t len = msg_size(m->type);

	switch (m->type) {
	case RDM_MSG_HELLO_REQ: {
		struct rdm_wire_hello_req w = {
		    .version = htobe32(m->u.hello_req.version),
		    .lane = htobe32(m->u.hello_req.lane),
		};
		hdr_to_wire(m, len, &w.h);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	case RDM_MSG_HELLO: {
		struct rdm_wire_hello w = {
		    .version = htobe32(m->u.hello.version),
		    .reg = htobe32(m->u.hello.reg),
		    .chunk_size = htobe64(m->u.hello.chunk_size),
		    .lane_budget = htobe32(m->u.hello.lane_budget),
		    .n_blocks = htobe32(m->u.hello.n_blocks),
		};
		hdr_to_wire(m, len, &w.h);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	case RDM_MSG_TABLE_REQ: {
		struct rdm_wire_table_req w = {
		    .first = htobe32(m->u.table_req.first),
		    .max = htobe32(m->u.table_req.max),
		};
		hdr_to_wire(m, len, &w.h);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	case RDM_MSG_REG_REQ:
	case RDM_MSG_REG:
	case RDM_MSG_UNREG_REQ:
	case RDM_MSG_UNREG: {
		struct rdm_wire_chunk w = {
		    .block = htobe32(m->u.chunk.block),
		    .rkey = htobe32(m->u.chunk.rkey),
		    .chunk = htobe64(m->u.chunk.chunk),
		    .addr = htobe64(m->u.chunk.addr),
		    .length = htobe64(m->u.chunk.length),
		};
		hdr_to_wire(m, len, &w.h);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	case RDM_MSG_FLUSH_REQ:
	case RDM_MSG_FLUSH: {
		struct rdm_wire_flush w = {
		    .tag = htobe64(m->u.flush.tag),
		    .seq = htobe64(m->u.flush.seq),
		    .bytes = htobe64(m->u.flush.bytes),
		    .zero_bytes = htobe64(m->u.flush.zero_bytes),
		};
		hdr_to_wire(m, len, &w.h);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	case RDM_MSG_NOP_REQ:
	case RDM_MSG_NOP:
	case RDM_MSG_BYE_REQ:
	case RDM_MSG_BYE: {
		struct rdm_wire_hdr w;

		hdr_to_wire(m, len, &w);
		memcpy(buf, &w, sizeof(w));
		break;
	}
	default:
		/* TABLE goes through rdm_table_to_wire(); anything else is a bug here. */
		return 0;
	}
	return len;
}

uint32_t rdm_table_to_wire(uint64_t req, uint16_t status, uint32_t first,
			   const struct rdm_table_entry *e, uint32_t count, void *buf)
{
	struct rdm_msg m = {.type = RDM_MSG_TABLE, .status = status, .req = req};
	struct rdm_wire_table w = {.first = htobe32(first), .count = htobe32(count)};
	uint8_t *p = buf;
	uint32_t len;

	if (count > RDM_TABLE_PER_MSG)
		return 0;
	len = (uint32_t)(sizeof(w) + count * sizeof(struct rdm_wire_table_entry));
	hdr_to_wire(&m, len, &w.h);
	memcpy(p, &w, sizeof(w));
	p += sizeof(w);
	for (uint32_t i = 0; i < count; i++) {
		struct rdm_wire_table_entry we = {
		    .addr = htobe64(e[i].addr),
		    .length = htobe64(e[i].length),
		    .rkey = htobe32(e[i].rkey),
		};
		memcpy(p, &we, sizeof(we));
		p += sizeof(we);
	}
	return len;
}

int rdm_table_entry_from_wire(const void *buf, uint32_t i, struct rdm_table_entry *e)
{
	struct rdm_wire_table_entry we;

	memcpy(&we, (const uint8_t *)buf + sizeof(struct rdm_wire_table) + (size_t)i * sizeof(we),
	       sizeof(we));
	e->addr = be64toh(we.addr);
	e->length = be64toh(we.length);
	e->rkey = be32toh(we.rkey);
	/* Reserved bytes that are not zero: a peer of another protocol. */
	return we.reserved ? -EBADMSG : 0;
}

int rdm_msg_from_wire(const void *buf, uint32_t len, struct rdm_msg *m, const char **why)
{
	struct rdm_wire_hdr h;
	uint32_t want;

	memset(m, 0, sizeof(*m));
	if (len < sizeof(h)) {
		*why = "shorter than a message header";
		return FERRY_EBADSTREAM;
	}
	memcpy(&h, buf, sizeof(h));
	m->type = be16toh(h.type);
	m->status = be16toh(h.status);
	m->length = be32toh(h.length);
	m->req = be64toh(h.req);
	want = msg_size(m->type);
	if (!want) {
		*why = "unknown message type";
		return FERRY_EBADSTREAM;
	}
	if (m->length != len) {
		*why = "length field differs from the bytes received";
		return FERRY_EBADSTREAM;
	}
	if ((m->type & 1) && m->status) {
		*why = "a request with a status";
		return FERRY_EBADSTREAM;
	}
	if (m->type == RDM_MSG_TABLE) {
		struct rdm_wire_table w;

		if (len < sizeof(w) || (len - sizeof(w)) % sizeof(struct rdm_wire_table_entry)) {
			*why = "table length is not a whole number of entries";
			return FERRY_EBADSTREAM;
		}
		memcpy(&w, buf, sizeof(w));
		m->u.table.first = be32toh(w.first);
		m->u.table.count = be32toh(w.count);
		if (m->u.table.count > RDM_TABLE_PER_MSG ||
		    m->u.table.count != (len - sizeof(w)) / sizeof(struct rdm_wire_table_entry)) {
			*why = "table count differs from its length";
			return FERRY_EBADSTREAM;
		}
		return 0;
	}
	if (len != want) {
		*why = "wrong length for its type";
		return FERRY_EBADSTREAM;
	}
	switch (m->type) {
	case RDM_MSG_HELLO_REQ: {
		struct rdm_wire_hello_req w;

		memcpy(&w, buf, sizeof(w));
		m->u.hello_req.version = be32toh(w.version);
		m->u.hello_req.lane = be32toh(w.lane);
		break;
	}
	case RDM_MSG_HELLO: {
		struct rdm_wire_hello w;

		memcpy(&w, buf, sizeof(w));
		m->u.hello.version = be32toh(w.version);
		m->u.hello.reg = be32toh(w.reg);
		m->u.hello.chunk_size = be64toh(w.chunk_size);
		m->u.hello.lane_budget = be32toh(w.lane_budget);
		m->u.hello.n_blocks = be32toh(w.n_blocks);
		break;
	}
	case RDM_MSG_TABLE_REQ: {
		struct rdm_wire_table_req w;

		memcpy(&w, buf, sizeof(w));
		m->u.table_req.first = be32toh(w.first);
		m->u.table_req.max = be32toh(w.max);
		break;
	}
	case RDM_MSG_REG_REQ:
	case RDM_MSG_REG:
	case RDM_MSG_UNREG_REQ:
	case RDM_MSG_UNREG: {
		struct rdm_wire_chunk w;

		memcpy(&w, buf, sizeof(w));
		m->u.chunk.block = be32toh(w.block);
		m->u.chunk.rkey = be32toh(w.rkey);
		m->u.chunk.chunk = be64toh(w.chunk);
		m->u.chunk.addr = be64toh(w.addr);
		m->u.chunk.length = be64toh(w.length);
		break;
	}
	case RDM_MSG_FLUSH_REQ:
	case RDM_MSG_FLUSH: {
		struct rdm_wire_flush w;

		memcpy(&w, buf, sizeof(w));
		m->u.flush.tag = be64toh(w.tag);
		m->u.flush.seq = be64toh(w.seq);
		m->u.flush.bytes = be64toh(w.bytes);
		m->u.flush.zero_bytes = be64toh(w.zero_bytes);
		/* A count is an account of bytes, never more zero bytes than bytes. */
		if (m->u.flush.zero_bytes > m->u.flush.bytes) {
			*why = "zero bytes beyond the bytes written";
			return FERRY_EBADSTREAM;
		}
		break;
	}
	default:
		break;
	}
	return 0;
}

void rdm_conn_req_to_wire(const struct rdm_conn_req *r, void *buf)
{
	struct rdm_wire_conn_req w = {
	    .magic = htobe32(RDM_MAGIC),
	    .version = htobe16(r->version),
	    .lane = htobe16(r->lane),
	    .lanes = htobe16(r->lanes),
	    .flags = htobe16(r->has_auth ? RDM_REQ_F_AUTH : 0),
	};

	memcpy(w.id, r->id, sizeof(w.id));
	if (r->has_auth)
		memcpy(w.auth, r->auth, sizeof(w.auth));
	memcpy(buf, &w, sizeof(w));
}

int rdm_conn_req_from_wire(const void *buf, uint8_t len, struct rdm_conn_req *r)
{
	struct rdm_wire_conn_req w;

	memset(r, 0, sizeof(*r));
	/* rdma_cm may pad the private data with zeros up to the transport's size. */
	if (!buf || len < sizeof(w))
		return RDM_REJ_VERSION;
	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != RDM_MAGIC)
		return RDM_REJ_VERSION;
	r->version = be16toh(w.version);
	r->lane = be16toh(w.lane);
	r->lanes = be16toh(w.lanes);
	memcpy(r->id, w.id, sizeof(r->id));
	if (r->version != RDM_VERSION)
		return RDM_REJ_VERSION;
	/* Unknown flags or reserved bits: a peer of another protocol. */
	if ((be16toh(w.flags) & ~RDM_REQ_F_AUTH) || w.reserved)
		return RDM_REJ_VERSION;
	r->has_auth = be16toh(w.flags) & RDM_REQ_F_AUTH;
	if (r->has_auth)
		memcpy(r->auth, w.auth, sizeof(r->auth));
	return 0;
}

bool rdm_ct_equal(const void *a, const void *b, size_t n)
{
	const volatile uint8_t *x = a, *y = b;
	uint8_t diff = 0;

	for (size_t i = 0; i < n; i++)
		diff |= (uint8_t)(x[i] ^ y[i]);
	return diff == 0;
}

int rdm_auth_tag(const uint8_t key[FERRY_RDMA_AUTH_KEY_LEN], const uint8_t id[FERRY_RDMA_ID_LEN],
		 uint16_t lane, uint16_t lanes, uint8_t tag[FERRY_RDMA_AUTH_TAG_LEN])
{
	/* A domain label, then the fields in wire order: the tag binds all of them. */
	static const char label[15] = "ferry-rdma-lane";
	uint8_t msg[sizeof(label) + FERRY_RDMA_ID_LEN + 4], mac[32];
	uint16_t be_lane = htobe16(lane), be_lanes = htobe16(lanes);

	memcpy(msg, label, sizeof(label));
	memcpy(msg + sizeof(label), id, FERRY_RDMA_ID_LEN);
	memcpy(msg + sizeof(label) + FERRY_RDMA_ID_LEN, &be_lane, 2);
	memcpy(msg + sizeof(label) + FERRY_RDMA_ID_LEN + 2, &be_lanes, 2);
	if (gnutls_hmac_fast(GNUTLS_MAC_SHA256, key, FERRY_RDMA_AUTH_KEY_LEN, msg, sizeof(msg),
			     mac) < 0)
		return -EIO;
	memcpy(tag, mac, FERRY_RDMA_AUTH_TAG_LEN);
	gnutls_memset(mac, 0, sizeof(mac));
	return 0;
}

bool rdm_auth_check(const uint8_t key[FERRY_RDMA_AUTH_KEY_LEN], const struct rdm_conn_req *req)
{
	uint8_t want[FERRY_RDMA_AUTH_TAG_LEN];
	bool ok;

	if (!req->has_auth || rdm_auth_tag(key, req->id, req->lane, req->lanes, want) < 0)
		return false;
	ok = rdm_ct_equal(want, req->auth, sizeof(want));
	gnutls_memset(want, 0, sizeof(want));
	return ok;
}

void rdm_conn_reply_to_wire(uint16_t status, uint32_t lanes, void *buf)
{
	struct rdm_wire_conn_reply w = {
	    .magic = htobe32(RDM_MAGIC),
	    .version = htobe16(RDM_VERSION),
	    .status = htobe16(status),
	    .lanes = htobe32(lanes),
	};

	memcpy(buf, &w, sizeof(w));
}

int rdm_conn_reply_from_wire(const void *buf, uint8_t len, uint16_t *status, uint32_t *lanes)
{
	struct rdm_wire_conn_reply w;

	if (!buf || len < sizeof(w))
		return 0;
	memcpy(&w, buf, sizeof(w));
	if (be32toh(w.magic) != RDM_MAGIC)
		return 0;
	*status = be16toh(w.status);
	*lanes = be32toh(w.lanes);
	return 1;
}

/* ---- buffers ------------------------------------------------------------------ */

int rdm_ctrl_init(struct rdm_ctrl *c, struct rdm_mem *mem, uint32_t lane)
{
	memset(c, 0, sizeof(*c));
	c->lane = lane;
	c->area = aligned_alloc(4096, RDM_CTRL_BYTES);
	if (!c->area)
		return -ENOMEM;
	memset(c->area, 0, RDM_CTRL_BYTES);
	c->mr = ibv_reg_mr(mem->dev->pd, c->area, RDM_CTRL_BYTES, IBV_ACCESS_LOCAL_WRITE);
	if (!c->mr) {
		int err =
		    rdm_errno("%s: ibv_reg_mr of lane %u's control buffers", mem->dev->name, lane);

		free(c->area);
		c->area = NULL;
		return err;
	}
	for (uint32_t i = 0; i < RDM_CTRL_SEND; i++)
		c->send_free[i] = RDM_CTRL_SEND - 1 - i;
	c->n_free = RDM_CTRL_SEND;
	return 0;
}

void rdm_ctrl_fini(struct rdm_ctrl *c, struct rdm_mem *mem)
{
	int ret;

	if (c->mr) {
		ret = ibv_dereg_mr(c->mr);
		if (ret)
			rdm_errval(ret, "%s: ibv_dereg_mr of control buffers",
				   mem->dev ? mem->dev->name : "?");
		c->mr = NULL;
	}
	free(c->area);
	c->area = NULL;
}

int rdm_ctrl_post_recv(struct rdm_ctrl *c, struct ibv_qp *qp, uint32_t slot)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)rdm_ctrl_recv_buf(c, slot),
	    .length = RDM_CTRL_BUF,
	    .lkey = c->mr->lkey,
	};
	struct ibv_recv_wr wr = {
	    .wr_id = RDM_WR(RDM_WR_RECV, RDM_LANE_SLOT(c->lane, slot)),
	    .sg_list = &sge,
	    .num_sge = 1,
	};
	struct ibv_recv_wr *bad;
	int ret;

	ret = ibv_post_recv(qp, &wr, &bad);
	if (ret)
		return rdm_errval(ret, "lane %u: ibv_post_recv", c->lane);
	return 0;
}

int rdm_ctrl_post_all_recv(struct rdm_ctrl *c, struct ibv_qp *qp)
{
	for (uint32_t i = 0; i < RDM_CTRL_DEPTH; i++) {
		int ret = rdm_ctrl_post_recv(c, qp, i);

		if (ret)
			return ret;
	}
	return 0;
}

int rdm_ctrl_get_send(struct rdm_ctrl *c)
{
	if (!c->n_free)
		return -1;
	return (int)c->send_free[--c->n_free];
}

void rdm_ctrl_put_send(struct rdm_ctrl *c, uint32_t slot)
{
	if (c->n_free < RDM_CTRL_SEND)
		c->send_free[c->n_free++] = slot;
}

int rdm_ctrl_post_send(struct rdm_ctrl *c, struct ibv_qp *qp, uint32_t slot, uint32_t len)
{
	struct ibv_sge sge = {
	    .addr = (uintptr_t)rdm_ctrl_send_buf(c, slot),
	    .length = len,
	    .lkey = c->mr->lkey,
	};
	struct ibv_send_wr wr = {
	    .wr_id = RDM_WR(RDM_WR_SEND, RDM_LANE_SLOT(c->lane, slot)),
	    .sg_list = &sge,
	    .num_sge = 1,
	    .opcode = IBV_WR_SEND,
	    .send_flags = IBV_SEND_SIGNALED,
	};
	struct ibv_send_wr *bad;
	int ret;

	ret = ibv_post_send(qp, &wr, &bad);
	if (ret)
		return rdm_errval(ret, "lane %u: ibv_post_send of a control message", c->lane);
	return 0;
}
