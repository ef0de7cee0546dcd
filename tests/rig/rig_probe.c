/*
 * rig_probe: prove that a verbs device is usable (the rig's smoke test).
 *
 * Lists the RDMA devices, opens one, queries it and its port 1 (state, MTU, GIDs),
 * registers a memory region (64 MiB by default), reports on-demand paging (ODP) support
 * and, with -a, binds an rdma_cm id to an IPv4 address to show which device serves it.
 * Prints one "key=value" fact per line on stdout.
 *
 * Exit status: 0 all steps passed; 1 a step failed (reason on stderr); 2 no RDMA device
 * at all (the host without rxe: ibv_get_device_list fails with ENOSYS, or lists nothing),
 * so callers can skip; 64 bad usage.
 *
 * Built by tests/rig/smoke.sh: gcc -O2 -Wall -Wextra rig_probe.c -libverbs -lrdmacm
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <endian.h>
#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

enum probe_exit {
	PROBE_OK = 0,
	PROBE_FAIL = 1,
	PROBE_NO_DEVICE = 2,
	PROBE_USAGE = 64,
};

struct probe_opts {
	const char *dev_name; /* NULL: the first device */
	const char *bind_ip;  /* NULL: skip the rdma_cm step */
	size_t mr_bytes;
	uint8_t port;
};

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static const char *port_state_str(enum ibv_port_state s)
{
	switch (s) {
	case IBV_PORT_DOWN:
		return "down";
	case IBV_PORT_INIT:
		return "init";
	case IBV_PORT_ARMED:
		return "armed";
	case IBV_PORT_ACTIVE:
		return "active";
	case IBV_PORT_ACTIVE_DEFER:
		return "active_defer";
	default:
		return "unknown";
	}
}

static int mtu_bytes(enum ibv_mtu m)
{
	return (m >= IBV_MTU_256 && m <= IBV_MTU_4096) ? 128 << m : 0;
}

static void print_gid(uint8_t port, int index, const union ibv_gid *gid)
{
	const uint8_t *r = gid->raw;

	printf("gid%u.%d=", port, index);
	for (int i = 0; i < 16; i += 2)
		printf("%02x%02x%s", r[i], r[i + 1], i < 14 ? ":" : "\n");
}

/* Memlock limits: registration pins pages, so a small RLIMIT_MEMLOCK (8 MiB is the
 * kernel default) makes a non-root registration fail with ENOMEM. */
static void print_memlock(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_MEMLOCK, &rl) != 0)
		return;
	printf("memlock_cur=%lld memlock_max=%lld\n",
	       rl.rlim_cur == RLIM_INFINITY ? -1LL : (long long)rl.rlim_cur,
	       rl.rlim_max == RLIM_INFINITY ? -1LL : (long long)rl.rlim_max);
}

static int probe_port(struct ibv_context *ctx, uint8_t port)
{
	struct ibv_port_attr pa;
	union ibv_gid gid;
	int err;

	err = ibv_query_port(ctx, port, &pa);
	if (err) {
		fprintf(stderr, "rig_probe: ibv_query_port(%u): %s\n", port, strerror(err));
		return -1;
	}
	printf("port%u_state=%s\nport%u_active_mtu=%d\nport%u_max_mtu=%d\n", port,
	       port_state_str(pa.state), port, mtu_bytes(pa.active_mtu), port,
	       mtu_bytes(pa.max_mtu));
	printf("port%u_link_layer=%s\nport%u_gid_tbl_len=%d\n", port,
	       pa.link_layer == IBV_LINK_LAYER_ETHERNET ? "ethernet" : "infiniband", port,
	       pa.gid_tbl_len);
	/* Index 0 is the link-local GID, index 1 the IPv4-mapped one rdma_cm uses. */
	for (int i = 0; i < 2 && i < pa.gid_tbl_len; i++) {
		if (ibv_query_gid(ctx, port, i, &gid) == 0)
			print_gid(port, i, &gid);
	}
	if (pa.state != IBV_PORT_ACTIVE) {
		fprintf(stderr, "rig_probe: port %u is not active\n", port);
		return -1;
	}
	return 0;
}

/* Registers `bytes` of anonymous memory; returns 0 or -1. */
static int probe_mr(struct ibv_pd *pd, size_t bytes)
{
	struct ibv_mr *mr;
	void *buf;
	double t0;
	int ret = -1;

	buf = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED) {
		fprintf(stderr, "rig_probe: mmap %zu bytes: %s\n", bytes, strerror(errno));
		return -1;
	}
	memset(buf, 0xa5, bytes);
	t0 = now_s();
	mr = ibv_reg_mr(pd, buf, bytes,
			IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ);
	if (!mr) {
		fprintf(stderr, "rig_probe: ibv_reg_mr(%zu MiB): %s\n", bytes >> 20,
			strerror(errno));
		goto out_unmap;
	}
	printf("mr_bytes=%zu\nmr_lkey=0x%x\nmr_rkey=0x%x\nmr_reg_seconds=%.4f\n", bytes, mr->lkey,
	       mr->rkey, now_s() - t0);
	if (ibv_dereg_mr(mr) != 0) {
		fprintf(stderr, "rig_probe: ibv_dereg_mr: %s\n", strerror(errno));
		goto out_unmap;
	}
	ret = 0;
out_unmap:
	munmap(buf, bytes);
	return ret;
}

/* Reports ODP as the device advertises it, then tries an ODP registration: a device
 * that claims ODP must accept one; one that does not is expected to refuse it. */
static int probe_odp(struct ibv_context *ctx, struct ibv_pd *pd)
{
	struct ibv_device_attr_ex ax;
	struct ibv_mr *mr;
	size_t len = 1 << 20;
	void *buf;
	int supported, err;

	memset(&ax, 0, sizeof(ax));
	err = ibv_query_device_ex(ctx, NULL, &ax);
	if (err) {
		fprintf(stderr, "rig_probe: ibv_query_device_ex: %s\n", strerror(err));
		return -1;
	}
	supported = (ax.odp_caps.general_caps & IBV_ODP_SUPPORT) != 0;
	printf("odp_supported=%d\nodp_general_caps=0x%" PRIx64 "\nodp_rc_caps=0x%x\n", supported,
	       ax.odp_caps.general_caps, ax.odp_caps.per_transport_caps.rc_odp_caps);

	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return -1;
	mr = ibv_reg_mr(pd, buf, len, IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_ON_DEMAND);
	err = mr ? 0 : errno;
	printf("odp_reg_mr=%s\n", mr ? "ok" : strerror(err));
	if (mr)
		ibv_dereg_mr(mr);
	munmap(buf, len);
	if (supported && !mr) {
		fprintf(stderr, "rig_probe: device claims ODP but ODP registration failed\n");
		return -1;
	}
	return 0;
}

/* Binds an rdma_cm id to `ip` and prints the device rdma_cm picked for it. */
static int probe_cm(const char *ip)
{
	struct rdma_event_channel *ch;
	struct rdma_cm_id *id = NULL;
	struct sockaddr_in sin;
	int ret = -1;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	if (inet_pton(AF_INET, ip, &sin.sin_addr) != 1) {
		fprintf(stderr, "rig_probe: bad IPv4 address %s\n", ip);
		return -1;
	}
	ch = rdma_create_event_channel();
	if (!ch) {
		fprintf(stderr, "rig_probe: rdma_create_event_channel: %s\n", strerror(errno));
		return -1;
	}
	if (rdma_create_id(ch, &id, NULL, RDMA_PS_TCP) != 0) {
		fprintf(stderr, "rig_probe: rdma_create_id: %s\n", strerror(errno));
		goto out_channel;
	}
	if (rdma_bind_addr(id, (struct sockaddr *)&sin) != 0) {
		fprintf(stderr, "rig_probe: rdma_bind_addr(%s): %s\n", ip, strerror(errno));
		goto out_id;
	}
	if (!id->verbs) {
		fprintf(stderr, "rig_probe: %s is bound to no RDMA device\n", ip);
		goto out_id;
	}
	printf("cm_bind_addr=%s\ncm_device=%s\n", ip, ibv_get_device_name(id->verbs->device));
	ret = 0;
out_id:
	rdma_destroy_id(id);
out_channel:
	rdma_destroy_event_channel(ch);
	return ret;
}

static int probe_device(struct ibv_device *dev, const struct probe_opts *o)
{
	struct ibv_device_attr da;
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	int ret = -1, err;

	ctx = ibv_open_device(dev);
	if (!ctx) {
		fprintf(stderr, "rig_probe: ibv_open_device(%s): %s\n", ibv_get_device_name(dev),
			strerror(errno));
		return -1;
	}
	err = ibv_query_device(ctx, &da);
	if (err) {
		fprintf(stderr, "rig_probe: ibv_query_device: %s\n", strerror(err));
		goto out_close;
	}
	printf("device=%s\nphys_port_cnt=%u\nmax_qp=%d\nmax_qp_wr=%d\nmax_mr_size=0x%" PRIx64
	       "\nmax_cqe=%d\n",
	       ibv_get_device_name(dev), da.phys_port_cnt, da.max_qp, da.max_qp_wr, da.max_mr_size,
	       da.max_cqe);
	if (o->port < 1 || o->port > da.phys_port_cnt) {
		fprintf(stderr, "rig_probe: device has no port %u\n", o->port);
		goto out_close;
	}
	if (probe_port(ctx, o->port) != 0)
		goto out_close;
	pd = ibv_alloc_pd(ctx);
	if (!pd) {
		fprintf(stderr, "rig_probe: ibv_alloc_pd: %s\n", strerror(errno));
		goto out_close;
	}
	if (probe_mr(pd, o->mr_bytes) != 0)
		goto out_pd;
	if (probe_odp(ctx, pd) != 0)
		goto out_pd;
	ret = 0;
out_pd:
	ibv_dealloc_pd(pd);
out_close:
	ibv_close_device(ctx);
	return ret;
}

static void usage(void)
{
	fprintf(stderr, "usage: rig_probe [-d device] [-p port] [-s MiB] [-a IPv4]\n");
}

static int parse_opts(int argc, char **argv, struct probe_opts *o)
{
	o->dev_name = NULL;
	o->bind_ip = NULL;
	o->mr_bytes = (size_t)64 << 20;
	o->port = 1;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;
		char *end;
		unsigned long n;

		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			return -1;
		if (!v || a[0] != '-' || a[1] == '\0' || a[2] != '\0')
			return -1;
		i++;
		switch (a[1]) {
		case 'd':
			o->dev_name = v;
			break;
		case 'a':
			o->bind_ip = v;
			break;
		case 's':
		case 'p':
			errno = 0;
			n = strtoul(v, &end, 10);
			if (errno || *end || n == 0 || (a[1] == 's' && n > 65536) ||
			    (a[1] == 'p' && n > 255))
				return -1;
			if (a[1] == 's')
				o->mr_bytes = (size_t)n << 20;
			else
				o->port = (uint8_t)n;
			break;
		default:
			return -1;
		}
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct ibv_device **list, *dev = NULL;
	struct probe_opts o;
	int n = 0, ret = PROBE_FAIL;

	if (parse_opts(argc, argv, &o) != 0) {
		usage();
		return PROBE_USAGE;
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	print_memlock();

	errno = 0;
	list = ibv_get_device_list(&n);
	if (!list || n == 0) {
		/* ENOSYS: the kernel has no verbs support at all (the host here). */
		printf("devices=0\n");
		fprintf(stderr, "rig_probe: no RDMA device (%s)\n",
			list ? "the device list is empty" : strerror(errno));
		if (list)
			ibv_free_device_list(list);
		return PROBE_NO_DEVICE;
	}
	printf("devices=%d\n", n);
	for (int i = 0; i < n; i++) {
		printf("device%d=%s guid=%016" PRIx64 " node_type=%s transport=%s\n", i,
		       ibv_get_device_name(list[i]), be64toh(ibv_get_device_guid(list[i])),
		       ibv_node_type_str(list[i]->node_type),
		       list[i]->transport_type == IBV_TRANSPORT_IB ? "ib" : "other");
		if (!dev && (!o.dev_name || strcmp(o.dev_name, ibv_get_device_name(list[i])) == 0))
			dev = list[i];
	}
	if (!dev) {
		fprintf(stderr, "rig_probe: no device named %s\n", o.dev_name);
		goto out_list;
	}
	if (probe_device(dev, &o) != 0)
		goto out_list;
	if (o.bind_ip && probe_cm(o.bind_ip) != 0)
		goto out_list;
	printf("result=ok\n");
	ret = PROBE_OK;
out_list:
	ibv_free_device_list(list);
	return ret;
}
