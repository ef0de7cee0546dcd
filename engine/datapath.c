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
 *
 * An offer (rdma:): the record names the data path the source would like
 * and carries FERRY_DP_NEGO_F_CHOICE. The destination gets that one ready
 * (listen()) and reads on; the source, in the pre_save hook of the next
 * early-setup section ("ferry-datapath-use"), pushes the stream out, tries
 * to connect, and on failure falls back to tcp-multi lanes to the same host
 * (unless params.no_fallback); that section then names the data path
 * actually used, and the destination's post_load accepts its lanes. So the
 * main stream always names what carries the pages, and the destination
 * follows the source.
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
#include <ferry/rdma_datapath.h>
#include <ferry/tls.h>
#include <ferry/vmstate.h>

#include "internal.h"

_Static_assert(FERRY_MAX_CHANNELS <= FERRY_DP_MAX_LANES, "every channel is a lane");

#define DP_CONNECT_TIMEOUT_MS 10000
#define DP_ACCEPT_TIMEOUT_MS  10000
/*
 * An offered data path (rdma) gets longer: the destination registers its
 * memory (pin-all: seconds for large guests under emulation) after reading
 * the offer, while the source already retries its connect. This is also how
 * long a source waits for a destination host without RDMA before it falls
 * back (rdma_cm gets no answer there).
 */
#define DP_OFFER_TIMEOUT_MS 20000

/*
 * The data paths this build has. The source takes the first whose scheme is
 * the URI's; the destination picks the one the source names in the
 * negotiation.
 */
static const struct {
	const char *name;
	enum ferry_uri_scheme scheme;
	const struct ferry_dp_source_ops *src;
	const struct ferry_dp_dest_ops *dst;
} dp_table[] = {
    {FERRY_MC_NAME, FERRY_URI_TCP, &ferry_mc_source_ops, &ferry_mc_dest_ops},
    {FERRY_MC_NAME, FERRY_URI_UNIX, &ferry_mc_source_ops, &ferry_mc_dest_ops},
    {FERRY_RDMA_DP_NAME, FERRY_URI_RDMA, &ferry_rdma_dp_source_ops, &ferry_rdma_dp_dest_ops},
};

static const struct ferry_dp_dest_ops *dp_dest_for(const char *name)
{
	for (size_t i = 0; i < sizeof(dp_table) / sizeof(dp_table[0]); i++)
		if (strcmp(name, dp_table[i].name) == 0)
			return dp_table[i].dst;
	return NULL;
}

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

static struct ferry_engine *eng_of_use(void *use)
{
	return (struct ferry_engine *)(void *)((char *)use - offsetof(struct ferry_engine, dp.use));
}

static int dp_try_offer(struct ferry_engine *eng);
static int dp_use_accept(struct ferry_engine *eng);
static int dp_open_dest(struct ferry_engine *eng);
static int dp_accept_lanes(struct ferry_engine *eng);

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

/* ---- the data path used, after an offer --------------------------------------------------- */

static bool use_needed(void *opaque)
{
	struct ferry_engine *eng = eng_of_use(opaque);

	return eng->is_source && eng->dp.active && (eng->dp.nego.flags & FERRY_DP_NEGO_F_CHOICE);
}

/* Source: the section's header is written; decide what it names. */
static int use_pre_save(void *opaque)
{
	return dp_try_offer(eng_of_use(opaque));
}

static int use_pre_load(void *opaque)
{
	memset(opaque, 0, sizeof(struct eng_dp_use));
	return 0;
}

static int use_post_load(void *opaque, int version_id)
{
	(void)version_id;
	return dp_use_accept(eng_of_use(opaque));
}

static const struct ferry_vms_field use_fields[] = {
    FERRY_VMS_BUFFER(struct eng_dp_use, transport),
    FERRY_VMS_UINT32(struct eng_dp_use, flags),
    FERRY_VMS_END(),
};

const struct ferry_vmsd eng_dp_use_vmsd = {
    .name = "ferry-datapath-use",
    .version_id = 1,
    .minimum_version_id = 1,
    .priority = FERRY_PRI_NORMAL,
    .needed = use_needed,
    .pre_save = use_pre_save,
    .pre_load = use_pre_load,
    .post_load = use_post_load,
    .fields = use_fields,
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
	free(dp->fallback_uri);
	eng_place_fini(&dp->place);
	dp->workers = NULL;
	dp->blocks = NULL;
	dp->to_eng = NULL;
	dp->lane_round = NULL;
	dp->lane_ended = NULL;
	dp->uri = NULL;
	dp->fallback_uri = NULL;
	dp->fallback_sops = NULL;
	dp->connected = false;
	dp->offer_err = 0;
	dp->failed = 0;
	dp->fail_err = 0;
	dp->lanes_down = 0;
	dp->keep_listener = false;
	dp->wire_base = 0;
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
	uint64_t sum = eng->dp.wire_base;

	for (uint32_t i = 0; i < eng->dp.lanes; i++) {
		lane_stats(eng, i, &st);
		sum += st.wire_bytes;
	}
	return sum;
}

uint64_t eng_dp_lane_bytes(struct ferry_engine *eng)
{
	struct ferry_dp_lane_stats st;
	uint64_t sum = 0;

	/* Not wire_base: the migration thread moves it on a switch without conn_lock. */
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
	struct ferry_dp_info info;
	bool has_info;
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
	/* A data path without info (tcp-multi after a switch) leaves what the last one said. */
	memset(&info, 0, sizeof(info));
	has_info = dp->sops ? dp->sops->info != NULL : dp->dops && dp->dops->info;
	if (dp->sops && dp->sops->info)
		dp->sops->info(dp->ctx, &info);
	else if (dp->dops && dp->dops->info)
		dp->dops->info(dp->ctx, &info);
	pthread_mutex_lock(&eng->lock);
	eng->stats.syscalls = syscalls;
	/* Both sides: a TLS lane copies every page byte into or out of its records. */
	eng->stats.memcpy_bytes = eng->ram.copied + copied;
	if (has_info) {
		memcpy(eng->stats.registration, info.registration, sizeof(eng->stats.registration));
		eng->stats.registration_us = info.registration_ns / 1000;
	}
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

static int uri_text(const struct ferry_uri *uri, char **out)
{
	char text[1200];

	if (ferry_uri_format(uri, text, sizeof(text)) >= (int)sizeof(text))
		return FERRY_EBADURI;
	*out = strdup(text);
	return *out ? 0 : -ENOMEM;
}

int eng_dp_prepare_source(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_uri *uri = malloc(sizeof(*uri));
	uint32_t lanes = eng->params.channels;
	bool offer;
	ssize_t got;
	int ret;

	if (!uri)
		return -ENOMEM;
	ret = ferry_uri_parse(eng->uri, uri);
	if (ret < 0)
		goto out;
	dp->sops = dp_source_for(uri->scheme);
	if (!dp->sops) {
		ret = FERRY_EBADURI;
		eng_fail(eng, ret, "%u data channels need a tcp:, unix: or rdma: URI, not %s:",
			 eng->params.channels, ferry_uri_scheme_name(uri->scheme));
		goto out;
	}
	/* rdma: is an offer; tcp-multi lanes to the same host are the way back. */
	offer = uri->scheme == FERRY_URI_RDMA;
	if (!lanes)
		lanes = 1;
	ret = uri_text(uri, &dp->uri);
	if (!ret && offer) {
		uri->scheme = FERRY_URI_TCP;
		dp->fallback_sops = dp_source_for(FERRY_URI_TCP);
		ret = uri_text(uri, &dp->fallback_uri);
	}
	if (!ret)
		ret = dp_build(eng, NULL, lanes);
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
	dp->nego.flags = offer ? FERRY_DP_NEGO_F_CHOICE : 0;
	memset(dp->nego.transport, 0, sizeof(dp->nego.transport));
	memcpy(dp->nego.transport, dp->sops->name, strlen(dp->sops->name));
	memset(&dp->use, 0, sizeof(dp->use));
	dp->pace_bps = eng->params.max_bandwidth;
	dp->pace_next_ns = 0;
	dp->round = 0;
	dp->round_open = false;
	dp->quit = false;
	dp->err = 0;
	dp->connected = false;
	atomic_store(&dp->dest_spoke, false);
	dp->active = true;
	set_transport_stats(eng);
	pthread_mutex_lock(&eng->lock);
	eng->stats.fallback_reason[0] = '\0';
	pthread_mutex_unlock(&eng->lock);
	ret = 0;
out:
	free(uri);
	if (ret < 0)
		dp_free(dp);
	return ret;
}

/* Create, publish and connect dp->sops to dp->uri. On failure the context stays published. */
/*
 * With TLS on the main stream: the lane key, from the TLS exporter with the
 * migration id as context. Both ends compute the same bytes; it never
 * travels. Migration thread (the session's secrets no longer change once
 * the handshake is done, so the other thread's record I/O does not matter).
 */
static int dp_auth_key(struct ferry_engine *eng, bool *on, uint8_t key[FERRY_DP_AUTH_KEY_LEN])
{
	int ret;

	*on = false;
	if (!eng->tls || !eng->conn.ch || !ferry_channel_is_tls(eng->conn.ch))
		return 0;
	ret = ferry_channel_tls_export(eng->conn.ch, FERRY_DP_AUTH_LABEL, eng->dp.nego.id,
				       FERRY_DP_ID_LEN, key, FERRY_DP_AUTH_KEY_LEN);
	if (ret < 0) {
		eng_fail(eng, ret, "no lane key from the TLS session: %s", ferry_strerror(ret));
		return ret;
	}
	*on = true;
	return 0;
}

static void printable(char *name);

/*
 * Source, migration thread: the watchdog cut the lanes' connect short because
 * the destination wrote on the return path (engine.c). Read that one message:
 * a refusal of the offered lanes (returns FERRY_ENORDMA, its reason in @why),
 * or a failure (SHUT), or anything else (the stream is broken). Every length
 * is the peer's: bounded before use.
 */
static int dp_read_refusal(struct ferry_engine *eng, char *why, size_t whylen)
{
	struct ferry_reader *r = eng->conn.r;
	char text[RP_DP_REASON_MAX + 1];
	uint16_t type, len;
	uint32_t value;
	int ret;

	type = ferry_get_be16(r);
	len = ferry_get_be16(r);
	value = ferry_get_be32(r);
	ret = ferry_reader_error(r);
	if (ret < 0) {
		eng_fail(eng, ret,
			 "the destination broke the return path while the lanes connected: %s",
			 ferry_reader_errmsg(r)[0] ? ferry_reader_errmsg(r) : "connection closed");
		return ret;
	}
	if (type == RP_MSG_SHUT && len == 4) {
		eng_fail(eng, FERRY_EPEERABORT,
			 "the destination failed while the lanes connected (status %" PRIu32
			 "); see its log",
			 value);
		return FERRY_EPEERABORT;
	}
	if (type != RP_MSG_DP_REFUSED || len < 4 || len > 4 + RP_DP_REASON_MAX) {
		eng_fail(eng, FERRY_EBADSTREAM,
			 "return-path message %u of %u bytes while the lanes connected: only a "
			 "refusal of them (%u, 4 to %u bytes) may come then",
			 type, len, RP_MSG_DP_REFUSED, 4 + RP_DP_REASON_MAX);
		return FERRY_EBADSTREAM;
	}
	ferry_get_buffer(r, text, len - 4u);
	ret = ferry_reader_error(r);
	if (ret < 0) {
		eng_fail(eng, ret, "the destination's refusal of the lanes was cut short: %s",
			 ferry_reader_errmsg(r));
		return ret;
	}
	text[len - 4u] = '\0';
	printable(text);
	/* The text names the cause; the code (@value) is only for the record. */
	snprintf(why, whylen, "the destination cannot take them: %s", text);
	eng_log(FERRY_LOG_DEBUG, "the destination refused the lanes with code %" PRId32,
		(int32_t)value);
	atomic_store(&eng->dp.dest_spoke, false);
	return FERRY_ENORDMA;
}

static int dp_open_source(struct ferry_engine *eng, int timeout_ms)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_dp_source_attr attr = {
	    .uri = dp->uri,
	    .blocks = dp->blocks,
	    .nblocks = dp->nblocks,
	    .page_size = ENG_PAGE_SIZE,
	    .lanes = dp->lanes,
	    .flags = eng->params.zerocopy ? FERRY_DP_F_ZEROCOPY : 0,
	    .timeout_ms = timeout_ms,
	    .registration = eng->params.rdma_registration,
	    .port = (uint16_t)eng->params.rdma_port,
	    .tls = eng->tls,
	    .tls_hostname = eng->tls_host,
	};
	void *ctx;
	int ret;

	memcpy(attr.id, dp->nego.id, sizeof(attr.id));
	ret = dp_auth_key(eng, &attr.auth, attr.auth_key);
	if (ret < 0)
		return ret;
	ret = dp->sops->create(&attr, &ctx);
	explicit_bzero(attr.auth_key, sizeof(attr.auth_key));
	if (ret < 0)
		return ret;
	dp_publish(eng, ctx);
	if (eng_cancelled(eng))
		return FERRY_ECANCELED;
	atomic_store(&dp->connecting, true);
	dp->refused[0] = '\0';
	/* The offer itself, or lanes never offered: a refusal answers the offer. After a
	 * fallback one may arrive late; unread, the verdict's reader skips it. */
	atomic_store(&dp->watch_rp,
		     !(dp->nego.flags & FERRY_DP_NEGO_F_CHOICE) || dp->fallback_sops);
	ret = dp->sops->connect(ctx);
	atomic_store(&dp->connecting, false);
	if (ret < 0 && eng_cancelled(eng))
		ret = FERRY_ECANCELED;
	else if (ret < 0 && atomic_load(&dp->dest_spoke))
		ret = dp_read_refusal(eng, dp->refused, sizeof(dp->refused));
	return ret;
}

/* Close a context that never carried pages (a failed offer). Migration thread. */
static void dp_drop_source(struct ferry_engine *eng)
{
	void *ctx;

	pthread_mutex_lock(&eng->conn_lock);
	ctx = eng->dp.ctx;
	eng->dp.ctx = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
	if (ctx)
		eng->dp.sops->close(ctx, false);
}

/*
 * Source, in the pre_save hook of "ferry-datapath-use": the offer is in the
 * stream; push it out, try the offered data path, fall back if it cannot be
 * set up (and that is allowed), and name what is used.
 */
static int dp_try_offer(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	const char *name;
	char why[512];
	int ret;

	/* The destination must read the offer (and start listening) while we connect. */
	ret = ferry_writer_flush(eng->conn.w);
	if (ret < 0)
		return ret;
	ret = dp_open_source(eng, DP_OFFER_TIMEOUT_MS);
	if (!ret) {
		dp->connected = true;
		eng_log(FERRY_LOG_INFO, "data path %s: %u lanes to %s", dp->sops->name, dp->lanes,
			dp->uri);
	} else if (ret == FERRY_ECANCELED) {
		return ret;
	} else {
		snprintf(why, sizeof(why), "%s data path to %s unavailable: %s", dp->sops->name,
			 dp->uri, dp->refused[0] ? dp->refused : ferry_strerror(ret));
		dp_drop_source(eng);
		/* The destination said something other than a refusal (it failed, or
		 * broke the protocol): the migration failed with that, no fallback. */
		if (atomic_load(&dp->dest_spoke))
			return ret;
		if (eng->params.no_fallback || !dp->fallback_sops ||
		    !ferry_rdma_dp_fallback_error(ret)) {
			eng_fail(eng, ret, "%s (fallback to TCP %s)", why,
				 eng->params.no_fallback ? "forbidden" : "impossible");
			return ret;
		}
		eng_log(FERRY_LOG_WARN, "%s; falling back to %s lanes to %s", why,
			dp->fallback_sops->name, dp->fallback_uri);
		free(dp->uri);
		dp->uri = dp->fallback_uri;
		dp->fallback_uri = NULL;
		dp->sops = dp->fallback_sops;
		dp->fallback_sops = NULL;
		pthread_mutex_lock(&eng->lock);
		/* Cut to the field's size: the whole reason is in the warning above. */
		snprintf(eng->stats.fallback_reason, sizeof(eng->stats.fallback_reason), "%.*s",
			 (int)sizeof(eng->stats.fallback_reason) - 1, why);
		pthread_mutex_unlock(&eng->lock);
		set_transport_stats(eng);
	}
	name = dp->sops->name;
	memset(&dp->use, 0, sizeof(dp->use));
	memcpy(dp->use.transport, name, strlen(name));
	return 0;
}

/* ---- moving to TCP lanes mid-migration ----------------------------------------------------- */

bool eng_dp_can_switch(struct ferry_engine *eng, int err)
{
	struct eng_dp *dp = &eng->dp;

	return dp->fallback_sops && dp->sops->unplaced && !eng->params.no_fallback &&
	       err != FERRY_ECANCELED && err != -ECANCELED && !eng_cancelled(eng) &&
	       !atomic_load(&dp->quit);
}

/*
 * Source, migration thread, inside a PART section while a round runs: every
 * lane is finished or failed (and its unplaced pages are back in to_send).
 * Drop the failed data path, tell the destination with a HOOK record, connect
 * TCP lanes to the same host, and let the failed workers send their share
 * again. Returns 0 or an error (the migration fails).
 */
int eng_dp_switch(struct ferry_engine *eng, struct ferry_writer *w)
{
	struct eng_dp *dp = &eng->dp;
	char why[160];
	int ret;

	snprintf(why, sizeof(why), "%s lanes failed mid-migration: %s", dp->sops->name,
		 ferry_strerror(dp->fail_err));
	eng_log(FERRY_LOG_WARN, "%s; moving the remaining pages to %s lanes to %s", why,
		dp->fallback_sops->name, dp->fallback_uri);
	dp->wire_base = eng_dp_wire_bytes(eng);
	dp_drop_source(eng);
	pthread_mutex_lock(&eng->conn_lock);
	dp->sops = dp->fallback_sops;
	pthread_mutex_unlock(&eng->conn_lock);
	dp->fallback_sops = NULL;
	free(dp->uri);
	dp->uri = dp->fallback_uri;
	dp->fallback_uri = NULL;
	pthread_mutex_lock(&eng->lock);
	snprintf(eng->stats.fallback_reason, sizeof(eng->stats.fallback_reason), "%s", why);
	pthread_mutex_unlock(&eng->lock);
	set_transport_stats(eng);
	ferry_put_be64(w, RAM_FLAG_HOOK);
	ret = ferry_writer_flush(w);
	if (!ret) {
		ret = dp_open_source(eng, DP_CONNECT_TIMEOUT_MS);
		if (ret < 0 && ret != FERRY_ECANCELED)
			eng_fail(eng, ret, "%s, and %u TCP lanes to %s did not come up: %s", why,
				 dp->lanes, dp->uri, ferry_strerror(ret));
	}
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&dp->lock);
	dp->failed = 0;
	dp->fail_err = 0;
	dp->switch_gen++;
	pthread_cond_broadcast(&dp->cond);
	pthread_mutex_unlock(&dp->lock);
	return 0;
}

/*
 * Destination, migration thread, at the HOOK record: the source dropped its
 * lanes and connects TCP lanes. Stop the receivers, release the old data path
 * (no write of it can land after this), accept the new lanes on the listener
 * kept open for this, and start the receivers again.
 */
int eng_dp_switch_dest(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	const struct ferry_dp_dest_ops *mc = dp_dest_for(FERRY_MC_NAME);
	const char *old;
	void *ctx;
	int ret;

	if (!dp->active || !dp->keep_listener || !eng->listener || !dp->ctx) {
		eng_fail(eng, FERRY_EBADSTREAM,
			 "the source moves its data path to TCP lanes, but none can move here");
		return FERRY_EBADSTREAM;
	}
	old = dp->dops->name;
	eng_log(FERRY_LOG_WARN,
		"the source moves the data path from %s to %s lanes (%u of %u "
		"%s lanes had failed here)",
		old, FERRY_MC_NAME, dp->lanes_down, dp->lanes, old);
	/* The receivers first learn that their end is wanted, then the lanes are cut. */
	pthread_mutex_lock(&dp->lock);
	atomic_store(&dp->quit, true);
	pthread_cond_broadcast(&dp->cond);
	pthread_mutex_unlock(&dp->lock);
	pthread_mutex_lock(&eng->conn_lock);
	eng_dp_abort(eng);
	pthread_mutex_unlock(&eng->conn_lock);
	eng_workers_stop(eng);
	pthread_mutex_lock(&eng->conn_lock);
	ctx = dp->ctx;
	dp->ctx = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
	dp->dops->close(ctx);
	pthread_mutex_lock(&dp->lock);
	atomic_store(&dp->quit, false);
	dp->lanes_down = 0;
	dp->err = 0;
	memset(dp->lane_ended, 0, dp->lanes * sizeof(*dp->lane_ended));
	pthread_mutex_unlock(&dp->lock);
	pthread_mutex_lock(&eng->lock);
	snprintf(eng->stats.fallback_reason, sizeof(eng->stats.fallback_reason),
		 "the source's %s lanes failed mid-migration", old);
	pthread_mutex_unlock(&eng->lock);
	pthread_mutex_lock(&eng->conn_lock);
	dp->dops = mc;
	pthread_mutex_unlock(&eng->conn_lock);
	ret = dp_open_dest(eng);
	return ret < 0 ? ret : dp_accept_lanes(eng);
}

int eng_dp_connect(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	int ret;

	if (!dp->connected) {
		ret = dp_open_source(eng, DP_CONNECT_TIMEOUT_MS);
		if (ret < 0) {
			if (ret != FERRY_ECANCELED)
				eng_fail(eng, ret, "cannot bring up %u data connections to %s: %s",
					 dp->lanes, dp->uri,
					 dp->refused[0] ? dp->refused : ferry_strerror(ret));
			return ret;
		}
		dp->connected = true;
	}
	eng_dp_refresh_stats(eng);
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

/* The destination's URI with the port it really listens on (tcp:HOST:0 picks one). */
static char *dest_uri(struct ferry_engine *eng)
{
	struct ferry_uri *uri = malloc(sizeof(*uri));
	char *out = NULL;

	if (!uri)
		return NULL;
	if (ferry_uri_parse(eng->uri, uri) == 0 && uri->scheme == FERRY_URI_RDMA &&
	    eng->listen_port > 0) {
		uri->port = (uint16_t)eng->listen_port;
		if (uri_text(uri, &out) < 0)
			out = NULL;
	} else {
		out = strdup(eng->uri);
	}
	free(uri);
	return out;
}

/* Create and publish dp->dops's context for the negotiated lanes. */
static int dp_open_dest(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_dp_dest_attr attr = {
	    .uri = dp->uri,
	    .listener = eng->listener,
	    .blocks = dp->blocks,
	    .nblocks = dp->nblocks,
	    .page_size = ENG_PAGE_SIZE,
	    .lanes = dp->lanes,
	    .timeout_ms = DP_ACCEPT_TIMEOUT_MS,
	    .peer_gone = dp_source_gone,
	    .peer_opaque = eng,
	    .registration = eng->params.rdma_registration,
	    .port = (uint16_t)eng->params.rdma_port,
	    .tls = eng->tls,
	};
	void *ctx;
	int ret;

	memcpy(attr.id, dp->nego.id, sizeof(attr.id));
	ret = dp_auth_key(eng, &attr.auth, attr.auth_key);
	if (ret < 0)
		return ret;
	ret = dp->dops->create(&attr, &ctx);
	explicit_bzero(attr.auth_key, sizeof(attr.auth_key));
	if (ret < 0) {
		eng_fail(eng, ret, "cannot set up the data path: %s", ferry_strerror(ret));
		return ret;
	}
	dp_publish(eng, ctx);
	return eng_cancelled(eng) ? FERRY_ECANCELED : 0;
}

/* Accept the lanes of the published context, then stop listening and start the workers. */
static int dp_accept_lanes(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	int ret = dp->dops->accept(dp->ctx);

	if (ret < 0) {
		if (!eng_cancelled(eng))
			eng_fail(eng, ret, "accepting %u %s lanes: %s", dp->lanes, dp->dops->name,
				 ferry_strerror(ret));
		return eng_cancelled(eng) ? FERRY_ECANCELED : ret;
	}
	/* Every lane is in: nobody else may connect, unless the lanes may move to
	 * TCP mid-migration (an offered data path that can tell what to re-send). */
	dp->keep_listener = (dp->nego.flags & FERRY_DP_NEGO_F_CHOICE) && dp->dops->listen;
	if (!dp->keep_listener)
		eng_conn_stop_listening(eng);
	set_transport_stats(eng);
	eng_dp_refresh_stats(eng);
	ret = eng_workers_start(eng);
	if (ret < 0)
		eng_fail(eng, ret, "cannot start the data-path workers: %s", ferry_strerror(ret));
	return ret;
}

static void printable(char *name)
{
	/* The name is peer data: print only what is printable. */
	for (char *c = name; *c; c++)
		if (*c < 0x20 || *c > 0x7e)
			*c = '?';
}

/*
 * Destination: tell the source at once, on the return path, that the offered
 * lanes cannot come; it is connecting them and would otherwise wait for its
 * connect timeout before falling back. Without a return path (or if writing
 * fails) the source still falls back, at that timeout.
 */
static void dp_refuse_offer(struct ferry_engine *eng, int err)
{
	struct ferry_writer *w = eng->conn.w;
	const char *why = ferry_strerror(err);
	size_t n = strnlen(why, RP_DP_REASON_MAX);
	int ret;

	if (!w || !eng->conn.has_return_path)
		return;
	ferry_put_be16(w, RP_MSG_DP_REFUSED);
	ferry_put_be16(w, (uint16_t)(4 + n));
	ferry_put_be32(w, (uint32_t)err);
	ferry_put_buffer(w, why, n);
	ret = ferry_writer_flush(w);
	if (ret < 0)
		eng_log(FERRY_LOG_WARN, "could not tell the source: %s", ferry_strerror(ret));
}

int eng_dp_accept(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	struct eng_dp_nego *n = &dp->nego;
	char name[FERRY_DP_NAME_MAX + 1];
	bool offer = n->flags & FERRY_DP_NEGO_F_CHOICE;
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
	    (n->flags & ~FERRY_DP_NEGO_F_CHOICE)) {
		eng_fail(eng, FERRY_EBADSTREAM,
			 "data path with %" PRIu32 " lanes (1 to %d), page size %" PRIu32
			 " (%u) and flags 0x%" PRIx32 ": refused",
			 n->lanes, FERRY_DP_MAX_LANES, n->page_size, ENG_PAGE_SIZE, n->flags);
		return FERRY_EBADSTREAM;
	}
	dp->dops = dp_dest_for(name);
	if (!dp->dops || (offer && !dp->dops->listen)) {
		dp->dops = NULL;
		printable(name);
		eng_fail(eng, FERRY_EBADSTREAM, "the source %s data path '%s', not in this build",
			 offer ? "offers" : "wants", name);
		return FERRY_EBADSTREAM;
	}
	if (!eng->listener) {
		dp->dops = NULL;
		eng_fail(eng, FERRY_EBADSTREAM,
			 "the source wants %" PRIu32 " data connections, but this destination "
			 "does not listen (only tcp:, unix: and rdma: do)",
			 n->lanes);
		return FERRY_EBADSTREAM;
	}
	dp->uri = dest_uri(eng);
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
	dp->offer_err = 0;
	dp->active = true;
	set_transport_stats(eng);
	pthread_mutex_lock(&eng->lock);
	eng->stats.fallback_reason[0] = '\0';
	pthread_mutex_unlock(&eng->lock);
	ret = dp_open_dest(eng);
	if (ret < 0)
		return ret;
	if (!offer)
		return dp_accept_lanes(eng);
	/* An offer: get ready and read on; "ferry-datapath-use" says which lanes come. */
	ret = dp->dops->listen(dp->ctx);
	if (ret < 0) {
		void *ctx;

		if (eng_cancelled(eng))
			return FERRY_ECANCELED;
		dp->offer_err = ret;
		eng_log(FERRY_LOG_WARN,
			"cannot take %s lanes on %s: %s; the source should fall back to TCP lanes",
			dp->dops->name, dp->uri, ferry_strerror(ret));
		dp_refuse_offer(eng, ret);
		pthread_mutex_lock(&eng->conn_lock);
		ctx = dp->ctx;
		dp->ctx = NULL;
		pthread_mutex_unlock(&eng->conn_lock);
		dp->dops->close(ctx);
	}
	return 0;
}

/* Destination, post_load of "ferry-datapath-use": accept the lanes of the data path named. */
static int dp_use_accept(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	char name[FERRY_DP_NAME_MAX + 1];
	const struct ferry_dp_dest_ops *ops;
	int ret;

	memcpy(name, dp->use.transport, FERRY_DP_NAME_MAX);
	name[FERRY_DP_NAME_MAX] = '\0';
	if (!dp->active || !(dp->nego.flags & FERRY_DP_NEGO_F_CHOICE) || dp->use.flags ||
	    eng->dp.workers[0].started) {
		eng_fail(eng, FERRY_EBADSTREAM,
			 "ferry-datapath-use without an offer before it, twice, or with flags "
			 "0x%" PRIx32,
			 dp->use.flags);
		return FERRY_EBADSTREAM;
	}
	if (strcmp(name, dp->dops->name) == 0) {
		if (dp->offer_err) {
			eng_fail(
			    eng, dp->offer_err,
			    "the source uses the %s data path, which could not be set up here: %s",
			    name, ferry_strerror(dp->offer_err));
			return dp->offer_err;
		}
		return dp_accept_lanes(eng);
	}
	ops = dp_dest_for(name);
	if (!ops || strcmp(name, FERRY_MC_NAME) != 0) {
		printable(name);
		eng_fail(eng, FERRY_EBADSTREAM,
			 "the source offered %s but uses '%s': only a fallback to %s is allowed",
			 dp->dops->name, name, FERRY_MC_NAME);
		return FERRY_EBADSTREAM;
	}
	/* The source fell back: drop what the offer prepared, take TCP lanes instead. */
	if (dp->ctx) {
		void *ctx;

		pthread_mutex_lock(&eng->conn_lock);
		ctx = dp->ctx;
		dp->ctx = NULL;
		pthread_mutex_unlock(&eng->conn_lock);
		dp->dops->close(ctx);
	}
	eng_log(FERRY_LOG_WARN, "the source fell back from %s to %s lanes", dp->dops->name, name);
	pthread_mutex_lock(&eng->lock);
	snprintf(eng->stats.fallback_reason, sizeof(eng->stats.fallback_reason),
		 "the source could not use %s", dp->dops->name);
	pthread_mutex_unlock(&eng->lock);
	dp->dops = ops;
	ret = dp_open_dest(eng);
	if (ret < 0)
		return ret;
	return dp_accept_lanes(eng);
}

/* ---- both ------------------------------------------------------------------------------ */

/*
 * The destination's load succeeded: every lane's last round is in place and
 * nothing more may arrive. From now on a lane that ends, however it ends, is
 * expected (the source ends its lanes once it has the destination's answer).
 */
void eng_dp_quiesce(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;

	if (!dp->lanes)
		return;
	pthread_mutex_lock(&dp->lock);
	atomic_store(&dp->quit, true);
	pthread_cond_broadcast(&dp->cond);
	pthread_mutex_unlock(&dp->lock);
}

void eng_dp_stop(struct ferry_engine *eng, bool graceful)
{
	struct eng_dp *dp = &eng->dp;
	struct ferry_worker_stats *final = NULL;
	bool all_ended = dp->lane_ended != NULL;
	void *ctx;

	if (!dp->active && !dp->ctx)
		return;
	/* Workers first learn that the end is wanted (so a lane cut by the abort is no
	 * failure to report), then blocked lanes are cut (unless they all ended well). */
	pthread_mutex_lock(&dp->lock);
	atomic_store(&dp->quit, true);
	pthread_cond_broadcast(&dp->cond);
	for (uint32_t i = 0; all_ended && i < dp->lanes; i++)
		all_ended = dp->lane_ended[i];
	pthread_mutex_unlock(&dp->lock);
	/* A destination whose lanes all ended normally has no receiver left to cut. */
	if (!graceful || (!eng->is_source && !all_ended)) {
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
