/* SPDX-License-Identifier: MIT */
/*
 * Multi-channel TCP: the data path of <ferry/datapath.h> over N stream
 * connections beside the main stream (docs/data-path.md has the protocol).
 *
 *   source                                     destination
 *   connect, HELLO(id, lane, lanes)   ---->    accept, check id and lane
 *                                     <----    WELCOME(status)
 *   PAGES(header, runs, page data)    ---->    header, runs checked, then
 *   ...                                        recvmsg into the guest pages
 *   SYNC(round)                       ---->    everything before is placed
 *                                     <----    ACK(round)
 *   END                               ---->    the lane ends normally
 *
 * Zero copy: a PAGES packet leaves with one sendmsg whose iovecs are its
 * header and then the data runs, in guest RAM; the destination reads the
 * header and run table, checks every run against the block table, and then
 * receives the payload with one recvmsg whose iovecs are the destination
 * pages themselves. With FERRY_DP_F_ZEROCOPY, the payload goes with
 * MSG_ZEROCOPY (the header separately, since its buffer is reused at once),
 * and flush() waits for the kernel's completions before the round trip.
 *
 * Threads: each lane is used by its own worker thread (send/flush, or
 * receive); connect/accept and close run in the migration thread; abort
 * may come from any thread and only shuts sockets down (flags + shutdown(2)).
 */
#include <assert.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <time.h> /* before linux/errqueue.h, which uses struct timespec */
#include <linux/errqueue.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/multichannel.h>

#include <ferry/tls.h>

#include "internal.h"

#ifndef SO_ZEROCOPY
#define SO_ZEROCOPY 60
#endif
#ifndef MSG_ZEROCOPY
#define MSG_ZEROCOPY 0x4000000
#endif
#ifndef SO_EE_ORIGIN_ZEROCOPY
#define SO_EE_ORIGIN_ZEROCOPY 5
#endif
#ifndef SO_EE_CODE_ZEROCOPY_COPIED
#define SO_EE_CODE_ZEROCOPY_COPIED 1
#endif

#define MC_MAGIC	 0x46525944u /* "FRYD" */
#define MC_PROTO_VERSION 1
/* A new connection has this long to present its HELLO before it is dropped. */
#define MC_HELLO_TIMEOUT_MS 2000
/* How long flush() waits for the destination's ACK (and zerocopy completions). */
#define MC_SYNC_TIMEOUT_MS 60000
/* Bounds of one PAGES packet, checked by the destination before reading on. */
#define MC_MAX_RUNS  FERRY_DP_MAX_BATCH_RUNS
#define MC_MAX_PAGES FERRY_DP_MAX_BATCH_PAGES

enum mc_pkt_type {
	MC_PKT_PAGES = 1,
	MC_PKT_SYNC = 2,
	MC_PKT_END = 3,
	MC_PKT_ACK = 4, /* destination to source */
};

/* WELCOME status: why a connection was refused (0: accepted). */
enum mc_status {
	MC_OK = 0,
	MC_REFUSE_PROTOCOL = 1,	 /* not our magic, or a version we do not speak */
	MC_REFUSE_ID = 2,	 /* not this migration's id */
	MC_REFUSE_LANE = 3,	 /* lane index or count does not match the negotiation */
	MC_REFUSE_DUPLICATE = 4, /* that lane is already connected */
	MC_REFUSE_PARAMS = 5,	 /* page size, flags or reserved bytes */
};

static const char *mc_status_text(uint16_t st)
{
	switch (st) {
	case MC_OK:
		return "accepted";
	case MC_REFUSE_PROTOCOL:
		return "not a ferry data connection of this version";
	case MC_REFUSE_ID:
		return "wrong migration id";
	case MC_REFUSE_LANE:
		return "lane index or count does not match the negotiation";
	case MC_REFUSE_DUPLICATE:
		return "lane already connected";
	case MC_REFUSE_PARAMS:
		return "page size, flags or reserved bytes do not match";
	default:
		return "unknown refusal";
	}
}

/* ---- wire records -------------------------------------------------------------------- */

/* HELLO: the first bytes of a data connection, source to destination. */
struct mc_hello {
	uint16_t version, lane, lanes, flags;
	uint32_t page_size;
	uint8_t id[FERRY_DP_ID_LEN];
	bool reserved_zero;
	uint32_t magic;
};

struct mc_hello_wire {
	uint32_t magic; /* big-endian, as every integer here */
	uint16_t version;
	uint16_t lane;
	uint16_t lanes;
	uint16_t flags;
	uint32_t page_size;
	uint8_t id[FERRY_DP_ID_LEN];
	uint8_t reserved[32];
};
static_assert(sizeof(struct mc_hello_wire) == 64, "HELLO is 64 bytes");

/* WELCOME: the destination's answer to a HELLO. */
struct mc_welcome_wire {
	uint32_t magic;
	uint16_t version;
	uint16_t status;
	uint8_t reserved[8];
};
static_assert(sizeof(struct mc_welcome_wire) == 16, "WELCOME is 16 bytes");

/* Every packet on a lane starts with this header. */
struct mc_pkt {
	uint32_t magic;
	uint16_t type, flags;
	uint32_t block;
	uint16_t ndata, nzero;
	uint32_t data_pages, zero_pages;
	uint64_t seq;
};

struct mc_pkt_wire {
	uint32_t magic;
	uint16_t type;
	uint16_t flags;
	uint32_t block;
	uint16_t ndata;
	uint16_t nzero;
	uint32_t data_pages;
	uint32_t zero_pages;
	uint64_t seq; /* PAGES: packet number on the lane; SYNC/ACK: the round */
};
static_assert(sizeof(struct mc_pkt_wire) == 32, "packet header is 32 bytes");

/* One run of a PAGES packet's table. */
struct mc_run_wire {
	uint64_t first;
	uint32_t npages;
	uint32_t reserved;
};
static_assert(sizeof(struct mc_run_wire) == 16, "run entry is 16 bytes");

/* ACK: the destination's answer to a SYNC (a packet header with type ACK). */

static void mc_hello_to_wire(const struct mc_hello *h, struct mc_hello_wire *w)
{
	memset(w, 0, sizeof(*w));
	w->magic = htobe32(MC_MAGIC);
	w->version = htobe16(h->version);
	w->lane = htobe16(h->lane);
	w->lanes = htobe16(h->lanes);
	w->flags = htobe16(h->flags);
	w->page_size = htobe32(h->page_size);
	memcpy(w->id, h->id, sizeof(w->id));
}

static void mc_hello_from_wire(const struct mc_hello_wire *w, struct mc_hello *h)
{
	h->magic = be32toh(w->magic);
	h->version = be16toh(w->version);
	h->lane = be16toh(w->lane);
	h->lanes = be16toh(w->lanes);
	h->flags = be16toh(w->flags);
	h->page_size = be32toh(w->page_size);
	memcpy(h->id, w->id, sizeof(h->id));
	h->reserved_zero = true;
	for (size_t i = 0; i < sizeof(w->reserved); i++)
		if (w->reserved[i])
			h->reserved_zero = false;
}

static void mc_welcome_to_wire(uint16_t status, struct mc_welcome_wire *w)
{
	memset(w, 0, sizeof(*w));
	w->magic = htobe32(MC_MAGIC);
	w->version = htobe16(MC_PROTO_VERSION);
	w->status = htobe16(status);
}

static int mc_welcome_from_wire(const struct mc_welcome_wire *w, uint16_t *status)
{
	if (be32toh(w->magic) != MC_MAGIC || be16toh(w->version) != MC_PROTO_VERSION)
		return FERRY_EBADSTREAM;
	*status = be16toh(w->status);
	return 0;
}

static void mc_pkt_to_wire(const struct mc_pkt *p, struct mc_pkt_wire *w)
{
	w->magic = htobe32(MC_MAGIC);
	w->type = htobe16(p->type);
	w->flags = htobe16(p->flags);
	w->block = htobe32(p->block);
	w->ndata = htobe16(p->ndata);
	w->nzero = htobe16(p->nzero);
	w->data_pages = htobe32(p->data_pages);
	w->zero_pages = htobe32(p->zero_pages);
	w->seq = htobe64(p->seq);
}

static void mc_pkt_from_wire(const struct mc_pkt_wire *w, struct mc_pkt *p)
{
	p->magic = be32toh(w->magic);
	p->type = be16toh(w->type);
	p->flags = be16toh(w->flags);
	p->block = be32toh(w->block);
	p->ndata = be16toh(w->ndata);
	p->nzero = be16toh(w->nzero);
	p->data_pages = be32toh(w->data_pages);
	p->zero_pages = be32toh(w->zero_pages);
	p->seq = be64toh(w->seq);
}

static void mc_run_to_wire(uint64_t first, uint32_t npages, struct mc_run_wire *w)
{
	w->first = htobe64(first);
	w->npages = htobe32(npages);
	w->reserved = 0;
}

static void mc_run_from_wire(const struct mc_run_wire *w, uint64_t *first, uint32_t *npages,
			     uint32_t *reserved)
{
	*first = be64toh(w->first);
	*npages = be32toh(w->npages);
	*reserved = be32toh(w->reserved);
}

/* ---- lanes ----------------------------------------------------------------------------- */

struct mc_stats {
	_Atomic uint64_t wire_bytes, page_bytes, pages, zero_pages, packets, syscalls, zc_sends,
	    zc_copied, sync_round, memcpy_bytes;
};

struct mc_lane {
	struct ferry_channel *ch;
	uint32_t index;
	/* one packet's header and run table; source: built here, destination: read here */
	uint8_t *hdr;
	struct iovec *iov;
	struct mc_run_wire *zero_tmp; /* source: zero runs, appended after the data runs */
	uint64_t seq;
	/* MSG_ZEROCOPY: calls made and completions seen (the kernel numbers calls from 0) */
	bool zerocopy;
	uint64_t zc_calls, zc_done;
	/* destination */
	uint64_t last_round;
	bool ended;
	struct mc_stats st;
};

#define MC_HDR_BYTES (sizeof(struct mc_pkt_wire) + MC_MAX_RUNS * sizeof(struct mc_run_wire))

static void stat_add(_Atomic uint64_t *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

static uint64_t stat_get(_Atomic uint64_t *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

static void lane_stats_copy(struct mc_lane *l, struct ferry_dp_lane_stats *out)
{
	memset(out, 0, sizeof(*out));
	if (!l)
		return;
	out->wire_bytes = stat_get(&l->st.wire_bytes);
	out->page_bytes = stat_get(&l->st.page_bytes);
	out->pages = stat_get(&l->st.pages);
	out->zero_pages = stat_get(&l->st.zero_pages);
	out->packets = stat_get(&l->st.packets);
	out->syscalls = stat_get(&l->st.syscalls);
	out->zerocopy_sends = stat_get(&l->st.zc_sends);
	out->zerocopy_copied = stat_get(&l->st.zc_copied);
	out->sync_round = stat_get(&l->st.sync_round);
	/* Plain lanes never copy a page byte; TLS lanes copy each into a record. */
	out->memcpy_bytes = stat_get(&l->st.memcpy_bytes);
}

static int lane_alloc(struct mc_lane *l, uint32_t index, bool source)
{
	memset(l, 0, sizeof(*l));
	l->index = index;
	l->hdr = aligned_alloc(64, (MC_HDR_BYTES + 63) & ~(size_t)63);
	l->iov = calloc(MC_MAX_RUNS + 1, sizeof(*l->iov));
	if (source)
		l->zero_tmp = calloc(MC_MAX_RUNS, sizeof(*l->zero_tmp));
	if (!l->hdr || !l->iov || (source && !l->zero_tmp))
		return -ENOMEM;
	return 0;
}

static void lane_free(struct mc_lane *l)
{
	ferry_channel_destroy(l->ch);
	l->ch = NULL;
	free(l->hdr);
	free(l->iov);
	free(l->zero_tmp);
}

/* The error of a socket call, telling a cancel (shutdown by abort) from the peer's doing. */
static int lane_errno(struct mc_lane *l, int err)
{
	return atomic_load(&l->ch->shut) ? -ECANCELED : -err;
}

/* Wait for @events on the lane's socket until @deadline (chan_deadline() form). */
static int lane_poll(struct mc_lane *l, short events, int64_t deadline, short *revents)
{
	struct pollfd p = {.fd = l->ch->fd, .events = events};

	/* TLS: a record already decrypted is not on the socket any more. */
	if ((events & POLLIN) && chan_tls_pending(l->ch)) {
		*revents = POLLIN;
		return 0;
	}
	for (;;) {
		int r;

		if (atomic_load(&l->ch->shut))
			return -ECANCELED;
		r = poll(&p, 1, chan_remaining(deadline));
		stat_add(&l->st.syscalls, 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		*revents = p.revents;
		return 0;
	}
}

/*
 * Send every byte of @iov (advanced in place on short writes). @flags adds
 * MSG_MORE or MSG_ZEROCOPY. Returns 0 or an error.
 */
static int lane_sendv(struct mc_lane *l, struct iovec *iov, int iovcnt, int flags)
{
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};

	if (l->ch->tls) {
		/* Into TLS records (a copy GnuTLS cannot avoid), one send per record. */
		ssize_t n = chan_tls_send_all(l->ch, iov, iovcnt);

		if (n < 0)
			return (int)n;
		stat_add(&l->st.wire_bytes, (uint64_t)n);
		stat_add(&l->st.syscalls, ((uint64_t)n + 16383) / 16384);
		return 0;
	}
	while (msg.msg_iovlen > 0) {
		ssize_t n = sendmsg(l->ch->fd, &msg, MSG_NOSIGNAL | flags);

		stat_add(&l->st.syscalls, 1);
		if (n < 0) {
			int err = errno;

			if (err == EINTR)
				continue;
			if (err == ENOBUFS && (flags & MSG_ZEROCOPY)) {
				/* Too many sends waiting for completions: send this one copied. */
				flags &= ~MSG_ZEROCOPY;
				continue;
			}
			return lane_errno(l, err);
		}
		if (flags & MSG_ZEROCOPY) {
			l->zc_calls++;
			stat_add(&l->st.zc_sends, 1);
		}
		stat_add(&l->st.wire_bytes, (uint64_t)n);
		while (n > 0 && msg.msg_iovlen > 0) {
			if ((size_t)n >= msg.msg_iov->iov_len) {
				n -= (ssize_t)msg.msg_iov->iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			} else {
				msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
				msg.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

/*
 * Receive exactly the bytes of @iov (advanced in place). Returns 0, FERRY_ETRUNCATED
 * when the stream ends inside, -ECONNRESET when it ends before the first byte
 * (with *@none set), or an error.
 */
static int lane_recvv(struct mc_lane *l, struct iovec *iov, int iovcnt, bool *none)
{
	struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)iovcnt};
	bool any = false;

	if (none)
		*none = false;
	while (msg.msg_iovlen > 0) {
		ssize_t n = l->ch->tls ? chan_tls_recv(l->ch, msg.msg_iov->iov_base,
						       msg.msg_iov->iov_len, -1)
				       : recvmsg(l->ch->fd, &msg, MSG_WAITALL);

		stat_add(&l->st.syscalls, 1);
		if (n < 0 && l->ch->tls)
			return (int)n;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return lane_errno(l, errno);
		}
		if (n == 0) {
			if (atomic_load(&l->ch->shut))
				return -ECANCELED;
			if (!any && none)
				*none = true;
			return any ? FERRY_ETRUNCATED : -ECONNRESET;
		}
		any = true;
		stat_add(&l->st.wire_bytes, (uint64_t)n);
		while (n > 0 && msg.msg_iovlen > 0) {
			if ((size_t)n >= msg.msg_iov->iov_len) {
				n -= (ssize_t)msg.msg_iov->iov_len;
				msg.msg_iov++;
				msg.msg_iovlen--;
			} else {
				msg.msg_iov->iov_base = (uint8_t *)msg.msg_iov->iov_base + n;
				msg.msg_iov->iov_len -= (size_t)n;
				n = 0;
			}
		}
	}
	return 0;
}

static int lane_recv(struct mc_lane *l, void *buf, size_t len, bool *none)
{
	struct iovec iov = {.iov_base = buf, .iov_len = len};

	return lane_recvv(l, &iov, 1, none);
}

/* Read @len bytes before @deadline (handshakes: the lane is not owned by a worker yet). */
static int chan_read_deadline(struct ferry_channel *ch, void *buf, size_t len, int64_t deadline)
{
	size_t got = 0;

	while (got < len && ch->tls) {
		/* TLS: GnuTLS waits for whole records, bounded by the deadline. */
		ssize_t n = chan_tls_recv(ch, (uint8_t *)buf + got, len - got,
					  deadline < 0 ? -1 : chan_remaining(deadline));

		if (n < 0)
			return (int)n;
		if (n == 0)
			return got ? FERRY_ETRUNCATED : -ECONNRESET;
		got += (size_t)n;
	}
	while (got < len) {
		struct pollfd p = {.fd = ch->fd, .events = POLLIN};
		ssize_t n;
		int r = poll(&p, 1, chan_remaining(deadline));

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0)
			return -errno;
		if (r == 0)
			return -ETIMEDOUT;
		n = recv(ch->fd, (uint8_t *)buf + got, len - got, MSG_DONTWAIT);
		if (n < 0 && (errno == EINTR || errno == EAGAIN))
			continue;
		if (atomic_load(&ch->shut))
			return -ECANCELED;
		if (n < 0)
			return -errno;
		if (n == 0)
			return got ? FERRY_ETRUNCATED : -ECONNRESET;
		got += (size_t)n;
	}
	return 0;
}

/* Write a short record (handshake) without ever blocking for long: the peer reads it at once. */
static int chan_write_all(struct ferry_channel *ch, const void *buf, size_t len)
{
	struct iovec iov = {.iov_base = (void *)buf, .iov_len = len};

	while (iov.iov_len) {
		ssize_t n = ferry_channel_writev(ch, &iov, 1);

		if (n < 0)
			return (int)n;
		iov.iov_base = (uint8_t *)iov.iov_base + n;
		iov.iov_len -= (size_t)n;
	}
	return 0;
}

/* ---- source ---------------------------------------------------------------------------- */

struct mc_source {
	struct ferry_dp_source_attr attr;
	uint64_t *block_pages;
	struct mc_lane *lanes;
	pthread_mutex_t lock; /* lanes[].ch against abort() */
	atomic_bool aborted;
};

static void mc_source_free(struct mc_source *s)
{
	if (!s)
		return;
	if (s->lanes)
		for (uint32_t i = 0; i < s->attr.lanes; i++)
			lane_free(&s->lanes[i]);
	free(s->lanes);
	free(s->block_pages);
	free((char *)s->attr.uri);
	free((char *)s->attr.tls_hostname);
	pthread_mutex_destroy(&s->lock);
	free(s);
}

static int mc_source_create(const struct ferry_dp_source_attr *attr, void **out)
{
	struct mc_source *s;
	int ret = -ENOMEM;

	*out = NULL;
	if (!attr->uri || !attr->blocks || !attr->nblocks || attr->lanes == 0 ||
	    attr->lanes > FERRY_DP_MAX_LANES || attr->page_size == 0 ||
	    attr->page_size & (attr->page_size - 1)) {
		chan_err("multi-channel: bad data path parameters (%u lanes, page size %u)",
			 attr->lanes, attr->page_size);
		return -EINVAL;
	}
	if (attr->tls && (attr->flags & FERRY_DP_F_ZEROCOPY)) {
		chan_err("multi-channel: MSG_ZEROCOPY cannot be used with TLS (the pages are "
			 "encrypted into records, never sent in place)");
		return -EINVAL;
	}
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	pthread_mutex_init(&s->lock, NULL);
	atomic_init(&s->aborted, false);
	s->attr = *attr;
	s->attr.uri = strdup(attr->uri);
	s->attr.tls_hostname = NULL;
	if (attr->tls_hostname)
		s->attr.tls_hostname = strdup(attr->tls_hostname);
	s->block_pages = calloc(attr->nblocks, sizeof(*s->block_pages));
	s->lanes = calloc(attr->lanes, sizeof(*s->lanes));
	if (!s->attr.uri || !s->block_pages || !s->lanes ||
	    (attr->tls_hostname && !s->attr.tls_hostname))
		goto err;
	for (uint32_t b = 0; b < attr->nblocks; b++)
		s->block_pages[b] = attr->blocks[b].length / attr->page_size;
	for (uint32_t i = 0; i < attr->lanes; i++) {
		ret = lane_alloc(&s->lanes[i], i, true);
		if (ret < 0)
			goto err;
	}
	*out = s;
	return 0;
err:
	mc_source_free(s);
	return ret;
}

static void lane_enable_zerocopy(struct mc_lane *l)
{
	int one = 1;

	if (setsockopt(l->ch->fd, SOL_SOCKET, SO_ZEROCOPY, &one, sizeof(one)) < 0) {
		chan_warn("%s lane %u: MSG_ZEROCOPY unavailable (%s); sending copied", l->ch->peer,
			  l->index, strerror(errno));
		return;
	}
	l->zerocopy = true;
}

static int mc_source_connect(void *ctx)
{
	struct mc_source *s = ctx;
	int64_t deadline = chan_deadline(s->attr.timeout_ms);
	struct ferry_uri *uri = malloc(sizeof(*uri));
	int ret;

	if (!uri)
		return -ENOMEM;
	ret = ferry_uri_parse(s->attr.uri, uri);
	if (ret < 0)
		goto out;
	if (uri->scheme != FERRY_URI_TCP && uri->scheme != FERRY_URI_UNIX) {
		chan_err("multi-channel: %s is not a tcp: or unix: URI", s->attr.uri);
		ret = FERRY_EBADURI;
		goto out;
	}
	/* Connect every lane and send its HELLO; the destination answers in turn. */
	for (uint32_t i = 0; i < s->attr.lanes; i++) {
		struct mc_lane *l = &s->lanes[i];
		struct mc_hello h = {.version = MC_PROTO_VERSION,
				     .lane = (uint16_t)i,
				     .lanes = (uint16_t)s->attr.lanes,
				     .page_size = s->attr.page_size};
		struct mc_hello_wire hw;
		struct ferry_channel *ch;
		int left = chan_remaining(deadline);

		if (left == 0) {
			ret = -ETIMEDOUT;
			goto out;
		}
		ret = ferry_channel_connect(uri, left, &ch);
		if (ret < 0) {
			chan_err("multi-channel: lane %u: cannot connect to %s: %s", i, s->attr.uri,
				 ferry_strerror(ret));
			goto out;
		}
		pthread_mutex_lock(&s->lock);
		l->ch = ch;
		pthread_mutex_unlock(&s->lock);
		if (atomic_load(&s->aborted)) {
			ret = -ECANCELED;
			goto out;
		}
		if (s->attr.tls) {
			/* The lane is TLS before its first byte, HELLO and its id included. */
			ret = ferry_channel_start_tls(ch, s->attr.tls, s->attr.tls_hostname,
						      chan_remaining(deadline));
			if (ret < 0) {
				if (ret != -ECANCELED)
					chan_err("%s lane %u: TLS handshake failed: %s", ch->peer,
						 i, ferry_strerror(ret));
				goto out;
			}
		}
		memcpy(h.id, s->attr.id, sizeof(h.id));
		mc_hello_to_wire(&h, &hw);
		ret = chan_write_all(ch, &hw, sizeof(hw));
		if (ret < 0) {
			chan_err("%s lane %u: sending HELLO: %s", ch->peer, i, ferry_strerror(ret));
			goto out;
		}
	}
	for (uint32_t i = 0; i < s->attr.lanes; i++) {
		struct mc_lane *l = &s->lanes[i];
		struct mc_welcome_wire ww;
		uint16_t status = 0;

		ret = chan_read_deadline(l->ch, &ww, sizeof(ww), deadline);
		if (ret == 0 && mc_welcome_from_wire(&ww, &status) < 0) {
			chan_err("%s lane %u: the answer to HELLO is not a WELCOME", l->ch->peer,
				 i);
			ret = FERRY_EBADSTREAM;
			goto out;
		}
		if (ret < 0) {
			chan_err("%s lane %u: no WELCOME from the destination: %s", l->ch->peer, i,
				 ret == -ECONNRESET ? "connection closed" : ferry_strerror(ret));
			if (ret == -ECONNRESET)
				ret = FERRY_EPEERABORT;
			goto out;
		}
		if (status != MC_OK) {
			chan_err("%s lane %u: the destination refused it: %s", l->ch->peer, i,
				 mc_status_text(status));
			ret = FERRY_EPEERABORT;
			goto out;
		}
		if (s->attr.flags & FERRY_DP_F_ZEROCOPY)
			lane_enable_zerocopy(l);
		chan_dbg("%s lane %u: up", l->ch->peer, i);
	}
	ret = 0;
out:
	free(uri);
	return ret;
}

/*
 * Take in the kernel's MSG_ZEROCOPY completions waiting on the error queue.
 * Returns 0 or an error.
 */
static int lane_zc_reap(struct mc_lane *l)
{
	for (;;) {
		char control[128];
		struct msghdr msg = {.msg_control = control, .msg_controllen = sizeof(control)};
		struct cmsghdr *cm;
		ssize_t n = recvmsg(l->ch->fd, &msg, MSG_ERRQUEUE | MSG_DONTWAIT);

		stat_add(&l->st.syscalls, 1);
		if (n < 0) {
			if (errno == EAGAIN || errno == EWOULDBLOCK)
				return 0;
			if (errno == EINTR)
				continue;
			return lane_errno(l, errno);
		}
		for (cm = CMSG_FIRSTHDR(&msg); cm; cm = CMSG_NXTHDR(&msg, cm)) {
			struct sock_extended_err ee;

			if (cm->cmsg_len < CMSG_LEN(sizeof(ee)))
				continue;
			memcpy(&ee, CMSG_DATA(cm), sizeof(ee));
			if (ee.ee_origin != SO_EE_ORIGIN_ZEROCOPY)
				continue;
			/* Calls ee_info..ee_data (inclusive, 32-bit counters) completed. */
			l->zc_done += (uint32_t)(ee.ee_data - ee.ee_info) + 1u;
			if (ee.ee_code & SO_EE_CODE_ZEROCOPY_COPIED)
				stat_add(&l->st.zc_copied,
					 (uint32_t)(ee.ee_data - ee.ee_info) + 1u);
		}
	}
}

static int mc_source_send(void *ctx, uint32_t lane, const struct ferry_dp_run *runs, uint32_t nruns)
{
	struct mc_source *s = ctx;
	struct mc_lane *l = &s->lanes[lane];
	uint32_t i = 0;

	if (nruns > FERRY_DP_MAX_BATCH_RUNS)
		return -EINVAL;
	while (i < nruns) {
		struct mc_run_wire *table =
		    (struct mc_run_wire *)(void *)(l->hdr + sizeof(struct mc_pkt_wire));
		struct mc_pkt p = {.type = MC_PKT_PAGES, .block = runs[i].block};
		uint32_t nd = 0, nz = 0;
		uint64_t bpages;
		int iovcnt = 1, ret;

		if (p.block >= s->attr.nblocks)
			return -EINVAL;
		bpages = s->block_pages[p.block];
		/* One packet: consecutive runs of one block, within the packet bounds. */
		for (; i < nruns && runs[i].block == p.block; i++) {
			const struct ferry_dp_run *r = &runs[i];
			bool zero = r->flags & FERRY_DP_RUN_ZERO;

			if (r->npages == 0 || r->first >= bpages || r->npages > bpages - r->first ||
			    r->npages > MC_MAX_PAGES)
				return -EINVAL;
			if (nd + nz == MC_MAX_RUNS ||
			    (!zero && p.data_pages + r->npages > MC_MAX_PAGES))
				break;
			if (zero) {
				mc_run_to_wire(r->first, (uint32_t)r->npages, &l->zero_tmp[nz++]);
				p.zero_pages += (uint32_t)r->npages;
				continue;
			}
			mc_run_to_wire(r->first, (uint32_t)r->npages, &table[nd++]);
			p.data_pages += (uint32_t)r->npages;
			l->iov[iovcnt].iov_base =
			    s->attr.blocks[p.block].host + r->first * s->attr.page_size;
			l->iov[iovcnt].iov_len = r->npages * s->attr.page_size;
			iovcnt++;
		}
		memcpy(&table[nd], l->zero_tmp, nz * sizeof(*table));
		p.ndata = (uint16_t)nd;
		p.nzero = (uint16_t)nz;
		p.seq = ++l->seq;
		mc_pkt_to_wire(&p, (struct mc_pkt_wire *)(void *)l->hdr);
		l->iov[0].iov_base = l->hdr;
		l->iov[0].iov_len = sizeof(struct mc_pkt_wire) + (nd + nz) * sizeof(*table);
		if (l->zerocopy && nd) {
			/* The header buffer is reused at once: it must not go by reference. */
			ret = lane_sendv(l, l->iov, 1, MSG_MORE);
			if (!ret)
				ret = lane_sendv(l, l->iov + 1, iovcnt - 1, MSG_ZEROCOPY);
			if (!ret)
				ret = lane_zc_reap(l);
		} else {
			ret = lane_sendv(l, l->iov, iovcnt, 0);
		}
		if (ret < 0) {
			if (ret != -ECANCELED)
				chan_err("%s lane %u: send: %s", l->ch->peer, lane,
					 ferry_strerror(ret));
			return ret;
		}
		stat_add(&l->st.packets, 1);
		stat_add(&l->st.pages, p.data_pages);
		stat_add(&l->st.zero_pages, p.zero_pages);
		stat_add(&l->st.page_bytes, (uint64_t)p.data_pages * s->attr.page_size);
		if (l->ch->tls)
			stat_add(&l->st.memcpy_bytes, (uint64_t)p.data_pages * s->attr.page_size);
	}
	return 0;
}

/* Send a payload-less packet (SYNC, END). */
static int lane_send_ctl(struct mc_lane *l, uint16_t type, uint64_t seq)
{
	struct mc_pkt p = {.type = type, .seq = seq};
	struct mc_pkt_wire w;
	struct iovec iov = {.iov_base = &w, .iov_len = sizeof(w)};

	mc_pkt_to_wire(&p, &w);
	return lane_sendv(l, &iov, 1, 0);
}

static int mc_source_flush(void *ctx, uint32_t lane, uint64_t round)
{
	struct mc_source *s = ctx;
	struct mc_lane *l = &s->lanes[lane];
	int64_t deadline = chan_deadline(MC_SYNC_TIMEOUT_MS);
	struct mc_pkt_wire aw;
	struct mc_pkt a;
	int ret = lane_send_ctl(l, MC_PKT_SYNC, round);

	/* Zerocopy: the kernel must be done with every page before the round ends. */
	while (!ret && l->zerocopy && l->zc_done < l->zc_calls) {
		short rev = 0;

		ret = lane_zc_reap(l);
		if (ret || l->zc_done >= l->zc_calls)
			break;
		ret = lane_poll(l, POLLERR, deadline, &rev);
	}
	if (!ret) {
		short rev = 0;

		/* The ACK comes once the destination placed everything before the SYNC. */
		ret = lane_poll(l, POLLIN, deadline, &rev);
		if (!ret)
			ret = lane_recv(l, &aw, sizeof(aw), NULL);
		if (ret == -ECONNRESET)
			ret = FERRY_EPEERABORT;
	}
	if (ret < 0) {
		if (ret != -ECANCELED)
			chan_err("%s lane %u: sync of round %" PRIu64 ": %s", l->ch->peer, lane,
				 round, ferry_strerror(ret));
		return ret;
	}
	mc_pkt_from_wire(&aw, &a);
	if (a.magic != MC_MAGIC || a.type != MC_PKT_ACK || a.seq != round) {
		chan_err("%s lane %u: expected ACK of round %" PRIu64
			 ", got type %u round %" PRIu64,
			 l->ch->peer, lane, round, a.type, a.seq);
		return FERRY_EBADSTREAM;
	}
	stat_add(&l->st.sync_round, round - stat_get(&l->st.sync_round));
	return 0;
}

static void mc_source_abort(void *ctx)
{
	struct mc_source *s = ctx;

	atomic_store(&s->aborted, true);
	pthread_mutex_lock(&s->lock);
	for (uint32_t i = 0; i < s->attr.lanes; i++)
		if (s->lanes[i].ch)
			ferry_channel_shutdown(s->lanes[i].ch);
	pthread_mutex_unlock(&s->lock);
}

static void mc_source_close(void *ctx, bool graceful)
{
	struct mc_source *s = ctx;

	if (!s)
		return;
	for (uint32_t i = 0; graceful && i < s->attr.lanes; i++) {
		struct mc_lane *l = &s->lanes[i];

		/* END, then FIN: the destination's receive() reports a normal end. */
		if (l->ch && lane_send_ctl(l, MC_PKT_END, l->seq) == 0)
			ferry_channel_shutdown_write(l->ch);
	}
	mc_source_free(s);
}

static void mc_source_lane_stats(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out)
{
	struct mc_source *s = ctx;

	lane_stats_copy(lane < s->attr.lanes ? &s->lanes[lane] : NULL, out);
}

const struct ferry_dp_source_ops ferry_mc_source_ops = {
    .name = FERRY_MC_NAME,
    .create = mc_source_create,
    .connect = mc_source_connect,
    .send = mc_source_send,
    .flush = mc_source_flush,
    .abort = mc_source_abort,
    .close = mc_source_close,
    .lane_stats = mc_source_lane_stats,
};

/* ---- destination ----------------------------------------------------------------------- */

struct mc_dest {
	struct ferry_dp_dest_attr attr;
	uint64_t *block_pages;
	struct mc_lane *lanes;
	pthread_mutex_t lock; /* lanes[].ch and pending against abort() */
	struct ferry_channel *pending;
	atomic_bool aborted;
};

static void mc_dest_free(struct mc_dest *d)
{
	if (!d)
		return;
	if (d->lanes)
		for (uint32_t i = 0; i < d->attr.lanes; i++)
			lane_free(&d->lanes[i]);
	free(d->lanes);
	free(d->block_pages);
	free((char *)d->attr.uri);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

static int mc_dest_create(const struct ferry_dp_dest_attr *attr, void **out)
{
	struct mc_dest *d;
	int ret = -ENOMEM;

	*out = NULL;
	if (!attr->listener || !attr->blocks || !attr->nblocks || attr->lanes == 0 ||
	    attr->lanes > FERRY_DP_MAX_LANES || attr->page_size == 0 ||
	    attr->page_size & (attr->page_size - 1)) {
		chan_err("multi-channel: bad data path parameters (%u lanes, page size %u%s)",
			 attr->lanes, attr->page_size, attr->listener ? "" : ", no listener");
		return -EINVAL;
	}
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	pthread_mutex_init(&d->lock, NULL);
	atomic_init(&d->aborted, false);
	d->attr = *attr;
	d->attr.uri = strdup(attr->uri ? attr->uri : "");
	d->block_pages = calloc(attr->nblocks, sizeof(*d->block_pages));
	d->lanes = calloc(attr->lanes, sizeof(*d->lanes));
	if (!d->attr.uri || !d->block_pages || !d->lanes)
		goto err;
	for (uint32_t b = 0; b < attr->nblocks; b++)
		d->block_pages[b] = attr->blocks[b].length / attr->page_size;
	for (uint32_t i = 0; i < attr->lanes; i++) {
		ret = lane_alloc(&d->lanes[i], i, false);
		if (ret < 0)
			goto err;
	}
	*out = d;
	return 0;
err:
	mc_dest_free(d);
	return ret;
}

/* Check a HELLO against the negotiation: MC_OK or why it is refused. */
static uint16_t mc_check_hello(struct mc_dest *d, const struct mc_hello *h)
{
	uint8_t diff = 0;

	if (h->magic != MC_MAGIC || h->version != MC_PROTO_VERSION)
		return MC_REFUSE_PROTOCOL;
	/* Compare every byte: how far a guess got must not show in the time taken. */
	for (size_t i = 0; i < FERRY_DP_ID_LEN; i++)
		diff |= (uint8_t)(h->id[i] ^ d->attr.id[i]);
	if (diff)
		return MC_REFUSE_ID;
	if (h->lanes != d->attr.lanes || h->lane >= d->attr.lanes)
		return MC_REFUSE_LANE;
	if (h->page_size != d->attr.page_size || h->flags || !h->reserved_zero)
		return MC_REFUSE_PARAMS;
	if (d->lanes[h->lane].ch)
		return MC_REFUSE_DUPLICATE;
	return MC_OK;
}

/*
 * Wait until a connection is pending on the listener, in slices of 100 ms so
 * that an abort, the deadline and a source that hung up are all noticed.
 * Returns 0, -ECANCELED, -ETIMEDOUT, FERRY_EPEERABORT or -errno.
 */
static int mc_dest_wait(struct mc_dest *d, int64_t deadline)
{
	struct pollfd p = {.fd = chan_listener_fd(d->attr.listener), .events = POLLIN};

	for (;;) {
		int left = chan_remaining(deadline);
		int r;

		if (atomic_load(&d->aborted))
			return -ECANCELED;
		r = poll(&p, 1, left < 0 || left > 100 ? 100 : left);
		if (r < 0 && errno != EINTR)
			return -errno;
		if (r > 0)
			return 0;
		if (d->attr.peer_gone && d->attr.peer_gone(d->attr.peer_opaque))
			return FERRY_EPEERABORT;
		if (left == 0)
			return -ETIMEDOUT;
	}
}

/*
 * Read the HELLO of @ch (until @deadline), check it, answer WELCOME, and on
 * MC_OK make @ch the lane it names (the lane owns it from then on). Returns
 * MC_OK, the refusal status (> 0; @ch is still the caller's), or an error
 * (< 0; no HELLO arrived in time, or a cut connection).
 */
int chan_mc_dest_admit(void *ctx, struct ferry_channel *ch, int64_t deadline)
{
	struct mc_dest *d = ctx;
	struct mc_hello_wire hw;
	struct mc_welcome_wire ww;
	struct mc_hello h;
	uint16_t status;
	int ret = chan_read_deadline(ch, &hw, sizeof(hw), deadline);

	if (ret < 0)
		return ret;
	mc_hello_from_wire(&hw, &h);
	pthread_mutex_lock(&d->lock);
	status = mc_check_hello(d, &h);
	if (status == MC_OK)
		d->lanes[h.lane].ch = ch;
	pthread_mutex_unlock(&d->lock);
	mc_welcome_to_wire(status, &ww);
	/* A refused peer learns why; it cannot block us (16 bytes, fresh socket). */
	if (ch->tls)
		(void)chan_write_all(ch, &ww, sizeof(ww));
	else
		(void)send(ch->fd, &ww, sizeof(ww), MSG_NOSIGNAL | MSG_DONTWAIT);
	if (status == MC_OK)
		chan_dbg("%s: lane %u of %u up", ch->peer, h.lane, d->attr.lanes);
	return status;
}

static int mc_dest_accept(void *ctx)
{
	struct mc_dest *d = ctx;
	int64_t deadline = chan_deadline(d->attr.timeout_ms);
	uint32_t got = 0;

	while (got < d->attr.lanes) {
		struct ferry_channel *ch;
		int64_t hello_deadline = chan_deadline(MC_HELLO_TIMEOUT_MS);
		int ret;

		ret = mc_dest_wait(d, deadline);
		/* Pending: the accept itself does not wait (unless the peer just left). */
		if (!ret)
			ret = ferry_listener_accept(d->attr.listener, 1000, &ch);
		if (ret == -ETIMEDOUT && chan_remaining(deadline) != 0)
			continue;
		if (ret < 0) {
			if (ret == -ETIMEDOUT)
				chan_err(
				    "multi-channel: %u of %u data connections arrived in %d ms",
				    got, d->attr.lanes, d->attr.timeout_ms);
			else if (ret == FERRY_EPEERABORT)
				chan_err("multi-channel: the source hung up with %u of %u data "
					 "connections in",
					 got, d->attr.lanes);
			return ret;
		}
		pthread_mutex_lock(&d->lock);
		d->pending = ch;
		pthread_mutex_unlock(&d->lock);
		if (atomic_load(&d->aborted))
			ferry_channel_shutdown(ch);
		if (deadline >= 0 && deadline < hello_deadline)
			hello_deadline = deadline;
		/* TLS: nothing the connection says counts before the handshake. */
		ret = d->attr.tls ? ferry_channel_start_tls(ch, d->attr.tls, NULL,
							    chan_remaining(hello_deadline))
				  : 0;
		if (ret == 0)
			ret = chan_mc_dest_admit(d, ch, hello_deadline);
		pthread_mutex_lock(&d->lock);
		d->pending = NULL;
		pthread_mutex_unlock(&d->lock);
		if (ret == -ECANCELED || atomic_load(&d->aborted)) {
			/* An admitted lane is closed with the others, by close(). */
			if (ret != MC_OK)
				ferry_channel_destroy(ch);
			return -ECANCELED;
		}
		if (ret < 0) {
			chan_warn("multi-channel: dropped %s: %s (%s)", ch->peer,
				  d->attr.tls && !ch->tls ? "TLS handshake failed" : "no HELLO",
				  ferry_strerror(ret));
			ferry_channel_destroy(ch);
			continue;
		}
		if (ret != MC_OK) {
			chan_warn("multi-channel: refused %s: %s", ch->peer,
				  mc_status_text((uint16_t)ret));
			ferry_channel_destroy(ch);
			continue;
		}
		got++;
	}
	return 0;
}

/* Place one PAGES packet whose header is @p; the header itself is already read. */
static int lane_place(struct mc_dest *d, struct mc_lane *l, const struct mc_pkt *p)
{
	const struct mc_run_wire *table = (const struct mc_run_wire *)(const void *)l->hdr;
	uint32_t nruns = (uint32_t)p->ndata + p->nzero, ps = d->attr.page_size;
	uint64_t bpages, sum_data = 0, sum_zero = 0;
	uint8_t *host;
	int iovcnt = 0, ret;

	if (p->block >= d->attr.nblocks || nruns == 0 || nruns > MC_MAX_RUNS ||
	    p->data_pages > MC_MAX_PAGES || p->flags) {
		chan_err("%s lane %u: packet %" PRIu64 ": bad header (block %u of %u, %u runs, "
			 "%u pages, flags 0x%x)",
			 l->ch->peer, l->index, p->seq, p->block, d->attr.nblocks, nruns,
			 p->data_pages, p->flags);
		return FERRY_EBADSTREAM;
	}
	ret = lane_recv(l, l->hdr, nruns * sizeof(*table), NULL);
	if (ret < 0)
		return ret == -ECONNRESET ? FERRY_ETRUNCATED : ret;
	bpages = d->block_pages[p->block];
	host = d->attr.blocks[p->block].host;
	/* Every run is checked before a byte of guest RAM is written. */
	for (uint32_t i = 0; i < nruns; i++) {
		uint64_t first;
		uint32_t n, reserved;

		mc_run_from_wire(&table[i], &first, &n, &reserved);
		if (n == 0 || reserved || first >= bpages || n > bpages - first) {
			chan_err("%s lane %u: packet %" PRIu64 ": run %u (pages %" PRIu64
				 " + %u) outside block '%s' (%" PRIu64 " pages)",
				 l->ch->peer, l->index, p->seq, i, first, n,
				 d->attr.blocks[p->block].name, bpages);
			return FERRY_EBADSTREAM;
		}
		if (i < p->ndata) {
			sum_data += n;
			l->iov[iovcnt].iov_base = host + first * ps;
			l->iov[iovcnt].iov_len = (size_t)n * ps;
			iovcnt++;
		} else {
			sum_zero += n;
		}
	}
	if (sum_data != p->data_pages || sum_zero != p->zero_pages) {
		chan_err("%s lane %u: packet %" PRIu64 ": runs add up to %" PRIu64 "+%" PRIu64
			 " pages, the header says %u+%u",
			 l->ch->peer, l->index, p->seq, sum_data, sum_zero, p->data_pages,
			 p->zero_pages);
		return FERRY_EBADSTREAM;
	}
	/* The payload, straight into the pages the runs name. */
	if (iovcnt) {
		ret = lane_recvv(l, l->iov, iovcnt, NULL);
		if (ret < 0)
			return ret == -ECONNRESET ? FERRY_ETRUNCATED : ret;
	}
	for (uint32_t i = p->ndata; i < nruns; i++) {
		uint64_t first;
		uint32_t n, reserved;

		mc_run_from_wire(&table[i], &first, &n, &reserved);
		for (uint32_t k = 0; k < n; k++) {
			uint64_t *w = (uint64_t *)(void *)(host + (first + k) * ps);
			uint64_t acc = 0;

			/* Reading an untouched page maps the shared zero page: no allocation. */
			for (size_t j = 0; j < ps / 8 && !acc; j += 8)
				acc = w[j] | w[j + 1] | w[j + 2] | w[j + 3] | w[j + 4] | w[j + 5] |
				      w[j + 6] | w[j + 7];
			if (acc)
				memset(w, 0, ps);
		}
	}
	stat_add(&l->st.packets, 1);
	stat_add(&l->st.pages, p->data_pages);
	stat_add(&l->st.zero_pages, p->zero_pages);
	stat_add(&l->st.page_bytes, (uint64_t)p->data_pages * ps);
	if (l->ch->tls)
		stat_add(&l->st.memcpy_bytes, (uint64_t)p->data_pages * ps);
	return 0;
}

static int mc_dest_receive(void *ctx, uint32_t lane, uint64_t *round)
{
	struct mc_dest *d = ctx;
	struct mc_lane *l = &d->lanes[lane];

	if (l->ended)
		return 0;
	for (;;) {
		struct mc_pkt_wire w;
		struct mc_pkt p;
		bool none;
		int ret = lane_recv(l, &w, sizeof(w), &none);

		if (ret < 0) {
			if (ret != -ECANCELED)
				chan_err("%s lane %u: %s", l->ch->peer, lane,
					 none ? "the connection closed without END"
					      : ferry_strerror(ret));
			return ret;
		}
		mc_pkt_from_wire(&w, &p);
		if (p.magic != MC_MAGIC) {
			chan_err("%s lane %u: bad packet magic 0x%08x", l->ch->peer, lane, p.magic);
			return FERRY_EBADSTREAM;
		}
		switch (p.type) {
		case MC_PKT_PAGES:
			ret = lane_place(d, l, &p);
			if (ret < 0) {
				if (ret != -ECANCELED && ret != FERRY_EBADSTREAM)
					chan_err("%s lane %u: packet %" PRIu64 ": %s", l->ch->peer,
						 lane, p.seq, ferry_strerror(ret));
				return ret;
			}
			continue;
		case MC_PKT_SYNC: {
			struct mc_pkt a = {.type = MC_PKT_ACK, .seq = p.seq};
			struct mc_pkt_wire aw;
			struct iovec iov = {.iov_base = &aw, .iov_len = sizeof(aw)};

			if (p.seq <= l->last_round) {
				chan_err("%s lane %u: sync of round %" PRIu64
					 " after round %" PRIu64,
					 l->ch->peer, lane, p.seq, l->last_round);
				return FERRY_EBADSTREAM;
			}
			/* Everything before the SYNC is in place: say so. */
			mc_pkt_to_wire(&a, &aw);
			ret = lane_sendv(l, &iov, 1, 0);
			if (ret < 0) {
				if (ret != -ECANCELED)
					chan_err("%s lane %u: sending ACK: %s", l->ch->peer, lane,
						 ferry_strerror(ret));
				return ret;
			}
			l->last_round = p.seq;
			stat_add(&l->st.sync_round, p.seq - stat_get(&l->st.sync_round));
			*round = p.seq;
			return 1;
		}
		case MC_PKT_END:
			l->ended = true;
			return 0;
		default:
			chan_err("%s lane %u: unknown packet type %u", l->ch->peer, lane, p.type);
			return FERRY_EBADSTREAM;
		}
	}
}

static void mc_dest_abort(void *ctx)
{
	struct mc_dest *d = ctx;

	atomic_store(&d->aborted, true);
	pthread_mutex_lock(&d->lock);
	if (d->pending)
		ferry_channel_shutdown(d->pending);
	for (uint32_t i = 0; i < d->attr.lanes; i++)
		if (d->lanes[i].ch)
			ferry_channel_shutdown(d->lanes[i].ch);
	pthread_mutex_unlock(&d->lock);
}

static void mc_dest_close(void *ctx)
{
	mc_dest_free(ctx);
}

static void mc_dest_lane_stats(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out)
{
	struct mc_dest *d = ctx;

	lane_stats_copy(lane < d->attr.lanes ? &d->lanes[lane] : NULL, out);
}

const struct ferry_dp_dest_ops ferry_mc_dest_ops = {
    .name = FERRY_MC_NAME,
    .create = mc_dest_create,
    .accept = mc_dest_accept,
    .receive = mc_dest_receive,
    .abort = mc_dest_abort,
    .close = mc_dest_close,
    .lane_stats = mc_dest_lane_stats,
};
