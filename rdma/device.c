/* SPDX-License-Identifier: MIT */
/*
 * RDMA devices: discovery (ferry_rdma_devices()), capabilities of the device
 * a connection landed on, its NUMA locality through hwloc, the choice of a
 * source address when several devices could reach the peer, and how much
 * memory this process may still pin.
 *
 * The device of a connection is the one rdma_cm resolves the route to (the
 * cm_id's verbs context); this file never keeps a device context of its own
 * open, so that `rdma link delete` is only held up by live connections.
 */
#include <errno.h>
#include <glob.h>
#include <pthread.h>
#include <ifaddrs.h>
#include <linux/capability.h>
#include <net/if.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <hwloc.h>
#include <hwloc/openfabrics-verbs.h>

#include "internal.h"

/* Read the first line of a sysfs file into @buf, without the newline. */
static int read_line(const char *path, char *buf, size_t len)
{
	FILE *f = fopen(path, "re");
	size_t n;

	if (!f)
		return -errno;
	if (!fgets(buf, (int)len, f)) {
		fclose(f);
		return -EIO;
	}
	fclose(f);
	n = strlen(buf);
	while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
		buf[--n] = 0;
	return 0;
}

/*
 * The netdev under port 1: a RoCE device lists it per GID; soft-RoCE (rxe,
 * siw) also names its parent.
 */
static void dev_netdev(const char *name, char *buf, size_t len)
{
	char path[256];

	buf[0] = 0;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/ports/1/gid_attrs/ndevs/0", name);
	if (!read_line(path, buf, len) && buf[0])
		return;
	snprintf(path, sizeof(path), "/sys/class/infiniband/%s/parent", name);
	if (read_line(path, buf, len))
		buf[0] = 0;
}

/* NUMA nodes the kernel reports; with one, no device has a locality worth a topology. */
static int numa_nodes(void)
{
	glob_t g;
	int n;

	if (glob("/sys/devices/system/node/node[0-9]*", GLOB_NOSORT, NULL, &g))
		return 1;
	n = (int)g.gl_pathc;
	globfree(&g);
	return n;
}

static pthread_once_t topo_once = PTHREAD_ONCE_INIT;
static hwloc_topology_t topo_cached;
static bool topo_ok;

static void topo_init(void)
{
	/* Probes that cannot find a NIC and cost seconds under emulation (cpuid per PU). */
	static const char *const skip[] = {"x86",  "opencl",	"cuda", "nvml",
					   "rsmi", "levelzero", "gl"};
	int64_t t0 = rdm_now_ns();

	if (numa_nodes() < 2 || hwloc_topology_init(&topo_cached))
		return;
	for (size_t i = 0; i < sizeof(skip) / sizeof(skip[0]); i++)
		hwloc_topology_set_components(topo_cached, HWLOC_TOPOLOGY_COMPONENTS_FLAG_BLACKLIST,
					      skip[i]);
	/* Only the I/O tree and NUMA nodes matter here; caches and groups cost time. */
	hwloc_topology_set_io_types_filter(topo_cached, HWLOC_TYPE_FILTER_KEEP_IMPORTANT);
	hwloc_topology_set_cache_types_filter(topo_cached, HWLOC_TYPE_FILTER_KEEP_NONE);
	hwloc_topology_set_type_filter(topo_cached, HWLOC_OBJ_GROUP, HWLOC_TYPE_FILTER_KEEP_NONE);
	if (hwloc_topology_load(topo_cached)) {
		hwloc_topology_destroy(topo_cached);
		return;
	}
	topo_ok = true;
	rdm_dbg("hwloc topology loaded in %.1f ms", (rdm_now_ns() - t0) / 1e6);
}

/*
 * The process's topology, loaded once (a load costs 0.2 s on a host and
 * seconds in an emulated guest) and kept: loaded topologies are read-only
 * and safe to query from several threads. NULL on a single-node machine.
 */
static hwloc_topology_t topo_get(void)
{
	pthread_once(&topo_once, topo_init);
	return topo_ok ? topo_cached : NULL;
}

static int obj_numa_node(hwloc_topology_t topo, hwloc_obj_t osdev)
{
	hwloc_obj_t anc = hwloc_get_non_io_ancestor_obj(topo, osdev);
	hwloc_obj_t root = hwloc_get_root_obj(topo);

	/* Attached to the machine itself: no locality (a virtual device, or one NUMA node). */
	if (!anc || !anc->nodeset || hwloc_bitmap_isequal(anc->nodeset, root->nodeset))
		return -1;
	if (hwloc_bitmap_weight(anc->nodeset) != 1)
		return -1;
	return hwloc_bitmap_first(anc->nodeset);
}

static int topo_numa_node(hwloc_topology_t topo, const char *name)
{
	char netdev[IF_NAMESIZE + 1];
	hwloc_obj_t os;

	os = hwloc_ibv_get_device_osdev_by_name(topo, name);
	if (os)
		return obj_numa_node(topo, os);
	/*
	 * Soft-RoCE sits under /sys/devices/virtual, which hwloc skips unless
	 * HWLOC_VIRTUAL_LINUX_OSDEV=1 (and even then it hangs off the root):
	 * its locality is that of the netdev it runs on.
	 */
	dev_netdev(name, netdev, sizeof(netdev));
	if (!netdev[0])
		return -1;
	for (os = hwloc_get_next_osdev(topo, NULL); os; os = hwloc_get_next_osdev(topo, os))
		if (os->attr->osdev.type == HWLOC_OBJ_OSDEV_NETWORK && os->name &&
		    !strcmp(os->name, netdev))
			return obj_numa_node(topo, os);
	return -1;
}

int rdm_dev_numa_node(const char *name)
{
	hwloc_topology_t topo = topo_get();

	return topo ? topo_numa_node(topo, name) : -1;
}

static void fill_caps(struct ibv_context *ctx, const struct ibv_device_attr_ex *ax,
		      const struct ibv_port_attr *pa, struct rdm_dev *dev)
{
	const struct ibv_odp_caps *odp = &ax->odp_caps;

	(void)ctx;
	dev->odp = (odp->general_caps & IBV_ODP_SUPPORT) &&
		   (odp->per_transport_caps.rc_odp_caps & IBV_ODP_SUPPORT_WRITE);
	dev->max_msg_sz = pa->max_msg_sz ? pa->max_msg_sz : (1u << 31);
	dev->max_sge = (uint32_t)ax->orig_attr.max_sge;
	dev->max_qp_wr = (uint32_t)ax->orig_attr.max_qp_wr;
	dev->max_cqe = (uint32_t)ax->orig_attr.max_cqe;
	dev->max_mr_size = ax->orig_attr.max_mr_size;
}

static int query(struct ibv_context *ctx, struct ibv_device_attr_ex *ax, struct ibv_port_attr *pa)
{
	const char *name = ibv_get_device_name(ctx->device);
	int ret;

	memset(ax, 0, sizeof(*ax));
	ret = ibv_query_device_ex(ctx, NULL, ax);
	if (ret)
		return rdm_errval(ret, "%s: ibv_query_device_ex", name);
	memset(pa, 0, sizeof(*pa));
	ret = ibv_query_port(ctx, 1, pa);
	if (ret)
		return rdm_errval(ret, "%s: ibv_query_port 1", name);
	return 0;
}

int rdm_dev_open(struct ibv_context *ctx, struct rdm_dev *dev)
{
	struct ibv_device_attr_ex ax;
	struct ibv_port_attr pa;
	int ret;

	memset(dev, 0, sizeof(*dev));
	dev->ctx = ctx;
	snprintf(dev->name, sizeof(dev->name), "%s", ibv_get_device_name(ctx->device));
	ret = query(ctx, &ax, &pa);
	if (ret)
		return ret;
	if (pa.state != IBV_PORT_ACTIVE)
		rdm_warn("%s: port 1 is %s", dev->name, ibv_port_state_str(pa.state));
	fill_caps(ctx, &ax, &pa, dev);
	dev->numa_node = rdm_dev_numa_node(dev->name);
	dev->pd = ibv_alloc_pd(ctx);
	if (!dev->pd)
		return rdm_errno("%s: ibv_alloc_pd", dev->name);
	rdm_dbg("device %s: numa node %d, max_msg_sz %u, max_sge %u, odp %s", dev->name,
		dev->numa_node, dev->max_msg_sz, dev->max_sge, dev->odp ? "yes" : "no");
	return 0;
}

void rdm_dev_close(struct rdm_dev *dev)
{
	int ret;

	if (dev->pd) {
		ret = ibv_dealloc_pd(dev->pd);
		if (ret)
			rdm_errval(ret, "%s: ibv_dealloc_pd", dev->name);
		dev->pd = NULL;
	}
	dev->ctx = NULL;
}

static int dev_info(struct ibv_device *d, hwloc_topology_t topo,
		    struct ferry_rdma_device_info *info)
{
	struct ibv_device_attr_ex ax;
	struct ibv_port_attr pa;
	struct ibv_context *ctx;
	struct rdm_dev dev;
	int ret;

	memset(info, 0, sizeof(*info));
	snprintf(info->name, sizeof(info->name), "%s", ibv_get_device_name(d));
	ctx = ibv_open_device(d);
	if (!ctx)
		return rdm_errno("%s: ibv_open_device", info->name);
	ret = query(ctx, &ax, &pa);
	if (!ret) {
		memset(&dev, 0, sizeof(dev));
		fill_caps(ctx, &ax, &pa, &dev);
		info->port_active = pa.state == IBV_PORT_ACTIVE;
		info->odp = dev.odp;
		info->max_msg_sz = dev.max_msg_sz;
		info->max_sge = dev.max_sge;
		info->max_mr_size = dev.max_mr_size;
	}
	ibv_close_device(ctx);
	dev_netdev(info->name, info->netdev, sizeof(info->netdev));
	info->numa_node = topo ? topo_numa_node(topo, info->name) : -1;
	return ret;
}

int rdm_dev_info(struct ibv_device *d, struct ferry_rdma_device_info *info)
{
	return dev_info(d, topo_get(), info);
}

/* ibv_get_device_list() with its two ways of saying "nothing here" turned into FERRY_ENORDMA. */
static struct ibv_device **device_list(int *n, int *err)
{
	struct ibv_device **list;

	errno = 0;
	list = ibv_get_device_list(n);
	if (!list) {
		int e = errno ? errno : ENODEV;

		/* ENOSYS (38): the kernel has no uverbs; the host of the rig says this. */
		rdm_err("no RDMA device: ibv_get_device_list: %s", strerror(e));
		*err = (e == ENOSYS || e == ENODEV || e == ENOENT) ? FERRY_ENORDMA : -e;
		return NULL;
	}
	if (*n == 0) {
		ibv_free_device_list(list);
		rdm_err("no RDMA device on this host");
		*err = FERRY_ENORDMA;
		return NULL;
	}
	return list;
}

int ferry_rdma_devices(struct ferry_rdma_device_info *out, size_t cap)
{
	struct ibv_device **list;
	int n = 0, err = 0;

	list = device_list(&n, &err);
	if (!list)
		return err;
	for (int i = 0; i < n && (size_t)i < cap; i++)
		dev_info(list[i], topo_get(), &out[i]);
	ibv_free_device_list(list);
	return n;
}

/* A local address of the family of @dst on @netdev. */
static bool netdev_addr(const char *netdev, int family, struct sockaddr_storage *out)
{
	struct ifaddrs *ifa, *i;
	bool found = false;

	if (getifaddrs(&ifa))
		return false;
	for (i = ifa; i && !found; i = i->ifa_next) {
		if (!i->ifa_addr || i->ifa_addr->sa_family != family || strcmp(i->ifa_name, netdev))
			continue;
		memset(out, 0, sizeof(*out));
		memcpy(out, i->ifa_addr,
		       family == AF_INET ? sizeof(struct sockaddr_in)
					 : sizeof(struct sockaddr_in6));
		found = true;
	}
	freeifaddrs(ifa);
	return found;
}

/* Does @dst resolve from @src, onto the device named @name? */
static bool resolves_via(const struct sockaddr *src, const struct sockaddr *dst, const char *name,
			 int timeout_ms)
{
	struct rdma_event_channel *ch;
	struct rdma_cm_event *ev;
	struct rdma_cm_id *id;
	bool ok = false;
	int err;

	ch = rdm_cm_channel(&err);
	if (!ch)
		return false;
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP)) {
		rdma_destroy_event_channel(ch);
		return false;
	}
	if (!rdma_resolve_addr(id, (struct sockaddr *)src, (struct sockaddr *)dst, timeout_ms) &&
	    !rdm_cm_next(ch, rdm_deadline(timeout_ms + 100), &ev)) {
		ok = ev->event == RDMA_CM_EVENT_ADDR_RESOLVED && id->verbs &&
		     !strcmp(ibv_get_device_name(id->verbs->device), name);
		rdma_ack_cm_event(ev);
	}
	rdma_destroy_id(id);
	rdma_destroy_event_channel(ch);
	return ok;
}

int rdm_dev_pick_source(const struct sockaddr *dst, int numa_node, int timeout_ms,
			struct sockaddr_storage *src)
{
	struct ibv_device **list;
	hwloc_topology_t topo;
	int n = 0, err = 0, found = 0;

	if (numa_node < 0)
		return 0;
	list = device_list(&n, &err);
	if (!list)
		return 0; /* the connect itself reports it */
	topo = topo_get();
	if (n < 2 || !topo) {
		ibv_free_device_list(list);
		return 0;
	}
	for (int i = 0; i < n && !found; i++) {
		const char *name = ibv_get_device_name(list[i]);
		char netdev[IF_NAMESIZE + 1];

		if (topo_numa_node(topo, name) != numa_node)
			continue;
		dev_netdev(name, netdev, sizeof(netdev));
		if (!netdev[0] || !netdev_addr(netdev, dst->sa_family, src))
			continue;
		if (resolves_via((struct sockaddr *)src, dst, name, timeout_ms)) {
			rdm_info("%s is on NUMA node %d: connecting from its netdev %s", name,
				 numa_node, netdev);
			found = 1;
		}
	}
	ibv_free_device_list(list);
	return found;
}

static bool has_ipc_lock(void)
{
	struct __user_cap_header_struct hdr = {.version = _LINUX_CAPABILITY_VERSION_3, .pid = 0};
	struct __user_cap_data_struct data[2];

	memset(data, 0, sizeof(data));
	if (syscall(SYS_capget, &hdr, data))
		return false;
	return data[CAP_IPC_LOCK / 32].effective & (1u << (CAP_IPC_LOCK % 32));
}

/* VmPin of /proc/self/status (bytes): what registrations already hold. */
static uint64_t pinned_now(void)
{
	char line[128];
	uint64_t kib = 0;
	FILE *f;

	f = fopen("/proc/self/status", "re");
	if (!f)
		return 0;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "VmPin: %lu kB", &kib) == 1)
			break;
	fclose(f);
	return kib * 1024;
}

uint64_t rdm_memlock_allowance(uint64_t *limit)
{
	struct rlimit rl;
	uint64_t pinned;

	*limit = UINT64_MAX;
	if (has_ipc_lock())
		return UINT64_MAX;
	if (getrlimit(RLIMIT_MEMLOCK, &rl) || rl.rlim_cur == RLIM_INFINITY)
		return UINT64_MAX;
	*limit = rl.rlim_cur;
	pinned = pinned_now();
	return pinned >= rl.rlim_cur ? 0 : rl.rlim_cur - pinned;
}
