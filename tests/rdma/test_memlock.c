/* SPDX-License-Identifier: MIT */
/*
 * RLIMIT_MEMLOCK for real: the test process drops CAP_IPC_LOCK (root ignores
 * the limit otherwise) and lowers the limit to the kernel's default, 8 MiB.
 * Pin-all of more than that is refused up front with a clear error; AUTO then
 * picks chunked registration within the limit, and a transfer of four times
 * the limit works with the destination in another process (its own limit),
 * writing into shared memory the test compares.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <linux/capability.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

#define LIMIT  (8 * MIB)
#define REGION (32 * MIB)

static void limit_memlock(uint64_t bytes)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3};
	struct __user_cap_data_struct data[2];
	struct rlimit rl = {bytes, bytes};

	memset(data, 0, sizeof(data));
	cr_assert_eq(syscall(SYS_capget, &hdr, data), 0);
	data[CAP_IPC_LOCK / 32].effective &= ~(1u << (CAP_IPC_LOCK % 32));
	data[CAP_IPC_LOCK / 32].permitted &= ~(1u << (CAP_IPC_LOCK % 32));
	cr_assert_eq(syscall(SYS_capset, &hdr, data), 0, "capset: %s", strerror(errno));
	cr_assert_eq(setrlimit(RLIMIT_MEMLOCK, &rl), 0);
}

Test(rdma_memlock, pin_all_beyond_the_limit_refused, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_block b;
	struct rt_env env;

	rt_env_or_skip(&env);
	limit_memlock(LIMIT);
	b = (struct ferry_rdma_block){rt_map(REGION), REGION};
	ferry_rdma_dest_attr_init(&da);
	da.host = env.ip;
	rt_id(da.id, 4);
	da.blocks = &b;
	da.n_blocks = 1;
	da.reg = FERRY_RDMA_REG_PIN_ALL;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -ENOMEM);
	/* A budget above the limit is refused too. */
	da.reg = FERRY_RDMA_REG_CHUNKED;
	da.memlock_budget = 2 * LIMIT;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -ENOMEM);
	/* Not even one chunk per lane. */
	da.memlock_budget = 0;
	da.lanes = 16;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -ENOMEM);
	da.lanes = 1;
	da.memlock_budget = 2 * MIB;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), 0);

	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = ferry_rdma_dest_port(dst);
	rt_id(sa.id, 4);
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.reg = FERRY_RDMA_REG_PIN_ALL;
	cr_assert_eq(rt_source_open(&sa, &src), -ENOMEM);
	cr_assert_eq(ferry_rdma_dest_close(dst), 0);
	rt_unmap(b.host, REGION);
}

struct child_report {
	int ret;
	int reg;
	uint64_t reg_count, dereg_count, registered;
};

/* The destination, in a process of its own. */
static int run_dest(const char *ip, struct ferry_rdma_block *b, int fd)
{
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_dest *dst;
	struct ferry_rdma_stats st;
	struct child_report rep = {0};
	uint16_t port;
	int ret;

	ferry_rdma_dest_attr_init(&da);
	da.host = ip;
	rt_id(da.id, 5);
	da.lanes = 2;
	da.blocks = b;
	da.n_blocks = 1;
	da.timeout_ms = 30000;
	ret = ferry_rdma_dest_create(&da, &dst);
	port = ret ? 0 : ferry_rdma_dest_port(dst);
	if (write(fd, &port, sizeof(port)) != sizeof(port) || ret)
		return 1;
	rep.ret = ferry_rdma_dest_accept(dst, 30000);
	if (!rep.ret)
		rep.ret = ferry_rdma_dest_wait_flush(dst, 1, 60000);
	ferry_rdma_dest_stats(dst, &st);
	rep.reg = st.reg;
	rep.reg_count = st.reg_count;
	rep.dereg_count = st.dereg_count;
	rep.registered = st.registered_bytes;
	/* Let the source close first; it disconnects. */
	usleep(200 * 1000);
	if (!rep.ret)
		rep.ret = ferry_rdma_dest_close(dst);
	else
		ferry_rdma_dest_destroy(dst);
	return write(fd, &rep, sizeof(rep)) == sizeof(rep) ? 0 : 1;
}

Test(rdma_memlock, auto_goes_chunked_within_the_limit, .timeout = 120)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block sb, db;
	struct ferry_rdma_stats st;
	struct rt_lane_result res[2];
	struct child_report rep;
	struct rt_plan plan;
	struct rt_env env;
	uint16_t port = 0;
	int pfd[2], status, ret;
	double t0, ms;
	pid_t pid;

	rt_env_or_skip(&env);
	limit_memlock(LIMIT);
	db.host = mmap(NULL, REGION, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	db.length = REGION;
	cr_assert_neq(db.host, MAP_FAILED);
	cr_assert_eq(pipe(pfd), 0);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		close(pfd[0]);
		_exit(run_dest(env.ip, &db, pfd[1]));
	}
	close(pfd[1]);
	/* After the fork: pages shared copy-on-write with the child would be copied when pinned. */
	sb = (struct ferry_rdma_block){rt_map(REGION), REGION};
	cr_assert_not_null(sb.host);
	rt_fill(sb.host, REGION, 31);
	cr_assert_eq(read(pfd[0], &port, sizeof(port)), sizeof(port));
	cr_assert_neq(port, 0, "the destination process could not listen");

	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = port;
	rt_id(sa.id, 5);
	sa.lanes = 2;
	sa.blocks = &sb;
	sa.n_blocks = 1;
	ret = rt_source_open(&sa, &src);
	cr_assert_eq(ret, 0, "source_create: %s", ferry_strerror(ret));
	rt_plan_make(&plan, &sb, 1, 2, 64, 5, 8);
	t0 = rt_now_ms();
	rt_run_lanes(src, &plan, 8, 1, res);
	ms = rt_now_ms() - t0;
	for (int l = 0; l < 2; l++)
		cr_assert(!res[l].write_err && !res[l].flush_err, "lane %d: %s / %s", l,
			  ferry_strerror(res[l].write_err), ferry_strerror(res[l].flush_err));
	ferry_rdma_source_stats(src, &st);
	cr_assert_eq(st.reg, FERRY_RDMA_REG_CHUNKED);
	cr_assert_eq(st.peer_reg, FERRY_RDMA_REG_CHUNKED);
	cr_assert_leq(st.registered_bytes, LIMIT);
	cr_assert_gt(st.dereg_count, 0);
	cr_assert_eq(ferry_rdma_source_close(src), 0);

	cr_assert_eq(read(pfd[0], &rep, sizeof(rep)), sizeof(rep));
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	cr_assert_eq(rep.ret, 0, "destination: %s", ferry_strerror(rep.ret));
	cr_assert_eq(rep.reg, FERRY_RDMA_REG_CHUNKED);
	cr_assert_leq(rep.registered, LIMIT);
	cr_assert_gt(rep.dereg_count, 0);
	cr_assert_eq(rt_check(&plan, &sb, &db), 0);
	cr_log_info("8 MiB memlock, %.1f MiB moved in %.0f ms: source %lu registrations (%.0f ms), "
		    "destination %lu",
		    plan.bytes / (double)MIB, ms, (unsigned long)st.reg_count, st.reg_ns / 1e6,
		    (unsigned long)rep.reg_count);
	rt_plan_free(&plan);
	close(pfd[0]);
	rt_unmap(sb.host, REGION);
	munmap(db.host, REGION);
}
