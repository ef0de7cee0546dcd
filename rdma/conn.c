/* SPDX-License-Identifier: MIT */
/*
 * rdma_cm: the event channel, the source's connect of one lane (address and
 * route resolution, which pick the device, then the queue pair and the
 * connect carrying the migration id), and the destination's listener and its
 * answer to a connect request (accept, or reject with a reason).
 *
 * Transport settings: RC queue pairs, retry_count <= 6 and rnr_retry_count 6
 * (rxe treats 7 as "retry forever", so a dead peer would never be noticed),
 * and an explicit ACK timeout (RDMA_OPTION_ID_ACK_TIMEOUT) so that the time to
 * notice a dead peer is bounded by (retry_count + 1) * 4.096 us * 2^timeout.
 * Every wait has a deadline.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

/* How long to wait before retrying a destination that does not listen yet. */
#define RETRY_MS 100

const char *rdm_event_name(enum rdma_cm_event_type ev)
{
	return rdma_event_str(ev);
}

struct rdma_event_channel *rdm_cm_channel(int *err)
{
	struct rdma_event_channel *ch;
	int flags;

	errno = 0;
	ch = rdma_create_event_channel();
	if (!ch) {
		int e = errno ? errno : ENODEV;

		if (rdm_is_nodev(-e)) {
			rdm_err("no RDMA device: rdma_create_event_channel: %s "
				"(no /dev/infiniband/rdma_cm: no device, or rdma_ucm not loaded)",
				strerror(e));
			*err = FERRY_ENORDMA;
		} else {
			errno = e;
			*err = rdm_errno("rdma_create_event_channel");
		}
		return NULL;
	}
	flags = fcntl(ch->fd, F_GETFL);
	if (flags < 0 || fcntl(ch->fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		*err = rdm_errno("fcntl(O_NONBLOCK) on the rdma_cm channel");
		rdma_destroy_event_channel(ch);
		return NULL;
	}
	return ch;
}

int rdm_cm_next_or(struct rdma_event_channel *ch, int64_t deadline, int wake_fd,
		   struct rdma_cm_event **ev)
{
	struct pollfd pfd[2] = {{.fd = ch->fd, .events = POLLIN},
				{.fd = wake_fd, .events = POLLIN}};
	int ret;

	for (;;) {
		if (!rdma_get_cm_event(ch, ev))
			return 0;
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
			return rdm_errno("rdma_get_cm_event");
		ret = poll(pfd, wake_fd >= 0 ? 2 : 1, rdm_remaining_ms(deadline));
		if (ret == 0)
			return -ETIMEDOUT;
		if (ret < 0 && errno != EINTR)
			return rdm_errno("poll on the rdma_cm channel");
		if (wake_fd >= 0 && (pfd[1].revents & POLLIN))
			return -ECANCELED;
	}
}

int rdm_cm_next(struct rdma_event_channel *ch, int64_t deadline, struct rdma_cm_event **ev)
{
	return rdm_cm_next_or(ch, deadline, -1, ev);
}

int rdm_cm_ack_timeout(struct rdma_cm_id *id, uint8_t t)
{
	if (rdma_set_option(id, RDMA_OPTION_ID, RDMA_OPTION_ID_ACK_TIMEOUT, &t, sizeof(t))) {
		/* Older kernels lack the option: detection is then bounded by the defaults. */
		rdm_warn("rdma_set_option(ACK_TIMEOUT %u): %s; the default ACK timeout applies", t,
			 strerror(errno));
		return -errno;
	}
	return 0;
}

/* ---- source: one lane ----------------------------------------------------------- */

/* Map an address/route resolution failure to what the engine acts on. */
static int resolve_error(int status, const char *what, const char *peer)
{
	if (status == -ENODEV || status == -EADDRNOTAVAIL || status == -ENOSYS) {
		rdm_err("%s %s: no RDMA device on the route (%s)", what, peer, strerror(-status));
		return FERRY_ENORDMA;
	}
	if (status == -ENETUNREACH) {
		rdm_err("%s %s: network unreachable", what, peer);
		return -ENETUNREACH;
	}
	rdm_err("%s %s: %s", what, peer, strerror(status < 0 ? -status : EIO));
	return -EHOSTUNREACH;
}

/*
 * Wait for the next event of lane @l's id; an event of another lane (only a
 * disconnect or a removal can come) fails the connect.
 */
static int lane_event(struct rdm_lane *l, int64_t deadline, enum rdma_cm_event_type *type,
		      int *status, uint16_t *rej, uint32_t *lanes, bool *ferry_reply)
{
	struct ferry_rdma_source *src = l->src;
	struct rdma_cm_event *ev;
	int ret;

	for (;;) {
		/* The wake eventfd: an abort (or another failure) ends the wait at once. */
		ret = rdm_cm_next_or(src->ch, deadline, src->wake_fd, &ev);
		if (ret == -ECANCELED)
			return rdm_fail_get(&src->fail) ? rdm_fail_get(&src->fail) : ret;
		if (ret)
			return ret;
		if (ev->id != l->id) {
			struct rdm_lane *other = ev->id->context;
			enum rdma_cm_event_type t = ev->event;

			rdma_ack_cm_event(ev);
			if (t == RDMA_CM_EVENT_TIMEWAIT_EXIT || t == RDMA_CM_EVENT_ADDR_CHANGE)
				continue;
			if (t == RDMA_CM_EVENT_DEVICE_REMOVAL)
				return rdm_src_fail(src, -ENODEV, "the RDMA device was removed");
			return rdm_src_fail(src, -ECONNRESET,
					    "lane %u: %s while connecting lane %u",
					    other ? other->index : 0, rdm_event_name(t), l->index);
		}
		*type = ev->event;
		*status = ev->status;
		*ferry_reply = false;
		if (ev->event == RDMA_CM_EVENT_REJECTED || ev->event == RDMA_CM_EVENT_ESTABLISHED)
			*ferry_reply = rdm_conn_reply_from_wire(ev->param.conn.private_data,
								ev->param.conn.private_data_len,
								rej, lanes) == 1;
		rdma_ack_cm_event(ev);
		return 0;
	}
}

/* One attempt; returns 1 when the peer does not listen (yet) and a retry may help. */
static int lane_attempt(struct rdm_lane *l, const struct sockaddr *dst, const struct sockaddr *bind,
			int64_t deadline, const char *peer)
{
	struct ferry_rdma_source *src = l->src;
	uint8_t pd[RDM_CONN_REQ_LEN];
	struct rdma_conn_param param;
	struct rdm_conn_req req;
	enum rdma_cm_event_type type;
	uint32_t lanes = 0;
	uint16_t rej = 0;
	bool ferry_reply;
	int ret, status;

	if (rdma_create_id(src->ch, &l->id, l, RDMA_PS_TCP))
		return rdm_errno("lane %u: rdma_create_id", l->index);

	if (rdma_resolve_addr(l->id, (struct sockaddr *)bind, (struct sockaddr *)dst,
			      rdm_remaining_ms(deadline) > 0 ? rdm_remaining_ms(deadline) : 1)) {
		ret = -errno;
		return resolve_error(ret, "address resolution to", peer);
	}
	ret = lane_event(l, deadline, &type, &status, &rej, &lanes, &ferry_reply);
	if (ret == -ETIMEDOUT) {
		rdm_err("lane %u: address resolution to %s timed out", l->index, peer);
		return -ETIMEDOUT;
	}
	if (ret)
		return ret;
	if (type != RDMA_CM_EVENT_ADDR_RESOLVED)
		return resolve_error(status ? status : -EHOSTUNREACH, "address resolution to",
				     peer);

	if (rdma_resolve_route(l->id,
			       rdm_remaining_ms(deadline) > 0 ? rdm_remaining_ms(deadline) : 1))
		return resolve_error(-errno, "route resolution to", peer);
	ret = lane_event(l, deadline, &type, &status, &rej, &lanes, &ferry_reply);
	if (ret == -ETIMEDOUT) {
		rdm_err("lane %u: route resolution to %s timed out", l->index, peer);
		return -ETIMEDOUT;
	}
	if (ret)
		return ret;
	if (type != RDMA_CM_EVENT_ROUTE_RESOLVED)
		return resolve_error(status ? status : -EHOSTUNREACH, "route resolution to", peer);

	/* The route decided the device: the first lane opens it, the others must agree. */
	if (!src->dev_open) {
		ret = rdm_src_open_device(src, l->id->verbs);
		if (ret)
			return ret;
	} else if (l->id->verbs != src->dev.ctx) {
		rdm_err("lane %u resolved to %s, lane 0 to %s: lanes on several devices are not "
			"supported",
			l->index, ibv_get_device_name(l->id->verbs->device), src->dev.name);
		return -EXDEV;
	}
	ret = rdm_lane_setup(l);
	if (ret)
		return ret;
	rdm_cm_ack_timeout(l->id, src->attr.ack_timeout);

	req.version = RDM_VERSION;
	req.lane = (uint16_t)l->index;
	req.lanes = (uint16_t)src->n_lanes;
	memcpy(req.id, src->attr.id, sizeof(req.id));
	req.has_auth = src->attr.auth;
	if (req.has_auth &&
	    rdm_auth_tag(src->attr.auth_key, req.id, req.lane, req.lanes, req.auth) < 0) {
		rdm_err("lane %u: cannot compute the authenticator", l->index);
		return -EIO;
	}
	rdm_conn_req_to_wire(&req, pd);
	memset(&param, 0, sizeof(param));
	param.private_data = pd;
	param.private_data_len = sizeof(pd);
	param.retry_count = src->attr.retry_cnt;
	param.rnr_retry_count = 6;
	if (rdma_connect(l->id, &param))
		return rdm_errno("lane %u: rdma_connect to %s", l->index, peer);

	ret = lane_event(l, deadline, &type, &status, &rej, &lanes, &ferry_reply);
	if (ret == -ETIMEDOUT) {
		rdm_err("lane %u: connect to %s timed out", l->index, peer);
		return -ETIMEDOUT;
	}
	if (ret)
		return ret;
	switch (type) {
	case RDMA_CM_EVENT_ESTABLISHED:
		if (!ferry_reply) {
			rdm_err(
			    "lane %u: %s accepted without ferry's reply: not a ferry destination",
			    l->index, peer);
			return FERRY_EBADSTREAM;
		}
		l->connected = true;
		return 0;
	case RDMA_CM_EVENT_REJECTED:
		if (ferry_reply) {
			rdm_err("lane %u: the destination at %s refused the connection: %s",
				l->index, peer, rdm_reject_name(rej));
			return rej == RDM_REJ_AUTH ? FERRY_EAUTH : -ECONNREFUSED;
		}
		/* No ferry reply: nothing listens on that port (yet). */
		rdm_dbg("lane %u: %s rejected the connection (status %d): not listening?", l->index,
			peer, status);
		return 1;
	case RDMA_CM_EVENT_UNREACHABLE:
		rdm_err("lane %u: %s is unreachable (status %d)", l->index, peer, status);
		return -EHOSTUNREACH;
	case RDMA_CM_EVENT_DEVICE_REMOVAL:
		rdm_err("lane %u: the RDMA device was removed while connecting", l->index);
		return -ENODEV;
	default:
		rdm_err("lane %u: connect to %s: unexpected %s (status %d)", l->index, peer,
			rdm_event_name(type), status);
		return -ECONNRESET;
	}
}

int rdm_lane_connect(struct rdm_lane *l, const struct sockaddr *dst, const struct sockaddr *bind,
		     int64_t deadline)
{
	bool refused = false;
	char peer[64];
	int ret;

	rdm_sockaddr_str(dst, peer, sizeof(peer));
	for (;;) {
		ret = lane_attempt(l, dst, bind, deadline, peer);
		if (ret == -ETIMEDOUT && refused) {
			/* The time ran out while retrying a port nobody listens on. */
			rdm_err("lane %u: nothing accepts RDMA connections at %s", l->index, peer);
			return -ECONNREFUSED;
		}
		if (ret <= 0)
			return ret;
		refused = true;
		rdm_lane_teardown(l);
		if (rdm_remaining_ms(deadline) <= RETRY_MS) {
			rdm_err("lane %u: nothing accepts RDMA connections at %s", l->index, peer);
			return -ECONNREFUSED;
		}
		/* Sleep before the next try, unless aborted meanwhile. */
		{
			struct pollfd pfd = {.fd = l->src->wake_fd, .events = POLLIN};

			if (poll(&pfd, 1, RETRY_MS) > 0)
				return rdm_fail_get(&l->src->fail) ? rdm_fail_get(&l->src->fail)
								   : -ECANCELED;
		}
	}
}

/* ---- destination ---------------------------------------------------------------- */

int rdm_dest_listen(struct ferry_rdma_dest *dst)
{
	struct sockaddr_storage ss;
	int ret;

	ret = rdm_sockaddr(dst->attr.host, dst->attr.port, &ss);
	if (ret)
		return ret;
	rdm_sockaddr_str((struct sockaddr *)&ss, dst->where, sizeof(dst->where));
	dst->ch = rdm_cm_channel(&ret);
	if (!dst->ch)
		return ret;
	if (rdma_create_id(dst->ch, &dst->listen, NULL, RDMA_PS_TCP))
		return rdm_errno("rdma_create_id (listener)");
	if (rdma_bind_addr(dst->listen, (struct sockaddr *)&ss)) {
		ret = -errno;
		if (ret == -ENODEV || ret == -EADDRNOTAVAIL) {
			rdm_err("cannot listen on %s: no RDMA device has that address (%s)",
				dst->where, strerror(-ret));
			return ret == -ENODEV ? FERRY_ENORDMA : ret;
		}
		errno = -ret;
		return rdm_errno("rdma_bind_addr %s", dst->where);
	}
	/* A bound address names its device: register now, before any source connects. */
	if (dst->listen->verbs) {
		ret = rdm_dest_open_device(dst, dst->listen->verbs);
		if (ret)
			return ret;
	}
	rdm_cm_ack_timeout(dst->listen, dst->attr.ack_timeout);
	if (rdma_listen(dst->listen, (int)dst->n_lanes + 4))
		return rdm_errno("rdma_listen %s", dst->where);
	dst->port = ntohs(rdma_get_src_port(dst->listen));
	rdm_sockaddr_str(rdma_get_local_addr(dst->listen), dst->where, sizeof(dst->where));
	return 0;
}

static struct rdma_cm_id *reject(struct rdma_cm_id *id, uint16_t reason, const char *peer)
{
	uint8_t pd[RDM_CONN_REPLY_LEN];

	rdm_warn("refused a connection from %s: %s", peer, rdm_reject_name(reason));
	rdm_conn_reply_to_wire(reason, 0, pd);
	if (rdma_reject(id, pd, sizeof(pd)))
		rdm_errno("rdma_reject");
	return id;
}

static int lane_qp(struct ferry_rdma_dest *dst, struct rdm_dlane *dl, struct rdma_cm_id *id)
{
	struct ibv_qp_init_attr qa;
	int ret;

	ret = rdm_ctrl_init(&dl->ctrl, &dst->mem, dl->index);
	if (ret)
		return ret;
	memset(&qa, 0, sizeof(qa));
	qa.qp_context = dl;
	qa.send_cq = dst->send_cq;
	qa.recv_cq = dst->recv_cq;
	qa.cap.max_send_wr = RDM_CTRL_SEND;
	qa.cap.max_recv_wr = RDM_CTRL_DEPTH;
	qa.cap.max_send_sge = 1;
	qa.cap.max_recv_sge = 1;
	qa.qp_type = IBV_QPT_RC;
	if (rdma_create_qp(id, dst->dev.pd, &qa))
		return rdm_errno("lane %u: rdma_create_qp", dl->index);
	dl->id = id;
	dl->qp = id->qp;
	ret = rdm_ctrl_post_all_recv(&dl->ctrl, dl->qp);
	if (ret)
		return ret;
	if (dst->mem.reg == FERRY_RDMA_REG_CHUNKED) {
		ret = rdm_cmap_init(&dl->chunks, dst->mem.lane_chunks);
		if (ret)
			return ret;
	}
	return 0;
}

struct rdma_cm_id *rdm_dest_on_connect(struct ferry_rdma_dest *dst, struct rdma_cm_event *ev)
{
	struct rdma_cm_id *id = ev->id;
	uint8_t pd[RDM_CONN_REPLY_LEN];
	struct rdma_conn_param param;
	struct rdm_conn_req req;
	struct rdm_dlane *dl;
	char peer[64];
	int reason, ret;

	rdm_sockaddr_str(rdma_get_peer_addr(id), peer, sizeof(peer));
	if (rdm_fail_get(&dst->fail))
		return reject(id, RDM_REJ_FAILED, peer);
	reason = rdm_conn_req_from_wire(ev->param.conn.private_data,
					ev->param.conn.private_data_len, &req);
	if (reason)
		return reject(id, (uint16_t)reason, peer);
	/* Constant time: how much of a guess was right must not show. */
	if (!rdm_ct_equal(req.id, dst->attr.id, sizeof(req.id)))
		return reject(id, RDM_REJ_ID, peer);
	/* The id travels in the clear; the tag proves the peer holds the TLS
	 * session's secret. Checked before anything is set up for the lane. */
	if (dst->attr.auth && !rdm_auth_check(dst->attr.auth_key, &req))
		return reject(id, RDM_REJ_AUTH, peer);
	if (dst->attr.auth)
		rdm_dbg("lane %u from %s: authenticator verified", req.lane, peer);
	if (req.lanes != dst->n_lanes)
		return reject(id, RDM_REJ_LANES, peer);
	if (req.lane >= dst->n_lanes)
		return reject(id, RDM_REJ_LANE, peer);
	dl = &dst->lanes[req.lane];
	if (dl->state != RDM_DL_FREE)
		return reject(id, RDM_REJ_DUPLICATE, peer);
	if (!dst->dev_open) {
		ret = rdm_dest_open_device(dst, id->verbs);
		if (ret) {
			rdm_fail_set(&dst->fail, ret, "cannot use RDMA device %s",
				     ibv_get_device_name(id->verbs->device));
			return reject(id, RDM_REJ_INTERNAL, peer);
		}
	} else if (id->verbs != dst->dev.ctx) {
		return reject(id, RDM_REJ_DEVICE, peer);
	}

	ret = lane_qp(dst, dl, id);
	if (ret)
		goto err_lane;
	id->context = dl;
	rdm_cm_ack_timeout(id, dst->attr.ack_timeout);
	rdm_conn_reply_to_wire(0, dst->n_lanes, pd);
	memset(&param, 0, sizeof(param));
	param.private_data = pd;
	param.private_data_len = sizeof(pd);
	param.retry_count = dst->attr.retry_cnt;
	param.rnr_retry_count = 6;
	if (rdma_accept(id, &param)) {
		rdm_errno("lane %u: rdma_accept from %s", dl->index, peer);
		goto err_lane;
	}
	pthread_mutex_lock(&dst->lock);
	dl->state = RDM_DL_ACCEPTING;
	pthread_mutex_unlock(&dst->lock);
	rdm_dbg("lane %u: accepted %s", dl->index, peer);
	return NULL;

err_lane:
	/* The id is the event's: release what was built on it, then reject it. */
	rdm_dlane_release(dl, false);
	id->context = NULL;
	return reject(id, RDM_REJ_INTERNAL, peer);
}
