/* SPDX-License-Identifier: MIT */
/*
 * The RDMA data path behind the engine's interface (<ferry/datapath.h>): an
 * adapter over <ferry/rdma.h>, call for call. It sees nothing of the engine
 * but that header.
 *
 * Source: create() parses the URI and creates the rdma source (no I/O),
 * connect() connects every queue pair to HOST:PORT+1, send() turns page runs
 * into byte runs (zero runs are written from the registered zero buffer),
 * flush() is the rdma flush with the round as its tag.
 *
 * Destination: create() keeps the attributes; listen() creates the rdma
 * destination (it listens on PORT+1, registers the memory and accepts lanes
 * on its own service thread from then on); accept() waits for the lanes in
 * 100 ms slices, so that the main stream's end (peer_gone) is noticed;
 * receive() waits for the lane's next flush.
 */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/channel.h>
#include <ferry/error.h>
#include <ferry/rdma.h>
#include <ferry/rdma_datapath.h>

#include "internal.h"

#define ACCEPT_SLICE_MS 100

static int parse_reg(const char *name, enum ferry_rdma_reg *out)
{
	static const enum ferry_rdma_reg all[] = {FERRY_RDMA_REG_AUTO, FERRY_RDMA_REG_PIN_ALL,
						  FERRY_RDMA_REG_CHUNKED, FERRY_RDMA_REG_ODP};

	if (!name || !*name) {
		*out = FERRY_RDMA_REG_AUTO;
		return 0;
	}
	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (strcmp(name, ferry_rdma_reg_name(all[i])) == 0) {
			*out = all[i];
			return 0;
		}
	rdm_err("rdma data path: unknown registration strategy '%s' (auto, pin-all, chunked, odp)",
		name);
	return -EINVAL;
}

/* HOST and the rdma_cm port of an rdma: (or tcp:) URI: @explicit_port, or PORT + 1 when 0. */
static int parse_addr(const char *text, uint16_t explicit_port, char *host, size_t hostlen,
		      uint16_t *port)
{
	struct ferry_uri *uri = malloc(sizeof(*uri));
	int ret;

	if (!uri)
		return -ENOMEM;
	ret = ferry_uri_parse(text, uri);
	if (!ret && uri->scheme != FERRY_URI_RDMA && uri->scheme != FERRY_URI_TCP)
		ret = FERRY_EBADURI;
	if (!ret && !explicit_port &&
	    (uri->port == 0 || uri->port > 65535 - FERRY_RDMA_DP_PORT_OFFSET))
		ret = FERRY_EBADURI;
	if (ret < 0) {
		rdm_err("rdma data path: %s is not rdma:HOST:PORT with PORT 1 to %d (or give "
			"rdma_port)",
			text, 65535 - FERRY_RDMA_DP_PORT_OFFSET);
	} else {
		snprintf(host, hostlen, "%s", uri->host);
		*port = explicit_port ? explicit_port
				      : (uint16_t)(uri->port + FERRY_RDMA_DP_PORT_OFFSET);
	}
	free(uri);
	return ret;
}

static struct ferry_rdma_block *copy_blocks(const struct ferry_dp_block *b, uint32_t n)
{
	struct ferry_rdma_block *out = calloc(n ? n : 1, sizeof(*out));

	for (uint32_t i = 0; out && i < n; i++)
		out[i] = (struct ferry_rdma_block){b[i].host, b[i].length};
	return out;
}

static void fill_info(const struct ferry_rdma_stats *st, struct ferry_dp_info *out)
{
	snprintf(out->registration, sizeof(out->registration), "%s",
		 st->reg == FERRY_RDMA_REG_AUTO ? "" : ferry_rdma_reg_name(st->reg));
	out->registration_ns = st->reg_ns;
	out->registered_bytes = st->registered_bytes;
	snprintf(out->device, sizeof(out->device), "%s", st->device);
}

static_assert(FERRY_DP_AUTH_KEY_LEN == FERRY_RDMA_AUTH_KEY_LEN, "one lane key size");

int ferry_rdma_dp_fallback_error(int err)
{
	/* FERRY_EAUTH: whoever answered is not our destination; TCP would not be better. */
	return err < 0 && err != -ECANCELED && err != FERRY_ECANCELED && err != FERRY_EAUTH;
}

/* ---- source ---------------------------------------------------------------------------- */

struct rdp_source {
	struct ferry_rdma_source *src;
	uint32_t lanes;
	uint32_t page_size;
	uint32_t nblocks;
	uint64_t *block_len;
};

static int rdp_source_create(const struct ferry_dp_source_attr *attr, void **ctx)
{
	struct ferry_rdma_source_attr a;
	struct rdp_source *s;
	struct ferry_rdma_block *blocks;
	char host[256];
	int ret;

	if (!attr->uri || !attr->blocks || !attr->nblocks || !attr->lanes ||
	    attr->lanes > FERRY_RDMA_MAX_LANES || !attr->page_size)
		return -EINVAL;
	ferry_rdma_source_attr_init(&a);
	ret = parse_addr(attr->uri, attr->port, host, sizeof(host), &a.port);
	if (!ret)
		ret = parse_reg(attr->registration, &a.reg);
	if (ret < 0)
		return ret == FERRY_EBADURI ? -EINVAL : ret;
	s = calloc(1, sizeof(*s));
	blocks = copy_blocks(attr->blocks, attr->nblocks);
	if (s)
		s->block_len = calloc(attr->nblocks, sizeof(*s->block_len));
	if (!s || !blocks || !s->block_len) {
		if (s)
			free(s->block_len);
		free(s);
		free(blocks);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < attr->nblocks; i++)
		s->block_len[i] = attr->blocks[i].length;
	a.host = host;
	memcpy(a.id, attr->id, sizeof(a.id));
	a.auth = attr->auth;
	memcpy(a.auth_key, attr->auth_key, sizeof(a.auth_key));
	a.lanes = attr->lanes;
	a.blocks = blocks;
	a.n_blocks = attr->nblocks;
	a.numa_node = attr->blocks[0].numa_node;
	if (attr->timeout_ms > 0)
		a.timeout_ms = attr->timeout_ms;
	ret = ferry_rdma_source_create(&a, &s->src);
	explicit_bzero(a.auth_key, sizeof(a.auth_key));
	free(blocks);
	if (ret < 0) {
		free(s->block_len);
		free(s);
		return ret;
	}
	s->lanes = attr->lanes;
	s->page_size = attr->page_size;
	s->nblocks = attr->nblocks;
	*ctx = s;
	return 0;
}

static int rdp_source_connect(void *ctx)
{
	struct rdp_source *s = ctx;

	return ferry_rdma_source_connect(s->src);
}

static int rdp_source_send(void *ctx, uint32_t lane, const struct ferry_dp_run *runs,
			   uint32_t nruns)
{
	struct rdp_source *s = ctx;
	struct ferry_rdma_run rr[FERRY_DP_MAX_BATCH_RUNS];

	if (nruns == 0 || nruns > FERRY_DP_MAX_BATCH_RUNS)
		return -EINVAL;
	for (uint32_t i = 0; i < nruns; i++) {
		if (runs[i].block >= s->nblocks)
			return -EINVAL;
		rr[i] = (struct ferry_rdma_run){
		    .block = runs[i].block,
		    .flags = (runs[i].flags & FERRY_DP_RUN_ZERO) ? FERRY_RDMA_RUN_ZERO : 0,
		    .offset = runs[i].first * s->page_size,
		    .length = runs[i].npages * s->page_size,
		};
	}
	return ferry_rdma_source_write(s->src, lane, rr, nruns);
}

static int rdp_source_flush(void *ctx, uint32_t lane, uint64_t round)
{
	struct rdp_source *s = ctx;

	return ferry_rdma_source_flush(s->src, lane, round);
}

static void rdp_source_abort(void *ctx)
{
	struct rdp_source *s = ctx;

	ferry_rdma_source_abort(s->src);
}

static void rdp_source_close(void *ctx, bool graceful)
{
	struct rdp_source *s = ctx;

	/*
	 * No BYE round trip, even for a normal end: the engine closes the lanes
	 * after the destination's answer on the main stream, when the
	 * destination is already letting go of its lanes, and a BYE would wait
	 * out its timeout for an acknowledgement that may never come.
	 */
	(void)graceful;
	ferry_rdma_source_destroy(s->src);
	free(s->block_len);
	free(s);
}

static void rdp_source_lane_stats(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out)
{
	struct rdp_source *s = ctx;
	struct ferry_rdma_lane_stats ls;

	memset(out, 0, sizeof(*out));
	ferry_rdma_source_lane_stats(s->src, lane, &ls);
	out->wire_bytes = ls.bytes;
	out->page_bytes = ls.bytes - ls.zero_bytes;
	out->pages = out->page_bytes / s->page_size;
	out->zero_pages = ls.zero_bytes / s->page_size;
	out->packets = ls.writes;
	out->memcpy_bytes = ls.memcpy_bytes;
	out->sync_round = ls.last_tag;
}

static void rdp_source_info(void *ctx, struct ferry_dp_info *out)
{
	struct rdp_source *s = ctx;
	struct ferry_rdma_stats st;

	ferry_rdma_source_stats(s->src, &st);
	fill_info(&st, out);
}

/* Byte runs not known placed, as whole pages (rounded outwards). */
static long rdp_source_unplaced(void *ctx, uint32_t lane, struct ferry_dp_run *out, size_t cap)
{
	struct rdp_source *s = ctx;
	struct ferry_rdma_run *rr = NULL;
	ssize_t n = ferry_rdma_source_unplaced(s->src, lane, NULL, 0);

	if (n <= 0)
		return (long)n;
	rr = calloc((size_t)n, sizeof(*rr));
	if (!rr)
		return -ENOMEM;
	n = ferry_rdma_source_unplaced(s->src, lane, rr, (size_t)n);
	for (ssize_t i = 0; i < n && (size_t)i < cap; i++) {
		uint64_t first = rr[i].offset / s->page_size;
		uint64_t end = (rr[i].offset + rr[i].length + s->page_size - 1) / s->page_size;

		out[i] = (struct ferry_dp_run){
		    .block = rr[i].block,
		    .flags = 0,
		    .first = first,
		    .npages = end - first,
		};
	}
	free(rr);
	return (long)n;
}

const struct ferry_dp_source_ops ferry_rdma_dp_source_ops = {
    .name = FERRY_RDMA_DP_NAME,
    .create = rdp_source_create,
    .connect = rdp_source_connect,
    .send = rdp_source_send,
    .flush = rdp_source_flush,
    .abort = rdp_source_abort,
    .close = rdp_source_close,
    .lane_stats = rdp_source_lane_stats,
    .info = rdp_source_info,
    .unplaced = rdp_source_unplaced,
};

/* ---- destination ----------------------------------------------------------------------- */

struct rdp_dest {
	struct ferry_rdma_dest_attr a;
	struct ferry_rdma_block *blocks;
	char host[256];
	bool (*peer_gone)(void *);
	void *peer_opaque;
	int timeout_ms;
	uint32_t page_size;
	/* set by listen() before any worker runs; abort() may read it any time */
	_Atomic(struct ferry_rdma_dest *) dst;
	atomic_bool aborted;
	uint64_t *after; /* per lane: the last tag receive() reported */
};

static int rdp_dest_create(const struct ferry_dp_dest_attr *attr, void **ctx)
{
	struct rdp_dest *d;
	int ret;

	if (!attr->uri || !attr->blocks || !attr->nblocks || !attr->lanes ||
	    attr->lanes > FERRY_RDMA_MAX_LANES || !attr->page_size)
		return -EINVAL;
	d = calloc(1, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->page_size = attr->page_size;
	ferry_rdma_dest_attr_init(&d->a);
	ret = parse_addr(attr->uri, attr->port, d->host, sizeof(d->host), &d->a.port);
	if (!ret)
		ret = parse_reg(attr->registration, &d->a.reg);
	if (ret < 0) {
		free(d);
		return ret == FERRY_EBADURI ? -EINVAL : ret;
	}
	d->blocks = copy_blocks(attr->blocks, attr->nblocks);
	d->after = calloc(attr->lanes, sizeof(*d->after));
	if (!d->blocks || !d->after) {
		free(d->blocks);
		free(d->after);
		free(d);
		return -ENOMEM;
	}
	/* A wildcard address: rdma_cm listens on every device. */
	if (strcmp(d->host, "0.0.0.0") == 0 || strcmp(d->host, "::") == 0)
		d->host[0] = '\0';
	d->a.host = d->host[0] ? d->host : NULL;
	memcpy(d->a.id, attr->id, sizeof(d->a.id));
	d->a.auth = attr->auth;
	memcpy(d->a.auth_key, attr->auth_key, sizeof(d->a.auth_key));
	d->a.lanes = attr->lanes;
	d->a.blocks = d->blocks;
	d->a.n_blocks = attr->nblocks;
	d->timeout_ms = attr->timeout_ms > 0 ? attr->timeout_ms : 10000;
	d->peer_gone = attr->peer_gone;
	d->peer_opaque = attr->peer_opaque;
	atomic_init(&d->aborted, false);
	*ctx = d;
	return 0;
}

static int rdp_dest_listen(void *ctx)
{
	struct rdp_dest *d = ctx;
	struct ferry_rdma_dest *dst;
	int ret;

	if (atomic_load(&d->dst))
		return 0;
	if (atomic_load(&d->aborted))
		return -ECANCELED;
	ret = ferry_rdma_dest_create(&d->a, &dst);
	/* The destination keeps its own copy of the key. */
	explicit_bzero(d->a.auth_key, sizeof(d->a.auth_key));
	if (ret < 0)
		return ret;
	atomic_store(&d->dst, dst);
	/* An abort that came while it was being created found nothing to abort. */
	if (atomic_load(&d->aborted))
		ferry_rdma_dest_abort(dst);
	return 0;
}

static int rdp_dest_accept(void *ctx)
{
	struct rdp_dest *d = ctx;
	int waited = 0, ret;

	ret = rdp_dest_listen(d);
	while (!ret) {
		if (atomic_load(&d->aborted))
			return -ECANCELED;
		ret = ferry_rdma_dest_accept(atomic_load(&d->dst), ACCEPT_SLICE_MS);
		if (ret != -ETIMEDOUT)
			break;
		waited += ACCEPT_SLICE_MS;
		if (d->peer_gone && d->peer_gone(d->peer_opaque)) {
			rdm_err("rdma data path: the source hung up before its %u lanes connected",
				d->a.lanes);
			return FERRY_EPEERABORT;
		}
		if (waited >= d->timeout_ms) {
			rdm_err("rdma data path: %u lanes not connected within %d ms", d->a.lanes,
				d->timeout_ms);
			return -ETIMEDOUT;
		}
		ret = 0;
	}
	return ret;
}

static int rdp_dest_receive(void *ctx, uint32_t lane, uint64_t *round)
{
	struct rdp_dest *d = ctx;
	uint64_t tag = 0;
	int ret;

	struct ferry_rdma_dest *dst = atomic_load(&d->dst);

	if (lane >= d->a.lanes || !dst)
		return -EINVAL;
	ret = ferry_rdma_dest_receive(dst, lane, d->after[lane], &tag, -1);
	if (ret == 1) {
		d->after[lane] = tag;
		*round = tag;
	}
	return ret;
}

static void rdp_dest_abort(void *ctx)
{
	struct rdp_dest *d = ctx;

	struct ferry_rdma_dest *dst;

	atomic_store(&d->aborted, true);
	dst = atomic_load(&d->dst);
	if (dst)
		ferry_rdma_dest_abort(dst);
}

static void rdp_dest_close(void *ctx)
{
	struct rdp_dest *d = ctx;

	struct ferry_rdma_dest *dst = atomic_load(&d->dst);

	if (dst)
		(void)ferry_rdma_dest_close(dst);
	free(d->blocks);
	free(d->after);
	free(d);
}

static void rdp_dest_lane_stats(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out)
{
	struct rdp_dest *d = ctx;
	struct ferry_rdma_lane_stats ls;

	struct ferry_rdma_dest *dst = atomic_load(&d->dst);

	memset(out, 0, sizeof(*out));
	if (!dst)
		return;
	ferry_rdma_dest_lane_stats(dst, lane, &ls);
	/* The pages as the source accounts for them in its flushes: they land
	 * without this CPU, which cannot count them itself. */
	out->page_bytes = ls.bytes - ls.zero_bytes;
	out->pages = out->page_bytes / d->page_size;
	out->zero_pages = ls.zero_bytes / d->page_size;
	out->sync_round = ls.last_tag;
	out->memcpy_bytes = ls.memcpy_bytes;
}

static void rdp_dest_info(void *ctx, struct ferry_dp_info *out)
{
	struct rdp_dest *d = ctx;
	struct ferry_rdma_dest *dst = atomic_load(&d->dst);
	struct ferry_rdma_stats st;

	if (!dst)
		return;
	ferry_rdma_dest_stats(dst, &st);
	fill_info(&st, out);
}

const struct ferry_dp_dest_ops ferry_rdma_dp_dest_ops = {
    .name = FERRY_RDMA_DP_NAME,
    .create = rdp_dest_create,
    .accept = rdp_dest_accept,
    .receive = rdp_dest_receive,
    .abort = rdp_dest_abort,
    .close = rdp_dest_close,
    .lane_stats = rdp_dest_lane_stats,
    .info = rdp_dest_info,
    .listen = rdp_dest_listen,
};
