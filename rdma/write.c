/* SPDX-License-Identifier: MIT */
/*
 * A source lane: one RC queue pair and its completion queue, driven by one
 * thread. Runs of pages become RDMA WRITE work requests straight from the
 * source's memory into the destination's (nothing is copied): a contiguous
 * piece as one request, cut only at the largest message and at registration
 * boundaries, several local registrations under one remote range as a
 * scatter list. Requests are chained in batches, a completion is requested
 * every signal_every writes (and when the ring fills), at most max_inflight
 * are outstanding, and the lane polls its own CQ.
 *
 * The ring: every WRITE posted (or being built) has a slot at position
 * [tail, head). A successful signaled completion, or the completion of a
 * control message posted after it, proves every earlier write on the queue
 * pair complete (RC completes in order), so the tail moves up to it and the
 * chunks those writes used are released. Whatever is still in the ring when
 * the lane fails is "not known to be placed".
 *
 * Flush: a FLUSH_REQ SEND after the writes on the same queue pair. The
 * destination answers it only after it has received it, and an RC responder
 * delivers a SEND only after every earlier WRITE on the queue pair is placed;
 * so when the answer arrives, every write of the lane is in the destination's
 * memory.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

/* What a failed completion means to the engine. */
static int wc_error(enum ibv_wc_status s)
{
	switch (s) {
	case IBV_WC_RETRY_EXC_ERR:
		return -ETIMEDOUT; /* the peer stopped acknowledging */
	case IBV_WC_RNR_RETRY_EXC_ERR:
	case IBV_WC_WR_FLUSH_ERR:
	case IBV_WC_REM_ABORT_ERR:
		return -ECONNRESET;
	case IBV_WC_REM_ACCESS_ERR:
	case IBV_WC_REM_INV_REQ_ERR:
	case IBV_WC_REM_OP_ERR:
		return -EREMOTEIO;
	default:
		return -EIO;
	}
}

/* ---- setup ------------------------------------------------------------------------ */

int rdm_lane_setup(struct rdm_lane *l)
{
	struct ferry_rdma_source *src = l->src;
	struct rdm_dev *dev = &src->dev;
	struct ibv_qp_init_attr qa;
	uint32_t cqe;
	int ret, flags;

	l->cc = ibv_create_comp_channel(dev->ctx);
	if (!l->cc)
		return rdm_errno("lane %u: ibv_create_comp_channel", l->index);
	flags = fcntl(l->cc->fd, F_GETFL);
	if (flags < 0 || fcntl(l->cc->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return rdm_errno("lane %u: fcntl(O_NONBLOCK) on the completion channel", l->index);
	cqe = src->ring_size + RDM_CTRL_SEND + RDM_CTRL_DEPTH + 8;
	if (dev->max_cqe && cqe > dev->max_cqe)
		cqe = dev->max_cqe;
	l->cq = ibv_create_cq(dev->ctx, (int)cqe, l, l->cc, 0);
	if (!l->cq)
		return rdm_errno("lane %u: ibv_create_cq(%u)", l->index, cqe);
	ret = rdm_ctrl_init(&l->ctrl, &src->mem, l->index);
	if (ret)
		return ret;

	memset(&qa, 0, sizeof(qa));
	qa.qp_context = l;
	qa.send_cq = l->cq;
	qa.recv_cq = l->cq;
	qa.cap.max_send_wr = src->ring_size + RDM_CTRL_SEND;
	qa.cap.max_recv_wr = RDM_CTRL_DEPTH;
	qa.cap.max_send_sge = dev->max_sge < RDM_SGE_MAX ? dev->max_sge : RDM_SGE_MAX;
	qa.cap.max_recv_sge = 1;
	qa.qp_type = IBV_QPT_RC;
	qa.sq_sig_all = 0;
	if (rdma_create_qp(l->id, dev->pd, &qa))
		return rdm_errno("lane %u: rdma_create_qp (%u send, %u receive)", l->index,
				 qa.cap.max_send_wr, qa.cap.max_recv_wr);
	l->qp = l->id->qp;

	l->ring = calloc(src->ring_size, sizeof(*l->ring));
	if (!l->ring)
		return -ENOMEM;
	l->ring_mask = src->ring_size - 1;
	l->head = l->tail = l->posted = 0;
	if (src->mem.reg == FERRY_RDMA_REG_CHUNKED) {
		ret = rdm_cmap_init(&l->lcache, src->mem.lane_chunks);
		if (ret)
			return ret;
	}
	ret = rdm_ctrl_post_all_recv(&l->ctrl, l->qp);
	if (ret)
		return ret;
	l->recv_posted = RDM_CTRL_DEPTH;
	ret = ibv_req_notify_cq(l->cq, 0);
	if (ret)
		return rdm_errval(ret, "lane %u: ibv_req_notify_cq", l->index);
	return 0;
}

void rdm_lane_teardown(struct rdm_lane *l)
{
	struct ferry_rdma_source *src = l->src;
	int ret;

	if (l->qp) {
		rdma_destroy_qp(l->id);
		l->qp = NULL;
	}
	if (l->cq) {
		ret = ibv_destroy_cq(l->cq);
		if (ret)
			rdm_errval(ret, "lane %u: ibv_destroy_cq", l->index);
		l->cq = NULL;
	}
	if (l->cc) {
		ret = ibv_destroy_comp_channel(l->cc);
		if (ret)
			rdm_errval(ret, "lane %u: ibv_destroy_comp_channel", l->index);
		l->cc = NULL;
	}
	rdm_ctrl_fini(&l->ctrl, &src->mem);
	if (l->lcache.cap) {
		for (struct rdm_centry *e = l->lcache.head; e; e = e->next)
			if (e->mr)
				rdm_mem_dereg(&src->mem, e->mr);
		rdm_cmap_fini(&l->lcache);
	}
	/* The destination drops a lane's chunk registrations when the lane disconnects. */
	rdm_cmap_fini(&l->rcache);
	free(l->ring);
	l->ring = NULL;
	if (l->id) {
		rdma_destroy_id(l->id);
		l->id = NULL;
	}
	l->connected = false;
	l->recv_posted = 0;
	l->outstanding = 0;
	l->nwr = 0;
	l->unsig = 0;
}

/* ---- completions ------------------------------------------------------------------ */

/* The ring position a 56-bit wr_id value stands for (positions are 64-bit). */
static uint64_t ring_pos(const struct rdm_lane *l, uint64_t v)
{
	return l->tail + ((v - l->tail) & ((1ull << 56) - 1));
}

/* Every write before ring position @upto is complete: release its slot. */
static void retire_to(struct rdm_lane *l, uint64_t upto)
{
	if (upto > l->posted)
		upto = l->posted;
	while (l->tail < upto) {
		struct rdm_slot *s = &l->ring[l->tail & l->ring_mask];

		if (s->rc)
			s->rc->refs--;
		for (uint8_t i = 0; i < s->nlc; i++)
			s->lc[i]->refs--;
		s->rc = NULL;
		s->nlc = 0;
		l->tail++;
	}
}

/* Is @m the answer for chunk @e? (The destination is checked like any peer.) */
static int check_reg(struct rdm_lane *l, const struct rdm_msg *m, const struct rdm_centry *e)
{
	struct ferry_rdma_source *src = l->src;
	const struct rdm_table_entry *t = &src->table[e->block];

	if (m->status != RDM_ST_OK)
		return rdm_src_fail(
		    src, -EREMOTEIO,
		    "lane %u: the destination refused to register block %u chunk %lu "
		    "(status %u)",
		    l->index, e->block, (unsigned long)e->chunk, m->status);
	if (m->u.chunk.block != e->block || m->u.chunk.chunk != e->chunk ||
	    m->u.chunk.addr != t->addr + e->start || m->u.chunk.length != e->len ||
	    !m->u.chunk.rkey)
		return rdm_src_fail(
		    src, FERRY_EBADSTREAM,
		    "lane %u: the destination registered block %u chunk %lu as %u/%lu "
		    "at 0x%lx+%lu, not the chunk asked for",
		    l->index, e->block, (unsigned long)e->chunk, m->u.chunk.block,
		    (unsigned long)m->u.chunk.chunk, (unsigned long)m->u.chunk.addr,
		    (unsigned long)m->u.chunk.length);
	return 0;
}

/* The answer to a registration asked for ahead of need: fill its entry. */
static bool take_pending(struct rdm_lane *l, const struct rdm_msg *m, int *ret)
{
	for (uint32_t i = 0; i < l->n_pend; i++) {
		struct rdm_centry *e = l->pend[i].e;

		if (l->pend[i].req != m->req)
			continue;
		l->pend[i] = l->pend[--l->n_pend];
		*ret = check_reg(l, m, e);
		if (!*ret) {
			e->raddr = m->u.chunk.addr;
			e->rkey = m->u.chunk.rkey;
			e->pending = false;
			e->refs--;
		}
		return true;
	}
	return false;
}

static int handle_reply(struct rdm_lane *l, uint32_t slot, uint32_t len)
{
	struct ferry_rdma_source *src = l->src;
	const uint8_t *buf = rdm_ctrl_recv_buf(&l->ctrl, slot);
	const char *why = NULL;
	struct rdm_msg m;
	int ret;

	ret = rdm_msg_from_wire(buf, len, &m, &why);
	if (ret)
		return rdm_src_fail(src, ret, "lane %u: malformed control message (%u bytes): %s",
				    l->index, len, why);
	if (m.type & 1)
		return rdm_src_fail(src, FERRY_EBADSTREAM,
				    "lane %u: the destination sent a %s request", l->index,
				    rdm_msg_name(m.type));
	if (!l->outstanding)
		return rdm_src_fail(src, FERRY_EBADSTREAM, "lane %u: unsolicited %s", l->index,
				    rdm_msg_name(m.type));
	l->outstanding--;
	if (m.type == RDM_MSG_REG && take_pending(l, &m, &ret)) {
		if (ret)
			return ret;
	} else if (!l->await_done && m.req == l->await_req) {
		l->await_msg = m;
		memcpy(l->await_buf, buf, len);
		l->await_done = true;
	} else if (m.status != RDM_ST_OK) {
		return rdm_src_fail(src, -EREMOTEIO,
				    "lane %u: the destination answered %s with status %u", l->index,
				    rdm_msg_name(m.type), m.status);
	}
	ret = rdm_ctrl_post_recv(&l->ctrl, l->qp, slot);
	if (ret)
		return rdm_src_fail(src, ret, "lane %u: cannot re-post a receive", l->index);
	return 0;
}

static int handle_wc(struct rdm_lane *l, const struct ibv_wc *wc)
{
	struct ferry_rdma_source *src = l->src;
	uint64_t kind = RDM_WR_KIND(wc->wr_id), v = RDM_WR_VAL(wc->wr_id);

	if (wc->status != IBV_WC_SUCCESS) {
		static const char *const kinds[] = {"?", "RDMA WRITE", "control SEND", "receive"};

		return rdm_src_fail(src, wc_error(wc->status),
				    "lane %u: %s completed with %s (status %d, vendor error 0x%x)",
				    l->index, kinds[kind < 4 ? kind : 0],
				    ibv_wc_status_str(wc->status), wc->status, wc->vendor_err);
	}
	switch (kind) {
	case RDM_WR_WRITE: {
		uint64_t pos = ring_pos(l, v);

		if (pos >= l->posted)
			break;
		retire_to(l, pos + 1);
		return 0;
	}
	case RDM_WR_SEND: {
		uint32_t slot = RDM_WR_SLOT(v);

		if (slot >= RDM_CTRL_SEND)
			break;
		retire_to(l, l->send_mark[slot]);
		rdm_ctrl_put_send(&l->ctrl, slot);
		return 0;
	}
	case RDM_WR_RECV:
		if (RDM_WR_SLOT(v) >= RDM_CTRL_DEPTH)
			break;
		return handle_reply(l, RDM_WR_SLOT(v), wc->byte_len);
	}
	return rdm_src_fail(src, -EIO, "lane %u: completion with unknown wr_id 0x%llx", l->index,
			    (unsigned long long)wc->wr_id);
}

/*
 * Reap completions. With @deadline 0, only what is there; otherwise sleep on
 * the completion channel (and the source's wake eventfd) until at least one
 * arrives, the source fails, or @deadline passes (a failure: -ETIMEDOUT).
 */
static int lane_poll(struct rdm_lane *l, int64_t deadline)
{
	struct ferry_rdma_source *src = l->src;
	struct ibv_wc wc[16];
	bool armed = false;
	int n, ret;

	for (;;) {
		ret = rdm_fail_get(&src->fail);
		if (ret)
			return ret;
		n = ibv_poll_cq(l->cq, 16, wc);
		if (n < 0)
			return rdm_src_fail(src, -EIO, "lane %u: ibv_poll_cq failed", l->index);
		for (int i = 0; i < n; i++) {
			ret = handle_wc(l, &wc[i]);
			if (ret)
				return ret;
		}
		if (n > 0 || deadline == 0)
			return 0;
		if (!armed) {
			/* Arm, then look once more: a completion may have come in between. */
			ret = ibv_req_notify_cq(l->cq, 0);
			if (ret)
				return rdm_src_fail(src, rdm_errval(ret, "ibv_req_notify_cq"),
						    "lane %u: cannot arm its CQ", l->index);
			armed = true;
			continue;
		}
		struct pollfd pfd[2] = {
		    {.fd = l->cc->fd, .events = POLLIN},
		    {.fd = src->wake_fd, .events = POLLIN},
		};
		ret = poll(pfd, 2, rdm_remaining_ms(deadline));
		if (ret == 0)
			return rdm_src_fail(
			    src, -ETIMEDOUT,
			    "lane %u: no completion within %d ms (ring %lu..%lu, %u "
			    "requests unanswered)",
			    l->index, src->attr.timeout_ms, (unsigned long)l->tail,
			    (unsigned long)l->head, l->outstanding);
		if (ret < 0 && errno != EINTR)
			return rdm_src_fail(src, -errno, "lane %u: poll: %s", l->index,
					    strerror(errno));
		if (pfd[0].revents & POLLIN) {
			struct ibv_cq *cq;
			void *ctx;

			if (!ibv_get_cq_event(l->cc, &cq, &ctx))
				ibv_ack_cq_events(cq, 1);
			armed = false;
		}
	}
}

static int64_t wait_deadline(const struct rdm_lane *l)
{
	return rdm_deadline(l->src->attr.timeout_ms);
}

/* ---- posting ------------------------------------------------------------------------ */

static int post_pending(struct rdm_lane *l)
{
	struct ferry_rdma_source *src = l->src;
	struct ibv_send_wr *bad = NULL;
	int ret;

	if (!l->nwr)
		return 0;
	for (uint32_t i = 0; i + 1 < l->nwr; i++)
		l->wr[i].next = &l->wr[i + 1];
	l->wr[l->nwr - 1].next = NULL;
	ret = ibv_post_send(l->qp, &l->wr[0], &bad);
	if (ret) {
		/* Slots from @bad on were never posted; they stay in the unplaced set. */
		uint32_t done = bad ? (uint32_t)(bad - &l->wr[0]) : 0, left = l->nwr - done;

		l->posted += done;
		l->nwr = 0;
		return rdm_src_fail(src, rdm_errval(ret, "ibv_post_send"),
				    "lane %u: cannot post %u RDMA WRITEs", l->index, left);
	}
	l->posted = l->head;
	l->nwr = 0;
	/* Retire what is already complete: it frees ring slots and chunk references early. */
	return lane_poll(l, 0);
}

/* Send a control request (credits permitting); its reply is matched by number. */
static int send_request(struct rdm_lane *l, struct rdm_msg *m)
{
	struct ferry_rdma_source *src = l->src;
	int64_t deadline;
	uint32_t len;
	int slot, ret;

	ret = post_pending(l);
	if (ret)
		return ret;
	deadline = wait_deadline(l);
	while (l->outstanding >= RDM_CTRL_DEPTH || (slot = rdm_ctrl_get_send(&l->ctrl)) < 0) {
		ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	m->req = ++l->next_req;
	m->status = 0;
	len = rdm_msg_to_wire(m, rdm_ctrl_send_buf(&l->ctrl, (uint32_t)slot));
	/* Its completion proves every write posted so far complete. */
	l->send_mark[slot] = l->posted;
	ret = rdm_ctrl_post_send(&l->ctrl, l->qp, (uint32_t)slot, len);
	if (ret) {
		rdm_ctrl_put_send(&l->ctrl, (uint32_t)slot);
		return rdm_src_fail(src, ret, "lane %u: cannot send %s", l->index,
				    rdm_msg_name(m->type));
	}
	l->outstanding++;
	l->unsig = 0;
	return 0;
}

int rdm_lane_call(struct rdm_lane *l, struct rdm_msg *req, uint16_t reply_type)
{
	struct ferry_rdma_source *src = l->src;
	int64_t deadline;
	int ret;

	ret = send_request(l, req);
	if (ret)
		return ret;
	l->await_req = req->req;
	l->await_done = false;
	deadline = wait_deadline(l);
	while (!l->await_done) {
		ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	if (l->await_msg.type != reply_type)
		return rdm_src_fail(src, FERRY_EBADSTREAM, "lane %u: %s answered with %s", l->index,
				    rdm_msg_name(req->type), rdm_msg_name(l->await_msg.type));
	if (l->await_msg.status != RDM_ST_OK)
		return rdm_src_fail(src, -EREMOTEIO,
				    "lane %u: the destination refused %s (status %u)", l->index,
				    rdm_msg_name(req->type), l->await_msg.status);
	return 0;
}

/*
 * Wait until every write posted on the lane is complete, so that every chunk
 * reference is released. If the last writes were not signaled, a NOP request
 * (its SEND is signaled) covers them.
 */
static int drain(struct rdm_lane *l)
{
	int64_t deadline;
	int ret;

	ret = post_pending(l);
	if (ret)
		return ret;
	if (l->tail == l->head)
		return 0;
	if (l->unsig) {
		struct rdm_msg nop = {.type = RDM_MSG_NOP_REQ};

		ret = send_request(l, &nop);
		if (ret)
			return ret;
	}
	deadline = wait_deadline(l);
	while (l->tail < l->head) {
		ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	return 0;
}

/* ---- registrations for a write ------------------------------------------------------- */

/*
 * The local key covering @pos of @block, and where its registration ends.
 * CHUNKED: the chunk is registered on first use (evicting the least recently
 * used idle chunk when the lane's budget is full); -EAGAIN when every chunk
 * is in use by writes in flight. The entry's reference is taken.
 */
static int local_key(struct rdm_lane *l, uint32_t block, uint64_t pos, uint64_t *end,
		     uint32_t *lkey, struct rdm_centry **ce)
{
	struct ferry_rdma_source *src = l->src;
	struct rdm_mem *mem = &src->mem;
	struct rdm_centry *e;
	uint64_t c;
	int err = 0;

	*ce = NULL;
	if (mem->reg != FERRY_RDMA_REG_CHUNKED) {
		*lkey = mem->block_mr[block]->lkey;
		*end = mem->blocks[block].length;
		return 0;
	}
	c = pos / mem->chunk_size;
	e = rdm_cmap_find(&l->lcache, block, c);
	if (!e) {
		if (rdm_cmap_full(&l->lcache)) {
			struct rdm_centry *v = rdm_cmap_victim(&l->lcache);

			if (!v)
				return -EAGAIN;
			rdm_mem_dereg(mem, v->mr);
			rdm_cmap_remove(&l->lcache, v);
		}
		e = rdm_cmap_insert(&l->lcache, block, c);
		e->start = c * mem->chunk_size;
		e->len = mem->blocks[block].length - e->start;
		if (e->len > mem->chunk_size)
			e->len = mem->chunk_size;
		e->mr =
		    rdm_mem_reg(mem, (uint8_t *)mem->blocks[block].host + e->start, e->len, &err);
		if (!e->mr) {
			rdm_cmap_remove(&l->lcache, e);
			return rdm_src_fail(src, err,
					    "lane %u: cannot register chunk %lu of block %u",
					    l->index, (unsigned long)c, block);
		}
	}
	e->refs++;
	*lkey = e->mr->lkey;
	*end = e->start + e->len;
	*ce = e;
	return 0;
}

/*
 * Ask the destination to register chunk @c of @block for this lane. The
 * entry is pending (and pinned by a reference) until the answer comes;
 * take_pending() fills it in.
 */
static int ask_reg(struct rdm_lane *l, uint32_t block, uint64_t c, struct rdm_centry **out)
{
	struct ferry_rdma_source *src = l->src;
	const struct rdm_table_entry *t = &src->table[block];
	struct rdm_msg m = {.type = RDM_MSG_REG_REQ};
	struct rdm_centry *e;
	int ret;

	e = rdm_cmap_insert(&l->rcache, block, c);
	e->start = c * src->peer_chunk;
	e->len = t->length - e->start < src->peer_chunk ? t->length - e->start : src->peer_chunk;
	e->pending = true;
	e->refs = 1;
	m.u.chunk.block = block;
	m.u.chunk.chunk = c;
	ret = send_request(l, &m);
	if (ret) {
		rdm_cmap_remove(&l->rcache, e);
		return ret;
	}
	/* Every pending registration is an outstanding request: never more than the credits. */
	l->pend[l->n_pend].req = m.req;
	l->pend[l->n_pend].e = e;
	l->n_pend++;
	rdm_add(&l->remote_regs, 1);
	*out = e;
	return 0;
}

/*
 * While a lane waits for one registration anyway, ask for the chunks the
 * rest of its runs will need, into free cache slots only (never evicting for
 * a guess), keeping credits for the lane's other requests.
 */
static void ask_ahead(struct rdm_lane *l)
{
	struct ferry_rdma_source *src = l->src;
	unsigned scanned = 0;

	for (size_t i = 0; i < l->n_ahead; i++) {
		const struct ferry_rdma_run *r = &l->ahead[i];
		uint64_t last = (r->offset + r->length - 1) / src->peer_chunk;

		for (uint64_t c = r->offset / src->peer_chunk; c <= last; c++) {
			struct rdm_centry *e;

			if (++scanned > 64 || rdm_cmap_full(&l->rcache) ||
			    l->n_pend >= RDM_CTRL_DEPTH / 2 || l->outstanding >= RDM_CTRL_DEPTH - 2)
				return;
			if (rdm_cmap_find(&l->rcache, r->block, c))
				continue;
			if (ask_reg(l, r->block, c, &e))
				return;
		}
	}
}

/*
 * As local_key() for the destination's side: a CHUNKED destination registers
 * a chunk when the lane asks (REG_REQ), and drops one (UNREG_REQ) when the lane
 * needs the room, once no write of the lane uses it. -EAGAIN when every
 * cached chunk is in use or still being registered.
 */
static int remote_key(struct rdm_lane *l, uint32_t block, uint64_t pos, uint64_t *end,
		      uint32_t *rkey, struct rdm_centry **ce)
{
	struct ferry_rdma_source *src = l->src;
	const struct rdm_table_entry *t = &src->table[block];
	struct rdm_centry *e;
	uint64_t c;
	int ret;

	*ce = NULL;
	if (src->peer_reg != FERRY_RDMA_REG_CHUNKED) {
		*rkey = t->rkey;
		*end = t->length;
		return 0;
	}
	c = pos / src->peer_chunk;
	e = rdm_cmap_find(&l->rcache, block, c);
	if (!e) {
		if (rdm_cmap_full(&l->rcache)) {
			struct rdm_centry *v = rdm_cmap_victim(&l->rcache);
			struct rdm_msg m = {.type = RDM_MSG_UNREG_REQ};

			if (!v)
				return -EAGAIN;
			/* No write uses it any more (refs 0): the destination may drop it. */
			m.u.chunk.block = v->block;
			m.u.chunk.chunk = v->chunk;
			rdm_cmap_remove(&l->rcache, v);
			ret = send_request(l, &m);
			if (ret)
				return ret;
		}
		ret = ask_reg(l, block, c, &e);
		if (ret)
			return ret;
		ask_ahead(l);
	}
	if (e->pending) {
		int64_t deadline = wait_deadline(l);

		ret = post_pending(l);
		while (!ret && e->pending)
			ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	e->refs++;
	*rkey = e->rkey;
	*end = e->start + e->len;
	*ce = e;
	return 0;
}

/* ---- writes ------------------------------------------------------------------------- */

/* Build (and post when the batch is full) one WRITE from *@pos of @r; advance *@pos. */
static int build_write(struct rdm_lane *l, const struct ferry_rdma_run *r, uint64_t *pos)
{
	struct ferry_rdma_source *src = l->src;
	uint32_t ring_size = l->ring_mask + 1, max_sge = RDM_SGE_MAX;
	uint64_t end = r->offset + r->length, p, wr_end, rend = 0, lend = 0;
	struct rdm_centry *rce, *lce;
	struct ibv_send_wr *wr;
	struct rdm_slot *s;
	uint32_t rkey = 0, lkey = 0, n = 0;
	bool signaled;
	int ret;

	if (max_sge > src->dev.max_sge)
		max_sge = src->dev.max_sge;
	/* Room in the ring: the write that filled it was signaled, so a completion will come. */
	if (l->head - l->tail >= ring_size) {
		int64_t deadline = wait_deadline(l);

		ret = post_pending(l);
		while (!ret && l->head - l->tail >= ring_size)
			ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	while ((ret = remote_key(l, r->block, *pos, &rend, &rkey, &rce)) == -EAGAIN) {
		/* Registrations on their way free a slot when they land; else wait for the writes.
		 */
		ret = l->n_pend ? lane_poll(l, wait_deadline(l)) : drain(l);
		if (ret)
			return ret;
	}
	if (ret)
		return ret;
	wr_end = end < rend ? end : rend;
	if (wr_end - *pos > src->max_wr)
		wr_end = *pos + src->max_wr;

	s = &l->ring[l->head & l->ring_mask];
	s->rc = rce;
	s->nlc = 0;
	/* Zeros come from the zero buffer, as many entries of it as the write allows. */
	for (p = *pos; (r->flags & FERRY_RDMA_RUN_ZERO) && p < wr_end && n < max_sge; n++) {
		uint64_t seg = wr_end - p < RDM_ZERO_BUF ? wr_end - p : RDM_ZERO_BUF;

		l->sge[l->nwr][n].addr = (uintptr_t)src->zero;
		l->sge[l->nwr][n].length = (uint32_t)seg;
		l->sge[l->nwr][n].lkey = src->zero_mr->lkey;
		p += seg;
	}
	for (; !(r->flags & FERRY_RDMA_RUN_ZERO) && p < wr_end && n < max_sge;) {
		ret = local_key(l, r->block, p, &lend, &lkey, &lce);
		if (ret == -EAGAIN) {
			if (n)
				break; /* end this write here; the next one can wait */
			ret = drain(l);
			if (ret)
				goto err;
			continue;
		}
		if (ret)
			goto err;
		if (lce)
			s->lc[s->nlc++] = lce;
		if (lend > wr_end)
			lend = wr_end;
		l->sge[l->nwr][n].addr = (uintptr_t)src->mem.blocks[r->block].host + p;
		l->sge[l->nwr][n].length = (uint32_t)(lend - p);
		l->sge[l->nwr][n].lkey = lkey;
		n++;
		p = lend;
	}
	wr_end = p;

	s->block = r->block;
	s->flags = r->flags;
	s->offset = *pos;
	s->length = (uint32_t)(wr_end - *pos);
	wr = &l->wr[l->nwr];
	memset(wr, 0, sizeof(*wr));
	wr->wr_id = RDM_WR(RDM_WR_WRITE, l->head);
	wr->sg_list = l->sge[l->nwr];
	wr->num_sge = (int)n;
	wr->opcode = IBV_WR_RDMA_WRITE;
	wr->wr.rdma.remote_addr = src->table[r->block].addr + *pos;
	wr->wr.rdma.rkey = rkey;
	signaled = ++l->unsig >= src->attr.signal_every || l->head + 1 - l->tail >= ring_size;
	if (signaled) {
		wr->send_flags = IBV_SEND_SIGNALED;
		l->unsig = 0;
		rdm_add(&l->signaled, 1);
	}
	l->head++;
	l->nwr++;
	rdm_add(&l->bytes, s->length);
	if (r->flags & FERRY_RDMA_RUN_ZERO)
		rdm_add(&l->zero_bytes, s->length);
	rdm_add(&l->writes, 1);
	*pos = wr_end;
	if (l->nwr == RDM_BATCH)
		return post_pending(l);
	return 0;

err:
	if (rce)
		rce->refs--;
	for (uint8_t i = 0; i < s->nlc; i++)
		s->lc[i]->refs--;
	s->rc = NULL;
	s->nlc = 0;
	return ret;
}

/* Keep what the failed call did not post (appended: the engine re-sends it). */
static void keep_unposted(struct rdm_lane *l, const struct ferry_rdma_run *runs, size_t n,
			  uint64_t first_pos)
{
	struct ferry_rdma_run *u;

	if (!n)
		return;
	u = realloc(l->unposted, (l->n_unposted + n) * sizeof(*u));
	if (!u) {
		rdm_err("lane %u: out of memory recording %zu unposted runs", l->index, n);
		return;
	}
	l->unposted = u;
	for (size_t i = 0; i < n; i++) {
		struct ferry_rdma_run r = runs[i];

		if (i == 0 && first_pos > r.offset) {
			r.length -= first_pos - r.offset;
			r.offset = first_pos;
		}
		if (r.length)
			u[l->n_unposted++] = r;
	}
}

int rdm_lane_write(struct rdm_lane *l, const struct ferry_rdma_run *runs, size_t n)
{
	struct ferry_rdma_source *src = l->src;
	size_t i;
	int ret;

	for (i = 0; i < n; i++) {
		const struct ferry_rdma_run *r = &runs[i];

		if (r->block >= src->mem.n_blocks || !r->length ||
		    (r->flags & ~FERRY_RDMA_RUN_ZERO) ||
		    r->offset > src->mem.blocks[r->block].length ||
		    r->length > src->mem.blocks[r->block].length - r->offset) {
			rdm_err("lane %u: run %zu (block %u, offset %lu, %lu bytes, flags 0x%x) is "
				"out of bounds or has unknown flags",
				l->index, i, r->block, (unsigned long)r->offset,
				(unsigned long)r->length, r->flags);
			return -EINVAL;
		}
	}
	ret = rdm_fail_get(&src->fail);
	if (ret) {
		keep_unposted(l, runs, n, 0);
		return ret;
	}
	for (i = 0; i < n; i++) {
		uint64_t pos = runs[i].offset, end = runs[i].offset + runs[i].length;

		/* The caller's runs, for asking ahead; never kept beyond this call. */
		l->ahead = &runs[i];
		l->n_ahead = n - i;
		while (pos < end) {
			ret = build_write(l, &runs[i], &pos);
			if (ret) {
				l->ahead = NULL;
				l->n_ahead = 0;
				keep_unposted(l, &runs[i], n - i, pos);
				return ret;
			}
		}
	}
	l->ahead = NULL;
	l->n_ahead = 0;
	/* A failure here leaves the batch's slots in the ring: they are in the unplaced set. */
	return post_pending(l);
}

int rdm_lane_flush(struct rdm_lane *l, uint64_t tag)
{
	struct ferry_rdma_source *src = l->src;
	struct rdm_msg m = {.type = RDM_MSG_FLUSH_REQ};
	int64_t deadline;
	int ret;

	ret = rdm_fail_get(&src->fail);
	if (ret)
		return ret;
	m.u.flush.tag = tag;
	m.u.flush.seq = ++l->flush_seq;
	/* Every write counted here was posted before this SEND: the account is the lane's. */
	m.u.flush.bytes = rdm_read(&l->bytes);
	m.u.flush.zero_bytes = rdm_read(&l->zero_bytes);
	ret = rdm_lane_call(l, &m, RDM_MSG_FLUSH);
	if (ret)
		return ret;
	if (l->await_msg.u.flush.tag != tag || l->await_msg.u.flush.seq != l->flush_seq)
		return rdm_src_fail(src, FERRY_EBADSTREAM,
				    "lane %u: flush %lu acknowledged as %lu (tag %lu, not %lu)",
				    l->index, (unsigned long)l->flush_seq,
				    (unsigned long)l->await_msg.u.flush.seq,
				    (unsigned long)l->await_msg.u.flush.tag, (unsigned long)tag);
	/* The reply may overtake the SEND's own completion, which retires the ring. */
	deadline = wait_deadline(l);
	while (l->tail < l->posted) {
		ret = lane_poll(l, deadline);
		if (ret)
			return ret;
	}
	rdm_add(&l->flushes, 1);
	atomic_store_explicit(&l->last_tag, tag, memory_order_relaxed);
	return 0;
}

ssize_t rdm_lane_unplaced(struct rdm_lane *l, struct ferry_rdma_run *out, size_t cap)
{
	size_t n = 0;

	for (uint64_t p = l->tail; l->ring && p < l->head; p++, n++) {
		const struct rdm_slot *s = &l->ring[p & l->ring_mask];

		if (n < cap)
			out[n] = (struct ferry_rdma_run){.block = s->block,
							 .flags = s->flags,
							 .offset = s->offset,
							 .length = s->length};
	}
	for (size_t i = 0; i < l->n_unposted; i++, n++)
		if (n < cap)
			out[n] = l->unposted[i];
	return (ssize_t)n;
}
