/* SPDX-License-Identifier: MIT */
/*
 * The engine object: configuration, status and statistics, events, cancel,
 * and the watchdog that turns cancel and time limits into a shutdown of the
 * connection (the only way to unblock a thread stuck in a read or write).
 */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <ferry/channel.h>

#include "internal.h"

static const char *const status_names[] = {
    [FERRY_STATUS_NONE] = "none",
    [FERRY_STATUS_SETUP] = "setup",
    [FERRY_STATUS_ACTIVE] = "active",
    [FERRY_STATUS_DEVICE] = "device",
    [FERRY_STATUS_COMPLETED] = "completed",
    [FERRY_STATUS_FAILED] = "failed",
    [FERRY_STATUS_CANCELLING] = "cancelling",
    [FERRY_STATUS_CANCELLED] = "cancelled",
};

const char *ferry_status_name(enum ferry_status st)
{
	if ((unsigned)st < sizeof(status_names) / sizeof(status_names[0]) && status_names[st])
		return status_names[st];
	return "unknown";
}

uint64_t eng_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

uint64_t eng_thread_cpu_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0)
		return 0;
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

int ferry_engine_create(struct ferry_engine **out)
{
	struct ferry_engine *eng = calloc(1, sizeof(*eng));
	int ret;

	if (!eng)
		return -ENOMEM;
	pthread_mutex_init(&eng->lock, NULL);
	pthread_mutex_init(&eng->conn_lock, NULL);
	pthread_cond_init(&eng->cond, NULL);
	pthread_mutex_init(&eng->dp.lock, NULL);
	pthread_mutex_init(&eng->dp.pace_lock, NULL);
	pthread_cond_init(&eng->dp.cond, NULL);
	ret = ferry_devices_create(&eng->devs);
	if (ret < 0)
		goto err;
	/* RAM first: it gets section id 0 and leads every stream, as in QEMU. */
	ret = ferry_devices_add_iterative(eng->devs, "ram", 0, &eng_ram_ops, eng);
	if (ret < 0)
		goto err;
	/* The data path's negotiation: sent only when a migration uses one. */
	ret = ferry_devices_add(eng->devs, eng_dp_nego_vmsd.name, 0, &eng_dp_nego_vmsd,
				&eng->dp.nego);
	/* ... and, after an offer (rdma), the data path actually used. */
	if (!ret)
		ret = ferry_devices_add(eng->devs, eng_dp_use_vmsd.name, 0, &eng_dp_use_vmsd,
					&eng->dp.use);
	if (ret < 0)
		goto err;
	*out = eng;
	return 0;
err:
	ferry_engine_destroy(eng);
	return ret;
}

void ferry_engine_destroy(struct ferry_engine *eng)
{
	if (!eng)
		return;
	ferry_engine_cancel(eng);
	ferry_engine_wait(eng);
	eng_ram_release(eng);
	eng_dp_fini(eng);
	eng_tls_clear(eng);
	ferry_tls_creds_destroy(eng->tls);
	free(eng->blocks);
	ferry_devices_destroy(eng->devs);
	pthread_cond_destroy(&eng->dp.cond);
	pthread_mutex_destroy(&eng->dp.lock);
	pthread_mutex_destroy(&eng->dp.pace_lock);
	pthread_cond_destroy(&eng->cond);
	pthread_mutex_destroy(&eng->conn_lock);
	pthread_mutex_destroy(&eng->lock);
	free(eng);
}

static bool busy(struct ferry_engine *eng)
{
	bool b;

	pthread_mutex_lock(&eng->lock);
	b = eng->running;
	pthread_mutex_unlock(&eng->lock);
	return b;
}

int ferry_engine_add_ram(struct ferry_engine *eng, const struct ferry_ram_block *blk)
{
	struct eng_block *b;
	size_t nlen;

	if (busy(eng))
		return FERRY_ESTATE;
	if (!blk || !blk->name || !blk->host || blk->length == 0 || blk->length % ENG_PAGE_SIZE ||
	    (uintptr_t)blk->host % ENG_PAGE_SIZE)
		return -EINVAL;
	nlen = strlen(blk->name);
	if (nlen == 0 || nlen > 255)
		return -EINVAL;
	for (uint32_t i = 0; i < eng->nblocks; i++)
		if (strcmp(eng->blocks[i].name, blk->name) == 0)
			return -EEXIST;
	b = realloc(eng->blocks, (eng->nblocks + 1) * sizeof(*b));
	if (!b)
		return -ENOMEM;
	eng->blocks = b;
	b = &eng->blocks[eng->nblocks];
	memset(b, 0, sizeof(*b));
	memcpy(b->name, blk->name, nlen + 1);
	b->host = blk->host;
	b->length = blk->length;
	b->page_size = blk->page_size ? blk->page_size : ENG_PAGE_SIZE;
	b->numa_node = blk->numa_node;
	b->npages = blk->length / ENG_PAGE_SIZE;
	eng->total_ram += blk->length;
	return (int)eng->nblocks++;
}

struct ferry_devices *ferry_engine_devices(struct ferry_engine *eng)
{
	return eng->devs;
}

int ferry_engine_set_dirty_log(struct ferry_engine *eng, struct ferry_dirty_log *log)
{
	if (busy(eng))
		return FERRY_ESTATE;
	eng->dirty = log;
	return 0;
}

int ferry_engine_set_vcpu_ops(struct ferry_engine *eng, const struct ferry_vcpu_ops *ops)
{
	if (busy(eng))
		return FERRY_ESTATE;
	if (ops && (!ops->stop || !ops->resume))
		return -EINVAL;
	eng->has_vcpu = ops != NULL;
	if (ops)
		eng->vcpu = *ops;
	return 0;
}

/* The longest time a parameter may give, in ms: its nanoseconds plus a clock reading fit in 64 bits
 * (292 years). */
#define PARAM_MS_MAX (UINT64_MAX / 2 / 1000000ull)

int ferry_engine_set_params(struct ferry_engine *eng, const struct ferry_params *p)
{
	if (busy(eng))
		return FERRY_ESTATE;
	if (p->throttle_initial < 0 || p->throttle_initial > 99 || p->throttle_increment < 0 ||
	    p->throttle_max < 0 || p->throttle_max > 99 || p->channels > FERRY_MAX_CHANNELS)
		return -EINVAL;
	if (p->rdma_port > 65535) {
		eng_log(FERRY_LOG_ERROR, "rdma_port %u: not 0 (PORT + 1) or 1 to 65535",
			p->rdma_port);
		return -EINVAL;
	}
	/* Deadlines are kept in nanoseconds: a longer time would wrap into a short one. */
	if (p->timeout_ms > PARAM_MS_MAX || p->stall_timeout_ms > PARAM_MS_MAX) {
		eng_log(FERRY_LOG_ERROR,
			"timeout_ms %" PRIu64 " / stall_timeout_ms %" PRIu64 ": at most %" PRIu64
			" ms (0 for the default)",
			p->timeout_ms, p->stall_timeout_ms, (uint64_t)PARAM_MS_MAX);
		return -EINVAL;
	}
	if (p->rdma_registration && p->rdma_registration[0] &&
	    strcmp(p->rdma_registration, "auto") != 0 &&
	    strcmp(p->rdma_registration, "pin-all") != 0 &&
	    strcmp(p->rdma_registration, "chunked") != 0 &&
	    strcmp(p->rdma_registration, "odp") != 0) {
		eng_log(FERRY_LOG_ERROR,
			"rdma_registration '%s': not auto, pin-all, chunked or odp",
			p->rdma_registration);
		return -EINVAL;
	}
	/* Data channels need the NUMA topology: read it now rather than in setup, and
	 * refuse a described one that does not load. */
	if (p->channels || (p->numa_topology && p->numa_topology[0])) {
		struct ferry_params old = eng->params;
		char err[256] = "";

		eng->params = *p;
		if (eng_dp_topology(eng, err, sizeof(err)) < 0) {
			eng_log(FERRY_LOG_ERROR, "NUMA topology: %s", err);
			eng->params = old;
			return -EINVAL;
		}
		return 0;
	}
	eng->params = *p;
	return 0;
}

void eng_tls_clear(struct ferry_engine *eng)
{
	struct ferry_tls_attr *a = &eng->tls_attr;

	free((char *)a->x509_dir);
	free((char *)a->psk_file);
	free((char *)a->psk_identity);
	free((char *)a->hostname);
	memset(a, 0, sizeof(*a));
	eng->tls_on = false;
}

static int dup_opt(const char *src, const char **dst)
{
	*dst = NULL;
	if (!src)
		return 0;
	*dst = strdup(src);
	return *dst ? 0 : -ENOMEM;
}

int ferry_engine_set_tls(struct ferry_engine *eng, const struct ferry_tls_attr *attr)
{
	struct ferry_tls_attr *a = &eng->tls_attr;

	if (busy(eng))
		return FERRY_ESTATE;
	eng_tls_clear(eng);
	if (!attr)
		return 0;
	if (!attr->x509_dir == !attr->psk_file) {
		eng_log(FERRY_LOG_ERROR, "TLS: give either an x509 directory or a PSK file");
		return -EINVAL;
	}
	if (dup_opt(attr->x509_dir, &a->x509_dir) < 0 ||
	    dup_opt(attr->psk_file, &a->psk_file) < 0 ||
	    dup_opt(attr->psk_identity, &a->psk_identity) < 0 ||
	    dup_opt(attr->hostname, &a->hostname) < 0) {
		eng_tls_clear(eng);
		return -ENOMEM;
	}
	a->verify_peer = attr->verify_peer;
	eng->tls_on = true;
	return 0;
}

/*
 * Before a migration starts: load the credentials for this side's role and
 * refuse what TLS cannot do. Embedder's thread.
 */
static int tls_prepare(struct ferry_engine *eng, const char *text, bool source)
{
	struct ferry_uri *uri;
	int ret;

	ferry_tls_creds_destroy(eng->tls);
	eng->tls = NULL;
	if (!eng->tls_on)
		return 0;
	uri = malloc(sizeof(*uri));
	if (!uri)
		return -ENOMEM;
	ret = ferry_uri_parse(text, uri);
	if (ret == 0 && uri->scheme != FERRY_URI_TCP && uri->scheme != FERRY_URI_UNIX &&
	    uri->scheme != FERRY_URI_RDMA) {
		eng_log(FERRY_LOG_ERROR, "TLS needs a tcp: or unix: URI, not %s:",
			ferry_uri_scheme_name(uri->scheme));
		ret = FERRY_EBADURI;
	}
	free(uri);
	if (ret < 0)
		return ret;
	if (source && eng->params.zerocopy) {
		eng_log(FERRY_LOG_ERROR, "TLS: MSG_ZEROCOPY cannot be used with TLS (pages are "
					 "encrypted into records, never sent in place)");
		return -EINVAL;
	}
	ret = ferry_tls_creds_create(source ? FERRY_TLS_CLIENT : FERRY_TLS_SERVER, &eng->tls_attr,
				     &eng->tls);
	if (ret < 0)
		eng_log(FERRY_LOG_ERROR, "TLS: cannot load the credentials: %s",
			ferry_strerror(ret));
	return ret;
}

int ferry_engine_set_event_cb(struct ferry_engine *eng, ferry_event_fn fn, void *opaque)
{
	if (busy(eng))
		return FERRY_ESTATE;
	eng->ev_fn = fn;
	eng->ev_opaque = opaque;
	return 0;
}

/* Fill in defaults for every zero parameter. */
static void apply_defaults(struct ferry_params *p)
{
	if (!p->downtime_limit_ms)
		p->downtime_limit_ms = 300;
	if (!p->stall_timeout_ms)
		p->stall_timeout_ms = 60000;
	if (!p->throttle_initial)
		p->throttle_initial = 20;
	if (!p->throttle_increment)
		p->throttle_increment = 10;
	if (!p->throttle_max)
		p->throttle_max = 99;
	if (!p->machine)
		p->machine = "ferry";
}

void eng_set_status(struct ferry_engine *eng, enum ferry_status st)
{
	pthread_mutex_lock(&eng->lock);
	eng->stats.status = st;
	pthread_mutex_unlock(&eng->lock);
	eng_emit(eng, FERRY_EVENT_STATUS);
}

void eng_fail(struct ferry_engine *eng, int err, const char *fmt, ...)
{
	va_list ap;

	pthread_mutex_lock(&eng->lock);
	/* The first failure explains the rest; keep it. */
	if (!eng->stats.error) {
		eng->stats.error = err < 0 ? err : FERRY_EBADSTREAM;
		va_start(ap, fmt);
		vsnprintf(eng->stats.error_msg, sizeof(eng->stats.error_msg), fmt, ap);
		va_end(ap);
		eng_log(FERRY_LOG_ERROR, "%s", eng->stats.error_msg);
	}
	pthread_mutex_unlock(&eng->lock);
}

bool eng_cancelled(struct ferry_engine *eng)
{
	return atomic_load(&eng->cancel);
}

void eng_stats_add(struct ferry_engine *eng, uint64_t *field, uint64_t v)
{
	pthread_mutex_lock(&eng->lock);
	*field += v;
	pthread_mutex_unlock(&eng->lock);
}

static void snapshot(struct ferry_engine *eng, struct ferry_stats *out)
{
	uint64_t now = eng_now_ns();

	pthread_mutex_lock(&eng->lock);
	*out = eng->stats;
	if (eng->running && eng->t_start_ns)
		out->total_ms = (now - eng->t_start_ns) / 1000000;
	pthread_mutex_unlock(&eng->lock);
	/* Pages in a TLS main stream were copied into (out of) its records;
	 * data lanes count their own copies. */
	if (out->tls[0] && !out->channels)
		out->memcpy_bytes += out->normal_bytes;
}

void eng_emit(struct ferry_engine *eng, enum ferry_event_type type)
{
	struct ferry_stats st;

	if (!eng->ev_fn)
		return;
	snapshot(eng, &st);
	eng->ev_fn(eng->ev_opaque, type, &st);
}

void ferry_engine_get_stats(struct ferry_engine *eng, struct ferry_stats *out)
{
	snapshot(eng, out);
}

void eng_conn_shutdown(struct ferry_engine *eng)
{
	pthread_mutex_lock(&eng->conn_lock);
	if (eng->conn.ch)
		ferry_channel_shutdown(eng->conn.ch);
	if (eng->listener)
		ferry_listener_shutdown(eng->listener);
	eng_dp_abort(eng);
	pthread_mutex_unlock(&eng->conn_lock);
}

int ferry_engine_cancel(struct ferry_engine *eng)
{
	pthread_mutex_lock(&eng->lock);
	if (!eng->running) {
		pthread_mutex_unlock(&eng->lock);
		return FERRY_ESTATE;
	}
	/* Past the point of no return the destination owns the guest: let it finish. */
	if (eng->stats.status == FERRY_STATUS_COMPLETED) {
		pthread_mutex_unlock(&eng->lock);
		return 0;
	}
	atomic_store(&eng->user_cancel, true);
	atomic_store(&eng->cancel, true);
	pthread_cond_broadcast(&eng->cond);
	pthread_mutex_unlock(&eng->lock);
	return 0;
}

/*
 * The watchdog sleeps on the engine's condition variable and, on cancel or
 * past the deadline, shuts the connection down so that a thread blocked in
 * the kernel returns with an error and sees why.
 */
/*
 * Bytes moved so far on the migration's connections (main stream and lanes),
 * and whether there is a connection at all. Takes conn_lock: the channel and
 * the data-path context live at least while it is held.
 */
static uint64_t bytes_moved(struct ferry_engine *eng, bool *connected)
{
	uint64_t n = 0;

	pthread_mutex_lock(&eng->conn_lock);
	*connected = eng->conn.ch != NULL;
	if (eng->conn.ch)
		n += ferry_channel_bytes(eng->conn.ch);
	if (eng->dp.ctx)
		n += eng_dp_lane_bytes(eng);
	pthread_mutex_unlock(&eng->conn_lock);
	return n;
}

/*
 * Source: while its lanes connect, nothing is written on the main stream, so
 * a destination that gave up (a bad stream, its own limits) would only be
 * noticed when the connect's own time ran out. Its hang-up is: the lanes
 * cannot come any more. Takes conn_lock.
 */
static bool dest_hung_up_while_connecting(struct ferry_engine *eng)
{
	bool gone = false;

	if (!atomic_load(&eng->dp.connecting))
		return false;
	pthread_mutex_lock(&eng->conn_lock);
	if (eng->conn.ch)
		gone = ferry_channel_peer_closed(eng->conn.ch);
	pthread_mutex_unlock(&eng->conn_lock);
	return gone;
}

/*
 * Source: the destination writes on the return path before its verdict only
 * to refuse the offered lanes (or to fail): it may do so while they connect,
 * and they would then only give up at their connect timeout. Seen, the
 * connect is cut short and the migration thread reads what it says
 * (datapath.c). Takes conn_lock.
 */
static void dest_spoke_while_connecting(struct ferry_engine *eng)
{
	if (!atomic_load(&eng->dp.connecting) || !atomic_load(&eng->dp.watch_rp) ||
	    atomic_load(&eng->dp.dest_spoke))
		return;
	pthread_mutex_lock(&eng->conn_lock);
	if (eng->conn.ch && eng->conn.has_return_path && ferry_channel_readable(eng->conn.ch)) {
		atomic_store(&eng->dp.dest_spoke, true);
		eng_dp_abort(eng);
	}
	pthread_mutex_unlock(&eng->conn_lock);
}

static void *watchdog_thread(void *arg)
{
	struct ferry_engine *eng = arg;
	uint64_t stall_ns = eng->params.stall_timeout_ms * 1000000ull, last_bytes = 0;
	uint64_t last_move_ns = eng_now_ns();

	pthread_mutex_lock(&eng->lock);
	while (!eng->watchdog_stop) {
		struct timespec ts;
		uint64_t now = eng_now_ns(), moved;
		bool connected, stalled = false, hung_up;
		bool fire =
		    atomic_load(&eng->cancel) || (eng->deadline_ns && now >= eng->deadline_ns);

		/* The lock order is conn_lock before lock. */
		pthread_mutex_unlock(&eng->lock);
		moved = bytes_moved(eng, &connected);
		hung_up = dest_hung_up_while_connecting(eng);
		if (!hung_up)
			dest_spoke_while_connecting(eng);
		pthread_mutex_lock(&eng->lock);
		if (hung_up)
			fire = true;
		if (!connected || moved != last_bytes) {
			last_bytes = moved;
			last_move_ns = now;
		} else if (stall_ns && now - last_move_ns >= stall_ns) {
			stalled = true;
			fire = true;
		}
		if (fire) {
			if (!atomic_load(&eng->cancel) && !eng->stats.error && hung_up) {
				eng->stats.error = FERRY_EPEERABORT;
				snprintf(eng->stats.error_msg, sizeof(eng->stats.error_msg),
					 "the destination hung up the main stream while the data "
					 "path was connecting");
				eng_log(FERRY_LOG_ERROR, "%s", eng->stats.error_msg);
			} else if (!atomic_load(&eng->cancel) && !eng->stats.error) {
				eng->stats.error = FERRY_ETIMEDOUT;
				if (stalled)
					snprintf(eng->stats.error_msg, sizeof(eng->stats.error_msg),
						 "the peer stalled: no data moved for %" PRIu64
						 " ms (stall timeout)",
						 eng->params.stall_timeout_ms);
				else
					snprintf(eng->stats.error_msg, sizeof(eng->stats.error_msg),
						 "migration timed out");
			}
			atomic_store(&eng->cancel, true);
			pthread_mutex_unlock(&eng->lock);
			eng_conn_shutdown(eng);
			pthread_mutex_lock(&eng->lock);
			break;
		}
		clock_gettime(CLOCK_REALTIME, &ts);
		ts.tv_nsec += 50 * 1000000;
		if (ts.tv_nsec >= 1000000000) {
			ts.tv_sec++;
			ts.tv_nsec -= 1000000000;
		}
		pthread_cond_timedwait(&eng->cond, &eng->lock, &ts);
	}
	pthread_mutex_unlock(&eng->lock);
	return NULL;
}

int eng_watchdog_start(struct ferry_engine *eng)
{
	int ret;

	eng->watchdog_stop = false;
	ret = pthread_create(&eng->watchdog, NULL, watchdog_thread, eng);
	if (ret)
		return -ret;
	eng->watchdog_started = true;
	return 0;
}

void eng_watchdog_stop(struct ferry_engine *eng)
{
	if (!eng->watchdog_started)
		return;
	pthread_mutex_lock(&eng->lock);
	eng->watchdog_stop = true;
	pthread_cond_broadcast(&eng->cond);
	pthread_mutex_unlock(&eng->lock);
	pthread_join(eng->watchdog, NULL);
	eng->watchdog_started = false;
}

/*
 * The last steps of either migration thread: stop the watchdog, close the
 * connection, publish the final status, and only then call the embedder.
 */
void eng_finish(struct ferry_engine *eng, enum ferry_status final)
{
	eng_watchdog_stop(eng);
	eng_conn_close(eng);
	pthread_mutex_lock(&eng->lock);
	eng->stats.total_ms = (eng_now_ns() - eng->t_start_ns) / 1000000;
	eng->stats.cpu_ms = eng_thread_cpu_ms() + eng->dp.cpu_ms;
	eng->stats.status = final;
	pthread_mutex_unlock(&eng->lock);
	eng_emit(eng, FERRY_EVENT_STATUS);
	pthread_mutex_lock(&eng->lock);
	eng->running = false;
	pthread_mutex_unlock(&eng->lock);
	if (eng->done_fn)
		eng->done_fn(eng->done_opaque, final);
}

static int start(struct ferry_engine *eng, const char *uri, ferry_done_fn done, void *opaque,
		 bool source)
{
	int ret;

	if (!uri || strlen(uri) >= sizeof(eng->uri))
		return FERRY_EBADURI;
	pthread_mutex_lock(&eng->lock);
	if (eng->running || eng->nblocks == 0) {
		pthread_mutex_unlock(&eng->lock);
		return FERRY_ESTATE;
	}
	pthread_mutex_unlock(&eng->lock);
	/* A previous migration's thread has ended; reap it. */
	if (eng->thread_started) {
		pthread_join(eng->thread, NULL);
		eng->thread_started = false;
	}
	ret = tls_prepare(eng, uri, source);
	if (ret < 0)
		return ret;
	apply_defaults(&eng->params);
	memset(&eng->stats, 0, sizeof(eng->stats));
	/* The last migration's worker statistics give way to this one's. */
	eng->dp.cpu_ms = 0;
	pthread_mutex_lock(&eng->dp.lock);
	free(eng->dp.final);
	eng->dp.final = NULL;
	eng->dp.nfinal = 0;
	pthread_mutex_unlock(&eng->dp.lock);
	eng->stats.total_ram = eng->total_ram;
	eng->stats.downtime_limit_ms = eng->params.downtime_limit_ms;
	eng->stats.status = FERRY_STATUS_SETUP;
	snprintf(eng->uri, sizeof(eng->uri), "%s", uri);
	eng->is_source = source;
	eng->done_fn = done;
	eng->done_opaque = opaque;
	eng->vcpus_stopped = false;
	eng->deadline_ns = 0;
	eng->listen_port = 0;
	atomic_store(&eng->cancel, false);
	atomic_store(&eng->user_cancel, false);
	eng->t_start_ns = eng_now_ns();

	/* The destination listens before returning, so the caller can start the source. */
	if (!source) {
		ret = eng_conn_listen(eng, uri);
		if (ret < 0)
			return ret;
		/* A listener may get data connections: read the topology now, not in setup. */
		if (eng->listener && eng_dp_topology(eng, NULL, 0) < 0)
			eng_log(FERRY_LOG_DEBUG, "NUMA topology not loaded ahead");
	} else {
		struct ferry_uri parsed;

		ret = ferry_uri_parse(uri, &parsed);
		if (ret < 0)
			return ret;
	}
	pthread_mutex_lock(&eng->lock);
	eng->running = true;
	pthread_mutex_unlock(&eng->lock);
	ret = pthread_create(&eng->thread, NULL, source ? eng_source_thread : eng_dest_thread, eng);
	if (ret) {
		pthread_mutex_lock(&eng->lock);
		eng->running = false;
		pthread_mutex_unlock(&eng->lock);
		eng_conn_close(eng);
		return -ret;
	}
	eng->thread_started = true;
	return 0;
}

int ferry_migrate(struct ferry_engine *eng, const char *uri, ferry_done_fn done, void *opaque)
{
	return start(eng, uri, done, opaque, true);
}

int ferry_incoming(struct ferry_engine *eng, const char *uri, ferry_done_fn done, void *opaque)
{
	return start(eng, uri, done, opaque, false);
}

int ferry_engine_listen_port(struct ferry_engine *eng)
{
	return eng->listen_port;
}

enum ferry_status ferry_engine_wait(struct ferry_engine *eng)
{
	enum ferry_status st;

	if (eng->thread_started) {
		pthread_join(eng->thread, NULL);
		eng->thread_started = false;
	}
	pthread_mutex_lock(&eng->lock);
	st = eng->stats.status;
	pthread_mutex_unlock(&eng->lock);
	return st;
}

enum ferry_status ferry_migrate_sync(struct ferry_engine *eng, const char *uri)
{
	int ret = ferry_migrate(eng, uri, NULL, NULL);

	if (ret < 0) {
		eng_fail(eng, ret, "cannot start the migration: %s", ferry_strerror(ret));
		eng->stats.status = FERRY_STATUS_FAILED;
		return FERRY_STATUS_FAILED;
	}
	return ferry_engine_wait(eng);
}

enum ferry_status ferry_incoming_sync(struct ferry_engine *eng, const char *uri)
{
	int ret = ferry_incoming(eng, uri, NULL, NULL);

	if (ret < 0) {
		eng_fail(eng, ret, "cannot start the incoming migration: %s", ferry_strerror(ret));
		eng->stats.status = FERRY_STATUS_FAILED;
		return FERRY_STATUS_FAILED;
	}
	return ferry_engine_wait(eng);
}
