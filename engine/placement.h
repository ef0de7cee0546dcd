/* SPDX-License-Identifier: MIT */
/*
 * Where the data-path workers run and which pages each one owns (engine
 * private; docs/data-path.md, "Placement").
 *
 * Guest RAM is cut into chunks of ENG_CHUNK_PAGES pages. Each chunk is owned
 * by one worker for the whole migration (so a page always travels on the
 * same lane). Workers are spread over the NUMA nodes in proportion to the RAM
 * each node holds, every node with RAM getting at least one while there are
 * enough workers; a node's chunks are dealt to its own workers in turn, and
 * each worker is bound to the CPUs of its node.
 *
 * The topology is this machine's (hwloc), or a described one for testing:
 * "synthetic:<hwloc synthetic description>" or "xml:<path of an hwloc XML
 * export>". Threads are only bound on this machine's topology.
 */
#ifndef FERRY_ENGINE_PLACEMENT_H
#define FERRY_ENGINE_PLACEMENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* 2 MiB of 4 KiB pages: the unit of the page-to-worker map. */
#define ENG_CHUNK_PAGES 512u

/**
 * struct eng_place_block - a block of guest RAM to place.
 * @host:   where it is mapped (for finding its node with move_pages(2))
 * @length: bytes, a multiple of 4096
 * @node:   the NUMA node the embedder declared (OS numbering), or -1 to
 *          find each chunk's node from the kernel (this machine only)
 */
struct eng_place_block {
	const uint8_t *host;
	uint64_t length;
	int node;
};

/* One worker's placement. */
struct eng_place_worker {
	int node;	    /* OS index of its NUMA node; -1 when no RAM node is known */
	char cpus[64];	    /* the CPUs it runs on, as a list ("0-3,8"), cut with "..." */
	uint64_t ram_bytes; /* bytes of the chunks it owns */
	void *cpuset;	    /* hwloc_bitmap_t */
};

/* A loaded topology: this machine's or a described one; shared by placements. */
struct eng_topology {
	void *topo;	 /* hwloc_topology_t */
	bool thissystem; /* threads can be bound */
	char *desc;	 /* what was asked for ("" = this machine) */
};

/**
 * eng_topology_load() - load @desc: NULL or "" (this machine),
 * "synthetic:DESC" or "xml:PATH". Costs tens of milliseconds for this machine
 * (sysfs), so the engine keeps the result.
 * Returns 0, -EINVAL (with @err) or -ENOMEM.
 */
int eng_topology_load(const char *desc, struct eng_topology **out, char *err, size_t errlen);

/** eng_topology_free() - NULL is allowed. */
void eng_topology_free(struct eng_topology *t);

struct eng_placement {
	uint32_t nworkers;
	struct eng_place_worker *workers;
	uint32_t nblocks;
	uint64_t *nchunks; /* per block */
	uint16_t **owner;  /* per block, per chunk: the worker that owns it */
	uint32_t nnodes;   /* NUMA nodes of the topology */
	bool bindable;	   /* the topology is this machine's: threads can be bound */
	void *topo;	   /* hwloc_topology_t, not owned */
};

/**
 * eng_place() - place @nworkers workers for @blocks on @topo, which must
 * outlive the placement. Workers are numbered node by node (node 0's first).
 * @err: a message for a person on failure.
 * Thread context: any; the topology is only read. Returns 0, -EINVAL (no
 * workers, no blocks), -ENOMEM. Call eng_place_fini() in every case.
 */
int eng_place(const struct eng_topology *topo, const struct eng_place_block *blocks,
	      uint32_t nblocks, uint32_t nworkers, struct eng_placement *out, char *err,
	      size_t errlen);

/** eng_place_owner() - the worker that owns page @page of block @block. */
static inline uint32_t eng_place_owner(const struct eng_placement *p, uint32_t block, uint64_t page)
{
	return p->owner[block][page / ENG_CHUNK_PAGES];
}

/**
 * eng_place_bind() - bind the calling thread to @worker's CPUs.
 * Returns 1 when bound, 0 when the topology is not this machine's (nothing
 * done), or -errno.
 */
int eng_place_bind(const struct eng_placement *p, uint32_t worker);

/** eng_place_fini() - free what eng_place() built (also after a failure). */
void eng_place_fini(struct eng_placement *p);

#endif
