/* SPDX-License-Identifier: MIT */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ferry/dirty.h>
#include <ferry/error.h>

#include "guest.h"

#define PAGE	  4096u
#define HUGE_PAGE (2u << 20)
#define MAX_VCPUS 64

struct vcpu {
	struct bench_guest *g;
	pthread_t thread;
	uint32_t index;
	uint64_t first, count; /* pages of its share */
	uint32_t rng;
};

struct bench_guest {
	struct bench_guest_attr attr;
	uint8_t *ram;
	uint64_t npages;
	struct bench_devices devs;
	struct ferry_dirty_log *log;
	const char *log_kind;
	bool mark_writes; /* explicit log: the guest reports its own writes */
	struct vcpu vcpu[MAX_VCPUS];
	bool vcpus_running;

	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool quit;
	atomic_bool paused; /* requested by stop */
	atomic_int parked;  /* vCPUs that acknowledged the stop */
	atomic_int throttle_pct;
	atomic_uint_fast64_t writes;
};

static uint64_t now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
	struct timespec ts = {.tv_sec = (time_t)(ns / 1000000000ull),
			      .tv_nsec = (long)(ns % 1000000000ull)};
	nanosleep(&ts, NULL);
}

static uint32_t xorshift(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

/* The value of word 0 of page @pg's pattern: words i hold it plus i times a constant. */
static uint64_t fill_word(uint32_t *s)
{
	uint64_t hi = xorshift(s);
	uint64_t lo = xorshift(s);

	return (hi << 32) | lo | 1;
}

static void fill_ram(uint8_t *ram, uint64_t npages, uint32_t seed)
{
	uint32_t s = seed;

	for (uint64_t pg = 0; pg < npages; pg++) {
		uint64_t *w = (uint64_t *)(void *)(ram + pg * PAGE);
		uint64_t v = fill_word(&s);

		/* First byte 0 (the A-B counter), the rest non-zero and page-specific. */
		for (unsigned i = 0; i < PAGE / 8; i++)
			w[i] = v + i * 0x9e3779b97f4a7c15ull;
		ram[pg * PAGE] = 0;
	}
}

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23 /* Linux 5.14 UAPI; older headers lack it */
#endif

struct populate_job {
	uint8_t *start;
	uint64_t len;
};

static void *populate_thread(void *arg)
{
	struct populate_job *j = arg;

	/* Older kernels: touch each page instead. */
	if (madvise(j->start, j->len, MADV_POPULATE_WRITE) != 0)
		for (uint64_t off = 0; off < j->len; off += PAGE)
			((volatile uint8_t *)j->start)[off] = 0;
	return NULL;
}

/* Fault every page in, one thread per online CPU, each on its own slice. */
static void populate(uint8_t *ram, uint64_t len)
{
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	int n = ncpu < 1 ? 1 : ncpu > 16 ? 16 : (int)ncpu;
	pthread_t th[16];
	struct populate_job jobs[16];
	uint64_t slice = (len / (uint64_t)n + HUGE_PAGE - 1) & ~(uint64_t)(HUGE_PAGE - 1);
	int started = 0;

	for (int i = 0; i < n; i++) {
		uint64_t off = slice * (uint64_t)i;

		if (off >= len)
			break;
		jobs[i].start = ram + off;
		jobs[i].len = off + slice > len ? len - off : slice;
		if (pthread_create(&th[i], NULL, populate_thread, &jobs[i]) != 0) {
			populate_thread(&jobs[i]);
			continue;
		}
		started |= 1 << i;
	}
	for (int i = 0; i < n; i++)
		if (started & (1 << i))
			pthread_join(th[i], NULL);
}

int bench_guest_create(const struct bench_guest_attr *attr, struct bench_guest **out)
{
	struct bench_guest *g;

	if (!attr->ram_bytes || attr->ram_bytes % HUGE_PAGE || attr->vcpus > MAX_VCPUS)
		return -EINVAL;
	g = calloc(1, sizeof(*g));
	if (!g)
		return -ENOMEM;
	g->attr = *attr;
	g->npages = attr->ram_bytes / PAGE;
	pthread_mutex_init(&g->lock, NULL);
	pthread_cond_init(&g->cond, NULL);
	g->log_kind = "none";
	/* Over-allocate to align to 2 MiB, so huge pages can back it. */
	{
		size_t len = attr->ram_bytes + HUGE_PAGE;
		uint8_t *p =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		uintptr_t a;

		if (p == MAP_FAILED) {
			free(g);
			return -errno;
		}
		a = ((uintptr_t)p + HUGE_PAGE - 1) & ~(uintptr_t)(HUGE_PAGE - 1);
		if (a > (uintptr_t)p)
			munmap(p, a - (uintptr_t)p);
		if ((uintptr_t)p + len > a + attr->ram_bytes)
			munmap((void *)(a + attr->ram_bytes),
			       (uintptr_t)p + len - a - attr->ram_bytes);
		g->ram = (uint8_t *)a;
	}
	madvise(g->ram, attr->ram_bytes, attr->huge ? MADV_HUGEPAGE : MADV_NOHUGEPAGE);
	if (attr->prefault)
		populate(g->ram, attr->ram_bytes);
	if (attr->fill_seed)
		fill_ram(g->ram, g->npages, attr->fill_seed);
	bench_devices_fill(&g->devs, attr->fill_seed ? attr->fill_seed : 1);
	*out = g;
	return 0;
}

/* ---- vCPUs ---------------------------------------------------------------------- */

static void park_if_paused(struct bench_guest *g)
{
	if (!atomic_load(&g->paused))
		return;
	pthread_mutex_lock(&g->lock);
	atomic_fetch_add(&g->parked, 1);
	pthread_cond_broadcast(&g->cond);
	while (atomic_load(&g->paused) && !atomic_load(&g->quit))
		pthread_cond_wait(&g->cond, &g->lock);
	atomic_fetch_sub(&g->parked, 1);
	pthread_mutex_unlock(&g->lock);
}

/* Sleep, but wake at once for a stop or quit so that stopping stays fast. */
static void nap(struct bench_guest *g, uint64_t ns)
{
	uint64_t end = now_ns() + ns;

	for (;;) {
		uint64_t t = now_ns();

		if (t >= end || atomic_load(&g->paused) || atomic_load(&g->quit))
			return;
		sleep_ns(end - t > 1000000 ? 1000000 : end - t);
	}
}

static void write_page(struct bench_guest *g, uint64_t pg, uint64_t value)
{
	uint8_t *p = g->ram + pg * PAGE;

	if (g->attr.pattern == BENCH_PATTERN_AB)
		p[0]++;
	else
		memcpy(p + 8, &value, sizeof(value));
	/* An embedder without a tracking source reports its own writes. */
	if (g->mark_writes)
		ferry_dirty_log_mark(g->log, 0, pg * PAGE, PAGE);
	atomic_fetch_add_explicit(&g->writes, 1, memory_order_relaxed);
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	struct bench_guest *g = v->g;
	uint64_t rate_pages = g->attr.dirty_rate / PAGE / (g->attr.vcpus ? g->attr.vcpus : 1);
	uint64_t next = now_ns(), seq = 0, cursor = 0;

	while (!atomic_load(&g->quit)) {
		/* A batch of 64 page writes between checks of stop, rate and throttle. */
		uint64_t t_batch = now_ns();

		park_if_paused(g);
		if (atomic_load(&g->quit))
			break;
		for (int i = 0; i < 64; i++) {
			uint64_t pg;

			switch (g->attr.pattern) {
			case BENCH_PATTERN_UNIFORM:
				pg = v->first + xorshift(&v->rng) % v->count;
				break;
			case BENCH_PATTERN_HOT: {
				uint64_t hot = v->count / 10 ? v->count / 10 : 1;

				pg = v->first + (xorshift(&v->rng) % 10 < 9
						     ? xorshift(&v->rng) % hot
						     : xorshift(&v->rng) % v->count);
				break;
			}
			default: /* ab, sequential: ascending, wrapping */
				pg = v->first + cursor;
				cursor = cursor + 1 == v->count ? 0 : cursor + 1;
				break;
			}
			write_page(g, pg, ++seq);
		}
		/*
		 * Pacing. With a rate, each batch is due a fixed time after the
		 * previous one, and a throttle of pct% stretches that time by
		 * 100 / (100 - pct): a throttled vCPU dirties pct% less, as a
		 * throttled real vCPU running a rate-bound workload would. A
		 * deficit (a pause, a slow machine) is made up for at most
		 * 100 ms, never in one long burst. Without a rate the vCPU
		 * writes as fast as it can and the throttle takes pct% of its
		 * time, which still lets it dirty a lot: 1% of a memory-bound
		 * loop is megabytes per second.
		 */
		{
			int pct = atomic_load(&g->throttle_pct);
			uint64_t t = now_ns();

			if (rate_pages) {
				uint64_t step = 64 * 1000000000ull / rate_pages;

				if (pct > 0)
					step = step * 100 / (uint64_t)(100 - pct);
				next += step;
				if (next > t)
					nap(g, next - t);
				else if (t - next > 100000000ull)
					next = t - 100000000ull;
			} else if (pct > 0) {
				nap(g, (t - t_batch) * (uint64_t)pct / (uint64_t)(100 - pct));
			}
		}
	}
	return NULL;
}

int bench_guest_start_vcpus(struct bench_guest *g)
{
	uint64_t share;

	if (g->vcpus_running || g->attr.vcpus == 0)
		return 0;
	atomic_store(&g->quit, false);
	atomic_store(&g->paused, false);
	share = g->npages / g->attr.vcpus;
	for (uint32_t i = 0; i < g->attr.vcpus; i++) {
		struct vcpu *v = &g->vcpu[i];
		int ret;

		v->g = g;
		v->index = i;
		v->first = share * i;
		v->count = i + 1 == g->attr.vcpus ? g->npages - v->first : share;
		v->rng = 0x12345u + i * 7919u;
		ret = pthread_create(&v->thread, NULL, vcpu_thread, v);
		if (ret) {
			g->attr.vcpus = i; /* those started get joined */
			bench_guest_stop_vcpus(g);
			return -ret;
		}
	}
	g->vcpus_running = true;
	return 0;
}

void bench_guest_stop_vcpus(struct bench_guest *g)
{
	if (!g->vcpus_running)
		return;
	pthread_mutex_lock(&g->lock);
	atomic_store(&g->quit, true);
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	for (uint32_t i = 0; i < g->attr.vcpus; i++)
		pthread_join(g->vcpu[i].thread, NULL);
	g->vcpus_running = false;
}

/* The engine's vcpu ops: stop waits until every vCPU is parked. */
static int op_stop(void *opaque)
{
	struct bench_guest *g = opaque;

	if (!g->vcpus_running)
		return 0;
	pthread_mutex_lock(&g->lock);
	atomic_store(&g->paused, true);
	while (atomic_load(&g->parked) < (int)g->attr.vcpus)
		pthread_cond_wait(&g->cond, &g->lock);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int op_resume(void *opaque)
{
	struct bench_guest *g = opaque;

	pthread_mutex_lock(&g->lock);
	atomic_store(&g->paused, false);
	pthread_cond_broadcast(&g->cond);
	pthread_mutex_unlock(&g->lock);
	return 0;
}

static int op_throttle(void *opaque, int pct)
{
	struct bench_guest *g = opaque;

	if (pct < 0 || pct > 99)
		return -EINVAL;
	atomic_store(&g->throttle_pct, pct);
	return 0;
}

/* ---- attach ------------------------------------------------------------------------ */

static int register_common(struct bench_guest *g, struct ferry_engine *eng)
{
	const struct ferry_ram_block blk = {
	    .name = "ram0",
	    .host = g->ram,
	    .length = g->attr.ram_bytes,
	    .page_size = g->attr.huge ? HUGE_PAGE : PAGE,
	    .numa_node = -1,
	};
	int ret = ferry_engine_add_ram(eng, &blk);

	if (ret < 0)
		return ret;
	return bench_devices_register(&g->devs, ferry_engine_devices(eng));
}

static int make_dirty_log(struct bench_guest *g)
{
	const struct ferry_dirty_block blk = {
	    .host = g->ram,
	    .length = g->attr.ram_bytes,
	    .page_size = g->attr.huge ? HUGE_PAGE : PAGE,
	};
	int ret = -EOPNOTSUPP;

	if (g->attr.dirty != BENCH_DIRTY_EXPLICIT) {
		const struct ferry_dirty_uffd_attr ua = {.size = sizeof(ua),
							 .mode = FERRY_DIRTY_UFFD_AUTO};

		ret = ferry_dirty_log_create_uffd(&blk, 1, &ua, &g->log);
		if (ret == 0) {
			g->log_kind = ferry_dirty_log_kind(g->log);
			return 0;
		}
		if (g->attr.dirty == BENCH_DIRTY_UFFD)
			return ret;
	}
	ret = ferry_dirty_log_create_explicit(&blk, 1, &g->log);
	if (ret == 0) {
		g->log_kind = "explicit";
		g->mark_writes = true;
	}
	return ret;
}

int bench_guest_attach_source(struct bench_guest *g, struct ferry_engine *eng)
{
	const struct ferry_vcpu_ops ops = {
	    .stop = op_stop,
	    .resume = op_resume,
	    .throttle = op_throttle,
	    .opaque = g,
	};
	int ret = register_common(g, eng);

	if (!ret)
		ret = make_dirty_log(g);
	if (!ret)
		ret = ferry_engine_set_dirty_log(eng, g->log);
	if (!ret)
		ret = ferry_engine_set_vcpu_ops(eng, &ops);
	if (!ret)
		ret = bench_guest_start_vcpus(g);
	return ret;
}

int bench_guest_attach_dest(struct bench_guest *g, struct ferry_engine *eng)
{
	return register_common(g, eng);
}

uint8_t *bench_guest_ram(struct bench_guest *g, uint64_t *len)
{
	if (len)
		*len = g->attr.ram_bytes;
	return g->ram;
}

struct bench_devices *bench_guest_devices(struct bench_guest *g)
{
	return &g->devs;
}

const char *bench_guest_dirty_kind(struct bench_guest *g)
{
	return g->log_kind;
}

uint64_t bench_guest_page_writes(struct bench_guest *g)
{
	return atomic_load(&g->writes);
}

/* The A-B check over shares of @nvcpus vCPUs (the layout of the guest that wrote it). */
static uint64_t check_ab(struct bench_guest *g, uint32_t nvcpus, char *why, size_t whylen)
{
	uint32_t n = nvcpus ? nvcpus : 1;
	uint64_t share = g->npages / n, bad = 0;
	size_t used = 0;

	if (whylen)
		why[0] = '\0';
	for (uint32_t v = 0; v < n; v++) {
		uint64_t first = share * v, count = v + 1 == n ? g->npages - first : share;
		int edges = 0;

		for (uint64_t i = 1; i < count; i++) {
			uint8_t prev = g->ram[(first + i - 1) * PAGE];
			uint8_t cur = g->ram[(first + i) * PAGE];

			if (cur == prev)
				continue;
			/* The vCPU stopped here: earlier pages were incremented once more. */
			if ((uint8_t)(prev - 1) == cur && edges == 0) {
				edges++;
				continue;
			}
			if (bad < 10 && used + 1 < whylen)
				used += (size_t)snprintf(why + used, whylen - used,
							 "page %" PRIu64 ": %u after %u; ",
							 first + i, cur, prev);
			bad++;
		}
	}
	return bad;
}

uint64_t bench_guest_check_ab(struct bench_guest *g, char *why, size_t whylen)
{
	return check_ab(g, g->attr.vcpus, why, whylen);
}

int bench_guest_compare(struct bench_guest *g, struct bench_guest *other, char *why, size_t whylen)
{
	if (g->attr.ram_bytes != other->attr.ram_bytes) {
		snprintf(why, whylen, "RAM sizes differ");
		return -1;
	}
	for (uint64_t pg = 0; pg < g->npages; pg++) {
		if (memcmp(g->ram + pg * PAGE, other->ram + pg * PAGE, PAGE) != 0) {
			snprintf(why, whylen, "page %" PRIu64 " differs", pg);
			return -1;
		}
	}
	return bench_devices_compare(&g->devs, &other->devs, why, whylen);
}

uint64_t bench_guest_verify(struct bench_guest *g, const struct bench_guest_attr *attr, char *why,
			    size_t whylen)
{
	uint64_t bad = check_ab(g, attr->vcpus, why, whylen);
	size_t used = strlen(why);
	uint32_t s = attr->fill_seed;
	struct bench_devices expect;
	char dwhy[64];

	for (uint64_t pg = 0; pg < g->npages; pg++) {
		const uint8_t *p = g->ram + pg * PAGE;
		uint8_t ref[PAGE];
		uint64_t *w = (uint64_t *)(void *)ref;
		uint64_t v = attr->fill_seed ? fill_word(&s) : 0;
		bool ok;

		for (unsigned i = 0; i < PAGE / 8; i++)
			w[i] = attr->fill_seed ? v + i * 0x9e3779b97f4a7c15ull : 0;
		/* Byte 0 is the A-B counter; bytes 8..15 the other patterns' counter. */
		ok = memcmp(p + 1, ref + 1, 7) == 0;
		if (attr->pattern == BENCH_PATTERN_AB)
			ok = ok && memcmp(p + 8, ref + 8, PAGE - 8) == 0;
		else
			ok = ok && memcmp(p + 16, ref + 16, PAGE - 16) == 0;
		if (!ok) {
			if (bad < 10 && used + 1 < whylen)
				used += (size_t)snprintf(why + used, whylen - used,
							 "page %" PRIu64 ": content differs; ", pg);
			bad++;
		}
	}
	bench_devices_fill(&expect, attr->fill_seed ? attr->fill_seed : 1);
	if (bench_devices_compare(&expect, &g->devs, dwhy, sizeof(dwhy)) != 0) {
		if (used + 1 < whylen)
			snprintf(why + used, whylen - used, "device field %s differs", dwhy);
		bad++;
	}
	return bad;
}

void bench_guest_destroy(struct bench_guest *g)
{
	if (!g)
		return;
	bench_guest_stop_vcpus(g);
	ferry_dirty_log_destroy(g->log);
	munmap(g->ram, g->attr.ram_bytes);
	pthread_cond_destroy(&g->cond);
	pthread_mutex_destroy(&g->lock);
	free(g);
}
