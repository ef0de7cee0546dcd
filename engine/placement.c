/* SPDX-License-Identifier: MIT */
/*
 * NUMA placement of the data-path workers (placement.h): which node each
 * worker runs on, which chunks of RAM it owns, and binding it there.
 *
 * A chunk's node is what the embedder declared for its block, or what the
 * kernel says about the chunk's first page (move_pages(2) with no target
 * nodes only reports). A chunk the kernel has no page for yet (never
 * touched) has no node; such chunks are dealt to every worker in turn.
 */
#include <errno.h>
#include <hwloc.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "internal.h"
#include "placement.h"

/* Pages asked about per move_pages(2) call. */
#define QUERY_BATCH 1024

__attribute__((format(printf, 3, 4))) static void set_err(char *err, size_t len, const char *fmt,
							  ...)
{
	va_list ap;

	if (!err || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(err, len, fmt, ap);
	va_end(ap);
}

int eng_topology_load(const char *desc, struct eng_topology **out, char *err, size_t errlen)
{
	struct eng_topology *et;
	hwloc_topology_t t;
	int ret = 0;

	*out = NULL;
	et = calloc(1, sizeof(*et));
	if (!et)
		return -ENOMEM;
	et->desc = strdup(desc ? desc : "");
	if (!et->desc || hwloc_topology_init(&t) < 0) {
		free(et->desc);
		free(et);
		return -ENOMEM;
	}
	/* Only what placement reads: NUMA nodes and the CPUs under them. */
	hwloc_topology_set_io_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
	hwloc_topology_set_cache_types_filter(t, HWLOC_TYPE_FILTER_KEEP_NONE);
	if (desc && strncmp(desc, "synthetic:", 10) == 0) {
		if (hwloc_topology_set_synthetic(t, desc + 10) < 0) {
			set_err(err, errlen, "bad synthetic topology '%s'", desc + 10);
			ret = -EINVAL;
		}
	} else if (desc && strncmp(desc, "xml:", 4) == 0) {
		if (hwloc_topology_set_xml(t, desc + 4) < 0) {
			set_err(err, errlen, "cannot read the hwloc XML topology '%s'", desc + 4);
			ret = -EINVAL;
		}
	} else if (desc && desc[0]) {
		set_err(err, errlen, "topology '%s' is neither \"synthetic:DESC\" nor \"xml:PATH\"",
			desc);
		ret = -EINVAL;
	}
	if (!ret && hwloc_topology_load(t) < 0) {
		set_err(err, errlen, "hwloc cannot load the topology");
		ret = -EINVAL;
	}
	if (ret) {
		hwloc_topology_destroy(t);
		free(et->desc);
		free(et);
		return ret;
	}
	et->topo = t;
	et->thissystem = hwloc_topology_is_thissystem(t);
	*out = et;
	return 0;
}

void eng_topology_free(struct eng_topology *t)
{
	if (!t)
		return;
	hwloc_topology_destroy(t->topo);
	free(t->desc);
	free(t);
}

/* The logical index of the node whose OS index is @os, or -1. */
static int node_by_os(hwloc_topology_t t, int os)
{
	int n = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);

	for (int i = 0; i < n; i++)
		if ((int)hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i)->os_index == os)
			return i;
	return -1;
}

/*
 * The node (logical index, or -1) of each chunk of @b. Declared blocks are
 * all on their node; on this machine the kernel is asked about the rest.
 */
static int chunk_nodes(hwloc_topology_t t, bool thissystem, const struct eng_place_block *b,
		       uint64_t nchunks, int *node)
{
	int nnodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
	void *pages[QUERY_BATCH];
	int status[QUERY_BATCH];

	if (b->node >= 0 || nnodes <= 1 || !thissystem) {
		int n = b->node >= 0 ? node_by_os(t, b->node) : (nnodes == 1 ? 0 : -1);

		if (b->node >= 0 && n < 0)
			eng_log(FERRY_LOG_WARN,
				"RAM declared on NUMA node %d, which the topology does not have",
				b->node);
		for (uint64_t c = 0; c < nchunks; c++)
			node[c] = n;
		return 0;
	}
	for (uint64_t c0 = 0; c0 < nchunks; c0 += QUERY_BATCH) {
		uint64_t n = nchunks - c0 < QUERY_BATCH ? nchunks - c0 : QUERY_BATCH;

		for (uint64_t i = 0; i < n; i++)
			pages[i] = (void *)(b->host + (c0 + i) * ENG_CHUNK_PAGES * ENG_PAGE_SIZE);
		/* No target nodes: the kernel only reports where each page is. */
		if (syscall(SYS_move_pages, 0, (unsigned long)n, pages, NULL, status, 0) < 0) {
			eng_log(FERRY_LOG_WARN, "move_pages: %s; RAM nodes unknown",
				strerror(errno));
			for (uint64_t i = 0; i < nchunks; i++)
				node[i] = -1;
			return 0;
		}
		for (uint64_t i = 0; i < n; i++)
			node[c0 + i] = status[i] >= 0 ? node_by_os(t, status[i]) : -1;
	}
	return 0;
}

/*
 * How many workers each node gets: one per node with RAM while there are
 * enough, the rest one at a time to the node furthest below its share.
 */
static void share_workers(const uint64_t *bytes, int nnodes, uint32_t nworkers, uint32_t *count)
{
	uint64_t total = 0;
	uint32_t given = 0;
	int with_ram = 0;

	for (int i = 0; i < nnodes; i++) {
		count[i] = 0;
		total += bytes[i];
		with_ram += bytes[i] > 0;
	}
	/* No RAM on a known node: the caller spreads the workers over the machine. */
	if (!total)
		return;
	/* Fewer workers than nodes with RAM: the biggest nodes get one each. */
	while (given < nworkers && given < (uint32_t)with_ram) {
		int best = -1;

		for (int i = 0; i < nnodes; i++)
			if (bytes[i] && !count[i] && (best < 0 || bytes[i] > bytes[best]))
				best = i;
		count[best] = 1;
		given++;
	}
	while (given < nworkers) {
		int best = -1;
		double best_gap = 0;

		for (int i = 0; i < nnodes; i++) {
			double gap;

			if (!bytes[i])
				continue;
			/* How many workers short of its share it is after one more. */
			gap = (double)bytes[i] / (double)total * nworkers - count[i];
			if (best < 0 || gap > best_gap) {
				best = i;
				best_gap = gap;
			}
		}
		count[best]++;
		given++;
	}
}

static void cpus_text(hwloc_const_bitmap_t set, char *buf, size_t len)
{
	int n = hwloc_bitmap_list_snprintf(buf, len, set);

	if (n >= (int)len && len > 4)
		memcpy(buf + len - 4, "...", 4);
}

int eng_place(const struct eng_topology *topo, const struct eng_place_block *blocks,
	      uint32_t nblocks, uint32_t nworkers, struct eng_placement *out, char *err,
	      size_t errlen)
{
	hwloc_topology_t t = topo->topo;
	bool thissystem = topo->thissystem;
	uint64_t *bytes = NULL;
	uint32_t *count = NULL, *next = NULL, **node_workers = NULL, rr = 0;
	int **nodes = NULL, nnodes, ret;

	memset(out, 0, sizeof(*out));
	if (nworkers == 0 || nworkers > UINT16_MAX || nblocks == 0) {
		set_err(err, errlen, "cannot place %s workers", nworkers ? "so many" : "zero");
		return -EINVAL;
	}
	out->topo = t;
	out->bindable = thissystem;
	nnodes = hwloc_get_nbobjs_by_type(t, HWLOC_OBJ_NUMANODE);
	if (nnodes < 1)
		nnodes = 1; /* hwloc always has one; be safe */
	out->nnodes = (uint32_t)nnodes;
	out->nworkers = nworkers;
	out->nblocks = nblocks;
	ret = -ENOMEM;
	out->workers = calloc(nworkers, sizeof(*out->workers));
	out->nchunks = calloc(nblocks, sizeof(*out->nchunks));
	out->owner = calloc(nblocks, sizeof(*out->owner));
	nodes = calloc(nblocks, sizeof(*nodes));
	bytes = calloc((size_t)nnodes, sizeof(*bytes));
	count = calloc((size_t)nnodes, sizeof(*count));
	next = calloc((size_t)nnodes, sizeof(*next));
	node_workers = calloc((size_t)nnodes, sizeof(*node_workers));
	if (!out->workers || !out->nchunks || !out->owner || !nodes || !bytes || !count || !next ||
	    !node_workers)
		goto out;

	/* Where the RAM is. */
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t pages = blocks[b].length / ENG_PAGE_SIZE;
		uint64_t n = (pages + ENG_CHUNK_PAGES - 1) / ENG_CHUNK_PAGES;

		out->nchunks[b] = n;
		out->owner[b] = calloc(n ? n : 1, sizeof(**out->owner));
		nodes[b] = calloc(n ? n : 1, sizeof(**nodes));
		if (!out->owner[b] || !nodes[b])
			goto out;
		chunk_nodes(t, thissystem, &blocks[b], n, nodes[b]);
		for (uint64_t c = 0; c < n; c++)
			if (nodes[b][c] >= 0)
				bytes[nodes[b][c]] +=
				    (c + 1 < n ? ENG_CHUNK_PAGES : pages - c * ENG_CHUNK_PAGES) *
				    (uint64_t)ENG_PAGE_SIZE;
	}

	/* Workers per node, following each node's share of the RAM. */
	share_workers(bytes, nnodes, nworkers, count);
	{
		uint32_t w = 0, placed = 0;

		for (int i = 0; i < nnodes; i++)
			placed += count[i];
		for (int i = 0; i < nnodes; i++) {
			hwloc_obj_t obj = hwloc_get_obj_by_type(t, HWLOC_OBJ_NUMANODE, (unsigned)i);

			node_workers[i] = calloc(count[i] ? count[i] : 1, sizeof(**node_workers));
			if (!node_workers[i])
				goto out;
			for (uint32_t k = 0; k < count[i]; k++, w++) {
				struct eng_place_worker *pw = &out->workers[w];
				hwloc_const_cpuset_t set = obj ? obj->cpuset : NULL;

				/* A node without CPUs (memory only): run anywhere. */
				if (!set || hwloc_bitmap_iszero(set))
					set = hwloc_topology_get_topology_cpuset(t);
				pw->node = obj ? (int)obj->os_index : -1;
				pw->cpuset = hwloc_bitmap_dup(set);
				if (!pw->cpuset)
					goto out;
				cpus_text(set, pw->cpus, sizeof(pw->cpus));
				node_workers[i][k] = w;
			}
		}
		/* No RAM node known at all: every worker may run anywhere. */
		for (; placed < nworkers; placed++, w++) {
			struct eng_place_worker *pw = &out->workers[w];
			hwloc_const_cpuset_t set = hwloc_topology_get_topology_cpuset(t);

			pw->node = -1;
			pw->cpuset = hwloc_bitmap_dup(set);
			if (!pw->cpuset)
				goto out;
			cpus_text(set, pw->cpus, sizeof(pw->cpus));
		}
	}

	/* Chunks to workers: a node's chunks to its own workers in turn. */
	for (uint32_t b = 0; b < nblocks; b++) {
		uint64_t pages = blocks[b].length / ENG_PAGE_SIZE;

		for (uint64_t c = 0; c < out->nchunks[b]; c++) {
			int n = nodes[b][c];
			uint32_t w;
			uint64_t len = (c + 1 < out->nchunks[b] ? ENG_CHUNK_PAGES
								: pages - c * ENG_CHUNK_PAGES) *
				       (uint64_t)ENG_PAGE_SIZE;

			if (n >= 0 && count[n]) {
				w = node_workers[n][next[n]++ % count[n]];
			} else if (n >= 0) {
				/* Its node got no worker (too few): the least loaded one. */
				w = 0;
				for (uint32_t k = 1; k < nworkers; k++)
					if (out->workers[k].ram_bytes < out->workers[w].ram_bytes)
						w = k;
			} else {
				w = rr++ % nworkers;
			}
			out->owner[b][c] = (uint16_t)w;
			out->workers[w].ram_bytes += len;
		}
	}
	ret = 0;
out:
	if (ret == -ENOMEM)
		set_err(err, errlen, "out of memory placing the workers");
	if (nodes)
		for (uint32_t b = 0; b < nblocks; b++)
			free(nodes[b]);
	if (node_workers)
		for (int i = 0; i < nnodes; i++)
			free(node_workers[i]);
	free(nodes);
	free(node_workers);
	free(bytes);
	free(count);
	free(next);
	return ret;
}

int eng_place_bind(const struct eng_placement *p, uint32_t worker)
{
	if (!p->bindable || worker >= p->nworkers || !p->workers[worker].cpuset)
		return 0;
	if (hwloc_set_cpubind(p->topo, p->workers[worker].cpuset, HWLOC_CPUBIND_THREAD) < 0)
		return errno ? -errno : -EINVAL;
	return 1;
}

void eng_place_fini(struct eng_placement *p)
{
	if (p->workers)
		for (uint32_t w = 0; w < p->nworkers; w++)
			hwloc_bitmap_free(p->workers[w].cpuset);
	if (p->owner)
		for (uint32_t b = 0; b < p->nblocks; b++)
			free(p->owner[b]);
	free(p->owner);
	free(p->nchunks);
	free(p->workers);
	memset(p, 0, sizeof(*p));
}
