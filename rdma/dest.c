/* SPDX-License-Identifier: MIT */
/*
 * The destination object. After create, one service thread owns every verbs
 * and rdma_cm object of the destination: it accepts or rejects connect
 * requests, answers the source's control messages (hello, block table, chunk
 * registration, flush), tracks the lanes' state and flushes for the caller's
 * threads (accept, wait_flush, status, stats: under @lock), and on
 * DEVICE_REMOVAL releases everything at once so that `rdma link delete` is not
 * held up by a destination nobody closes.
 *
 * Every control message is hostile input: checked by rdm_msg_from_wire(),
 * then each field against the destination's own blocks and budget. A
 * malformed message fails the destination (FERRY_EBADSTREAM) and disconnects
 * the lane.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "internal.h"

void ferry_rdma_dest_attr_init(struct ferry_rdma_dest_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->size = sizeof(*attr);
	attr->lanes = 1;
	attr->reg = FERRY_RDMA_REG_AUTO;
	attr->timeout_ms = 10000;
	attr->ack_timeout = 16;
	attr->retry_cnt = 6;
}

static int take_attr(const struct ferry_rdma_dest_attr *in, struct ferry_rdma_dest_attr *a)
{
	ferry_rdma_dest_attr_init(a);
	if (!in || in->size < offsetof(struct ferry_rdma_dest_attr, reg)) {
		rdm_err("destination: attributes missing or too old (size %u)", in ? in->size : 0);
		return -EINVAL;
	}
	memcpy(a, in, in->size < sizeof(*a) ? in->size : sizeof(*a));
	a->size = sizeof(*a);
	if (!a->lanes || a->lanes > FERRY_RDMA_MAX_LANES) {
		rdm_err("destination: %u lanes (expected 1..%u)", a->lanes, FERRY_RDMA_MAX_LANES);
		return -EINVAL;
	}
	if (a->retry_cnt > 6 || a->ack_timeout > 31 || (unsigned)a->reg > FERRY_RDMA_REG_ODP) {
		rdm_err(
		    "destination: retry count %u (at most 6), ack timeout %u or registration %d "
		    "out of range",
		    a->retry_cnt, a->ack_timeout, a->reg);
		return -EINVAL;
	}
	if (a->timeout_ms == 0)
		a->timeout_ms = 10000;
	return 0;
}

static void timed_wait(struct ferry_rdma_dest *dst, int64_t deadline)
{
	struct timespec ts;
	int64_t ns = deadline == INT64_MAX ? rdm_now_ns() + 1000000000 : deadline;

	/* The condition variable runs on CLOCK_MONOTONIC, like rdm_now_ns(). */
	ts.tv_sec = ns / 1000000000;
	ts.tv_nsec = ns % 1000000000;
	pthread_cond_timedwait(&dst->cond, &dst->lock, &ts);
}

static void dest_fail(struct ferry_rdma_dest *dst, int err, const char *what, uint32_t lane)
{
	rdm_fail_set(&dst->fail, err, "lane %u: %s", lane, what);
	pthread_mutex_lock(&dst->lock);
	pthread_cond_broadcast(&dst->cond);
	pthread_mutex_unlock(&dst->lock);
}

int rdm_dest_open_device(struct ferry_rdma_dest *dst, struct ibv_context *ctx)
{
	uint32_t n = dst->n_lanes;
	int ret, flags;

	ret = rdm_dev_open(ctx, &dst->dev);
	dst->dev_open = true;
	if (ret)
		return ret;
	ret = rdm_mem_choose(&dst->mem, &dst->dev, dst->attr.reg, dst->attr.chunk_size,
			     dst->attr.memlock_budget, n, (uint64_t)n * RDM_CTRL_BYTES,
			     IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE, "destination");
	if (ret)
		return ret;
	ret = rdm_mem_register_blocks(&dst->mem);
	if (ret)
		return ret;
	dst->cc = ibv_create_comp_channel(ctx);
	if (!dst->cc)
		return rdm_errno("destination: ibv_create_comp_channel");
	flags = fcntl(dst->cc->fd, F_GETFL);
	if (flags < 0 || fcntl(dst->cc->fd, F_SETFL, flags | O_NONBLOCK) < 0)
		return rdm_errno("destination: fcntl(O_NONBLOCK) on the completion channel");
	dst->recv_cq = ibv_create_cq(ctx, (int)(n * RDM_CTRL_DEPTH + 8), dst, dst->cc, 0);
	if (!dst->recv_cq)
		return rdm_errno("destination: ibv_create_cq (receives)");
	dst->send_cq = ibv_create_cq(ctx, (int)(n * RDM_CTRL_SEND + 8), dst, NULL, 0);
	if (!dst->send_cq)
		return rdm_errno("destination: ibv_create_cq (sends)");
	ret = ibv_req_notify_cq(dst->recv_cq, 0);
	if (ret)
		return rdm_errval(ret, "destination: ibv_req_notify_cq");
	return 0;
}

void rdm_dlane_release(struct rdm_dlane *dl, bool destroy_id)
{
	struct ferry_rdma_dest *dst = dl->dst;

	if (dl->qp) {
		rdma_destroy_qp(dl->id);
		dl->qp = NULL;
	}
	if (dl->chunks.cap) {
		for (struct rdm_centry *e = dl->chunks.head; e; e = e->next)
			if (e->mr)
				rdm_mem_dereg(&dst->mem, e->mr);
		rdm_cmap_fini(&dl->chunks);
	}
	rdm_ctrl_fini(&dl->ctrl, &dst->mem);
	if (dl->id && destroy_id)
		rdma_destroy_id(dl->id);
	dl->id = NULL;
}

/* Every verbs and rdma_cm object, at close or when the device goes away. */
static void release_verbs(struct ferry_rdma_dest *dst)
{
	int ret;

	for (uint32_t i = 0; dst->lanes && i < dst->n_lanes; i++)
		rdm_dlane_release(&dst->lanes[i], true);
	if (dst->listen) {
		rdma_destroy_id(dst->listen);
		dst->listen = NULL;
	}
	if (dst->send_cq) {
		ret = ibv_destroy_cq(dst->send_cq);
		if (ret)
			rdm_errval(ret, "destination: ibv_destroy_cq");
		dst->send_cq = NULL;
	}
	if (dst->recv_cq) {
		ret = ibv_destroy_cq(dst->recv_cq);
		if (ret)
			rdm_errval(ret, "destination: ibv_destroy_cq");
		dst->recv_cq = NULL;
	}
	if (dst->cc) {
		ret = ibv_destroy_comp_channel(dst->cc);
		if (ret)
			rdm_errval(ret, "destination: ibv_destroy_comp_channel");
		dst->cc = NULL;
	}
	if (dst->dev_open) {
		if (dst->mem.block_mr) {
			for (uint32_t i = 0; i < dst->mem.n_blocks; i++)
				if (dst->mem.block_mr[i])
					rdm_mem_dereg(&dst->mem, dst->mem.block_mr[i]);
			free(dst->mem.block_mr);
			dst->mem.block_mr = NULL;
		}
		rdm_dev_close(&dst->dev);
		dst->dev_open = false;
	}
}

static void set_state(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, enum rdm_dlane_state st)
{
	pthread_mutex_lock(&dst->lock);
	if (st == RDM_DL_UP && dl->state != RDM_DL_UP)
		dst->up++;
	else if (st != RDM_DL_UP && dl->state == RDM_DL_UP)
		dst->up--;
	dl->state = st;
	pthread_cond_broadcast(&dst->cond);
	pthread_mutex_unlock(&dst->lock);
}

/* A lane goes down: its chunk registrations go at once (their keys are useless now). */
static void lane_down(struct ferry_rdma_dest *dst, struct rdm_dlane *dl)
{
	if (dl->state == RDM_DL_DOWN)
		return;
	set_state(dst, dl, RDM_DL_DOWN);
	if (dl->chunks.cap) {
		for (struct rdm_centry *e = dl->chunks.head; e; e = e->next)
			if (e->mr)
				rdm_mem_dereg(&dst->mem, e->mr);
		rdm_cmap_fini(&dl->chunks);
	}
}

/* ---- replies -------------------------------------------------------------------------- */

static void reap_sends(struct ferry_rdma_dest *dst)
{
	struct ibv_wc wc[16];
	int n;

	while ((n = ibv_poll_cq(dst->send_cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			uint64_t v = RDM_WR_VAL(wc[i].wr_id);
			uint32_t lane = RDM_WR_LANE(v), slot = RDM_WR_SLOT(v);

			if (lane >= dst->n_lanes || slot >= RDM_CTRL_SEND)
				continue;
			rdm_ctrl_put_send(&dst->lanes[lane].ctrl, slot);
			if (wc[i].status != IBV_WC_SUCCESS && wc[i].status != IBV_WC_WR_FLUSH_ERR)
				rdm_warn("lane %u: a reply completed with %s", lane,
					 ibv_wc_status_str(wc[i].status));
		}
	}
}

/* A free send slot of @dl, reaping reply completions (bounded) until one is. */
static int send_slot(struct ferry_rdma_dest *dst, struct rdm_dlane *dl)
{
	int64_t deadline = rdm_deadline(dst->attr.timeout_ms);
	int slot;

	while ((slot = rdm_ctrl_get_send(&dl->ctrl)) < 0) {
		if (rdm_now_ns() > deadline)
			return -ETIMEDOUT;
		reap_sends(dst);
		if (!dl->ctrl.n_free)
			usleep(100);
	}
	return slot;
}

static int reply(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, struct rdm_msg *m, int slot,
		 uint32_t len)
{
	int ret;

	if (m)
		len = rdm_msg_to_wire(m, rdm_ctrl_send_buf(&dl->ctrl, (uint32_t)slot));
	ret = rdm_ctrl_post_send(&dl->ctrl, dl->qp, (uint32_t)slot, len);
	if (ret)
		rdm_ctrl_put_send(&dl->ctrl, (uint32_t)slot);
	return ret;
}

/* ---- requests ------------------------------------------------------------------------- */

static uint16_t do_reg(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, struct rdm_msg *m)
{
	struct rdm_mem *mem = &dst->mem;
	uint32_t b = m->u.chunk.block;
	struct rdm_centry *e;
	int err = 0;

	if (mem->reg != FERRY_RDMA_REG_CHUNKED || !dl->chunks.cap)
		return RDM_ST_BADMSG;
	if (b >= mem->n_blocks || m->u.chunk.chunk >= rdm_mem_nchunks(mem, b))
		return RDM_ST_RANGE;
	e = rdm_cmap_find(&dl->chunks, b, m->u.chunk.chunk);
	if (!e) {
		if (rdm_cmap_full(&dl->chunks))
			return RDM_ST_BUDGET;
		e = rdm_cmap_insert(&dl->chunks, b, m->u.chunk.chunk);
		e->start = m->u.chunk.chunk * mem->chunk_size;
		e->len = mem->blocks[b].length - e->start;
		if (e->len > mem->chunk_size)
			e->len = mem->chunk_size;
		e->mr = rdm_mem_reg(mem, (uint8_t *)mem->blocks[b].host + e->start, e->len, &err);
		if (!e->mr) {
			rdm_cmap_remove(&dl->chunks, e);
			return RDM_ST_REGFAIL;
		}
		rdm_add(&dst->remote_regs, 1);
	}
	m->u.chunk.addr = (uintptr_t)mem->blocks[b].host + e->start;
	m->u.chunk.length = e->len;
	m->u.chunk.rkey = e->mr->rkey;
	return RDM_ST_OK;
}

static uint16_t do_unreg(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, struct rdm_msg *m)
{
	struct rdm_centry *e;

	if (!dl->chunks.cap)
		return RDM_ST_BADMSG;
	e = rdm_cmap_find(&dl->chunks, m->u.chunk.block, m->u.chunk.chunk);
	if (!e)
		return RDM_ST_NOTREG;
	rdm_mem_dereg(&dst->mem, e->mr);
	rdm_cmap_remove(&dl->chunks, e);
	return RDM_ST_OK;
}

static int table_reply(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, struct rdm_msg *m,
		       int slot)
{
	struct rdm_table_entry e[RDM_TABLE_PER_MSG];
	struct rdm_mem *mem = &dst->mem;
	uint32_t first = m->u.table_req.first, count = 0;
	uint16_t status = RDM_ST_OK;
	uint32_t len;

	if (first >= mem->n_blocks || !m->u.table_req.max) {
		status = RDM_ST_RANGE;
	} else {
		count = mem->n_blocks - first;
		if (count > m->u.table_req.max)
			count = m->u.table_req.max;
		if (count > RDM_TABLE_PER_MSG)
			count = RDM_TABLE_PER_MSG;
	}
	for (uint32_t i = 0; i < count; i++) {
		e[i].addr = (uintptr_t)mem->blocks[first + i].host;
		e[i].length = mem->blocks[first + i].length;
		e[i].rkey = mem->block_mr ? mem->block_mr[first + i]->rkey : 0;
	}
	len = rdm_table_to_wire(m->req, status, first, e, count,
				rdm_ctrl_send_buf(&dl->ctrl, (uint32_t)slot));
	return reply(dst, dl, NULL, slot, len);
}

static void handle_request(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, uint32_t rslot,
			   uint32_t len)
{
	const uint8_t *buf = rdm_ctrl_recv_buf(&dl->ctrl, rslot);
	struct rdm_msg m, r;
	const char *why = NULL;
	int slot, ret;

	ret = rdm_msg_from_wire(buf, len, &m, &why);
	if (!ret && !(m.type & 1)) {
		why = "a reply where a request was expected";
		ret = FERRY_EBADSTREAM;
	}
	if (ret) {
		char what[FERRY_RDMA_MSG_MAX];

		snprintf(what, sizeof(what),
			 "malformed control message from the source (%u bytes): %s", len, why);
		dest_fail(dst, FERRY_EBADSTREAM, what, dl->index);
		rdma_disconnect(dl->id);
		lane_down(dst, dl);
		return;
	}
	/* The buffer is free again once decoded (TABLE requests carry nothing more). */
	ret = rdm_ctrl_post_recv(&dl->ctrl, dl->qp, rslot);
	if (ret) {
		dest_fail(dst, ret, "cannot re-post a receive", dl->index);
		return;
	}
	slot = send_slot(dst, dl);
	if (slot < 0) {
		dest_fail(dst, -ETIMEDOUT, "no send slot for a reply", dl->index);
		return;
	}
	memset(&r, 0, sizeof(r));
	r.type = (uint16_t)(m.type + 1);
	r.req = m.req;
	switch (m.type) {
	case RDM_MSG_HELLO_REQ:
		r.u.hello.version = RDM_VERSION;
		r.u.hello.reg = (uint32_t)dst->mem.reg;
		r.u.hello.n_blocks = dst->mem.n_blocks;
		if (dst->mem.reg == FERRY_RDMA_REG_CHUNKED) {
			r.u.hello.chunk_size = dst->mem.chunk_size;
			r.u.hello.lane_budget = dst->mem.lane_chunks;
		}
		break;
	case RDM_MSG_TABLE_REQ:
		ret = table_reply(dst, dl, &m, slot);
		goto sent;
	case RDM_MSG_REG_REQ:
		r.u.chunk = m.u.chunk;
		r.status = do_reg(dst, dl, &r);
		if (r.status != RDM_ST_OK)
			rdm_warn("lane %u: refused to register block %u chunk %lu (status %u)",
				 dl->index, m.u.chunk.block, (unsigned long)m.u.chunk.chunk,
				 r.status);
		break;
	case RDM_MSG_UNREG_REQ:
		r.u.chunk = m.u.chunk;
		r.status = do_unreg(dst, dl, &r);
		break;
	case RDM_MSG_FLUSH_REQ:
		/* Every WRITE before this SEND on the queue pair is placed: record it. */
		pthread_mutex_lock(&dst->lock);
		if (!dl->flushed || m.u.flush.tag > dl->flush_tag)
			dl->flush_tag = m.u.flush.tag;
		/* Statistics only (the pages landed without this CPU): the source's
		 * account, kept monotonic whatever a peer claims. */
		if (m.u.flush.bytes > dl->src_bytes) {
			dl->src_bytes = m.u.flush.bytes;
			dl->src_zero_bytes = m.u.flush.zero_bytes;
		}
		dl->flushed = true;
		pthread_cond_broadcast(&dst->cond);
		pthread_mutex_unlock(&dst->lock);
		rdm_add(&dst->flushes, 1);
		rdm_add(&dl->flushes, 1);
		r.u.flush = m.u.flush;
		break;
	case RDM_MSG_BYE_REQ:
		/* The source ends this lane normally: its disconnect is not a failure. */
		pthread_mutex_lock(&dst->lock);
		dl->ended = true;
		pthread_cond_broadcast(&dst->cond);
		pthread_mutex_unlock(&dst->lock);
		break;
	case RDM_MSG_NOP_REQ:
		break;
	}
	ret = reply(dst, dl, &r, slot, 0);
sent:
	if (ret)
		dest_fail(dst, ret, "cannot send a reply", dl->index);
}

static void handle_recv_cq(struct ferry_rdma_dest *dst)
{
	struct ibv_wc wc[16];
	int n;

	while ((n = ibv_poll_cq(dst->recv_cq, 16, wc)) > 0) {
		for (int i = 0; i < n; i++) {
			uint64_t v = RDM_WR_VAL(wc[i].wr_id);
			uint32_t lane = RDM_WR_LANE(v), slot = RDM_WR_SLOT(v);
			struct rdm_dlane *dl;

			if (lane >= dst->n_lanes || slot >= RDM_CTRL_DEPTH)
				continue;
			dl = &dst->lanes[lane];
			if (wc[i].status != IBV_WC_SUCCESS) {
				/* Flushed receives are how a queue pair in error says so. */
				if (wc[i].status != IBV_WC_WR_FLUSH_ERR)
					rdm_warn("lane %u: receive completed with %s", lane,
						 ibv_wc_status_str(wc[i].status));
				continue;
			}
			if (dl->state != RDM_DL_UP && dl->state != RDM_DL_ACCEPTING)
				continue;
			handle_request(dst, dl, slot, wc[i].byte_len);
		}
	}
	reap_sends(dst);
}

/* ---- rdma_cm events ------------------------------------------------------------------- */

/* Returns true when the device went away (everything must be released after the ack). */
static bool handle_cm_event(struct ferry_rdma_dest *dst, struct rdma_cm_event *ev,
			    struct rdma_cm_id **destroy)
{
	struct rdm_dlane *dl = ev->id->context;

	*destroy = NULL;
	if (ev->id == dst->listen)
		dl = NULL;
	switch (ev->event) {
	case RDMA_CM_EVENT_CONNECT_REQUEST:
		*destroy = rdm_dest_on_connect(dst, ev);
		break;
	case RDMA_CM_EVENT_ESTABLISHED:
		if (dl) {
			set_state(dst, dl, RDM_DL_UP);
			rdm_info("destination: lane %u established (%u of %u)", dl->index, dst->up,
				 dst->n_lanes);
		}
		break;
	case RDMA_CM_EVENT_DISCONNECTED:
		if (dl) {
			rdm_dbg("destination: lane %u disconnected", dl->index);
			rdma_disconnect(ev->id);
			lane_down(dst, dl);
		}
		break;
	case RDMA_CM_EVENT_REJECTED:
	case RDMA_CM_EVENT_CONNECT_ERROR:
	case RDMA_CM_EVENT_UNREACHABLE:
		if (dl) {
			rdm_warn("destination: lane %u: %s (status %d)", dl->index,
				 rdm_event_name(ev->event), ev->status);
			lane_down(dst, dl);
		}
		break;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		return true;
	default:
		rdm_dbg("destination: %s (status %d)", rdm_event_name(ev->event), ev->status);
		break;
	}
	return false;
}

static void handle_cm(struct ferry_rdma_dest *dst)
{
	struct rdma_cm_event *ev;
	struct rdma_cm_id *destroy;
	bool removed = false;

	while (!removed && !rdma_get_cm_event(dst->ch, &ev)) {
		removed = handle_cm_event(dst, ev, &destroy);
		rdma_ack_cm_event(ev);
		if (destroy)
			rdma_destroy_id(destroy);
	}
	if (removed) {
		rdm_fail_set(&dst->fail, -ENODEV, "RDMA device %s was removed", dst->dev.name);
		for (uint32_t i = 0; i < dst->n_lanes; i++)
			if (dst->lanes[i].state != RDM_DL_FREE)
				set_state(dst, &dst->lanes[i], RDM_DL_DOWN);
		release_verbs(dst);
		pthread_mutex_lock(&dst->lock);
		pthread_cond_broadcast(&dst->cond);
		pthread_mutex_unlock(&dst->lock);
	}
}

static void *service_main(void *arg)
{
	struct ferry_rdma_dest *dst = arg;

	for (;;) {
		struct pollfd pfd[3] = {
		    {.fd = dst->stop_fd, .events = POLLIN},
		    {.fd = dst->ch->fd, .events = POLLIN},
		    {.fd = dst->cc ? dst->cc->fd : -1, .events = POLLIN},
		};

		if (poll(pfd, 3, -1) < 0 && errno != EINTR) {
			rdm_fail_set(&dst->fail, -errno, "destination: poll: %s", strerror(errno));
			break;
		}
		if (pfd[0].revents)
			break;
		if (pfd[1].revents)
			handle_cm(dst);
		if (dst->cc && (pfd[2].revents & POLLIN)) {
			struct ibv_cq *cq;
			void *ctx;

			if (!ibv_get_cq_event(dst->cc, &cq, &ctx))
				ibv_ack_cq_events(cq, 1);
		}
		if (dst->recv_cq) {
			/* Drain, arm, drain: a completion between the two is not lost. */
			handle_recv_cq(dst);
			if (dst->recv_cq) {
				ibv_req_notify_cq(dst->recv_cq, 0);
				handle_recv_cq(dst);
			}
		}
	}
	return NULL;
}

/* ---- API -------------------------------------------------------------------------------- */

int ferry_rdma_dest_create(const struct ferry_rdma_dest_attr *attr, struct ferry_rdma_dest **out)
{
	struct ferry_rdma_dest *dst;
	pthread_condattr_t ca;
	int ret;

	*out = NULL;
	dst = calloc(1, sizeof(*dst));
	if (!dst)
		return -ENOMEM;
	dst->stop_fd = -1;
	rdm_fail_init(&dst->fail);
	pthread_mutex_init(&dst->lock, NULL);
	pthread_condattr_init(&ca);
	pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
	pthread_cond_init(&dst->cond, &ca);
	pthread_condattr_destroy(&ca);
	ret = take_attr(attr, &dst->attr);
	if (ret)
		goto err;
	dst->n_lanes = dst->attr.lanes;
	ret = rdm_mem_init(&dst->mem, dst->attr.blocks, dst->attr.n_blocks, "destination");
	if (ret)
		goto err;
	dst->lanes = calloc(dst->n_lanes, sizeof(*dst->lanes));
	if (!dst->lanes) {
		ret = -ENOMEM;
		goto err;
	}
	for (uint32_t i = 0; i < dst->n_lanes; i++) {
		dst->lanes[i].dst = dst;
		dst->lanes[i].index = i;
	}
	dst->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (dst->stop_fd < 0) {
		ret = rdm_errno("eventfd");
		goto err;
	}
	ret = rdm_dest_listen(dst);
	dst->attr.host = NULL;
	dst->attr.blocks = NULL;
	if (ret)
		goto err;
	ret = pthread_create(&dst->thread, NULL, service_main, dst);
	if (ret) {
		ret = -ret;
		rdm_err("destination: cannot start the service thread: %s", strerror(-ret));
		goto err;
	}
	dst->thread_running = true;
	rdm_info("destination: listening on %s for %u lanes%s%s%s", dst->where, dst->n_lanes,
		 dst->dev_open ? " on " : "", dst->dev_open ? dst->dev.name : "",
		 dst->dev_open ? "" : " (device chosen by the first connection)");
	*out = dst;
	return 0;

err:
	ferry_rdma_dest_destroy(dst);
	return ret;
}

uint16_t ferry_rdma_dest_port(const struct ferry_rdma_dest *dst)
{
	return dst->port;
}

int ferry_rdma_dest_accept(struct ferry_rdma_dest *dst, int timeout_ms)
{
	int64_t deadline = rdm_deadline(timeout_ms < 0 ? dst->attr.timeout_ms : timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&dst->lock);
	while (dst->up < dst->n_lanes) {
		ret = rdm_fail_get(&dst->fail);
		if (ret)
			break;
		for (uint32_t i = 0; i < dst->n_lanes && !ret; i++)
			if (dst->lanes[i].state == RDM_DL_DOWN)
				ret = -ECONNRESET;
		if (ret)
			break;
		if (rdm_now_ns() >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		timed_wait(dst, deadline);
	}
	pthread_mutex_unlock(&dst->lock);
	if (ret == -ETIMEDOUT)
		rdm_err("destination: %u of %u lanes connected when the wait ended", dst->up,
			dst->n_lanes);
	else if (ret == -ECONNRESET)
		rdm_err("destination: a lane went down before every lane was connected");
	return ret;
}

int ferry_rdma_dest_wait_flush(struct ferry_rdma_dest *dst, uint64_t tag, int timeout_ms)
{
	int64_t deadline = rdm_deadline(timeout_ms < 0 ? dst->attr.timeout_ms : timeout_ms);
	int ret = 0;

	pthread_mutex_lock(&dst->lock);
	for (;;) {
		uint32_t reached = 0;

		ret = rdm_fail_get(&dst->fail);
		if (ret)
			break;
		for (uint32_t i = 0; i < dst->n_lanes; i++) {
			struct rdm_dlane *dl = &dst->lanes[i];

			if (dl->flushed && dl->flush_tag >= tag)
				reached++;
			else if (dl->state == RDM_DL_DOWN)
				ret = -ECONNRESET;
		}
		if (reached == dst->n_lanes) {
			ret = 0;
			break;
		}
		if (ret)
			break;
		if (rdm_now_ns() >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		timed_wait(dst, deadline);
	}
	pthread_mutex_unlock(&dst->lock);
	if (ret == -ECONNRESET)
		rdm_err("destination: a lane disconnected before its flush %lu",
			(unsigned long)tag);
	else if (ret == -ETIMEDOUT)
		rdm_err("destination: flush %lu not reached by every lane in time",
			(unsigned long)tag);
	return ret;
}

int ferry_rdma_dest_receive(struct ferry_rdma_dest *dst, uint32_t lane, uint64_t after,
			    uint64_t *tag, int timeout_ms)
{
	int64_t deadline = rdm_deadline(timeout_ms);
	struct rdm_dlane *dl;
	int ret;

	if (!dst || lane >= dst->n_lanes || !tag)
		return -EINVAL;
	dl = &dst->lanes[lane];
	pthread_mutex_lock(&dst->lock);
	for (;;) {
		/* A sync point that arrived is reported even if a failure followed it. */
		if (dl->flushed && dl->flush_tag > after) {
			*tag = dl->flush_tag;
			ret = 1;
			break;
		}
		if (dl->ended) {
			ret = 0;
			break;
		}
		ret = rdm_fail_get(&dst->fail);
		if (ret)
			break;
		if (dl->state == RDM_DL_DOWN) {
			ret = -ECONNRESET;
			break;
		}
		if (rdm_now_ns() >= deadline) {
			ret = -ETIMEDOUT;
			break;
		}
		timed_wait(dst, deadline);
	}
	pthread_mutex_unlock(&dst->lock);
	if (ret == -ECONNRESET)
		rdm_err("destination: lane %u went down without its normal end", lane);
	return ret;
}

void ferry_rdma_dest_abort(struct ferry_rdma_dest *dst)
{
	if (!dst)
		return;
	rdm_fail_set(&dst->fail, -ECANCELED, "destination aborted");
	pthread_mutex_lock(&dst->lock);
	pthread_cond_broadcast(&dst->cond);
	pthread_mutex_unlock(&dst->lock);
}

void ferry_rdma_dest_lane_stats(struct ferry_rdma_dest *dst, uint32_t lane,
				struct ferry_rdma_lane_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!dst || lane >= dst->n_lanes)
		return;
	out->flushes = rdm_read(&dst->lanes[lane].flushes);
	pthread_mutex_lock(&dst->lock);
	out->last_tag = dst->lanes[lane].flush_tag;
	out->bytes = dst->lanes[lane].src_bytes;
	out->zero_bytes = dst->lanes[lane].src_zero_bytes;
	pthread_mutex_unlock(&dst->lock);
}

int ferry_rdma_dest_status(struct ferry_rdma_dest *dst, char *why, size_t len)
{
	return rdm_fail_copy(&dst->fail, why, len);
}

void ferry_rdma_dest_stats(struct ferry_rdma_dest *dst, struct ferry_rdma_stats *out)
{
	memset(out, 0, sizeof(*out));
	pthread_mutex_lock(&dst->lock);
	snprintf(out->device, sizeof(out->device), "%s", dst->dev.name);
	out->numa_node = dst->dev.name[0] ? dst->dev.numa_node : -1;
	out->lanes = dst->up;
	pthread_mutex_unlock(&dst->lock);
	out->reg = dst->mem.reg;
	out->reg_ns = rdm_read(&dst->mem.reg_ns);
	out->reg_count = rdm_read(&dst->mem.reg_count);
	out->dereg_count = rdm_read(&dst->mem.dereg_count);
	out->registered_bytes = rdm_read(&dst->mem.registered_bytes);
	out->remote_reg_requests = rdm_read(&dst->remote_regs);
	out->flushes = rdm_read(&dst->flushes);
}

static void dest_free(struct ferry_rdma_dest *dst)
{
	uint64_t one = 1;

	if (dst->thread_running) {
		if (write(dst->stop_fd, &one, sizeof(one)) < 0)
			rdm_err("destination: cannot stop the service thread: %s", strerror(errno));
		pthread_join(dst->thread, NULL);
	}
	/* The service thread is gone: this thread owns everything now. */
	if (dst->ch && dst->lanes) {
		int64_t deadline = rdm_deadline(RDM_CLOSE_WAIT_MS);
		struct rdma_cm_event *ev;
		uint32_t waiting = 0;

		for (uint32_t i = 0; i < dst->n_lanes; i++) {
			struct rdm_dlane *dl = &dst->lanes[i];

			if ((dl->state == RDM_DL_UP || dl->state == RDM_DL_ACCEPTING) && dl->id &&
			    !rdma_disconnect(dl->id))
				waiting++;
		}
		while (waiting && !rdm_cm_next(dst->ch, deadline, &ev)) {
			struct rdm_dlane *dl = ev->id != dst->listen ? ev->id->context : NULL;
			struct rdma_cm_id *destroy = NULL;

			if (ev->event == RDMA_CM_EVENT_DISCONNECTED && dl &&
			    dl->state != RDM_DL_DOWN) {
				dl->state = RDM_DL_DOWN;
				waiting--;
			} else if (ev->event == RDMA_CM_EVENT_CONNECT_REQUEST) {
				uint8_t pd[RDM_CONN_REPLY_LEN];

				rdm_conn_reply_to_wire(RDM_REJ_FAILED, 0, pd);
				rdma_reject(ev->id, pd, sizeof(pd));
				destroy = ev->id;
			}
			rdma_ack_cm_event(ev);
			if (destroy)
				rdma_destroy_id(destroy);
		}
	}
	release_verbs(dst);
	if (dst->ch)
		rdma_destroy_event_channel(dst->ch);
	rdm_mem_fini(&dst->mem);
	free(dst->lanes);
	if (dst->stop_fd >= 0)
		close(dst->stop_fd);
	pthread_cond_destroy(&dst->cond);
	pthread_mutex_destroy(&dst->lock);
	rdm_fail_fini(&dst->fail);
	free(dst);
}

int ferry_rdma_dest_close(struct ferry_rdma_dest *dst)
{
	int err;

	if (!dst)
		return -EINVAL;
	err = rdm_fail_get(&dst->fail);
	dest_free(dst);
	return err;
}

void ferry_rdma_dest_destroy(struct ferry_rdma_dest *dst)
{
	if (dst)
		dest_free(dst);
}
