/* SPDX-License-Identifier: MIT */
/*
 * NUMA placement of the data-path workers (engine/placement.h) on described
 * topologies (hwloc synthetic and XML), so that 2- and 4-node machines can
 * be checked on this one: every chunk must go to a worker on the node that
 * holds it, workers per node must follow the node's share of RAM, and each
 * worker's CPUs must be its node's. Then the same through the engine, in a
 * real migration, read back from the worker statistics.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <hwloc.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/log.h>

#include "engine/placement.h"

#define MIB (1ull << 20)
#define GIB (1ull << 30)

/* Two packages of 2 cores, a NUMA node each: node 0 = CPUs 0-1, node 1 = CPUs 2-3. */
#define TWO_NODES_SPEC "pack:2 [numa] core:2 pu:1"
#define TWO_NODES      "synthetic:" TWO_NODES_SPEC
#define FOUR_NODES     "synthetic:pack:4 [numa] core:2 pu:1"

static const char *const node_cpus[] = {"0-1", "2-3", "4-5", "6-7"};

static void init(void)
{
	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
}

/* The topology of the last place() call; placements point into it. */
static struct eng_topology *topo;

static void fini(void)
{
	eng_topology_free(topo);
	topo = NULL;
}

TestSuite(engine_placement, .init = init, .fini = fini, .timeout = 60);

/* Load @desc and place on it (the engine keeps the topology the same way). */
static int place(const char *desc, const struct eng_place_block *b, uint32_t nblocks,
		 uint32_t nworkers, struct eng_placement *p, char *err, size_t errlen)
{
	int ret;

	eng_topology_free(topo);
	topo = NULL;
	memset(p, 0, sizeof(*p));
	ret = eng_topology_load(desc, &topo, err, errlen);
	if (ret < 0)
		return ret;
	return eng_place(topo, b, nblocks, nworkers, p, err, errlen);
}

/* Every chunk's owner sits on the chunk's node; returns workers per node. */
static void check_placement(const struct eng_placement *p, const struct eng_place_block *b,
			    uint32_t nblocks, uint32_t *per_node, uint32_t nnodes)
{
	uint64_t owned = 0, total = 0;

	memset(per_node, 0, nnodes * sizeof(*per_node));
	for (uint32_t w = 0; w < p->nworkers; w++) {
		const struct eng_place_worker *pw = &p->workers[w];

		cr_assert(pw->node >= 0 && (uint32_t)pw->node < nnodes, "worker %u on node %d", w,
			  pw->node);
		per_node[pw->node]++;
		/* Bound to its own node's CPUs. */
		cr_assert_str_eq(pw->cpus, node_cpus[pw->node], "worker %u", w);
		owned += pw->ram_bytes;
	}
	for (uint32_t i = 0; i < nblocks; i++) {
		total += b[i].length;
		cr_assert_eq(p->nchunks[i],
			     (b[i].length / 4096 + ENG_CHUNK_PAGES - 1) / ENG_CHUNK_PAGES);
		for (uint64_t c = 0; c < p->nchunks[i]; c++) {
			uint32_t w = p->owner[i][c];

			cr_assert_lt(w, p->nworkers);
			cr_assert_eq(p->workers[w].node, b[i].node,
				     "block %u (node %d) chunk %lu owned by worker %u on node %d",
				     i, b[i].node, (unsigned long)c, w, p->workers[w].node);
		}
	}
	cr_assert_eq(owned, total, "the workers own %lu of %lu bytes", (unsigned long)owned,
		     (unsigned long)total);
	cr_assert_not(p->bindable, "a described topology is not this machine");
}

Test(engine_placement, two_nodes_even)
{
	const struct eng_place_block b[] = {{NULL, 64 * MIB, 0}, {NULL, 64 * MIB, 1}};
	struct eng_placement p;
	uint32_t per[2];
	char err[256];

	cr_assert_eq(place(TWO_NODES, b, 2, 4, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.nnodes, 2);
	check_placement(&p, b, 2, per, 2);
	cr_assert_eq(per[0], 2);
	cr_assert_eq(per[1], 2);
	/* A node's chunks are dealt to its workers in turn: equal shares. */
	for (uint32_t w = 0; w < 4; w++)
		cr_assert_eq(p.workers[w].ram_bytes, 32 * MIB, "worker %u", w);
	eng_place_fini(&p);
}

Test(engine_placement, two_nodes_follow_the_share_of_ram)
{
	const struct eng_place_block b[] = {{NULL, 96 * MIB, 0}, {NULL, 32 * MIB, 1}};
	struct eng_placement p;
	uint32_t per[2];
	char err[256];

	cr_assert_eq(place(TWO_NODES, b, 2, 4, &p, err, sizeof(err)), 0, "%s", err);
	check_placement(&p, b, 2, per, 2);
	cr_assert_eq(per[0], 3);
	cr_assert_eq(per[1], 1);
	eng_place_fini(&p);

	/* Two workers: one per node, even though node 0 holds three quarters. */
	cr_assert_eq(place(TWO_NODES, b, 2, 2, &p, err, sizeof(err)), 0, "%s", err);
	check_placement(&p, b, 2, per, 2);
	cr_assert_eq(per[0], 1);
	cr_assert_eq(per[1], 1);
	eng_place_fini(&p);
}

Test(engine_placement, four_nodes_one_without_ram)
{
	/* Blocks in an order unlike the nodes', two on node 3, none on node 2. */
	const struct eng_place_block b[] = {
	    {NULL, 1 * GIB, 3}, {NULL, 1 * GIB, 0}, {NULL, 1 * GIB, 1}, {NULL, 1 * GIB, 3}};
	const uint32_t want4[] = {1, 1, 0, 2}, want8[] = {2, 2, 0, 4}, want6[] = {2, 1, 0, 3};
	struct eng_placement p;
	uint32_t per[4];
	char err[256];

	cr_assert_eq(place(FOUR_NODES, b, 4, 4, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert_eq(p.nnodes, 4);
	check_placement(&p, b, 4, per, 4);
	cr_assert_arr_eq(per, want4, sizeof(per));
	eng_place_fini(&p);

	cr_assert_eq(place(FOUR_NODES, b, 4, 8, &p, err, sizeof(err)), 0, "%s", err);
	check_placement(&p, b, 4, per, 4);
	cr_assert_arr_eq(per, want8, sizeof(per));
	for (uint32_t w = 0; w < 8; w++)
		cr_assert_eq(p.workers[w].ram_bytes, 512 * MIB, "worker %u", w);
	eng_place_fini(&p);

	/* Six: the two halves of node 3 need three, and the odd one goes to node 0 or 1. */
	cr_assert_eq(place(FOUR_NODES, b, 4, 6, &p, err, sizeof(err)), 0, "%s", err);
	check_placement(&p, b, 4, per, 4);
	cr_assert_eq(per[3], 3);
	cr_assert_eq(per[2], 0);
	cr_assert_eq(per[0] + per[1], 3);
	cr_assert(per[0] >= 1 && per[1] >= 1);
	(void)want6;
	eng_place_fini(&p);
}

Test(engine_placement, fewer_workers_than_nodes)
{
	const struct eng_place_block b[] = {
	    {NULL, 256 * MIB, 0}, {NULL, 512 * MIB, 1}, {NULL, 128 * MIB, 2}, {NULL, 64 * MIB, 3}};
	struct eng_placement p;
	char err[256];
	uint64_t sum = 0;

	cr_assert_eq(place(FOUR_NODES, b, 4, 2, &p, err, sizeof(err)), 0, "%s", err);
	/* The two biggest nodes get a worker each; the others' chunks go to the less loaded. */
	cr_assert_eq(p.workers[0].node, 0);
	cr_assert_eq(p.workers[1].node, 1);
	for (uint32_t i = 0; i < 4; i++)
		for (uint64_t c = 0; c < p.nchunks[i]; c++) {
			uint32_t w = p.owner[i][c];

			if (i < 2)
				cr_assert_eq(p.workers[w].node, (int)i);
		}
	sum = p.workers[0].ram_bytes + p.workers[1].ram_bytes;
	cr_assert_eq(sum, 960 * MIB);
	cr_assert_geq(p.workers[0].ram_bytes, 256 * MIB);
	cr_assert_eq(p.workers[1].ram_bytes, 512 * MIB, "node 1 keeps only its own RAM");
	eng_place_fini(&p);
}

Test(engine_placement, unknown_nodes_are_spread)
{
	/* No node declared, on a topology that is not this machine: nothing to ask. */
	const struct eng_place_block b[] = {{NULL, 64 * MIB, -1}};
	struct eng_placement p;
	char err[256];

	cr_assert_eq(place(TWO_NODES, b, 1, 4, &p, err, sizeof(err)), 0, "%s", err);
	for (uint32_t w = 0; w < 4; w++) {
		cr_assert_eq(p.workers[w].node, -1);
		cr_assert_str_eq(p.workers[w].cpus, "0-3");
		cr_assert_eq(p.workers[w].ram_bytes, 16 * MIB);
	}
	/* Dealt in turn: consecutive chunks on different workers. */
	cr_assert_neq(p.owner[0][0], p.owner[0][1]);
	eng_place_fini(&p);
}

Test(engine_placement, xml_topology)
{
	const struct eng_place_block b[] = {{NULL, 16 * MIB, 1}, {NULL, 48 * MIB, 0}};
	hwloc_topology_t t;
	struct eng_placement p;
	uint32_t per[2];
	char path[64], desc[80], err[256];

	/* Export the synthetic 2-node machine as XML, as `lstopo x.xml` would. */
	snprintf(path, sizeof(path), "/tmp/ferry-topo-%d.xml", getpid());
	cr_assert_eq(hwloc_topology_init(&t), 0);
	cr_assert_eq(hwloc_topology_set_synthetic(t, TWO_NODES_SPEC), 0);
	cr_assert_eq(hwloc_topology_load(t), 0);
	cr_assert_eq(hwloc_topology_export_xml(t, path, 0), 0);
	hwloc_topology_destroy(t);
	snprintf(desc, sizeof(desc), "xml:%s", path);
	cr_assert_eq(place(desc, b, 2, 4, &p, err, sizeof(err)), 0, "%s", err);
	check_placement(&p, b, 2, per, 2);
	cr_assert_eq(per[0], 3);
	cr_assert_eq(per[1], 1);
	eng_place_fini(&p);
	unlink(path);
}

Test(engine_placement, engine_refuses_a_topology_that_does_not_load)
{
	struct ferry_engine *eng;
	struct ferry_params p = {.channels = 2, .numa_topology = "synthetic:nonsense"};

	cr_assert_eq(ferry_engine_create(&eng), 0);
	cr_assert_eq(ferry_engine_set_params(eng, &p), -EINVAL);
	p.numa_topology = TWO_NODES;
	cr_assert_eq(ferry_engine_set_params(eng, &p), 0);
	p.numa_topology = NULL;
	cr_assert_eq(ferry_engine_set_params(eng, &p), 0);
	ferry_engine_destroy(eng);
}

Test(engine_placement, bad_topologies)
{
	const struct eng_place_block b[] = {{NULL, 16 * MIB, 0}};
	struct eng_placement p;
	char err[256] = "";

	cr_assert_eq(place("synthetic:bogus:3", b, 1, 2, &p, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "synthetic"), "%s", err);
	eng_place_fini(&p);
	cr_assert_eq(place("numa=2", b, 1, 2, &p, err, sizeof(err)), -EINVAL);
	cr_assert(strstr(err, "numa=2"), "%s", err);
	eng_place_fini(&p);
	cr_assert_eq(place("xml:/nonexistent/topo.xml", b, 1, 2, &p, err, sizeof(err)), -EINVAL);
	eng_place_fini(&p);
	cr_assert_eq(place(NULL, b, 1, 0, &p, err, sizeof(err)), -EINVAL);
	eng_place_fini(&p);
}

struct bind_ctx {
	struct eng_placement *p;
	int ret;
	cpu_set_t got;
};

static void *bind_thread(void *arg)
{
	struct bind_ctx *c = arg;

	c->ret = eng_place_bind(c->p, 0);
	sched_getaffinity(0, sizeof(c->got), &c->got);
	return NULL;
}

Test(engine_placement, this_machine_binds_the_thread)
{
	size_t len = 8 * MIB;
	uint8_t *ram = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	const struct eng_place_block b[] = {{ram, len, -1}};
	struct eng_placement p;
	struct bind_ctx c = {.p = &p};
	pthread_t th;
	hwloc_bitmap_t set;
	char err[256];

	cr_assert_neq(ram, MAP_FAILED);
	memset(ram, 1, len); /* so the kernel has a node for every page */
	cr_assert_eq(place(NULL, b, 1, 2, &p, err, sizeof(err)), 0, "%s", err);
	cr_assert(p.bindable);
	cr_assert_geq(p.nnodes, 1);
	for (uint32_t w = 0; w < 2; w++)
		cr_assert_geq(p.workers[w].node, 0, "this machine's RAM is on a known node");
	cr_assert_eq(pthread_create(&th, NULL, bind_thread, &c), 0);
	pthread_join(th, NULL);
	cr_assert_eq(c.ret, 1, "binding failed: %d", c.ret);
	/* The thread may run exactly on its node's CPUs. */
	set = hwloc_bitmap_alloc();
	hwloc_bitmap_list_sscanf(set, p.workers[0].cpus);
	for (int cpu = 0; cpu < CPU_SETSIZE; cpu++)
		cr_assert_eq(CPU_ISSET(cpu, &c.got) != 0,
			     hwloc_bitmap_isset(set, (unsigned)cpu) != 0, "CPU %d", cpu);
	hwloc_bitmap_free(set);
	eng_place_fini(&p);
	munmap(ram, len);
}

/* ---- through the engine ------------------------------------------------------------------ */

struct numa_vm {
	struct ferry_engine *eng;
	uint8_t *ram[2];
};

static void numa_vm_make(struct numa_vm *vm, bool source, const char *topology, uint32_t channels)
{
	const struct ferry_params p = {.channels = channels, .numa_topology = topology};

	cr_assert_eq(ferry_engine_create(&vm->eng), 0);
	for (int i = 0; i < 2; i++) {
		char name[16];
		size_t len = (i ? 8 : 24) * MIB;

		vm->ram[i] =
		    mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		cr_assert_neq(vm->ram[i], MAP_FAILED);
		if (source)
			for (size_t k = 0; k < len; k += 8)
				*(uint64_t *)(void *)(vm->ram[i] + k) =
				    k * 0x9e3779b97f4a7c15ull + i + 1;
		snprintf(name, sizeof(name), "node%d.ram", i);
		/* Block 0 on node 0, block 1 on node 1, as the embedder knows them. */
		cr_assert_geq(
		    ferry_engine_add_ram(vm->eng,
					 &(struct ferry_ram_block){name, vm->ram[i], len, 4096, i}),
		    0);
	}
	cr_assert_eq(ferry_engine_set_params(vm->eng, &p), 0);
}

static void numa_vm_free(struct numa_vm *vm)
{
	ferry_engine_destroy(vm->eng);
	munmap(vm->ram[0], 24 * MIB);
	munmap(vm->ram[1], 8 * MIB);
}

static void check_workers(struct ferry_engine *eng, const char *who)
{
	struct ferry_worker_stats ws[8];
	uint64_t node_pages[2] = {0, 0};
	int n = ferry_engine_get_worker_stats(eng, ws, 8);

	/* 24 MiB on node 0 and 8 MiB on node 1: three workers and one. */
	cr_assert_eq(n, 4, "%s", who);
	for (int i = 0; i < n; i++) {
		int want = i < 3 ? 0 : 1;

		cr_assert_eq(ws[i].numa_node, want, "%s: worker %d on node %d", who, i,
			     ws[i].numa_node);
		cr_assert_str_eq(ws[i].cpus, node_cpus[want], "%s: worker %d", who, i);
		cr_assert_not(ws[i].bound, "%s: bound on a described topology", who);
		node_pages[want] += ws[i].pages + ws[i].zero_pages;
	}
	/* Every page of a node's block went through that node's workers. */
	cr_assert_eq(node_pages[0], 24 * MIB / 4096, "%s", who);
	cr_assert_eq(node_pages[1], 8 * MIB / 4096, "%s", who);
}

Test(engine_placement, migration_places_workers_by_node)
{
	struct numa_vm src, dst;
	char uri[64];

	numa_vm_make(&src, true, TWO_NODES, 4);
	numa_vm_make(&dst, false, TWO_NODES, 0);
	cr_assert_eq(ferry_incoming(dst.eng, "tcp:127.0.0.1:0", NULL, NULL), 0);
	snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", ferry_engine_listen_port(dst.eng));
	cr_assert_eq(ferry_migrate_sync(src.eng, uri), FERRY_STATUS_COMPLETED);
	cr_assert_eq(ferry_engine_wait(dst.eng), FERRY_STATUS_COMPLETED);
	cr_assert_eq(memcmp(src.ram[0], dst.ram[0], 24 * MIB), 0);
	cr_assert_eq(memcmp(src.ram[1], dst.ram[1], 8 * MIB), 0);
	check_workers(src.eng, "source");
	check_workers(dst.eng, "destination");
	numa_vm_free(&src);
	numa_vm_free(&dst);
}
