/* SPDX-License-Identifier: MIT */
/*
 * ferry-rdma-bw: RDMA WRITE throughput of ferry's data path, shaped like
 * perftest's `ib_write_bw -R -q Q -s S -n N` so that the two can be compared
 * on the same device: Q lanes (queue pairs), each posting N writes of S bytes
 * (one run of S bytes is one work request), timed from the first post to the
 * last lane's acknowledged flush, reported in MiB/s (perftest's "MB/sec" is
 * 2^20 bytes per second). Destination and source run in this process on one
 * device; each lane writes its own slice of the region, round and round.
 *
 * Usage: ferry-rdma-bw -a ADDR [-q LANES] [-s BYTES] [-n ITERS] [-m REGION_MIB]
 *                      [-r auto|pin-all|chunked|odp] [-R REPEATS] [-c CHUNK_KIB]
 *                      [-b BUDGET_MIB]
 * Prints one line per repeat and, with -R > 1, the median:
 *   ferry_write_bw q=2 s=65536 n=1024 reg=pin-all MiB/s=51.3 setup_ms=... reg_ms=...
 * Exit status 0, or 1 with the error on stderr (2 for usage, 77 for no RDMA device).
 */
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/log.h>
#include <ferry/rdma.h>

#define MIB (1024.0 * 1024.0)

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

struct lane {
	struct ferry_rdma_source *src;
	pthread_barrier_t *start;
	uint32_t index;
	uint64_t slice_off, slice_len, size, iters;
	int err;
	double t_end;
};

static void *lane_main(void *a)
{
	struct lane *l = a;
	struct ferry_rdma_run runs[32];
	uint64_t pos = 0, done = 0;

	pthread_barrier_wait(l->start);
	while (done < l->iters && !l->err) {
		size_t k = 0;

		for (; k < 32 && done + k < l->iters; k++) {
			if (pos + l->size > l->slice_len)
				pos = 0;
			runs[k] = (struct ferry_rdma_run){
			    .block = 0, .offset = l->slice_off + pos, .length = l->size};
			pos += l->size;
		}
		l->err = ferry_rdma_source_write(l->src, l->index, runs, k);
		done += k;
	}
	if (!l->err)
		l->err = ferry_rdma_source_flush(l->src, l->index, 1);
	l->t_end = now_ms();
	return NULL;
}

static int parse_reg(const char *s, enum ferry_rdma_reg *r)
{
	static const enum ferry_rdma_reg all[] = {FERRY_RDMA_REG_AUTO, FERRY_RDMA_REG_PIN_ALL,
						  FERRY_RDMA_REG_CHUNKED, FERRY_RDMA_REG_ODP};

	for (size_t i = 0; i < sizeof(all) / sizeof(all[0]); i++)
		if (!strcmp(s, ferry_rdma_reg_name(all[i]))) {
			*r = all[i];
			return 0;
		}
	return -1;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

/* One measured run; returns MiB/s, or a negative error. */
static double run_once(const char *addr, uint32_t q, uint64_t size, uint64_t iters, uint64_t region,
		       enum ferry_rdma_reg reg, uint64_t chunk, uint64_t budget, void *smem,
		       void *dmem)
{
	struct ferry_rdma_block sb = {smem, region}, db = {dmem, region};
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_stats ss, ds;
	struct lane lanes[FERRY_RDMA_MAX_LANES];
	pthread_t th[FERRY_RDMA_MAX_LANES];
	pthread_barrier_t start;
	double t_setup, setup_ms, t0, t1 = 0, mibs;
	int ret;

	t_setup = now_ms();
	ferry_rdma_dest_attr_init(&da);
	da.host = addr;
	memset(da.id, 0x42, sizeof(da.id));
	da.lanes = q;
	da.blocks = &db;
	da.n_blocks = 1;
	da.reg = reg;
	da.chunk_size = chunk;
	da.memlock_budget = budget;
	ret = ferry_rdma_dest_create(&da, &dst);
	if (ret) {
		fprintf(stderr, "ferry-rdma-bw: destination: %s\n", ferry_strerror(ret));
		return ret;
	}
	ferry_rdma_source_attr_init(&sa);
	sa.host = addr;
	sa.port = ferry_rdma_dest_port(dst);
	memset(sa.id, 0x42, sizeof(sa.id));
	sa.lanes = q;
	sa.blocks = &sb;
	sa.n_blocks = 1;
	sa.reg = reg;
	sa.chunk_size = chunk;
	sa.memlock_budget = budget;
	ret = ferry_rdma_source_create(&sa, &src);
	if (!ret)
		ret = ferry_rdma_source_connect(src);
	if (!ret)
		ret = ferry_rdma_dest_accept(dst, 10000);
	if (ret) {
		fprintf(stderr, "ferry-rdma-bw: connect: %s\n", ferry_strerror(ret));
		ferry_rdma_source_destroy(src);
		ferry_rdma_dest_destroy(dst);
		return ret;
	}
	setup_ms = now_ms() - t_setup;

	pthread_barrier_init(&start, NULL, q + 1);
	for (uint32_t i = 0; i < q; i++) {
		lanes[i] = (struct lane){.src = src,
					 .start = &start,
					 .index = i,
					 .slice_off = region / q * i,
					 .slice_len = region / q,
					 .size = size,
					 .iters = iters};
		pthread_create(&th[i], NULL, lane_main, &lanes[i]);
	}
	pthread_barrier_wait(&start);
	t0 = now_ms();
	for (uint32_t i = 0; i < q; i++) {
		pthread_join(th[i], NULL);
		if (lanes[i].err && !ret)
			ret = lanes[i].err;
		if (lanes[i].t_end > t1)
			t1 = lanes[i].t_end;
	}
	pthread_barrier_destroy(&start);
	ferry_rdma_source_stats(src, &ss);
	ferry_rdma_dest_stats(dst, &ds);
	if (ret) {
		fprintf(stderr, "ferry-rdma-bw: transfer: %s\n", ferry_strerror(ret));
	} else {
		mibs = (double)size * iters * q / MIB / ((t1 - t0) / 1e3);
		printf("ferry_write_bw q=%u s=%lu n=%lu reg=%s peer_reg=%s MiB/s=%.2f ms=%.0f "
		       "setup_ms=%.1f reg_ms_src=%.1f reg_ms_dst=%.1f writes=%lu signaled=%lu\n",
		       q, (unsigned long)size, (unsigned long)iters, ferry_rdma_reg_name(ss.reg),
		       ferry_rdma_reg_name(ss.peer_reg), mibs, t1 - t0, setup_ms, ss.reg_ns / 1e6,
		       ds.reg_ns / 1e6, (unsigned long)ss.writes, (unsigned long)ss.signaled);
		fflush(stdout);
	}
	ferry_rdma_source_close(src);
	ferry_rdma_dest_close(dst);
	return ret ? ret : mibs;
}

int main(int argc, char **argv)
{
	const char *addr = NULL;
	uint32_t q = 1, repeats = 1;
	uint64_t size = 65536, iters = 1000, region = 64, chunk = 0, budget = 0;
	enum ferry_rdma_reg reg = FERRY_RDMA_REG_PIN_ALL;
	double results[64];
	void *smem, *dmem;
	int c;

	while ((c = getopt(argc, argv, "a:q:s:n:m:r:R:c:b:v")) != -1) {
		switch (c) {
		case 'a':
			addr = optarg;
			break;
		case 'q':
			q = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 's':
			size = strtoull(optarg, NULL, 0);
			break;
		case 'n':
			iters = strtoull(optarg, NULL, 0);
			break;
		case 'm':
			region = strtoull(optarg, NULL, 0);
			break;
		case 'c':
			chunk = strtoull(optarg, NULL, 0) * 1024;
			break;
		case 'b':
			budget = strtoull(optarg, NULL, 0) << 20;
			break;
		case 'R':
			repeats = (uint32_t)strtoul(optarg, NULL, 0);
			break;
		case 'v':
			ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_INFO);
			break;
		case 'r':
			if (parse_reg(optarg, &reg)) {
				fprintf(stderr, "ferry-rdma-bw: unknown registration '%s'\n",
					optarg);
				return 2;
			}
			break;
		default:
			fprintf(stderr,
				"usage: ferry-rdma-bw -a ADDR [-q LANES] [-s BYTES] [-n ITERS] "
				"[-m REGION_MIB] [-r REG] [-R REPEATS] [-c CHUNK_KIB] "
				"[-b BUDGET_MIB] [-v]\n");
			return 2;
		}
	}
	if (!addr || !q || q > FERRY_RDMA_MAX_LANES || !size || !iters || !repeats ||
	    repeats > 64 || (region << 20) / q < size) {
		fprintf(stderr,
			"ferry-rdma-bw: need -a ADDR, 1..%d lanes, 1..64 repeats, and a "
			"region of at least LANES x SIZE\n",
			FERRY_RDMA_MAX_LANES);
		return 2;
	}
	if (ferry_rdma_devices(NULL, 0) < 0) {
		fprintf(stderr, "ferry-rdma-bw: no RDMA device\n");
		return 77;
	}
	region <<= 20;
	smem = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dmem = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (smem == MAP_FAILED || dmem == MAP_FAILED) {
		perror("mmap");
		return 1;
	}
	memset(smem, 0x5a, region);
	for (uint32_t r = 0; r < repeats; r++) {
		results[r] = run_once(addr, q, size, iters, region, reg, chunk, budget, smem, dmem);
		if (results[r] < 0)
			return 1;
	}
	if (repeats > 1) {
		qsort(results, repeats, sizeof(results[0]), cmp_double);
		printf("ferry_write_bw_median q=%u s=%lu MiB/s=%.2f (of %u)\n", q,
		       (unsigned long)size, results[repeats / 2], repeats);
	}
	munmap(smem, region);
	munmap(dmem, region);
	return 0;
}
