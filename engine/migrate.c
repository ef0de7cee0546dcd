/* SPDX-License-Identifier: MIT */
/*
 * The source's state machine, run in the engine's migration thread:
 *
 *   SETUP   connect, header, start the dirty log, RAM block list
 *   ACTIVE  bulk round (every page once), then rounds of "sync the dirty log,
 *           send what is dirty" until remaining / bandwidth <= downtime limit
 *   DEVICE  stop vCPUs, final sync, last pages, device sections, EOF, vmdesc,
 *           then wait for the destination's verdict on the return path
 *   COMPLETED, or FAILED / CANCELLED with the vCPUs resumed
 *
 * Nothing here writes to guest RAM, so a failure at any point leaves the
 * guest as it was; the only state to undo is the vCPUs' stop and throttle.
 */
#include <errno.h>
#include <inttypes.h>
#include <string.h>
#include <time.h>

#include <ferry/dirty.h>

#include "internal.h"

#define PROGRESS_NS	     (100 * 1000000ull)
#define COMPLETION_WAIT_NS   (60 * 1000000000ull)
#define AUTO_CONVERGE_ROUNDS 2

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};

	nanosleep(&ts, NULL);
}

static void update_transferred(struct ferry_engine *eng)
{
	uint64_t off = eng_bytes_sent(eng);
	uint64_t now = eng_now_ns();

	eng_dp_refresh_stats(eng);
	pthread_mutex_lock(&eng->lock);
	eng->stats.transferred = off;
	eng->stats.remaining = eng_ram_pending_pages(eng) * ENG_PAGE_SIZE;
	pthread_mutex_unlock(&eng->lock);
	if (now - eng->t_progress_ns >= PROGRESS_NS) {
		eng->t_progress_ns = now;
		eng_emit(eng, FERRY_EVENT_PROGRESS);
	}
}

/*
 * Rate limit: after a PART, sleep until the bytes sent since the round began
 * fit the bandwidth cap. The PART itself is bounded to 100 ms worth of bytes.
 */
static void rate_limit(struct ferry_engine *eng)
{
	uint64_t bw = eng->params.max_bandwidth;
	uint64_t sent, due_ns, elapsed;

	if (!bw)
		return;
	/* A data path paces its own workers (workers.c); the PARTs carry no pages then. */
	if (eng->dp.active)
		return;
	sent = ferry_writer_offset(eng->conn.w) - eng->round_bytes_start;
	due_ns = sent * 1000000000ull / bw;
	elapsed = eng_now_ns() - eng->t_round_ns;
	while (due_ns > elapsed && !eng_cancelled(eng)) {
		uint64_t wait = due_ns - elapsed;

		sleep_ns(wait > 20000000ull ? 20000000ull : wait);
		elapsed = eng_now_ns() - eng->t_round_ns;
	}
}

static int set_throttle(struct ferry_engine *eng, int pct)
{
	int ret;

	if (!eng->has_vcpu || !eng->vcpu.throttle)
		return -ENOTSUP;
	ret = eng->vcpu.throttle(eng->vcpu.opaque, pct);
	if (ret == 0) {
		pthread_mutex_lock(&eng->lock);
		eng->stats.throttle_pct = pct;
		pthread_mutex_unlock(&eng->lock);
	}
	return ret;
}

/* Send one round's pages: PART sections until the RAM handler says the round is done. */
static int send_round(struct ferry_engine *eng)
{
	struct ferry_writer *w = eng->conn.w;

	eng->t_round_ns = eng_now_ns();
	eng->round_bytes_start = eng_bytes_sent(eng);
	/* With a cap, a PART carries at most 100 ms worth of bytes. */
	eng->ram.budget_bytes = eng->params.max_bandwidth / 10;
	for (;;) {
		int ret = ferry_save_iterate(w, eng->devs);

		if (ret >= 0 && ferry_writer_flush(w) < 0)
			ret = ferry_writer_error(w);
		update_transferred(eng);
		if (ret < 0)
			return ret;
		if (eng_cancelled(eng))
			return FERRY_ECANCELED;
		rate_limit(eng);
		if (ret == 1)
			return 0;
	}
}

/*
 * After a round: refill from the dirty log and decide. Returns 1 to switch
 * over, 0 for another round, or an error.
 */
static int end_round(struct ferry_engine *eng, int *hot_rounds)
{
	uint64_t now = eng_now_ns(), elapsed = now - eng->t_round_ns;
	uint64_t sent = eng_bytes_sent(eng) - eng->round_bytes_start;
	uint64_t bw, remaining, expected_ms, rounds;
	int ret = eng_ram_sync(eng);

	if (ret < 0)
		return ret;
	remaining = eng->ram.pending_pages * ENG_PAGE_SIZE;
	if (elapsed == 0)
		elapsed = 1;
	bw = eng_bandwidth(sent, elapsed);
	expected_ms = eng_expected_downtime_ms(remaining, bw);

	pthread_mutex_lock(&eng->lock);
	rounds = ++eng->stats.rounds;
	eng->stats.remaining = remaining;
	eng->stats.throughput = bw;
	eng->stats.dirty_rate = eng_bandwidth(remaining, elapsed);
	eng->stats.expected_downtime_ms = expected_ms;
	pthread_mutex_unlock(&eng->lock);
	eng_emit(eng, FERRY_EVENT_ROUND);
	eng_log(FERRY_LOG_DEBUG,
		"round %" PRIu64 ": sent %" PRIu64 " B in %" PRIu64 " ms, %" PRIu64
		" B dirty, expected downtime %" PRIu64 " ms",
		rounds, sent, elapsed / 1000000, remaining, expected_ms);

	if (expected_ms <= eng->params.downtime_limit_ms)
		return 1;

	/* Auto-converge: the guest dirties more than half of what a round moves. */
	if (eng->params.auto_converge) {
		if (eng_round_is_hot(remaining, sent))
			(*hot_rounds)++;
		else
			*hot_rounds = 0;
		if (*hot_rounds >= AUTO_CONVERGE_ROUNDS) {
			int cur = eng->stats.throttle_pct;
			int next = eng_next_throttle(cur, eng->params.throttle_initial,
						     eng->params.throttle_increment,
						     eng->params.throttle_max);

			if (next != cur && set_throttle(eng, next) == 0)
				eng_log(FERRY_LOG_INFO, "auto-converge: vCPUs throttled to %d%%",
					next);
			*hot_rounds = 0;
		}
	} else if (eng->params.max_rounds && rounds >= eng->params.max_rounds) {
		eng_fail(eng, FERRY_ETIMEDOUT,
			 "not converging after %" PRIu64 " rounds: %" PRIu64
			 " B dirty per round, expected downtime %" PRIu64 " ms > limit %" PRIu64
			 " ms (raise the limit or enable auto-converge)",
			 rounds, remaining, expected_ms, eng->params.downtime_limit_ms);
		return FERRY_ETIMEDOUT;
	}
	return 0;
}

/* The destination's verdict: a SHUT message on the return path, 0 = loaded. */
static int wait_for_destination(struct ferry_engine *eng)
{
	struct ferry_reader *r = eng->conn.r;
	uint16_t type, len;
	uint32_t value;

	pthread_mutex_lock(&eng->lock);
	if (!eng->deadline_ns || eng->deadline_ns > eng_now_ns() + COMPLETION_WAIT_NS)
		eng->deadline_ns = eng_now_ns() + COMPLETION_WAIT_NS;
	pthread_mutex_unlock(&eng->lock);
	for (;;) {
		type = ferry_get_be16(r);
		len = ferry_get_be16(r);
		if (ferry_reader_error(r))
			break;
		if (type == RP_MSG_SHUT && len == 4) {
			value = ferry_get_be32(r);
			if (ferry_reader_error(r))
				break;
			if (value == 0)
				return 0;
			eng_fail(eng, FERRY_EPEERABORT,
				 "the destination failed to load the stream (status %" PRIu32
				 "); see its log",
				 value);
			return FERRY_EPEERABORT;
		}
		/* Anything else (a PONG) is skipped, bounded by its be16 length. */
		if (type == 0 || ferry_reader_skip(r, len) < 0)
			return ferry_reader_fail(r, FERRY_EBADSTREAM, "bad return-path message %u",
						 type);
	}
	eng_fail(eng, ferry_reader_error(r),
		 "no answer from the destination after the device state: %s",
		 ferry_reader_errmsg(r)[0] ? ferry_reader_errmsg(r) : "connection closed");
	return ferry_reader_error(r);
}

static int run_source(struct ferry_engine *eng, bool *log_started)
{
	const struct ferry_stream_config cfg = {
	    .machine = eng->params.machine,
	    .page_size = ENG_PAGE_SIZE,
	    .send_vmdesc = true,
	};
	struct ferry_writer *w;
	int hot_rounds = 0, ret;

	ret = eng_conn_connect(eng, eng->uri);
	if (ret < 0)
		return ret;
	w = eng->conn.w;
	ret = ferry_save_begin(w, &cfg);
	if (!ret && eng->conn.has_return_path)
		ret = ferry_save_command(w, FERRY_CMD_OPEN_RETURN_PATH, NULL, 0);
	if (!ret)
		ret = eng_ram_prepare_source(eng);
	/* Data channels: placed and negotiated in setup, connected right after. */
	if (!ret && (eng->params.channels || strncmp(eng->uri, "rdma:", 5) == 0))
		ret = eng_dp_prepare_source(eng);
	if (!ret)
		ret = ferry_save_setup(w, eng->devs);
	if (!ret)
		ret = ferry_writer_flush(w);
	if (!ret && eng->dp.active)
		ret = eng_dp_connect(eng);
	/*
	 * Start tracking before the bulk round reads the first page, and after the
	 * data path registered guest RAM with an RDMA device: a userfaultfd
	 * write-protected page cannot be pinned for it (Linux < 6.2 pins for write).
	 */
	if (!ret && eng->dirty) {
		ret = ferry_dirty_log_start(eng->dirty);
		if (ret < 0)
			eng_fail(eng, ret, "cannot start dirty logging: %s", ferry_strerror(ret));
		else
			*log_started = true;
	}
	if (ret < 0)
		return ret;
	pthread_mutex_lock(&eng->lock);
	eng->stats.setup_ms = (eng_now_ns() - eng->t_start_ns) / 1000000;
	pthread_mutex_unlock(&eng->lock);
	eng_set_status(eng, FERRY_STATUS_ACTIVE);

	for (;;) {
		ret = send_round(eng);
		if (ret < 0)
			return ret;
		/* Without a dirty log the guest is stopped: one pass is everything. */
		if (!eng->dirty)
			break;
		ret = end_round(eng, &hot_rounds);
		if (ret < 0)
			return ret;
		if (ret == 1)
			break;
	}

	/* Switchover: from here the guest does not run until the end. */
	eng_set_status(eng, FERRY_STATUS_DEVICE);
	eng->t_down_ns = eng_now_ns();
	if (eng->has_vcpu) {
		ret = eng->vcpu.stop(eng->vcpu.opaque);
		if (ret < 0) {
			eng_fail(eng, ret, "stopping the vCPUs failed: %s", ferry_strerror(ret));
			return ret;
		}
		eng->vcpus_stopped = true;
	}
	if (eng->dirty) {
		ret = eng_ram_sync(eng);
		if (ret < 0)
			return ret;
	}
	ret = ferry_save_complete(w, eng->devs, &cfg);
	if (!ret)
		ret = ferry_writer_flush(w);
	update_transferred(eng);
	if (ret < 0)
		return ret;
	if (eng->conn.has_return_path) {
		/*
		 * Every lane's last round was flushed before the END section; the
		 * destination answers as soon as its load ends and only then stops
		 * its lanes. So the lanes end after the answer, outside the
		 * downtime: a TCP lane with its END (no wait), an RDMA lane without
		 * a BYE round trip (rdma/datapath.c).
		 */
		ret = wait_for_destination(eng);
		eng_dp_stop(eng, true);
	} else {
		/* Every lane flushed its last round: end them normally. */
		eng_dp_stop(eng, true);
		ret = eng_conn_finish(eng);
	}
	return ret;
}

void *eng_source_thread(void *arg)
{
	struct ferry_engine *eng = arg;
	bool log_started = false;
	enum ferry_status final;
	int ret;

	if (eng->params.timeout_ms)
		eng->deadline_ns = eng->t_start_ns + eng->params.timeout_ms * 1000000ull;
	ret = eng_watchdog_start(eng);
	/* The first event: the migration exists and is in setup. */
	eng_emit(eng, FERRY_EVENT_STATUS);
	if (!ret)
		ret = run_source(eng, &log_started);

	if (ret == 0) {
		final = FERRY_STATUS_COMPLETED;
		pthread_mutex_lock(&eng->lock);
		eng->stats.downtime_ms = (eng_now_ns() - eng->t_down_ns) / 1000000;
		eng->stats.remaining = 0;
		pthread_mutex_unlock(&eng->lock);
	} else {
		/* The watchdog's timers cancel too; only the embedder's cancel is CANCELLED. */
		bool cancelled = atomic_load(&eng->user_cancel);

		pthread_mutex_lock(&eng->lock);
		cancelled = cancelled && eng->stats.error != FERRY_ETIMEDOUT;
		pthread_mutex_unlock(&eng->lock);
		if (cancelled) {
			eng_set_status(eng, FERRY_STATUS_CANCELLING);
			eng_fail(eng, FERRY_ECANCELED, "migration cancelled");
		} else {
			eng_fail(eng, ret, "migration failed: %s", ferry_strerror(ret));
		}
		/* Give the guest back exactly as it was: running, unthrottled. */
		if (eng->stats.throttle_pct)
			set_throttle(eng, 0);
		if (eng->vcpus_stopped) {
			int r = eng->vcpu.resume(eng->vcpu.opaque);

			if (r < 0)
				eng_log(FERRY_LOG_ERROR, "resuming the vCPUs failed: %s",
					ferry_strerror(r));
			eng->vcpus_stopped = false;
		}
		final = cancelled ? FERRY_STATUS_CANCELLED : FERRY_STATUS_FAILED;
	}
	eng_dp_stop(eng, false);
	if (log_started)
		ferry_dirty_log_stop(eng->dirty);
	eng_ram_release(eng);
	eng_finish(eng, final);
	return NULL;
}
