/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <arpa/inet.h>
#include <errno.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/log.h>

#include "helpers.h"

double rt_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

void rt_log_stderr(void)
{
	const char *v = getenv("FERRY_TEST_LOG");
	int level = FERRY_LOG_WARN;

	if (v && *v)
		level = atoi(v);
	ferry_set_log(ferry_log_stderr, NULL, (enum ferry_log_level)level);
}

static bool ipv4_of(const char *netdev, char *buf, size_t len)
{
	struct ifaddrs *ifa, *i;
	bool found = false;

	if (!netdev[0] || getifaddrs(&ifa))
		return false;
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET ||
		    strcmp(i->ifa_name, netdev))
			continue;
		inet_ntop(AF_INET, &((struct sockaddr_in *)(void *)i->ifa_addr)->sin_addr, buf,
			  (socklen_t)len);
		found = true;
	}
	freeifaddrs(ifa);
	return found;
}

void rt_env_or_skip(struct rt_env *env)
{
	struct ferry_rdma_device_info devs[8];
	int n;

	rt_log_stderr();
	memset(env, 0, sizeof(*env));
	n = ferry_rdma_devices(devs, 8);
	if (n < 0)
		cr_skip_test(
		    "no RDMA device here (%s); tests/rdma/run-in-rig.sh runs this suite in "
		    "a soft-RoCE guest",
		    ferry_strerror(n));
	for (int i = 0; i < n && i < 8; i++) {
		if (!devs[i].port_active || !ipv4_of(devs[i].netdev, env->ip, sizeof(env->ip)))
			continue;
		env->dev = devs[i];
		return;
	}
	cr_skip_test("%d RDMA device(s), none with an active port and an IPv4 address", n);
}

int rt_source_open(const struct ferry_rdma_source_attr *attr, struct ferry_rdma_source **out)
{
	int ret = ferry_rdma_source_create(attr, out);

	if (ret)
		return ret;
	ret = ferry_rdma_source_connect(*out);
	if (ret) {
		ferry_rdma_source_destroy(*out);
		*out = NULL;
	}
	return ret;
}

void rt_require_rig(void)
{
	if (!getenv("RIG_IP") || geteuid() != 0)
		cr_skip_test("fault injection (link down, device removal) runs only inside the "
			     "soft-RoCE rig (RIG_IP unset or not root)");
}

void *rt_map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

void rt_unmap(void *p, size_t len)
{
	if (p)
		munmap(p, len);
}

void rt_fill(void *p, size_t len, uint64_t seed)
{
	uint64_t *w = p;

	for (size_t pg = 0; pg < len / PS; pg++) {
		uint64_t x = seed ^ ((pg + 1) * 0x9e3779b97f4a7c15ull);

		for (size_t j = 0; j < PS / 8; j++) {
			x += 0xbf58476d1ce4e5b9ull;
			w[pg * (PS / 8) + j] = x ^ (x >> 31) ^ 1;
		}
	}
}

void rt_id(uint8_t id[FERRY_RDMA_ID_LEN], unsigned n)
{
	for (unsigned i = 0; i < FERRY_RDMA_ID_LEN; i++)
		id[i] = (uint8_t)(0xa5 ^ (n * 31 + i * 7));
}

static uint64_t rnd(uint64_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 7;
	*s ^= *s << 17;
	return *s;
}

void rt_plan_make(struct rt_plan *p, const struct ferry_rdma_block *blocks, uint32_t n_blocks,
		  uint32_t lanes, uint32_t max_run, uint32_t hole_every, uint64_t seed)
{
	size_t pages = 0, cap, k = 0;
	struct ferry_rdma_run *all;
	uint32_t *owner;
	uint64_t s = seed | 1;

	memset(p, 0, sizeof(*p));
	p->lanes = lanes;
	p->n_blocks = n_blocks;
	p->blocks = blocks;
	for (uint32_t b = 0; b < n_blocks; b++)
		pages += blocks[b].length / PS;
	cap = pages + 1;
	all = calloc(cap, sizeof(*all));
	owner = calloc(cap, sizeof(*owner));
	cr_assert(all && owner);
	for (uint32_t b = 0; b < n_blocks; b++) {
		uint64_t off = 0, len = blocks[b].length;
		size_t nrun = 0;

		while (off < len) {
			uint64_t np = 1 + rnd(&s) % max_run, l = np * PS;

			if (l > len - off)
				l = len - off;
			nrun++;
			if (!hole_every || nrun % hole_every) {
				all[k] =
				    (struct ferry_rdma_run){.block = b, .offset = off, .length = l};
				/* Lanes own 1 MiB stripes: a page always goes on the same lane. */
				owner[k] = (uint32_t)(((blocks[b].length >> 20) * b + (off >> 20)) %
						      lanes);
				p->bytes += l;
				k++;
			}
			off += l;
		}
	}
	p->n_runs = k;
	p->runs = calloc(k + 1, sizeof(*p->runs));
	p->lane_first = calloc(lanes, sizeof(size_t));
	p->lane_count = calloc(lanes, sizeof(size_t));
	cr_assert(p->runs && p->lane_first && p->lane_count);
	{
		size_t at = 0;

		for (uint32_t l = 0; l < lanes; l++) {
			p->lane_first[l] = at;
			for (size_t i = 0; i < k; i++)
				if (owner[i] == l)
					p->runs[at++] = all[i];
			p->lane_count[l] = at - p->lane_first[l];
		}
	}
	free(all);
	free(owner);
}

void rt_plan_free(struct rt_plan *p)
{
	free(p->runs);
	free(p->lane_first);
	free(p->lane_count);
	memset(p, 0, sizeof(*p));
}

struct lane_arg {
	struct ferry_rdma_source *src;
	const struct rt_plan *p;
	uint32_t lane;
	size_t batch;
	uint64_t tag;
	struct rt_lane_result *res;
};

static void *lane_main(void *a)
{
	struct lane_arg *la = a;
	const struct ferry_rdma_run *runs = la->p->runs + la->p->lane_first[la->lane];
	size_t n = la->p->lane_count[la->lane];
	double t0 = rt_now_ms();

	for (size_t i = 0; i < n; i += la->batch) {
		size_t k = n - i < la->batch ? n - i : la->batch;
		int ret = ferry_rdma_source_write(la->src, la->lane, runs + i, k);

		la->res->runs_given += k;
		if (ret) {
			la->res->write_err = ret;
			break;
		}
	}
	if (!la->res->write_err)
		la->res->flush_err = ferry_rdma_source_flush(la->src, la->lane, la->tag);
	la->res->ms = rt_now_ms() - t0;
	return NULL;
}

void rt_run_lanes(struct ferry_rdma_source *src, const struct rt_plan *p, size_t batch,
		  uint64_t tag, struct rt_lane_result *results)
{
	pthread_t th[FERRY_RDMA_MAX_LANES];
	struct lane_arg args[FERRY_RDMA_MAX_LANES];

	for (uint32_t l = 0; l < p->lanes; l++) {
		memset(&results[l], 0, sizeof(results[l]));
		args[l] = (struct lane_arg){src, p, l, batch, tag, &results[l]};
		cr_assert_eq(pthread_create(&th[l], NULL, lane_main, &args[l]), 0);
	}
	for (uint32_t l = 0; l < p->lanes; l++)
		pthread_join(th[l], NULL);
}

size_t rt_check(const struct rt_plan *p, const struct ferry_rdma_block *src,
		const struct ferry_rdma_block *dst)
{
	size_t bad = 0;

	for (uint32_t b = 0; b < p->n_blocks; b++) {
		size_t pages = dst[b].length / PS;
		uint8_t *covered = calloc(pages, 1);
		static const uint8_t zero[PS];

		cr_assert_not_null(covered);
		for (size_t i = 0; i < p->n_runs; i++) {
			const struct ferry_rdma_run *r = &p->runs[i];

			if (r->block != b)
				continue;
			for (uint64_t o = r->offset; o < r->offset + r->length; o += PS)
				covered[o / PS] = 1;
		}
		for (size_t pg = 0; pg < pages; pg++) {
			const uint8_t *d = (const uint8_t *)dst[b].host + pg * PS;
			const uint8_t *s = (const uint8_t *)src[b].host + pg * PS;
			bool ok = covered[pg] ? !memcmp(d, s, PS) : !memcmp(d, zero, PS);

			if (!ok && bad++ < 5)
				cr_log_error("block %u page %zu (%s) differs", b, pg,
					     covered[pg] ? "written" : "left out");
		}
		free(covered);
	}
	return bad;
}

int rt_res_count(const char *kind)
{
	char cmd[128], line[512], comm[64] = "", pat[96];
	int n = 0;
	FILE *f;

	/*
	 * The kernel names the thread that created a resource (its TID), so
	 * match the process name: the suites run one test process at a time.
	 */
	f = fopen("/proc/self/comm", "r");
	if (!f || !fgets(comm, sizeof(comm), f)) {
		if (f)
			fclose(f);
		return -1;
	}
	fclose(f);
	comm[strcspn(comm, "\n")] = 0;
	snprintf(pat, sizeof(pat), " comm %s", comm);
	snprintf(cmd, sizeof(cmd), "rdma res show %s 2>/dev/null", kind);
	f = popen(cmd, "r");
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		line[strcspn(line, "\n")] = 0;
		if (strstr(line, pat)) {
			n++;
			if (getenv("FERRY_TEST_RES"))
				cr_log_info("%s", line);
		}
	}
	if (pclose(f) != 0)
		return -1;
	return n;
}

int rt_sh(const char *fmt, ...)
{
	char cmd[512];
	va_list ap;
	int st;

	va_start(ap, fmt);
	vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	st = system(cmd);
	if (st == -1 || !WIFEXITED(st))
		return -1;
	return WEXITSTATUS(st);
}

int rt_wait_port_active(const char *dev, int timeout_ms)
{
	double end = rt_now_ms() + timeout_ms;
	char path[256], buf[128];

	while (rt_now_ms() < end) {
		FILE *f;
		bool active = false, gid = false;

		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/state", dev);
		f = fopen(path, "r");
		if (f) {
			active = fgets(buf, sizeof(buf), f) && strstr(buf, "ACTIVE");
			fclose(f);
		}
		snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gids/1", dev);
		f = fopen(path, "r");
		if (f) {
			gid = fgets(buf, sizeof(buf), f) && strstr(buf, "ffff:");
			fclose(f);
		}
		if (active && gid)
			return 0;
		usleep(100000);
	}
	return -1;
}
