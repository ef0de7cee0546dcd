/* SPDX-License-Identifier: MIT */
/*
 * The destination treats the source's control messages as hostile. A lane
 * of a real, connected source is used as a raw channel (bypassing the
 * source's own logic) to send requests out of range, over the chunk budget,
 * for chunks never registered, and finally bytes that are no message at all:
 * refusals come back as statuses and leave the destination healthy; garbage
 * fails the destination with FERRY_EBADSTREAM and drops the lane, without a
 * crash or a leak (run the rig under ASan to see the latter).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <string.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"
#include "rdma/internal.h"

#define CHUNK (256 * 1024)

/* Send @len raw bytes on @l and wait (5 s) for one reply, decoded into @r. 0 or -ETIMEDOUT. */
static int raw_call(struct rdm_lane *l, const void *bytes, uint32_t len, struct rdm_msg *r)
{
	double end = rt_now_ms() + 5000;
	int slot = rdm_ctrl_get_send(&l->ctrl);

	cr_assert_geq(slot, 0);
	memcpy(rdm_ctrl_send_buf(&l->ctrl, (uint32_t)slot), bytes, len);
	cr_assert_eq(rdm_ctrl_post_send(&l->ctrl, l->qp, (uint32_t)slot, len), 0);
	while (rt_now_ms() < end) {
		struct ibv_wc wc;
		uint64_t v;

		if (ibv_poll_cq(l->cq, 1, &wc) <= 0) {
			usleep(1000);
			continue;
		}
		v = RDM_WR_VAL(wc.wr_id);
		if (RDM_WR_KIND(wc.wr_id) == RDM_WR_SEND) {
			rdm_ctrl_put_send(&l->ctrl, RDM_WR_SLOT(v));
			if (wc.status != IBV_WC_SUCCESS)
				return -ECONNRESET;
			continue;
		}
		if (wc.status != IBV_WC_SUCCESS)
			return -ECONNRESET;
		const char *why = NULL;

		cr_assert_eq(rdm_msg_from_wire(rdm_ctrl_recv_buf(&l->ctrl, RDM_WR_SLOT(v)),
					       wc.byte_len, r, &why),
			     0, "the destination's reply is malformed: %s", why);
		cr_assert_eq(rdm_ctrl_post_recv(&l->ctrl, l->qp, RDM_WR_SLOT(v)), 0);
		return 0;
	}
	return -ETIMEDOUT;
}

static uint16_t call(struct rdm_lane *l, struct rdm_msg *m, struct rdm_msg *r)
{
	uint8_t buf[RDM_CTRL_BUF];
	uint32_t len;

	m->req = 1000 + m->type;
	len = rdm_msg_to_wire(m, buf);
	cr_assert_eq(raw_call(l, buf, len, r), 0, "no reply to %s", rdm_msg_name(m->type));
	cr_assert_eq(r->type, m->type + 1);
	cr_assert_eq(r->req, m->req);
	return r->status;
}

static uint16_t reg(struct rdm_lane *l, uint16_t type, uint32_t block, uint64_t chunk,
		    struct rdm_msg *r)
{
	struct rdm_msg m = {.type = type};

	m.u.chunk.block = block;
	m.u.chunk.chunk = chunk;
	return call(l, &m, r);
}

Test(rdma_hostile, requests_checked_against_blocks_and_budget, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_block sb, db;
	struct ferry_rdma_stats st;
	struct rdm_msg m, r;
	struct rdm_lane *l;
	struct rt_env env;
	char why[FERRY_RDMA_MSG_MAX];
	uint8_t junk[20];
	int ret = 0;

	rt_env_or_skip(&env);
	sb = (struct ferry_rdma_block){rt_map(4 * MIB), 4 * MIB};
	db = (struct ferry_rdma_block){rt_map(4 * MIB), 4 * MIB};
	ferry_rdma_dest_attr_init(&da);
	da.host = env.ip;
	rt_id(da.id, 6);
	da.blocks = &db;
	da.n_blocks = 1;
	da.reg = FERRY_RDMA_REG_CHUNKED;
	da.chunk_size = CHUNK;
	da.memlock_budget = 2 * CHUNK; /* two chunks for the one lane */
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), 0);
	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = ferry_rdma_dest_port(dst);
	rt_id(sa.id, 6);
	sa.blocks = &sb;
	sa.n_blocks = 1;
	cr_assert_eq(rt_source_open(&sa, &src), 0);
	l = &src->lanes[0];

	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 1, 0, &r), RDM_ST_RANGE, "block out of range");
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 16, &r), RDM_ST_RANGE, "chunk out of range");
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, ~0ull, &r), RDM_ST_RANGE);
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 0, &r), RDM_ST_OK);
	cr_assert(r.u.chunk.rkey && r.u.chunk.length == CHUNK &&
		  r.u.chunk.addr == (uintptr_t)db.host);
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 0, &r), RDM_ST_OK, "a repeat is answered again");
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 15, &r), RDM_ST_OK);
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 7, &r), RDM_ST_BUDGET, "a third chunk");
	cr_assert_eq(reg(l, RDM_MSG_UNREG_REQ, 0, 7, &r), RDM_ST_NOTREG);
	cr_assert_eq(reg(l, RDM_MSG_UNREG_REQ, 0, 0, &r), RDM_ST_OK);
	cr_assert_eq(reg(l, RDM_MSG_REG_REQ, 0, 7, &r), RDM_ST_OK, "room again after an unreg");
	ferry_rdma_dest_stats(dst, &st);
	cr_assert_eq(st.registered_bytes, 2 * CHUNK, "never more than the budget");

	memset(&m, 0, sizeof(m));
	m.type = RDM_MSG_TABLE_REQ;
	m.u.table_req.first = 1;
	m.u.table_req.max = 10;
	cr_assert_eq(call(l, &m, &r), RDM_ST_RANGE);
	cr_assert_eq(r.u.table.count, 0);
	m.u.table_req.first = 0;
	m.u.table_req.max = 0;
	cr_assert_eq(call(l, &m, &r), RDM_ST_RANGE);
	m.u.table_req.max = 0xffffffff; /* asks for more than exist: gets what exists */
	cr_assert_eq(call(l, &m, &r), RDM_ST_OK);
	cr_assert_eq(r.u.table.count, 1);
	cr_assert_eq(ferry_rdma_dest_status(dst, NULL, 0), 0, "refusals are not failures");

	/* No message at all: the destination fails, says why, and drops the lane. */
	memset(junk, 0xee, sizeof(junk));
	/*
	 * No answer comes: the call times out or, once the source's monitor has
	 * answered the destination's disconnect, its receives are flushed.
	 */
	ret = raw_call(l, junk, sizeof(junk), &r);
	cr_assert(ret == -ETIMEDOUT || ret == -ECONNRESET, "%s", ferry_strerror(ret));
	ret = 0;
	for (int i = 0; i < 50 && !ret; i++, usleep(100000))
		ret = ferry_rdma_dest_status(dst, why, sizeof(why));
	cr_assert_eq(ret, FERRY_EBADSTREAM);
	cr_log_info("destination: %s", why);
	for (int i = 0; i < 50 && !ferry_rdma_source_status(src, NULL, 0); i++)
		usleep(100000);
	cr_assert_eq(ferry_rdma_source_status(src, why, sizeof(why)), -ECONNRESET, "%s", why);
	ferry_rdma_source_destroy(src);
	cr_assert_eq(ferry_rdma_dest_close(dst), FERRY_EBADSTREAM);
	rt_unmap(sb.host, sb.length);
	rt_unmap(db.host, db.length);
}
