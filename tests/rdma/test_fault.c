/* SPDX-License-Identifier: MIT */
/*
 * Faults in the middle of a transfer, injected into the soft-RoCE guest:
 * the link goes down (`ip link set DEV down`) or the RDMA device is removed
 * (`rdma link delete`). The source must report the failure within a bounded
 * time, every lane must see it, and the runs the source reports as not
 * known to be placed must be the only ones that can differ: every page
 * given to a lane and not in its unplaced set has to be in the
 * destination's memory already. Each test restores the link or the device.
 *
 * Destructive, so only inside the rig (RIG_IP set, root); skipped elsewhere.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

#define REGION (96 * MIB)
#define LANES  2

struct fault {
	struct rt_env env;
	struct ferry_rdma_block sb, db;
	struct ferry_rdma_dest *dst;
	struct ferry_rdma_source *src;
	struct rt_plan plan;
	struct rt_lane_result res[LANES]; /* of the last round */
	uint64_t rounds;
	bool once; /* one round only (no fault expected) */
	pthread_t runner;
};

/* Rounds of the whole plan (the same data: the guest is idle) until one fails, for 30 s at most. */
static void *runner_main(void *a)
{
	struct fault *f = a;
	double end = rt_now_ms() + 30000;

	for (uint64_t round = 1; rt_now_ms() < end; round++) {
		bool failed = false;

		rt_run_lanes(f->src, &f->plan, 16, round, f->res);
		f->rounds = round;
		for (uint32_t l = 0; l < LANES; l++)
			failed |= f->res[l].write_err || f->res[l].flush_err;
		if (failed || f->once)
			break;
	}
	return NULL;
}

static void fault_start(struct fault *f)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	int ret;

	rt_require_rig();
	rt_env_or_skip(&f->env);
	f->sb = (struct ferry_rdma_block){rt_map(REGION), REGION};
	f->db = (struct ferry_rdma_block){rt_map(REGION), REGION};
	cr_assert(f->sb.host && f->db.host);
	rt_fill(f->sb.host, REGION, 99);

	ferry_rdma_dest_attr_init(&da);
	da.host = f->env.ip;
	rt_id(da.id, 3);
	da.lanes = LANES;
	da.blocks = &f->db;
	da.n_blocks = 1;
	da.reg = FERRY_RDMA_REG_PIN_ALL;
	da.timeout_ms = 5000;
	da.ack_timeout = 14;
	cr_assert_eq(ferry_rdma_dest_create(&da, &f->dst), 0);

	ferry_rdma_source_attr_init(&sa);
	sa.host = f->env.ip;
	sa.port = ferry_rdma_dest_port(f->dst);
	rt_id(sa.id, 3);
	sa.lanes = LANES;
	sa.blocks = &f->sb;
	sa.n_blocks = 1;
	sa.reg = FERRY_RDMA_REG_PIN_ALL;
	sa.timeout_ms = 5000;
	sa.ack_timeout = 14; /* 67 ms a try: a dead peer shows within about half a second */
	ret = rt_source_open(&sa, &f->src);
	cr_assert_eq(ret, 0, "source_create: %s", ferry_strerror(ret));
	cr_assert_eq(ferry_rdma_dest_accept(f->dst, 5000), 0);
	rt_plan_make(&f->plan, &f->sb, 1, LANES, 32, 0, 5);
	cr_assert_eq(pthread_create(&f->runner, NULL, runner_main, f), 0);
	/* Let the transfer get going. */
	usleep(400 * 1000);
}

/*
 * After the failure: every lane failed, and what a lane was given minus what
 * it reports unplaced is in the destination's memory. Returns the error.
 */
static int fault_check(struct fault *f, double fault_ms)
{
	char why[FERRY_RDMA_MSG_MAX];
	size_t placed_pages = 0, unplaced_bytes = 0;
	double ms;
	int err;

	pthread_join(f->runner, NULL);
	ms = rt_now_ms() - fault_ms;
	err = ferry_rdma_source_status(f->src, why, sizeof(why));
	cr_log_info("failure %.0f ms after the fault, in round %lu: %s (%s)", ms,
		    (unsigned long)f->rounds, ferry_strerror(err), why);
	cr_assert_lt(err, 0, "no failure in 30 s of transfers after the fault");
	cr_assert_lt(ms, 20000, "the failure took %.0f ms to be reported", ms);

	for (uint32_t l = 0; l < LANES; l++) {
		const struct ferry_rdma_run *given = f->plan.runs + f->plan.lane_first[l];
		struct ferry_rdma_run *un;
		uint8_t *mark;
		ssize_t n;

		n = ferry_rdma_source_unplaced(f->src, l, NULL, 0);
		cr_assert_geq(n, 0);
		if (!f->res[l].write_err && !f->res[l].flush_err) {
			/* The lane finished its round (flushed) before the failure reached it. */
			cr_assert_eq(f->res[l].runs_given, f->plan.lane_count[l], "lane %u", l);
			cr_assert_eq(n, 0, "lane %u flushed everything, yet %zd runs unplaced", l,
				     n);
		} else {
			cr_assert_eq(f->res[l].write_err ? f->res[l].write_err
							 : f->res[l].flush_err,
				     err, "lane %u reported another error than the source's", l);
		}
		un = calloc((size_t)n + 1, sizeof(*un));
		cr_assert_not_null(un);
		cr_assert_eq(ferry_rdma_source_unplaced(f->src, l, un, (size_t)n), n);
		mark = calloc(REGION / PS, 1);
		cr_assert_not_null(mark);
		for (ssize_t i = 0; i < n; i++) {
			cr_assert_eq(un[i].block, 0);
			cr_assert_leq(un[i].offset + un[i].length, REGION);
			unplaced_bytes += un[i].length;
			for (uint64_t o = un[i].offset / PS * PS; o < un[i].offset + un[i].length;
			     o += PS)
				mark[o / PS] = 1;
		}
		/*
		 * Known placed: given to the lane in the failed round, not reported
		 * unplaced (earlier rounds were flushed; the data never changed).
		 */
		for (size_t i = 0; i < f->res[l].runs_given; i++) {
			for (uint64_t o = given[i].offset; o < given[i].offset + given[i].length;
			     o += PS) {
				if (mark[o / PS])
					continue;
				cr_assert_eq(
				    memcmp((char *)f->sb.host + o, (char *)f->db.host + o, PS), 0,
				    "lane %u: page at %lu is not placed but not reported", l,
				    (unsigned long)o);
				placed_pages++;
			}
		}
		cr_log_info("lane %u: %zu of %zu runs given, %zd runs (%.1f MiB so far) unplaced",
			    l, f->res[l].runs_given, f->plan.lane_count[l], n,
			    unplaced_bytes / (double)MIB);
		free(mark);
		free(un);
	}
	cr_log_info("%.1f MiB known placed and checked", placed_pages * PS / (double)MIB);
	return err;
}

static void fault_end(struct fault *f)
{
	if (f->src)
		ferry_rdma_source_close(f->src);
	if (f->dst)
		ferry_rdma_dest_close(f->dst);
	rt_plan_free(&f->plan);
	rt_unmap(f->sb.host, REGION);
	rt_unmap(f->db.host, REGION);
}

Test(rdma_fault, link_down, .timeout = 120)
{
	struct fault f = {0};
	double t;
	int err;

	fault_start(&f);
	t = rt_now_ms();
	cr_assert_eq(rt_sh("ip link set %s down", f.env.dev.netdev), 0);
	err = fault_check(&f, t);
	cr_assert(err == -ECONNRESET || err == -ETIMEDOUT || err == -EIO || err == -ENETDOWN,
		  "unexpected %s", ferry_strerror(err));
	cr_assert_eq(rt_sh("ip link set %s up", f.env.dev.netdev), 0);
	cr_assert_eq(rt_wait_port_active(f.env.dev.name, 20000), 0, "the port did not come back");
	fault_end(&f);

	/* The device works again for a new connection. */
	{
		struct fault g = {.once = true};

		fault_start(&g);
		pthread_join(g.runner, NULL);
		for (uint32_t l = 0; l < LANES; l++)
			cr_assert(!g.res[l].write_err && !g.res[l].flush_err,
				  "after the link came "
				  "back, lane %u: %s",
				  l, ferry_strerror(g.res[l].write_err));
		cr_assert_eq(rt_check(&g.plan, &g.sb, &g.db), 0);
		fault_end(&g);
	}
}

/*
 * `rdma link delete` returns only once every user has closed the device, and
 * librdmacm (rdma-core 44) keeps its device context open until the process
 * exits, even with no cm_id left. So this test checks ferry's side (the
 * failure, its bound, the unplaced set, the destination letting go on its
 * own, nothing of ours left in `rdma res`) and leaves the removal blocked:
 * tests/rdma/guest-suite.sh runs it last and checks that the device is gone
 * once this process has exited. Named to sort after link_down.
 */
Test(rdma_fault, removal_of_the_device, .timeout = 120)
{
	struct fault f = {0};
	char why[FERRY_RDMA_MSG_MAX];
	double t;
	int err;
	pid_t pid;

	fault_start(&f);
	t = rt_now_ms();
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		execlp("rdma", "rdma", "link", "delete", f.env.dev.name, (char *)NULL);
		_exit(127);
	}
	err = fault_check(&f, t);
	/*
	 * Both ends are on the removed device: the source hears of it either
	 * from its own DEVICE_REMOVAL event or, first, from the destination
	 * letting go of the lanes (DISCONNECTED); the order of the two events
	 * is the kernel's. Either is the removal, seen from the source.
	 */
	cr_assert(err == -ENODEV || err == -ECONNRESET, "expected the removal, got %s",
		  ferry_strerror(err));
	/* The destination's service thread let go of everything by itself. */
	cr_assert_eq(ferry_rdma_dest_status(f.dst, why, sizeof(why)), -ENODEV);
	cr_log_info("destination: %s", why);
	cr_assert_eq(ferry_rdma_source_close(f.src), err);
	f.src = NULL;
	cr_assert_eq(ferry_rdma_dest_close(f.dst), -ENODEV);
	f.dst = NULL;
	fault_end(&f);
	/* The removal is still waiting for this process (see above), not for ferry's objects. */
	cr_assert_eq(waitpid(pid, NULL, WNOHANG), 0, "rdma link delete finished early");
}
