/* SPDX-License-Identifier: MIT */
/*
 * Device discovery: what ferry_rdma_devices() reports about each device, and
 * the NUMA locality found through hwloc (soft-RoCE through its parent
 * netdev) against the kernel's own answer in sysfs. On a single-node machine
 * the answer is -1 (no locality); `tests/rdma/run-in-rig.sh --numa` boots a
 * two-node guest with the NIC behind a bridge on node 1.
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <glob.h>
#include <limits.h>
#include <unistd.h>
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

static int sysfs_int(const char *path, int dflt)
{
	FILE *f = fopen(path, "r");
	int v = dflt;

	if (f) {
		if (fscanf(f, "%d", &v) != 1)
			v = dflt;
		fclose(f);
	}
	return v;
}

/* The kernel's node for a netdev: the nearest ancestor device with a numa_node (virtio: its PCI
 * device). */
static int netdev_node(const char *netdev)
{
	char path[PATH_MAX + 16], real[PATH_MAX];

	snprintf(path, sizeof(path), "/sys/class/net/%s/device", netdev);
	if (!realpath(path, real))
		return -1;
	while (strlen(real) > strlen("/sys/devices")) {
		char *slash;

		snprintf(path, sizeof(path), "%s/numa_node", real);
		if (!access(path, R_OK))
			return sysfs_int(path, -1);
		slash = strrchr(real, '/');
		if (!slash)
			break;
		*slash = 0;
	}
	return -1;
}

static int numa_nodes(void)
{
	glob_t g;
	int n;

	if (glob("/sys/devices/system/node/node[0-9]*", 0, NULL, &g))
		return 1;
	n = (int)g.gl_pathc;
	globfree(&g);
	return n;
}

Test(rdma_device, listing, .timeout = 60)
{
	struct ferry_rdma_device_info info[8];
	struct rt_env env;
	char path[256], parent[64] = "";
	FILE *f;
	int n;

	rt_env_or_skip(&env);
	n = ferry_rdma_devices(info, 8);
	cr_assert_geq(n, 1);
	cr_assert_eq(ferry_rdma_devices(NULL, 0), n, "a count without storage");
	cr_assert_str_eq(info[0].name, env.dev.name);
	cr_assert(info[0].port_active);
	cr_assert_gt(info[0].max_msg_sz, 0);
	cr_assert_geq(info[0].max_sge, 1);
	cr_assert_gt(info[0].max_mr_size, 0);
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/parent", info[0].name);
	f = fopen(path, "r");
	if (f) {
		if (fgets(parent, sizeof(parent), f))
			parent[strcspn(parent, "\n")] = 0;
		fclose(f);
		cr_assert_str_eq(info[0].netdev, parent);
	}
	cr_log_info("%s on %s: numa %d, odp %d, max_msg %u, max_sge %u", info[0].name,
		    info[0].netdev, info[0].numa_node, info[0].odp, info[0].max_msg_sz,
		    info[0].max_sge);
}

Test(rdma_device, numa_locality_matches_sysfs, .timeout = 120)
{
	struct rt_env env;
	int want;

	rt_env_or_skip(&env);
	want = numa_nodes() < 2 ? -1 : netdev_node(env.dev.netdev);
	cr_log_info("%s (%s): hwloc says node %d, sysfs %d, %d node(s)", env.dev.name,
		    env.dev.netdev, env.dev.numa_node, netdev_node(env.dev.netdev), numa_nodes());
	cr_assert_eq(env.dev.numa_node, want);
	if (getenv("FERRY_RDMA_EXPECT_NODE"))
		cr_assert_eq(env.dev.numa_node, atoi(getenv("FERRY_RDMA_EXPECT_NODE")));
}

/* The stats of a connection name the device and its node. */
Test(rdma_device, stats_name_the_device, .timeout = 60)
{
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_stats s, d;
	struct ferry_rdma_block b;
	struct rt_env env;

	rt_env_or_skip(&env);
	b = (struct ferry_rdma_block){rt_map(MIB), MIB};
	ferry_rdma_dest_attr_init(&da);
	da.host = env.ip;
	rt_id(da.id, 9);
	da.blocks = &b;
	da.n_blocks = 1;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), 0);
	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = ferry_rdma_dest_port(dst);
	rt_id(sa.id, 9);
	sa.blocks = &b;
	sa.n_blocks = 1;
	sa.numa_node = env.dev.numa_node;
	cr_assert_eq(rt_source_open(&sa, &src), 0);
	ferry_rdma_source_stats(src, &s);
	ferry_rdma_dest_stats(dst, &d);
	cr_assert_str_eq(s.device, env.dev.name);
	cr_assert_str_eq(d.device, env.dev.name);
	cr_assert_eq(s.numa_node, env.dev.numa_node);
	cr_assert_eq(d.numa_node, env.dev.numa_node);
	cr_assert_gt(s.connect_ns, 0);
	cr_assert_eq(ferry_rdma_source_close(src), 0);
	cr_assert_eq(ferry_rdma_dest_close(dst), 0);
	rt_unmap(b.host, b.length);
}
