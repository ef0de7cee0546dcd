/* SPDX-License-Identifier: MIT */
/*
 * The source object: connects the lanes, opens the device the route chose,
 * registers the source's memory, fetches and checks the destination's block
 * table, and runs a monitor thread that turns rdma_cm's DISCONNECTED and
 * DEVICE_REMOVAL into the source's sticky failure (waking every lane that
 * waits). The lanes themselves are in write.c.
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <poll.h>
#include <stdarg.h>
#include <unistd.h>

#include "internal.h"

void ferry_rdma_source_attr_init(struct ferry_rdma_source_attr *attr)
{
	memset(attr, 0, sizeof(*attr));
	attr->size = sizeof(*attr);
	attr->lanes = 1;
	attr->reg = FERRY_RDMA_REG_AUTO;
	attr->numa_node = -1;
	attr->timeout_ms = 10000;
	attr->max_inflight = 128;
	attr->signal_every = 16;
	attr->ack_timeout = 16;
	attr->retry_cnt = 6;
}

int rdm_src_fail(struct ferry_rdma_source *src, int err, const char *fmt, ...)
{
	char msg[FERRY_RDMA_MSG_MAX];
	uint64_t one = 1;
	va_list ap;
	int first;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	first = rdm_fail_set(&src->fail, err, "%s", msg);
	if (src->wake_fd >= 0 && write(src->wake_fd, &one, sizeof(one)) < 0)
		rdm_dbg("wake eventfd: %s", strerror(errno));
	return first;
}

/* Copy the caller's attributes over the defaults (a shorter, older struct is fine). */
static int take_attr(const struct ferry_rdma_source_attr *in, struct ferry_rdma_source_attr *a)
{
	ferry_rdma_source_attr_init(a);
	if (!in || in->size < offsetof(struct ferry_rdma_source_attr, reg)) {
		rdm_err("source: attributes missing or too old (size %u)", in ? in->size : 0);
		return -EINVAL;
	}
	memcpy(a, in, in->size < sizeof(*a) ? in->size : sizeof(*a));
	a->size = sizeof(*a);
	if (!a->host || !*a->host || !a->port) {
		rdm_err("source: no destination address (host and port are required)");
		return -EINVAL;
	}
	if (!a->lanes || a->lanes > FERRY_RDMA_MAX_LANES) {
		rdm_err("source: %u lanes (expected 1..%u)", a->lanes, FERRY_RDMA_MAX_LANES);
		return -EINVAL;
	}
	if (a->retry_cnt > 6) {
		rdm_err("source: retry count %u: at most 6 (7 means forever to rxe, so a dead "
			"peer would never be noticed)",
			a->retry_cnt);
		return -EINVAL;
	}
	if (a->ack_timeout > 31 || (unsigned)a->reg > FERRY_RDMA_REG_ODP) {
		rdm_err("source: bad ack timeout %u or registration %d", a->ack_timeout, a->reg);
		return -EINVAL;
	}
	if (a->max_inflight < 8 || a->max_inflight > 4096) {
		rdm_err("source: max_inflight %u (expected 8..4096)", a->max_inflight);
		return -EINVAL;
	}
	if (!a->signal_every)
		a->signal_every = 16;
	if (a->timeout_ms == 0)
		a->timeout_ms = 10000;
	/* The block array is copied by rdm_mem_init(); nothing of the caller's is kept. */
	a->blocks = NULL;
	return 0;
}

int rdm_src_open_device(struct ferry_rdma_source *src, struct ibv_context *ctx)
{
	int ret;

	ret = rdm_dev_open(ctx, &src->dev);
	src->dev_open = true; /* half-open is released by destroy */
	if (ret)
		return ret;
	src->max_wr = src->dev.max_msg_sz;
	if (src->attr.max_wr_bytes && src->attr.max_wr_bytes < src->max_wr)
		src->max_wr = src->attr.max_wr_bytes;
	if (src->ring_size > src->dev.max_qp_wr - RDM_CTRL_SEND)
		src->ring_size = rdm_pow2((src->dev.max_qp_wr - RDM_CTRL_SEND) / 2);
	/*
	 * LOCAL_WRITE although the source only reads: a read-only long-term pin
	 * of anonymous memory that was never written could pin the shared zero
	 * page, and the guest's later writes would then never be sent.
	 */
	ret = rdm_mem_choose(&src->mem, &src->dev, src->attr.reg, src->attr.chunk_size,
			     src->attr.memlock_budget, src->n_lanes,
			     (uint64_t)src->n_lanes * RDM_CTRL_BYTES + RDM_ZERO_BUF,
			     IBV_ACCESS_LOCAL_WRITE, "source");
	if (ret)
		return ret;
	/* Zero runs are written from this buffer; the device only ever reads it. */
	src->zero = aligned_alloc(4096, RDM_ZERO_BUF);
	if (!src->zero)
		return -ENOMEM;
	memset(src->zero, 0, RDM_ZERO_BUF);
	src->zero_mr = ibv_reg_mr(src->dev.pd, src->zero, RDM_ZERO_BUF, 0);
	if (!src->zero_mr)
		return rdm_errno("%s: ibv_reg_mr of the zero buffer", src->dev.name);
	return rdm_mem_register_blocks(&src->mem);
}

/* HELLO and the block table, on lane 0; checked against the source's own blocks. */
static int fetch_table(struct ferry_rdma_source *src)
{
	struct rdm_lane *l = &src->lanes[0];
	struct rdm_msg m;
	uint32_t n = src->mem.n_blocks, first = 0;
	int ret;

	memset(&m, 0, sizeof(m));
	m.type = RDM_MSG_HELLO_REQ;
	m.u.hello_req.version = RDM_VERSION;
	ret = rdm_lane_call(l, &m, RDM_MSG_HELLO);
	if (ret)
		return ret;
	m = l->await_msg;
	if (m.u.hello.version != RDM_VERSION)
		return rdm_src_fail(src, FERRY_EVERSION, "destination speaks protocol %u, not %u",
				    m.u.hello.version, RDM_VERSION);
	if (m.u.hello.n_blocks != n)
		return rdm_src_fail(src, FERRY_EMISMATCH,
				    "destination exposes %u memory blocks, the source has %u",
				    m.u.hello.n_blocks, n);
	if (m.u.hello.reg != FERRY_RDMA_REG_PIN_ALL && m.u.hello.reg != FERRY_RDMA_REG_CHUNKED &&
	    m.u.hello.reg != FERRY_RDMA_REG_ODP)
		return rdm_src_fail(src, FERRY_EBADSTREAM, "destination registration %u unknown",
				    m.u.hello.reg);
	src->peer_reg = (enum ferry_rdma_reg)m.u.hello.reg;
	if (src->peer_reg == FERRY_RDMA_REG_CHUNKED) {
		uint64_t c = m.u.hello.chunk_size;

		if (c < 4096 || c > (1ull << 40) || (c & (c - 1)) || !m.u.hello.lane_budget)
			return rdm_src_fail(src, FERRY_EBADSTREAM,
					    "destination chunks of %lu bytes, %u per lane: invalid",
					    (unsigned long)c, m.u.hello.lane_budget);
		src->peer_chunk = c;
		src->peer_budget = m.u.hello.lane_budget;
	}
	src->table = calloc(n, sizeof(*src->table));
	if (!src->table)
		return -ENOMEM;
	while (first < n) {
		memset(&m, 0, sizeof(m));
		m.type = RDM_MSG_TABLE_REQ;
		m.u.table_req.first = first;
		m.u.table_req.max = RDM_TABLE_PER_MSG;
		ret = rdm_lane_call(l, &m, RDM_MSG_TABLE);
		if (ret)
			return ret;
		m = l->await_msg;
		if (m.u.table.first != first || !m.u.table.count || m.u.table.count > n - first)
			return rdm_src_fail(src, FERRY_EBADSTREAM,
					    "block table: asked from %u, got %u entries from %u",
					    first, m.u.table.count, m.u.table.first);
		for (uint32_t i = 0; i < m.u.table.count; i++) {
			struct rdm_table_entry *e = &src->table[first + i];
			uint64_t len = src->mem.blocks[first + i].length;

			if (rdm_table_entry_from_wire(l->await_buf, i, e))
				return rdm_src_fail(src, FERRY_EBADSTREAM,
						    "block table entry %u: reserved bytes set",
						    first + i);
			if (e->length != len)
				return rdm_src_fail(
				    src, FERRY_EMISMATCH,
				    "block %u is %lu bytes on the destination, %lu here", first + i,
				    (unsigned long)e->length, (unsigned long)len);
			if (e->addr + e->length < e->addr ||
			    (src->peer_reg != FERRY_RDMA_REG_CHUNKED && !e->rkey))
				return rdm_src_fail(src, FERRY_EBADSTREAM,
						    "block table entry %u is invalid", first + i);
		}
		first += m.u.table.count;
	}
	for (uint32_t i = 0; src->peer_reg == FERRY_RDMA_REG_CHUNKED && i < src->n_lanes; i++) {
		ret = rdm_cmap_init(&src->lanes[i].rcache, src->peer_budget);
		if (ret)
			return ret;
	}
	return 0;
}

static void *monitor_main(void *arg)
{
	struct ferry_rdma_source *src = arg;
	struct rdma_cm_event *ev;

	for (;;) {
		struct pollfd pfd[2] = {
		    {.fd = src->ch->fd, .events = POLLIN},
		    {.fd = src->stop_fd, .events = POLLIN},
		};

		if (poll(pfd, 2, -1) < 0 && errno != EINTR)
			break;
		if (pfd[1].revents)
			break;
		while (!rdma_get_cm_event(src->ch, &ev)) {
			struct rdm_lane *l = ev->id->context;
			uint32_t lane = l ? l->index : 0;

			switch (ev->event) {
			case RDMA_CM_EVENT_DISCONNECTED: {
				uint64_t one = 1;

				/*
				 * Recorded, not reported as an error: it is also how every
				 * completed migration ends (the destination lets go of
				 * its lanes right after its answer on the main stream,
				 * often before the source closes them). A send or flush
				 * that needed the lane fails with this reason, and the
				 * engine reports that.
				 */
				rdm_fail_note(&src->fail, -ECONNRESET,
					      "lane %u: the destination disconnected", lane);
				rdm_info("lane %u: the destination disconnected", lane);
				if (write(src->wake_fd, &one, sizeof(one)) < 0)
					rdm_dbg("wake eventfd: %s", strerror(errno));
				/*
				 * Answer the destination's disconnect now: it waits for
				 * the answer, and the close below must not wait for an
				 * event this thread has already taken.
				 */
				if (l) {
					rdma_disconnect(ev->id);
					atomic_store(&l->peer_gone, true);
				}
				break;
			}
			case RDMA_CM_EVENT_DEVICE_REMOVAL:
				rdm_src_fail(src, -ENODEV,
					     "RDMA device %s was removed; close the source "
					     "to let the removal finish",
					     src->dev.name);
				break;
			case RDMA_CM_EVENT_TIMEWAIT_EXIT:
				break;
			default:
				rdm_dbg("lane %u: %s (status %d)", lane, rdm_event_name(ev->event),
					ev->status);
				break;
			}
			rdma_ack_cm_event(ev);
		}
	}
	return NULL;
}

int ferry_rdma_source_create(const struct ferry_rdma_source_attr *attr,
			     struct ferry_rdma_source **out)
{
	struct ferry_rdma_source *src;
	int ret;

	*out = NULL;
	src = calloc(1, sizeof(*src));
	if (!src)
		return -ENOMEM;
	src->wake_fd = src->stop_fd = -1;
	rdm_fail_init(&src->fail);
	ret = take_attr(attr, &src->attr);
	if (ret)
		goto err;
	ret = rdm_mem_init(&src->mem, attr->blocks, attr->n_blocks, "source");
	if (ret)
		goto err;
	src->host = strdup(attr->host);
	src->bind_host = attr->bind_host ? strdup(attr->bind_host) : NULL;
	src->lanes = calloc(src->attr.lanes, sizeof(*src->lanes));
	src->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	src->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (!src->host || (attr->bind_host && !src->bind_host) || !src->lanes || src->wake_fd < 0 ||
	    src->stop_fd < 0) {
		ret = -ENOMEM;
		goto err;
	}
	src->attr.host = src->host;
	src->attr.bind_host = src->bind_host;
	src->n_lanes = src->attr.lanes;
	src->ring_size = rdm_pow2(src->attr.max_inflight);
	for (uint32_t i = 0; i < src->n_lanes; i++) {
		src->lanes[i].src = src;
		src->lanes[i].index = i;
	}
	*out = src;
	return 0;

err:
	ferry_rdma_source_destroy(src);
	return ret;
}

int ferry_rdma_source_connect(struct ferry_rdma_source *src)
{
	struct sockaddr_storage dst, bind;
	const struct sockaddr *bindp = NULL;
	int64_t t0 = rdm_now_ns(), deadline;
	char peer[64] = "?";
	int ret;

	if (!src || src->connect_called)
		return -EINVAL;
	src->connect_called = true;
	ret = rdm_fail_get(&src->fail);
	if (ret)
		return ret; /* aborted before connecting */
	deadline = rdm_deadline(src->attr.timeout_ms);
	ret = rdm_sockaddr(src->attr.host, src->attr.port, &dst);
	if (ret)
		goto err;
	rdm_sockaddr_str((struct sockaddr *)&dst, peer, sizeof(peer));
	if (src->attr.bind_host) {
		ret = rdm_sockaddr(src->attr.bind_host, 0, &bind);
		if (ret)
			goto err;
		bindp = (struct sockaddr *)&bind;
	} else if (rdm_dev_pick_source((struct sockaddr *)&dst, src->attr.numa_node,
				       rdm_remaining_ms(deadline), &bind) == 1) {
		bindp = (struct sockaddr *)&bind;
	}
	src->ch = rdm_cm_channel(&ret);
	if (!src->ch)
		goto err;
	for (uint32_t i = 0; i < src->n_lanes; i++) {
		ret = rdm_lane_connect(&src->lanes[i], (struct sockaddr *)&dst, bindp, deadline);
		if (ret)
			goto err;
	}
	ret = fetch_table(src);
	if (ret)
		goto err;
	ret = pthread_create(&src->monitor, NULL, monitor_main, src);
	if (ret) {
		ret = -ret;
		rdm_err("source: cannot start the monitor thread: %s", strerror(-ret));
		goto err;
	}
	src->monitor_running = true;
	src->connect_ns = (uint64_t)(rdm_now_ns() - t0);
	rdm_info("source: %u lanes to %s on %s in %.1f ms; registration %s here, %s there; "
		 "writes of up to %u bytes, %u in flight per lane",
		 src->n_lanes, peer, src->dev.name, src->connect_ns / 1e6,
		 ferry_rdma_reg_name(src->mem.reg), ferry_rdma_reg_name(src->peer_reg), src->max_wr,
		 src->ring_size);
	return 0;

err:
	/* A failure recorded on the way (a lane's, an abort) is the better error. */
	if (rdm_fail_get(&src->fail) && ret != FERRY_ENORDMA)
		return rdm_fail_get(&src->fail);
	/* Sticky from now on (already logged where it happened): only close/destroy may follow. */
	rdm_fail_note(&src->fail, ret, "connect to %s failed", peer);
	return ret;
}

void ferry_rdma_source_abort(struct ferry_rdma_source *src)
{
	if (src)
		rdm_src_fail(src, -ECANCELED, "source aborted");
}

/* Lanes exist (for the unplaced set) before connect, but carry nothing until it succeeded. */
static int lane_ready(struct ferry_rdma_source *src, uint32_t lane)
{
	if (!src || lane >= src->n_lanes)
		return -EINVAL;
	if (!src->monitor_running) {
		int err = rdm_fail_get(&src->fail);

		return err ? err : -ENOTCONN;
	}
	return 0;
}

int ferry_rdma_source_write(struct ferry_rdma_source *src, uint32_t lane,
			    const struct ferry_rdma_run *runs, size_t n)
{
	int ret = lane_ready(src, lane);

	if (ret)
		return ret;
	if (n && !runs)
		return -EINVAL;
	return rdm_lane_write(&src->lanes[lane], runs, n);
}

int ferry_rdma_source_flush(struct ferry_rdma_source *src, uint32_t lane, uint64_t tag)
{
	int ret = lane_ready(src, lane);

	return ret ? ret : rdm_lane_flush(&src->lanes[lane], tag);
}

ssize_t ferry_rdma_source_unplaced(struct ferry_rdma_source *src, uint32_t lane,
				   struct ferry_rdma_run *out, size_t cap)
{
	if (!src || lane >= src->n_lanes || (cap && !out))
		return -EINVAL;
	return rdm_lane_unplaced(&src->lanes[lane], out, cap);
}

int ferry_rdma_source_status(struct ferry_rdma_source *src, char *why, size_t len)
{
	return rdm_fail_copy(&src->fail, why, len);
}

void ferry_rdma_source_stats(struct ferry_rdma_source *src, struct ferry_rdma_stats *out)
{
	memset(out, 0, sizeof(*out));
	snprintf(out->device, sizeof(out->device), "%s", src->dev.name);
	out->numa_node = src->dev_open ? src->dev.numa_node : -1;
	out->reg = src->mem.reg;
	out->peer_reg = src->peer_reg;
	out->lanes = src->n_lanes;
	out->max_wr_bytes = src->max_wr;
	out->connect_ns = src->connect_ns;
	out->reg_ns = rdm_read(&src->mem.reg_ns);
	out->reg_count = rdm_read(&src->mem.reg_count);
	out->dereg_count = rdm_read(&src->mem.dereg_count);
	out->registered_bytes = rdm_read(&src->mem.registered_bytes);
	for (uint32_t i = 0; i < src->n_lanes; i++) {
		struct rdm_lane *l = &src->lanes[i];

		out->bytes_written += rdm_read(&l->bytes);
		out->writes += rdm_read(&l->writes);
		out->signaled += rdm_read(&l->signaled);
		out->flushes += rdm_read(&l->flushes);
		out->remote_reg_requests += rdm_read(&l->remote_regs);
		out->zero_bytes += rdm_read(&l->zero_bytes);
	}
}

void ferry_rdma_source_lane_stats(struct ferry_rdma_source *src, uint32_t lane,
				  struct ferry_rdma_lane_stats *out)
{
	struct rdm_lane *l;

	memset(out, 0, sizeof(*out));
	if (!src || lane >= src->n_lanes)
		return;
	l = &src->lanes[lane];
	out->bytes = rdm_read(&l->bytes);
	out->zero_bytes = rdm_read(&l->zero_bytes);
	out->writes = rdm_read(&l->writes);
	out->signaled = rdm_read(&l->signaled);
	out->flushes = rdm_read(&l->flushes);
	out->last_tag = rdm_read(&l->last_tag);
}

/* Disconnect the connected lanes and wait (bounded) for the handshakes. */
static void disconnect_all(struct ferry_rdma_source *src)
{
	int64_t deadline = rdm_deadline(RDM_CLOSE_WAIT_MS);
	struct rdma_cm_event *ev;
	uint32_t waiting = 0;

	for (uint32_t i = 0; src->lanes && i < src->n_lanes; i++) {
		struct rdm_lane *l = &src->lanes[i];

		if (!l->connected || atomic_load(&l->peer_gone))
			continue;
		if (rdma_disconnect(l->id))
			rdm_dbg("lane %u: rdma_disconnect: %s", i, strerror(errno));
		else
			waiting++;
	}
	while (waiting && !rdm_cm_next(src->ch, deadline, &ev)) {
		struct rdm_lane *l = ev->id->context;

		if (ev->event == RDMA_CM_EVENT_DISCONNECTED && l && l->connected) {
			l->connected = false;
			waiting--;
		}
		rdma_ack_cm_event(ev);
	}
	if (waiting)
		rdm_dbg("source: %u lanes did not confirm the disconnect", waiting);
}

/* Tell the destination that each healthy lane ends normally (answered, bounded). */
static void say_bye(struct ferry_rdma_source *src)
{
	src->attr.timeout_ms = RDM_CLOSE_WAIT_MS;
	for (uint32_t i = 0; i < src->n_lanes && !rdm_fail_get(&src->fail); i++) {
		struct rdm_msg m = {.type = RDM_MSG_BYE_REQ};

		if (src->lanes[i].connected)
			rdm_lane_call(&src->lanes[i], &m, RDM_MSG_BYE);
	}
}

static void source_free(struct ferry_rdma_source *src)
{
	uint64_t one = 1;

	if (src->monitor_running) {
		if (write(src->stop_fd, &one, sizeof(one)) < 0)
			rdm_err("source: cannot stop the monitor: %s", strerror(errno));
		pthread_join(src->monitor, NULL);
	}
	if (src->ch && src->lanes)
		disconnect_all(src);
	for (uint32_t i = 0; src->lanes && i < src->n_lanes; i++) {
		rdm_lane_teardown(&src->lanes[i]);
		free(src->lanes[i].unposted);
	}
	free(src->lanes);
	if (src->zero_mr && ibv_dereg_mr(src->zero_mr))
		rdm_err("%s: ibv_dereg_mr of the zero buffer failed", src->dev.name);
	free(src->zero);
	if (src->dev_open) {
		rdm_mem_fini(&src->mem);
		rdm_dev_close(&src->dev);
	} else {
		free(src->mem.blocks);
	}
	free(src->host);
	free(src->bind_host);
	if (src->ch)
		rdma_destroy_event_channel(src->ch);
	free(src->table);
	if (src->wake_fd >= 0)
		close(src->wake_fd);
	if (src->stop_fd >= 0)
		close(src->stop_fd);
	rdm_fail_fini(&src->fail);
	free(src);
}

int ferry_rdma_source_close(struct ferry_rdma_source *src)
{
	int err;

	if (!src)
		return -EINVAL;
	if (src->monitor_running)
		say_bye(src);
	err = rdm_fail_get(&src->fail);
	source_free(src);
	return err;
}

void ferry_rdma_source_destroy(struct ferry_rdma_source *src)
{
	if (src)
		source_free(src);
}
