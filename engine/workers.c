/* SPDX-License-Identifier: MIT */
/*
 * The data-path worker pool: one thread per lane, bound to the CPUs of the
 * NUMA node that holds its RAM (placement.h).
 *
 * Source: the migration thread opens a round (eng_dp_round()); each worker
 * scans the chunks it owns in the to_send maps, clears what it takes, turns
 * it into runs (zero pages apart), hands them to its lane, and ends with the
 * lane's flush of the round. The chunks never change owner, so a page always
 * travels on the same lane; the only barrier between rounds is that the
 * migration thread waits for every worker's flush before it writes the
 * round's marker on the main stream (and syncs the dirty log again).
 * Workers own disjoint 512-bit (8-word) stretches of the to_send maps, and
 * the migration thread only touches the maps while no round is open, so the
 * maps need no lock.
 *
 * Destination: each worker calls its lane's receive() in a loop and records
 * the sync points; the migration thread, reading a round marker on the main
 * stream, waits until every lane reported that round (eng_dp_wait_flush()).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"

#define WAIT_STEP_NS	(50 * 1000000ull)
#define SYNC_TIMEOUT_NS (60 * 1000000000ull)

static uint64_t thread_cpu_ns(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) < 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void timed_wait(pthread_cond_t *cond, pthread_mutex_t *lock, uint64_t ns)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += (time_t)(ns / 1000000000ull);
	ts.tv_nsec += (long)(ns % 1000000000ull);
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	pthread_cond_timedwait(cond, lock, &ts);
}

static void bind_worker(struct eng_worker *wk)
{
	int ret = eng_place_bind(&wk->eng->dp.place, wk->index);

	if (ret < 0)
		eng_log(FERRY_LOG_WARN, "worker %u: cannot bind to CPUs %s: %s", wk->index,
			wk->eng->dp.place.workers[wk->index].cpus, ferry_strerror(ret));
	wk->bound = ret == 1;
}

/* ---- source ---------------------------------------------------------------------------- */

/*
 * The bandwidth cap holds for the data path as a whole: the workers draw
 * their sends from one clock. A per-worker share of the cap (what this was
 * before) halved the rate whenever a round's dirty pages fell to one worker,
 * the common case with a guest that sweeps memory (two vCPUs a fixed
 * distance apart land in the same worker's chunks), and such rounds stopped
 * shrinking. Each send reserves the next slot of @bytes at the cap and waits
 * for the slot's start, so a worker alone moves at the whole cap and several
 * share it. An idle clock gives no credit: a slot never starts in the past.
 * Returns false when the migration is cancelled or the workers quit.
 */
static bool pace(struct ferry_engine *eng, uint64_t bytes)
{
	struct eng_dp *dp = &eng->dp;
	uint64_t bps = dp->pace_bps, start, now;

	if (!bps || !bytes)
		return true;
	pthread_mutex_lock(&dp->pace_lock);
	now = eng_now_ns();
	if (dp->pace_next_ns < now)
		dp->pace_next_ns = now;
	start = dp->pace_next_ns;
	dp->pace_next_ns += bytes * 1000000000ull / bps;
	pthread_mutex_unlock(&dp->pace_lock);
	while (!eng_cancelled(eng) && !dp->quit) {
		struct timespec ts = {0, 0};

		now = eng_now_ns();
		if (now >= start)
			return true;
		ts.tv_nsec = (long)(start - now > 20000000ull ? 20000000ull : start - now);
		nanosleep(&ts, NULL);
	}
	return false;
}

/* Runs of one chunk's dirty pages, zero pages apart. Returns the run count. */
static uint32_t chunk_runs(struct eng_worker *wk, const struct eng_chunk_ref *c, uint64_t *data,
			   uint64_t *zero)
{
	struct ferry_engine *eng = wk->eng;
	struct eng_block *b = &eng->blocks[eng->dp.to_eng[c->block]];
	bool detect = !eng->params.no_zero_detection;
	uint64_t start = (uint64_t)c->chunk * ENG_CHUNK_PAGES;
	uint64_t end = start + ENG_CHUNK_PAGES < b->npages ? start + ENG_CHUNK_PAGES : b->npages;
	uint64_t pos = start, s, n;
	uint32_t nruns = 0;

	while (eng_bitmap_next_run(b->to_send, end, &pos, &s, &n)) {
		uint64_t first = s;
		bool cur = detect && eng_page_is_zero(b->host + (s << ENG_PAGE_SHIFT));

		eng_bitmap_clear_range(b->to_send, s, n);
		for (uint64_t pg = s + 1; pg <= s + n; pg++) {
			bool z = pg < s + n
				     ? detect && eng_page_is_zero(b->host + (pg << ENG_PAGE_SHIFT))
				     : !cur;

			if (z == cur)
				continue;
			wk->runs[nruns++] = (struct ferry_dp_run){
			    .block = c->block,
			    .flags = cur ? FERRY_DP_RUN_ZERO : 0,
			    .first = first,
			    .npages = pg - first,
			};
			*(cur ? zero : data) += pg - first;
			first = pg;
			cur = z;
		}
	}
	return nruns;
}

/* One round's share: every dirty page of the worker's chunks, then the lane's flush. */
static int send_share(struct eng_worker *wk, uint64_t round)
{
	struct ferry_engine *eng = wk->eng;
	struct eng_dp *dp = &eng->dp;
	int ret;

	for (uint64_t k = 0; k < wk->nchunks; k++) {
		uint64_t data = 0, zero = 0;
		uint32_t nruns;

		if (eng_cancelled(eng) || dp->quit)
			return FERRY_ECANCELED;
		nruns = chunk_runs(wk, &wk->chunks[k], &data, &zero);
		if (!nruns)
			continue;
		if (!pace(eng, data * ENG_PAGE_SIZE))
			return FERRY_ECANCELED;
		ret = dp->sops->send(dp->ctx, wk->index, wk->runs, nruns);
		if (ret < 0)
			return ret;
		atomic_fetch_add_explicit(&wk->pages, data, memory_order_relaxed);
		atomic_fetch_add_explicit(&wk->zero_pages, zero, memory_order_relaxed);
		atomic_fetch_add_explicit(&dp->round_pages, data + zero, memory_order_relaxed);
		pthread_mutex_lock(&eng->lock);
		eng->stats.normal_pages += data;
		eng->stats.zero_pages += zero;
		eng->stats.normal_bytes += data * ENG_PAGE_SIZE;
		pthread_mutex_unlock(&eng->lock);
	}
	return dp->sops->flush(dp->ctx, wk->index, round);
}

/*
 * The lane failed and the data path can be switched: put the pages not known
 * to be placed back into to_send (the worker owns their bitmap words), so
 * that the round's share, sent again, carries them. Worker thread.
 */
static int requeue_unplaced(struct eng_worker *wk)
{
	struct ferry_engine *eng = wk->eng;
	struct eng_dp *dp = &eng->dp;
	struct ferry_dp_run *runs;
	long n = dp->sops->unplaced(dp->ctx, wk->index, NULL, 0), pages = 0;

	if (n <= 0)
		return (int)n;
	runs = calloc((size_t)n, sizeof(*runs));
	if (!runs)
		return -ENOMEM;
	n = dp->sops->unplaced(dp->ctx, wk->index, runs, (size_t)n);
	for (long i = 0; i < n; i++) {
		struct eng_block *b;

		if (runs[i].block >= dp->nblocks)
			continue;
		b = &eng->blocks[dp->to_eng[runs[i].block]];
		if (runs[i].first >= b->npages)
			continue;
		if (runs[i].npages > b->npages - runs[i].first)
			runs[i].npages = b->npages - runs[i].first;
		eng_bitmap_set_range(b->to_send, runs[i].first, runs[i].npages);
		pages += (long)runs[i].npages;
	}
	free(runs);
	eng_log(FERRY_LOG_INFO, "worker %u: %ld pages not known to be placed will go again",
		wk->index, pages);
	return 0;
}

static void *source_worker(void *arg)
{
	struct eng_worker *wk = arg;
	struct eng_dp *dp = &wk->eng->dp;
	uint64_t done = 0;

	bind_worker(wk);
	for (;;) {
		uint64_t round;
		int ret;

		pthread_mutex_lock(&dp->lock);
		while (!dp->quit && dp->round == done)
			pthread_cond_wait(&dp->cond, &dp->lock);
		if (dp->quit) {
			pthread_mutex_unlock(&dp->lock);
			break;
		}
		round = dp->round;
		pthread_mutex_unlock(&dp->lock);

		ret = send_share(wk, round);
		atomic_store_explicit(&wk->cpu_ns, thread_cpu_ns(), memory_order_relaxed);
		if (ret < 0 && eng_dp_can_switch(wk->eng, ret)) {
			int err = ret;
			uint64_t gen;

			ret = requeue_unplaced(wk);
			if (ret == 0) {
				/* Wait until the migration thread moved the lanes, then go again.
				 */
				pthread_mutex_lock(&dp->lock);
				gen = dp->switch_gen;
				dp->failed++;
				if (!dp->fail_err)
					dp->fail_err = err;
				pthread_cond_broadcast(&dp->cond);
				while (!dp->quit && dp->switch_gen == gen)
					pthread_cond_wait(&dp->cond, &dp->lock);
				pthread_mutex_unlock(&dp->lock);
				continue;
			}
		}

		pthread_mutex_lock(&dp->lock);
		if (ret < 0 && !dp->err)
			dp->err = ret;
		if (ret == 0)
			dp->finished++;
		done = round;
		pthread_cond_broadcast(&dp->cond);
		pthread_mutex_unlock(&dp->lock);
	}
	atomic_store_explicit(&wk->cpu_ns, thread_cpu_ns(), memory_order_relaxed);
	return NULL;
}

int eng_dp_round(struct ferry_engine *eng, uint64_t wait_ns)
{
	struct eng_dp *dp = &eng->dp;
	uint64_t now = eng_now_ns(), until = wait_ns ? now + wait_ns : 0;
	/*
	 * The user's stall bound, on the round's progress since it opened: the
	 * main stream's small PART sections (one per call, every 50 ms) keep
	 * the watchdog's byte count moving while a lane is stuck; this does not.
	 */
	uint64_t stall_ns = eng->params.stall_timeout_ms * 1000000ull;
	int ret = 0;

	pthread_mutex_lock(&dp->lock);
	if (!dp->round_open) {
		dp->round++;
		dp->finished = 0;
		dp->round_open = true;
		atomic_store(&dp->round_pages, 0);
		dp->seen_pages = 0;
		dp->seen_finished = 0;
		dp->seen_at_ns = now;
		pthread_cond_broadcast(&dp->cond);
	}
	while (dp->finished < dp->lanes && !dp->err) {
		uint64_t p;

		/* Every lane finished or failed and waits for other lanes: switch. */
		if (dp->failed && dp->finished + dp->failed >= dp->lanes) {
			pthread_mutex_unlock(&dp->lock);
			return 2;
		}
		if (eng_cancelled(eng)) {
			ret = FERRY_ECANCELED;
			break;
		}
		timed_wait(&dp->cond, &dp->lock, WAIT_STEP_NS);
		now = eng_now_ns();
		p = atomic_load(&dp->round_pages);
		if (p != dp->seen_pages || dp->finished != dp->seen_finished) {
			dp->seen_pages = p;
			dp->seen_finished = dp->finished;
			dp->seen_at_ns = now;
		} else if (now - dp->seen_at_ns >= stall_ns) {
			ret = -ETIMEDOUT;
			break;
		}
		if (until && now >= until && dp->finished < dp->lanes && !dp->err) {
			pthread_mutex_unlock(&dp->lock);
			return 0;
		}
	}
	if (!ret && dp->err)
		ret = dp->err;
	if (!ret)
		dp->round_open = false;
	pthread_mutex_unlock(&dp->lock);
	if (ret == -ETIMEDOUT)
		eng_fail(eng, ret,
			 "the data path stalled: no progress for %" PRIu64 " ms in round %" PRIu64
			 " (stall timeout)",
			 eng->params.stall_timeout_ms, dp->round);
	else if (ret < 0 && ret != FERRY_ECANCELED)
		eng_fail(eng, ret, "a data connection failed in round %" PRIu64 ": %s", dp->round,
			 ferry_strerror(ret));
	return ret < 0 ? ret : 1;
}

/* ---- destination ----------------------------------------------------------------------- */

static void *dest_worker(void *arg)
{
	struct eng_worker *wk = arg;
	struct ferry_engine *eng = wk->eng;
	struct eng_dp *dp = &eng->dp;

	bind_worker(wk);
	for (;;) {
		uint64_t round = 0;
		int ret = dp->dops->receive(dp->ctx, wk->index, &round);
		bool expected;

		atomic_store_explicit(&wk->cpu_ns, thread_cpu_ns(), memory_order_relaxed);
		if (ret == 1) {
			eng_dp_refresh_stats(eng);
			pthread_mutex_lock(&dp->lock);
			dp->lane_round[wk->index] = round;
			pthread_cond_broadcast(&dp->cond);
			pthread_mutex_unlock(&dp->lock);
			continue;
		}
		pthread_mutex_lock(&dp->lock);
		expected = dp->quit;
		if (ret < 0 && !expected && dp->keep_listener && ret != -ECANCELED &&
		    ret != FERRY_ECANCELED) {
			/* The source may move to TCP lanes (a HOOK record says so): wait for it. */
			dp->lanes_down++;
			pthread_cond_broadcast(&dp->cond);
			pthread_mutex_unlock(&dp->lock);
			eng_log(FERRY_LOG_WARN,
				"data connection %u failed: %s; waiting for the source to move to "
				"TCP lanes",
				wk->index, ferry_strerror(ret));
			break;
		}
		if (ret == 0)
			dp->lane_ended[wk->index] = true;
		else if (!expected && !dp->err)
			dp->err = ret;
		pthread_cond_broadcast(&dp->cond);
		pthread_mutex_unlock(&dp->lock);
		if (ret < 0 && !expected) {
			/* The stream cannot complete without this lane: stop the loader now. */
			eng_fail(eng, ret, "data connection %u failed: %s", wk->index,
				 ferry_strerror(ret));
			eng_conn_shutdown(eng);
		}
		break;
	}
	return NULL;
}

int eng_dp_wait_flush(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;
	uint64_t k = ++dp->flushes, start = eng_now_ns();
	int ret = 0;

	pthread_mutex_lock(&dp->lock);
	for (;;) {
		uint32_t behind = 0, gone = 0;

		for (uint32_t i = 0; i < dp->lanes; i++) {
			behind += dp->lane_round[i] < k;
			gone += dp->lane_round[i] < k && dp->lane_ended[i];
		}
		if (!behind)
			break;
		if (dp->err) {
			ret = dp->err;
			break;
		}
		if (gone) {
			ret = FERRY_EBADSTREAM;
			break;
		}
		/* A round's end while lanes are down, and no switch came before it. */
		if (dp->lanes_down) {
			ret = -ECONNRESET;
			break;
		}
		if (eng_cancelled(eng)) {
			ret = FERRY_ECANCELED;
			break;
		}
		if (eng_now_ns() - start >= SYNC_TIMEOUT_NS) {
			ret = -ETIMEDOUT;
			break;
		}
		timed_wait(&dp->cond, &dp->lock, WAIT_STEP_NS);
	}
	pthread_mutex_unlock(&dp->lock);
	if (ret == FERRY_EBADSTREAM)
		eng_fail(eng, ret, "a data connection ended before round %" PRIu64, k);
	else if (ret == -ECONNRESET)
		eng_fail(eng, ret, "%u data connections failed before round %" PRIu64,
			 dp->lanes_down, k);
	else if (ret == -ETIMEDOUT)
		eng_fail(eng, ret, "the data connections did not reach round %" PRIu64 " in %llu s",
			 k, SYNC_TIMEOUT_NS / 1000000000ull);
	return ret;
}

/* ---- the pool -------------------------------------------------------------------------- */

int eng_workers_start(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;

	for (uint32_t i = 0; i < dp->lanes; i++) {
		struct eng_worker *wk = &dp->workers[i];
		int ret =
		    pthread_create(&wk->thread, NULL, dp->sops ? source_worker : dest_worker, wk);

		if (ret) {
			eng_workers_stop(eng);
			return -ret;
		}
		wk->started = true;
	}
	return 0;
}

void eng_workers_stop(struct ferry_engine *eng)
{
	struct eng_dp *dp = &eng->dp;

	if (!dp->workers)
		return;
	pthread_mutex_lock(&dp->lock);
	dp->quit = true;
	pthread_cond_broadcast(&dp->cond);
	pthread_mutex_unlock(&dp->lock);
	for (uint32_t i = 0; i < dp->lanes; i++) {
		struct eng_worker *wk = &dp->workers[i];

		if (wk->started)
			pthread_join(wk->thread, NULL);
		wk->started = false;
	}
}

/* Per-worker statistics; needs the transport's context alive (or gone: lane counters 0). */
void eng_workers_snapshot(struct ferry_engine *eng, struct ferry_worker_stats *out, uint32_t n)
{
	struct eng_dp *dp = &eng->dp;

	for (uint32_t i = 0; i < n && i < dp->lanes; i++) {
		struct eng_worker *wk = &dp->workers[i];
		const struct eng_place_worker *pw = &dp->place.workers[i];
		struct ferry_dp_lane_stats ls;
		struct ferry_worker_stats *o = &out[i];

		memset(&ls, 0, sizeof(ls));
		if (dp->ctx && dp->sops)
			dp->sops->lane_stats(dp->ctx, i, &ls);
		else if (dp->ctx && dp->dops)
			dp->dops->lane_stats(dp->ctx, i, &ls);
		memset(o, 0, sizeof(*o));
		o->index = i;
		o->numa_node = pw->node;
		o->bound = wk->bound;
		memcpy(o->cpus, pw->cpus, sizeof(o->cpus));
		o->ram_bytes = pw->ram_bytes;
		o->pages = ls.pages;
		o->zero_pages = ls.zero_pages;
		o->bytes = ls.page_bytes;
		o->wire_bytes = ls.wire_bytes;
		o->packets = ls.packets;
		o->syscalls = ls.syscalls;
		o->cpu_ns = atomic_load_explicit(&wk->cpu_ns, memory_order_relaxed);
		o->sync_round = ls.sync_round;
	}
}
