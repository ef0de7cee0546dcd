/* SPDX-License-Identifier: MIT */
/*
 * One run of a scenario: the destination half (a prefaulted guest listening,
 * then the verification) and the source half (a guest built from the seed,
 * migrated, its figures collected). Local runs call both in one process;
 * two-host runs call one half on each host.
 */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/tls.h>

#include "harness.h"

void bench_scenario_guest(const struct bench_scenario *sc, uint32_t seed,
			  struct bench_guest_attr *out)
{
	memset(out, 0, sizeof(*out));
	out->ram_bytes = sc->ram_bytes;
	out->vcpus = sc->dirty_rate ? sc->vcpus : 0;
	out->dirty_rate = sc->dirty_rate;
	out->pattern = sc->pattern;
	out->huge = sc->page_size > 4096;
	out->fill_seed = seed;
}

static void params_for(const struct bench_scenario *sc, uint64_t timeout_ms, struct ferry_params *p)
{
	memset(p, 0, sizeof(*p));
	p->downtime_limit_ms = sc->downtime_ms;
	p->timeout_ms = timeout_ms;
	p->channels = sc->channels;
	p->machine = "ferry-synthetic";
	p->rdma_registration = sc->reg >= 0 ? bench_reg_name(sc->reg) : NULL;
}

struct bench_dest {
	struct ferry_engine *eng;
	struct bench_guest *g;
	struct bench_guest_attr attr; /* the source's, for the verification */
};

int bench_dest_start(const struct bench_scenario *sc, uint32_t seed, uint64_t timeout_ms,
		     const char *uri, const struct ferry_tls_attr *tls, struct bench_dest **out,
		     int *port)
{
	struct bench_dest *d = calloc(1, sizeof(*d));
	struct bench_guest_attr ga;
	struct ferry_params p;
	int ret;

	*out = NULL;
	if (!d)
		return -ENOMEM;
	bench_scenario_guest(sc, seed, &d->attr);
	ga = d->attr;
	/* An empty destination whose devices differ: everything must arrive. */
	ga.vcpus = 0;
	ga.fill_seed = 0;
	ga.prefault = true;
	/*
	 * The destination waits 30 s longer than the source, so that a migration that does not
	 * converge in time ends with the source's timeout (a clear reason), not with the
	 * destination hanging up on it.
	 */
	params_for(sc, timeout_ms + 30000, &p);
	ret = ferry_engine_create(&d->eng);
	if (!ret)
		ret = bench_guest_create(&ga, &d->g);
	if (!ret) {
		bench_devices_fill(bench_guest_devices(d->g), 0xdead);
		ret = bench_guest_attach_dest(d->g, d->eng);
	}
	if (!ret)
		ret = ferry_engine_set_params(d->eng, &p);
	if (!ret && tls)
		ret = ferry_engine_set_tls(d->eng, tls);
	if (!ret)
		ret = ferry_incoming(d->eng, uri, NULL, NULL);
	if (ret < 0) {
		ferry_engine_destroy(d->eng);
		bench_guest_destroy(d->g);
		free(d);
		return ret;
	}
	if (port)
		*port = ferry_engine_listen_port(d->eng);
	*out = d;
	return 0;
}

void bench_dest_stats(struct bench_dest *d, struct ferry_stats *st)
{
	ferry_engine_get_stats(d->eng, st);
}

void bench_dest_cancel(struct bench_dest *d)
{
	if (d)
		ferry_engine_cancel(d->eng);
}

void bench_dest_finish(struct bench_dest *d, struct bench_dest_result *r)
{
	struct ferry_stats st;

	memset(r, 0, sizeof(*r));
	ferry_engine_wait(d->eng);
	ferry_engine_get_stats(d->eng, &st);
	snprintf(r->status, sizeof(r->status), "%s", ferry_status_name(st.status));
	r->cpu_s = (double)st.cpu_ms / 1e3;
	r->memcpy_bytes = st.memcpy_bytes;
	r->registration_ms = st.registration[0] ? (double)st.registration_us / 1e3 : -1;
	if (st.status == FERRY_STATUS_COMPLETED) {
		r->verified = bench_guest_verify(d->g, &d->attr, r->verify_error,
						 sizeof(r->verify_error)) == 0;
	} else {
		snprintf(r->verify_error, sizeof(r->verify_error), "not verified: %s%s%.200s",
			 ferry_status_name(st.status), st.error ? ": " : "",
			 st.error ? st.error_msg : "");
	}
	ferry_engine_destroy(d->eng);
	bench_guest_destroy(d->g);
	free(d);
}

/* Rounds' remaining bytes, from the engine's events (migration thread). */
struct rounds {
	pthread_mutex_t lock;
	struct bench_result *r;
};

static void on_event(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	struct rounds *rd = opaque;

	if (type != FERRY_EVENT_ROUND)
		return;
	pthread_mutex_lock(&rd->lock);
	if (rd->r->n_remaining < BENCH_MAX_ROUNDS)
		rd->r->remaining[rd->r->n_remaining++] = st->remaining;
	pthread_mutex_unlock(&rd->lock);
}

int bench_source_run(const struct bench_scenario *sc, uint32_t seed, uint64_t timeout_ms,
		     const char *uri, const struct ferry_tls_attr *tls, volatile int *stop,
		     bench_progress_fn progress, void *opaque, struct bench_result *r)
{
	struct ferry_engine *eng = NULL;
	struct bench_guest *g = NULL;
	struct bench_guest_attr ga;
	struct ferry_params p;
	struct ferry_stats st;
	struct rounds rd = {PTHREAD_MUTEX_INITIALIZER, r};
	bool cancelled = false;
	int ret;

	bench_scenario_guest(sc, seed, &ga);
	params_for(sc, timeout_ms, &p);
	r->sc = *sc;
	r->registration_ms = -1;
	r->registration_dst_ms = -1;
	ret = ferry_engine_create(&eng);
	if (!ret)
		ret = bench_guest_create(&ga, &g);
	if (!ret)
		ret = bench_guest_attach_source(g, eng);
	/* An idle guest is a stopped one: no dirty log, one pass over RAM. */
	if (!ret && !ga.vcpus)
		ret = ferry_engine_set_dirty_log(eng, NULL);
	if (!ret)
		ret = ferry_engine_set_params(eng, &p);
	if (!ret && tls)
		ret = ferry_engine_set_tls(eng, tls);
	if (!ret)
		ret = ferry_engine_set_event_cb(eng, on_event, &rd);
	if (!ret)
		ret = ferry_migrate(eng, uri, NULL, NULL);
	if (ret < 0) {
		snprintf(r->status, sizeof(r->status), "failed");
		snprintf(r->verify_error, sizeof(r->verify_error), "source setup: %s",
			 ferry_strerror(ret));
		goto out;
	}
	for (;;) {
		struct timespec ts = {0, 200 * 1000 * 1000};

		ferry_engine_get_stats(eng, &st);
		if (st.status >= FERRY_STATUS_COMPLETED && st.status != FERRY_STATUS_CANCELLING)
			break;
		if (stop && *stop && !cancelled) {
			ferry_engine_cancel(eng);
			cancelled = true;
		}
		if (progress)
			progress(opaque, &st);
		nanosleep(&ts, NULL);
	}
	ferry_engine_wait(eng);
	ferry_engine_get_stats(eng, &st);
	snprintf(r->status, sizeof(r->status), "%s", ferry_status_name(st.status));
	snprintf(r->transport_used, sizeof(r->transport_used), "%s", st.transport);
	if (st.error)
		snprintf(r->verify_error, sizeof(r->verify_error), "%.250s", st.error_msg);
	r->total_ms = (double)st.total_ms;
	r->setup_ms = (double)st.setup_ms;
	r->downtime_ms = (double)st.downtime_ms;
	r->rounds = st.rounds;
	r->transferred = st.transferred;
	r->total_ram = st.total_ram;
	r->normal_pages = st.normal_pages;
	r->zero_pages = st.zero_pages;
	r->normal_bytes = st.normal_bytes;
	r->memcpy_src = st.memcpy_bytes;
	r->dirty_rate_measured = st.dirty_rate;
	r->cpu_src_s = (double)st.cpu_ms / 1e3;
	r->registration_ms = st.registration[0] ? (double)st.registration_us / 1e3 : -1;
	snprintf(r->registration_used, sizeof(r->registration_used), "%s", st.registration);
	snprintf(r->fallback_reason, sizeof(r->fallback_reason), "%s", st.fallback_reason);
	snprintf(r->tls, sizeof(r->tls), "%s", st.tls);
	if (st.total_ms > st.setup_ms)
		r->throughput = (double)st.transferred * 1e3 / (double)(st.total_ms - st.setup_ms);
	ret = st.status == FERRY_STATUS_COMPLETED ? 0 : (st.error ? st.error : -ECANCELED);
out:
	ferry_engine_destroy(eng);
	bench_guest_destroy(g);
	return ret;
}

int bench_dump_ram(const char *path, uint64_t ram_bytes, uint32_t seed)
{
	struct bench_guest_attr ga = {.ram_bytes = ram_bytes, .fill_seed = seed};
	struct bench_guest *g = NULL;
	uint64_t len, off = 0;
	uint8_t *ram;
	int fd, ret = bench_guest_create(&ga, &g);

	if (ret)
		return ret;
	ram = bench_guest_ram(g, &len);
	fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
	if (fd < 0) {
		ret = -errno;
		goto out;
	}
	while (off < len) {
		ssize_t w = write(fd, ram + off, len - off);

		if (w < 0 && errno == EINTR)
			continue;
		if (w < 0) {
			ret = -errno;
			break;
		}
		off += (uint64_t)w;
	}
	if (close(fd) < 0 && !ret)
		ret = -errno;
out:
	bench_guest_destroy(g);
	return ret;
}
