/* SPDX-License-Identifier: MIT */
/*
 * The engine's side of the data path (<ferry/datapath.h>): which data path a
 * URI gets, the negotiation record on the main stream, and bringing the
 * lanes and their workers up and down on both sides.
 *
 * Negotiation: the source writes a "ferry-datapath" FULL section in the
 * setup phase, right after the RAM block list (an early-setup section, as
 * QEMU 8.0+ sends them, so the stream stays a valid v3 stream that `ferry
 * inspect` decodes). It names the data path, its version, the lane count,
 * the page size and the random migration id. The destination's post_load
 * hook checks it and accepts the lanes before the loader reads on; the
 * source connects them right after writing the section.
 */
#include <errno.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include <ferry/channel.h>
#include <ferry/multichannel.h>
#include <ferry/vmstate.h>

#include "internal.h"

_Static_assert(FERRY_MAX_CHANNELS <= FERRY_DP_MAX_LANES, "every channel is a lane");

#define DP_CONNECT_TIMEOUT_MS 10000
#define DP_ACCEPT_TIMEOUT_MS  10000

/*
 * The data paths this build has. The source takes the first whose scheme is
 * the URI's (rdma: falls back to tcp: here until rdma/ adds its line, e.g.
 * {"rdma", FERRY_URI_RDMA, &ferry_rdma_source_ops, &ferry_rdma_dest_ops}); the
 * destination picks the one the source names in the negotiation.
 */
static const struct {
	const char *name;
	enum ferry_uri_scheme scheme;
	const struct ferry_dp_source_ops *src;
	const struct ferry_dp_dest_ops *dst;
} dp_table[] = {
    {FERRY_MC_NAME, FERRY_URI_TCP, &ferry_mc_source_ops, &ferry_mc_dest_ops},
    {FERRY_MC_NAME, FERRY_URI_UNIX, &ferry_mc_source_ops, &ferry_mc_dest_ops},
};

static const struct ferry_dp_source_ops *dp_source_for(enum ferry_uri_scheme scheme)
{
	for (size_t i = 0; i < sizeof(dp_table) / sizeof(dp_table[0]); i++)
		if (dp_table[i].scheme == scheme)
			return dp_table[i].src;
	return NULL;
}

static struct ferry_engine *eng_of_nego(void *nego)
{
	return (struct ferry_engine *)(void *)((char *)nego -
					       offsetof(struct ferry_engine, dp.nego));
}

/* ---- the negotiation record ------------------------------------------------------------ */

static bool nego_needed(void *opaque)
{
	struct ferry_engine *eng = eng_of_nego(opaque);

	return eng->is_source && eng->dp.active;
}

static int nego_pre_load(void *opaque)
{
	memset(opaque, 0, sizeof(struct eng_dp_nego));
	return 0;
}

static int nego_post_load(void *opaque, int version_id)
{
	(void)version_id;
	return eng_dp_accept(eng_of_nego(opaque));
}

static const struct ferry_vms_field nego_fields[] = {
    FERRY_VMS_UINT32(struct eng_dp_nego, version),
    FERRY_VMS_UINT32(struct eng_dp_nego, lanes),
    FERRY_VMS_UINT32(struct eng_dp_nego, page_size),
    FERRY_VMS_UINT32(struct eng_dp_nego, flags),
    FERRY_VMS_BUFFER(struct eng_dp_nego, transport),
    FERRY_VMS_BUFFER(struct eng_dp_nego, id),
    FERRY_VMS_END(),
};

const struct ferry_vmsd eng_dp_nego_vmsd = {
    .name = "ferry-datapath",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_NORMAL,
    .needed = nego_needed,
    .pre_load = nego_pre_load,
    .post_load = nego_post_load,
    .fields = nego_fields,
    .early_setup = true,
};

/* ---- shared ---------------------------------------------------------------------------- */

static void dp_free(struct eng_dp *dp)
{
	if (dp->workers)
		for (uint32_t i = 0; i < dp->lanes; i++) {
			free(dp->workers[i].chunks);
			free(dp->workers[i].runs);
		}
	free(dp->workers);
	free(dp->blocks);
	free(dp->to_eng);
	free(dp->lane_round);
	free(dp->lane_ended);
	free(dp->uri);
	eng_place_fini(&dp->place);
	dp->workers = NULL;
	dp->blocks = NULL;
	dp->to_eng = NULL;
	dp->lane_round = NULL;
	dp->lane_ended = NULL;
	dp->uri = NULL;
	dp->sops = NULL;
	dp->dops = NULL;
	dp->active = false;
	dp->lanes = 0;
	dp->nblocks = 0;
}

/*
 * The topology for params.numa_topology, loaded once and kept by the engine
 * (this machine's takes tens of milliseconds to read from sysfs, on the
 * setup path of both sides). Migration thread, or the caller before one runs.
 */
int eng_dp_topology(struct ferry_engine *eng, char *err, size_t errlen)
{
	const char *want = eng->params.numa_topology ? eng->params.numa_topology : "";

	if (eng->topology && strcmp(eng->topology->desc, want) == 0)
		return 0;
	eng_topology_free(eng->topology);
	eng->topology = NULL;
	return eng_topology_load(want, &eng->topology, err, errlen);
}

/* Blocks in the source's order (@order: engine index of each), and the workers' placement. */
static int dp_build(struct ferry_engine *eng, const uint32_t *order, uint32_t lanes)
{
	struct eng_dp *dp = &eng->dp;
	struct eng_place_block *pb;
	char err[256] = "";
	int ret;

	dp->lanes = lanes;
	dp->nblocks = eng->nblocks;
	dp->blocks = calloc(eng->nblocks, sizeof(*dp->blocks));
	dp->to_eng = calloc(eng->nblocks, sizeof(*dp->to_eng));
	dp->workers = calloc(lanes, sizeof(*dp->workers));
	pb = calloc(eng->nblocks, sizeof(*pb));
	if (!dp->blocks || !dp->to_eng || !dp->workers || !pb) {
		free(pb);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < eng->nblocks; i++) {
		struct eng_block *b = &eng->blocks[order ? order[i] : i];

		dp->to_eng[i] = order ? order[i] : i;
		dp->blocks[i] = (struct ferry_dp_block){b->name, b->host, b->length, b->numa_node};
		pb[i] = (struct eng_place_block){b->host, b->length, b->numa_node};
	}
	ret = eng_dp_topology(eng, err, sizeof(err));
	if (!ret)
		ret =
		    eng_place(eng->topology, pb, eng->nblocks, lanes, &dp->place, err, sizeof(err));
	free(pb);
	if (ret < 0) {
		eng_fail(eng, ret, "placing %u data-path workers: %s", lanes, err);
		return ret;
	}
	for (uint32_t i = 0; i < lanes; i++) {
		dp->workers[i].eng = eng;
		dp->workers[i].index = i;
		eng_log(FERRY_LOG_DEBUG, "worker %u: NUMA node %d, CPUs %s, %" PRIu64 " MiB of RAM",
			i, dp->place.workers[i].node, dp->place.workers[i].cpus,
			dp->place.workers[i].ram_bytes >> 20);
	}
	return 0;
}

/* Publish (or clear) the context the watchdog may abort. */
static void dp_publish(struct ferry_engine *eng, void *ctx)
{
	pthread_mutex_lock(&eng->conn_lock);
	eng->dp.ctx = ctx;
	pthread_mutex_unlock(&eng->conn_lock);
}

void eng_dp_abort(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;

	if (!dp->ctx)
		return;
	if (dp->sops)
		dp->sops->abort(dp->ctx);
	else if (dp->dops)
		dp->dops->abort(dp->ctx);
}

static void lane_stats(struct ferry_engine *eng, uint32_t lane, struct ferry_dp_lane_stats *st)
{
	struct eng_dp *dp = &eng->dp;

	memset(st, 0, sizeof(*st));
	if (!dp->ctx)
		return;
	if (dp->sops)
		dp->sops->lane_stats(dp->ctx, lane, st);
	else if (dp->dops)
		dp->dops->lane_stats(dp->ctx, lane, st);
}

uint64_t eng_dp_wire_bytes(struct ferry_engine *eng)
{
	struct ferry_dp_lane_stats st;
	uint64_t sum = 0;

	for (uint32_t i = 0; i < eng->dp.lanes; i++) {
		lane_stats(eng, i, &st);
		sum += st.wire_bytes;
	}
	return sum;
}

uint64_t eng_bytes_sent(struct ferry_engine *eng)
{
	return ferry_writer_offset(eng->conn.w) + (eng->dp.ctx ? eng_dp_wire_bytes(eng) : 0);
}

/*
 * Fold the lanes' counters into the engine's statistics. The destination's
 * page counters come from here only (its main stream carries no pages);
 * the source's workers count their own pages as they hand them out.
 * Thread context: one that keeps the context alive (migration thread, or a
 * worker while it runs).
 */
void eng_dp_refresh_stats(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_dp_lane_stats st;
	uint64_t syscalls = 0, pages = 0, zero = 0, bytes = 0, copied = 0;

	if (!dp->ctx)
		return;
	for (uint32_t i = 0; i < dp->lanes; i++) {
		lane_stats(eng, i, &st);
		syscalls += st.syscalls;
		pages += st.pages;
		zero += st.zero_pages;
		bytes += st.page_bytes;
		copied += st.memcpy_bytes;
	}
	pthread_mutex_lock(&eng->lock);
	eng->stats.syscalls = syscalls;
	/* Both sides: a TLS lane copies every page byte into or out of its records. */
	eng->stats.memcpy_bytes = eng->ram.copied + copied;
	if (!eng->is_source) {
		eng->stats.normal_pages = pages;
		eng->stats.zero_pages = zero;
		eng->stats.normal_bytes = bytes;
	}
	pthread_mutex_unlock(&eng->lock);
}

static void set_transport_stats(struct ferry_engine *eng)
{
	pthread_mutex_lock(&eng->lock);
	eng->stats.channels = eng->dp.lanes;
	snprintf(eng->stats.transport, sizeof(eng->stats.transport), "%s",
		 eng->dp.sops ? eng->dp.sops->name : eng->dp.dops->name);
	pthread_mutex_unlock(&eng->lock);
}

/* ---- source ---------------------------------------------------------------------------- */

int eng_dp_prepare_source(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_uri *uri = malloc(sizeof(*uri));
	char text[1200];
	ssize_t got;
	int ret;

	if (!uri)
		return -ENOMEM;
	ret = ferry_uri_parse(eng->uri, uri);
	if (ret < 0)
		goto out;
	/* rdma: falls back to tcp (as the main stream does) while no data path takes it. */
	if (uri->scheme == FERRY_URI_RDMA && !dp_source_for(FERRY_URI_RDMA))
		uri->scheme = FERRY_URI_TCP;
	dp->sops = dp_source_for(uri->scheme);
	if (!dp->sops) {
		ret = FERRY_EBADURI;
		eng_fail(eng, ret,
			 "%u data channels need a tcp: or unix: URI, not %s:", eng->params.channels,
			 ferry_uri_scheme_name(uri->scheme));
		goto out;
	}
	if (ferry_uri_format(uri, text, sizeof(text)) >= (int)sizeof(text)) {
		ret = FERRY_EBADURI;
		goto out;
	}
	dp->uri = strdup(text);
	ret = dp->uri ? dp_build(eng, NULL, eng->params.channels) : -ENOMEM;
	if (ret < 0)
		goto out;
	/* Each worker's chunks, in block order: its share of every round. */
	for (uint32_t w = 0; w < dp->lanes; w++) {
		struct eng_worker *wk = &dp->workers[w];
		uint64_t n = 0;

		for (uint32_t b = 0; b < dp->nblocks; b++)
			for (uint64_t c = 0; c < dp->place.nchunks[b]; c++)
				n += dp->place.owner[b][c] == w;
		wk->chunks = calloc(n ? n : 1, sizeof(*wk->chunks));
		wk->runs = calloc(FERRY_DP_MAX_BATCH_RUNS, sizeof(*wk->runs));
		if (!wk->chunks || !wk->runs) {
			ret = -ENOMEM;
			goto out;
		}
		for (uint32_t b = 0; b < dp->nblocks; b++)
			for (uint64_t c = 0; c < dp->place.nchunks[b]; c++)
				if (dp->place.owner[b][c] == w)
					wk->chunks[wk->nchunks++] =
					    (struct eng_chunk_ref){b, (uint32_t)c};
	}
	/* The id only has to be unguessable for this migration's few seconds. */
	got = getrandom(dp->nego.id, sizeof(dp->nego.id), 0);
	if (got != (ssize_t)sizeof(dp->nego.id)) {
		ret = got < 0 ? -errno : -EIO;
		eng_fail(eng, ret, "no random migration id: %s", ferry_strerror(ret));
		goto out;
	}
	dp->nego.version = FERRY_DP_VERSION;
	dp->nego.lanes = dp->lanes;
	dp->nego.page_size = ENG_PAGE_SIZE;
	dp->nego.flags = 0;
	memset(dp->nego.transport, 0, sizeof(dp->nego.transport));
	memcpy(dp->nego.transport, dp->sops->name, strlen(dp->sops->name));
	dp->pace_bps = eng->params.max_bandwidth / dp->lanes;
	dp->round = 0;
	dp->round_open = false;
	dp->quit = false;
	dp->err = 0;
	dp->active = true;
	set_transport_stats(eng);
	ret = 0;
out:
	free(uri);
	if (ret < 0)
		dp_free(dp);
	return ret;
}

int eng_dp_connect(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_dp_source_attr attr = {
	    .uri = dp->uri,
	    .blocks = dp->blocks,
	    .nblocks = dp->nblocks,
	    .page_size = ENG_PAGE_SIZE,
	    .lanes = dp->lanes,
	    .flags = eng->params.zerocopy ? FERRY_DP_F_ZEROCOPY : 0,
	    .timeout_ms = DP_CONNECT_TIMEOUT_MS,
	    .tls = eng->tls,
	    .tls_hostname = eng->tls_host,
	};
	void *ctx;
	int ret;

	memcpy(attr.id, dp->nego.id, sizeof(attr.id));
	ret = dp->sops->create(&attr, &ctx);
	if (ret < 0) {
		eng_fail(eng, ret, "cannot set up the data path: %s", ferry_strerror(ret));
		return ret;
	}
	dp_publish(eng, ctx);
	if (eng_cancelled(eng))
		return FERRY_ECANCELED;
	ret = dp->sops->connect(ctx);
	if (ret < 0) {
		if (!eng_cancelled(eng))
			eng_fail(eng, ret, "cannot bring up %u data connections to %s: %s",
				 dp->lanes, dp->uri, ferry_strerror(ret));
		return eng_cancelled(eng) ? FERRY_ECANCELED : ret;
	}
	ret = eng_workers_start(eng);
	if (ret < 0)
		eng_fail(eng, ret, "cannot start the data-path workers: %s", ferry_strerror(ret));
	return ret;
}

/* ---- destination ----------------------------------------------------------------------- */

/* While lanes are awaited: has the source hung up the main stream? (Migration thread.) */
static bool dp_source_gone(void *opaque)
{
	struct ferry_engine *eng = opaque;

	return eng->conn.ch && ferry_channel_peer_closed(eng->conn.ch);
}

int eng_dp_accept(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct eng_dp_nego *n = &dp->nego;
	struct ferry_dp_dest_attr attr;
	char name[FERRY_DP_NAME_MAX + 1];
	void *ctx;
	int ret;

	memcpy(name, n->transport, FERRY_DP_NAME_MAX);
	name[FERRY_DP_NAME_MAX] = '\0';
	if (dp->active || dp->ctx) {
		eng_fail(eng, FERRY_EBADSTREAM, "the data path is negotiated twice");
		return FERRY_EBADSTREAM;
	}
	if (!eng->ram.blocks_seen) {
		eng_fail(eng, FERRY_EBADSTREAM, "data path negotiated before the RAM block list");
		return FERRY_EBADSTREAM;
	}
	if (n->version != FERRY_DP_VERSION) {
		eng_fail(eng, FERRY_EVERSION, "data path version %" PRIu32 ", this side speaks %d",
			 n->version, FERRY_DP_VERSION);
		return FERRY_EVERSION;
	}
	if (n->lanes == 0 || n->lanes > FERRY_DP_MAX_LANES || n->page_size != ENG_PAGE_SIZE ||
	    n->flags) {
		eng_fail(eng, FERRY_EBADSTREAM,
			 "data path with %" PRIu32 " lanes (1 to %d), page size %" PRIu32
			 " (%u) and flags 0x%" PRIx32 ": refused",
			 n->lanes, FERRY_DP_MAX_LANES, n->page_size, ENG_PAGE_SIZE, n->flags);
		return FERRY_EBADSTREAM;
	}
	for (size_t i = 0; i < sizeof(dp_table) / sizeof(dp_table[0]); i++)
		if (strcmp(name, dp_table[i].name) == 0)
			dp->dops = dp_table[i].dst;
	if (!dp->dops) {
		/* The name is peer data: print only what is printable. */
		for (char *c = name; *c; c++)
			if (*c < 0x20 || *c > 0x7e)
				*c = '?';
		eng_fail(eng, FERRY_EBADSTREAM,
			 "the source wants data path '%s', not in this build", name);
		return FERRY_EBADSTREAM;
	}
	if (!eng->listener) {
		dp->dops = NULL;
		eng_fail(eng, FERRY_EBADSTREAM,
			 "the source wants %" PRIu32 " data connections, but this destination "
			 "does not listen (only tcp: and unix: do)",
			 n->lanes);
		return FERRY_EBADSTREAM;
	}
	dp->uri = strdup(eng->uri);
	ret = dp->uri ? dp_build(eng, eng->ram.src_order, n->lanes) : -ENOMEM;
	dp->lane_round = calloc(n->lanes, sizeof(*dp->lane_round));
	dp->lane_ended = calloc(n->lanes, sizeof(*dp->lane_ended));
	if (!ret && (!dp->lane_round || !dp->lane_ended))
		ret = -ENOMEM;
	if (ret < 0) {
		eng_fail(eng, ret, "cannot set up the data path: %s", ferry_strerror(ret));
		dp_free(dp);
		return ret;
	}
	dp->quit = false;
	dp->err = 0;
	dp->flushes = 0;
	dp->active = true;
	set_transport_stats(eng);
	attr = (struct ferry_dp_dest_attr){
	    .uri = dp->uri,
	    .listener = eng->listener,
	    .blocks = dp->blocks,
	    .nblocks = dp->nblocks,
	    .page_size = ENG_PAGE_SIZE,
	    .lanes = dp->lanes,
	    .timeout_ms = DP_ACCEPT_TIMEOUT_MS,
	    .peer_gone = dp_source_gone,
	    .peer_opaque = eng,
	    .tls = eng->tls,
	};
	memcpy(attr.id, n->id, sizeof(attr.id));
	ret = dp->dops->create(&attr, &ctx);
	if (ret < 0) {
		eng_fail(eng, ret, "cannot set up the data path: %s", ferry_strerror(ret));
		return ret;
	}
	dp_publish(eng, ctx);
	if (eng_cancelled(eng))
		return FERRY_ECANCELED;
	ret = dp->dops->accept(ctx);
	if (ret < 0) {
		if (!eng_cancelled(eng))
			eng_fail(eng, ret, "accepting %u data connections: %s", dp->lanes,
				 ferry_strerror(ret));
		return eng_cancelled(eng) ? FERRY_ECANCELED : ret;
	}
	/* Every lane is in: nobody else may connect. */
	eng_conn_stop_listening(eng);
	ret = eng_workers_start(eng);
	if (ret < 0)
		eng_fail(eng, ret, "cannot start the data-path workers: %s", ferry_strerror(ret));
	return ret;
}

/* ---- both ------------------------------------------------------------------------------ */

void eng_dp_stop(struct ferry_engine *eng, bool graceful)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_worker_stats *final = NULL;
	void *ctx;

	if (!dp->active && !dp->ctx)
		return;
	/* Workers first learn that the end is wanted (so a lane cut by the abort is no
	 * failure to report), then blocked lanes are cut (unless they all ended well). */
	pthread_mutex_lock(&dp->lock);
	atomic_store(&dp->quit, true);
	pthread_cond_broadcast(&dp->cond);
	pthread_mutex_unlock(&dp->lock);
	if (!graceful || !eng->is_source) {
		pthread_mutex_lock(&eng->conn_lock);
		eng_dp_abort(eng);
		pthread_mutex_unlock(&eng->conn_lock);
	}
	eng_workers_stop(eng);
	eng_dp_refresh_stats(eng);
	if (dp->lanes && dp->workers) {
		final = calloc(dp->lanes, sizeof(*final));
		if (final)
			eng_workers_snapshot(eng, final, dp->lanes);
	}
	pthread_mutex_lock(&eng->conn_lock);
	ctx = dp->ctx;
	dp->ctx = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
	if (ctx && dp->sops)
		dp->sops->close(ctx, graceful);
	else if (ctx && dp->dops)
		dp->dops->close(ctx);
	pthread_mutex_lock(&dp->lock);
	free(dp->final);
	dp->final = final;
	dp->nfinal = final ? dp->lanes : 0;
	pthread_mutex_unlock(&dp->lock);
	/* The migration's CPU cost includes the workers' (ferry_stats.cpu_ms). */
	dp->cpu_ms = 0;
	for (uint32_t i = 0; dp->workers && i < dp->lanes; i++)
		dp->cpu_ms += atomic_load(&dp->workers[i].cpu_ns) / 1000000;
	dp_free(dp);
}

void eng_dp_fini(struct ferry_engine *eng)
{
	dp_free(&eng->dp);
	eng_topology_free(eng->topology);
	eng->topology = NULL;
	free(eng->dp.final);
	eng->dp.final = NULL;
	eng->dp.nfinal = 0;
}

int ferry_engine_get_worker_stats(struct ferry_engine *eng, struct ferry_worker_stats *out,
				  uint32_t max)
{
	struct eng_dp *dp = &eng->dp;
	int n;

	/* conn_lock keeps the transport's context alive while its lanes are read. */
	pthread_mutex_lock(&eng->conn_lock);
	pthread_mutex_lock(&dp->lock);
	if (dp->ctx && dp->workers) {
		n = (int)dp->lanes;
		if (out && max)
			eng_workers_snapshot(eng, out, max < dp->lanes ? max : dp->lanes);
	} else {
		n = (int)dp->nfinal;
		if (out && max && dp->final)
			memcpy(out, dp->final,
			       (max < dp->nfinal ? max : dp->nfinal) * sizeof(*out));
	}
	pthread_mutex_unlock(&dp->lock);
	pthread_mutex_unlock(&eng->conn_lock);
	return n;
}
