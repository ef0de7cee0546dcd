/* SPDX-License-Identifier: MIT */
/*
 * Without any RDMA device (the build host; a guest booted with --no-rdma),
 * every entry point says so with FERRY_ENORDMA, promptly and without leaking
 * descriptors: the signal an engine uses to fall back to TCP. Attributes
 * that can never work are refused with -EINVAL before any device is touched,
 * so these run everywhere.
 */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1;
}

static void require_no_device(void)
{
	rt_log_stderr();
	if (ferry_rdma_devices(NULL, 0) > 0)
		cr_skip_test(
		    "this machine has RDMA devices (the suite checks the no-device signals)");
}

Test(rdma_nodev, devices_report_none)
{
	struct ferry_rdma_device_info info[2];

	require_no_device();
	cr_assert_eq(ferry_rdma_devices(info, 2), FERRY_ENORDMA);
}

Test(rdma_nodev, dest_create, .timeout = 30)
{
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_dest *dst = (void *)1;
	struct ferry_rdma_block b;
	int fds;

	require_no_device();
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	fds = count_fds();
	ferry_rdma_dest_attr_init(&da);
	da.host = "127.0.0.1";
	da.blocks = &b;
	da.n_blocks = 1;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), FERRY_ENORDMA);
	cr_assert_null(dst);
	cr_assert_eq(count_fds(), fds);
	rt_unmap(b.host, b.length);
}

Test(rdma_nodev, source_create, .timeout = 30)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = (void *)1;
	struct ferry_rdma_block b;
	double t0;
	int fds;

	require_no_device();
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	fds = count_fds();
	ferry_rdma_source_attr_init(&sa);
	sa.host = "127.0.0.1";
	sa.port = 4444;
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.lanes = 4;
	t0 = rt_now_ms();
	cr_assert_eq(rt_source_open(&sa, &src), FERRY_ENORDMA);
	cr_assert_lt(rt_now_ms() - t0, 1000);
	cr_assert_null(src);
	cr_assert_eq(count_fds(), fds);
	rt_unmap(b.host, b.length);
}

Test(rdma_attr, bad_attributes_refused)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_block b = {rt_map(MIB), MIB};
	struct ferry_rdma_block odd = {(char *)b.host + 1, MIB - 4096};

	rt_log_stderr();
	ferry_rdma_source_attr_init(&sa);
	sa.host = "127.0.0.1";
	sa.port = 4444;
	sa.blocks = &b;
	sa.n_blocks = 1;

	sa.retry_cnt = 7; /* rxe: forever */
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.retry_cnt = 6;
	sa.lanes = 0;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.lanes = FERRY_RDMA_MAX_LANES + 1;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.lanes = 1;
	sa.port = 0;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.port = 4444;
	sa.max_inflight = 4;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.max_inflight = 128;
	sa.n_blocks = 0;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.n_blocks = 1;
	sa.blocks = &odd;
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	sa.size = 8; /* an attribute struct from nowhere */
	cr_assert_eq(rt_source_open(&sa, &src), -EINVAL);
	cr_assert_null(src);

	ferry_rdma_dest_attr_init(&da);
	da.blocks = &b;
	da.n_blocks = 1;
	da.retry_cnt = 7;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -EINVAL);
	da.retry_cnt = 6;
	da.lanes = 0;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -EINVAL);
	da.lanes = 1;
	da.n_blocks = FERRY_RDMA_MAX_BLOCKS + 1;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), -EINVAL);
	cr_assert_null(dst);
	cr_assert_str_eq(ferry_rdma_reg_name(FERRY_RDMA_REG_CHUNKED), "chunked");
	cr_assert_str_eq(ferry_rdma_reg_name((enum ferry_rdma_reg)99), "?");
	rt_unmap(b.host, b.length);
}
