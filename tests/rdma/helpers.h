/* SPDX-License-Identifier: MIT */
/*
 * What the RDMA suites share: finding a usable device (or skipping with the
 * reason), guest-RAM-like regions with a pattern, a transfer driven by one
 * thread per lane, and checks of what landed.
 */
#ifndef FERRY_TESTS_RDMA_HELPERS_H
#define FERRY_TESTS_RDMA_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/rdma.h>

#define MIB (1024ull * 1024ull)
#define PS  4096ull

/* The device the suites use and an IPv4 address on it. */
struct rt_env {
	struct ferry_rdma_device_info dev;
	char ip[64];
};

/*
 * Find an RDMA device with an active port and an IPv4 address on its netdev,
 * or cr_skip_test() saying why (the host of the rig has none: errno 38).
 */
void rt_env_or_skip(struct rt_env *env);
/* Destructive fault injection only inside the soft-RoCE rig (RIG_IP set) as root; else skip. */
void rt_require_rig(void);

/* ferry_rdma_source_create() then _connect(); on failure nothing is left and *@out is NULL. */
int rt_source_open(const struct ferry_rdma_source_attr *attr, struct ferry_rdma_source **out);

/* Route ferry's log to stderr (once per test process). */
void rt_log_stderr(void);

/* An anonymous mapping of @len bytes (zeroed); NULL on failure. */
void *rt_map(size_t len);
void rt_unmap(void *p, size_t len);
/* Fill @p with a pattern derived from @seed and the page number (every page differs). */
void rt_fill(void *p, size_t len, uint64_t seed);

/* A test id derived from @n. */
void rt_id(uint8_t id[FERRY_RDMA_ID_LEN], unsigned n);

/*
 * A transfer plan: the pages of @n_blocks blocks cut into runs of 1..max_run
 * pages, every @hole_every-th run left out (0: none), runs dealt to lanes in
 * groups so that a page always travels on the same lane.
 */
struct rt_plan {
	uint32_t lanes;
	uint32_t n_blocks;
	const struct ferry_rdma_block *blocks;
	struct ferry_rdma_run *runs; /* all runs, lane by lane */
	size_t *lane_first, *lane_count;
	size_t n_runs;
	uint64_t bytes;
};
void rt_plan_make(struct rt_plan *p, const struct ferry_rdma_block *blocks, uint32_t n_blocks,
		  uint32_t lanes, uint32_t max_run, uint32_t hole_every, uint64_t seed);
void rt_plan_free(struct rt_plan *p);

/* Result of one lane thread. */
struct rt_lane_result {
	int write_err; /* first error of write */
	int flush_err;
	size_t runs_given; /* runs passed to write (including the failing call's) */
	double ms;
};

/*
 * Write every lane's runs from its own thread (batches of @batch runs), then
 * flush each lane with @tag. @results: one per lane.
 */
void rt_run_lanes(struct ferry_rdma_source *src, const struct rt_plan *p, size_t batch,
		  uint64_t tag, struct rt_lane_result *results);

/*
 * Compare destination with source: every byte of every run of the plan must
 * be equal; every page of the destination outside the plan must be zero.
 * Returns the number of mismatching pages (and prints the first few).
 */
size_t rt_check(const struct rt_plan *p, const struct ferry_rdma_block *src,
		const struct ferry_rdma_block *dst);

/* Lines of `rdma res show KIND` of processes named like this one (-1 if the tool fails). */
int rt_res_count(const char *kind);

/* Run a shell command (stdout/stderr to ours); returns its exit status. */
int rt_sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Wait until the device's port 1 is ACTIVE with an IPv4 GID (bounded); 0 or -1. */
int rt_wait_port_active(const char *dev, int timeout_ms);

double rt_now_ms(void);

#endif
