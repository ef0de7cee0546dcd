/* SPDX-License-Identifier: MIT */
/*
 * Memory registration: the strategies (pin-all, chunked with a bounded cache,
 * on-demand paging), the choice between them against the device and
 * RLIMIT_MEMLOCK, timed registration, and the chunk cache used by the
 * CHUNKED strategy on both sides.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define MIB (1024.0 * 1024.0)

const char *ferry_rdma_reg_name(enum ferry_rdma_reg reg)
{
	switch (reg) {
	case FERRY_RDMA_REG_AUTO:
		return "auto";
	case FERRY_RDMA_REG_PIN_ALL:
		return "pin-all";
	case FERRY_RDMA_REG_CHUNKED:
		return "chunked";
	case FERRY_RDMA_REG_ODP:
		return "odp";
	}
	return "?";
}

/* ---- the chunk cache --------------------------------------------------------- */

static uint32_t cmap_hash(const struct rdm_cmap *m, uint32_t block, uint64_t chunk)
{
	uint64_t h = (chunk + 1) * 0x9e3779b97f4a7c15ull ^ ((uint64_t)block << 40);

	h ^= h >> 29;
	return (uint32_t)h & (m->nbuckets - 1);
}

int rdm_cmap_init(struct rdm_cmap *m, uint32_t cap)
{
	memset(m, 0, sizeof(*m));
	if (cap == 0)
		return 0;
	m->cap = cap;
	m->nbuckets = rdm_pow2(cap * 2 > cap ? cap * 2 : cap);
	m->pool = calloc(cap, sizeof(*m->pool));
	m->buckets = calloc(m->nbuckets, sizeof(*m->buckets));
	if (!m->pool || !m->buckets) {
		rdm_cmap_fini(m);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < cap; i++) {
		m->pool[i].hnext = m->free;
		m->free = &m->pool[i];
	}
	return 0;
}

void rdm_cmap_fini(struct rdm_cmap *m)
{
	free(m->pool);
	free(m->buckets);
	memset(m, 0, sizeof(*m));
}

static void lru_unlink(struct rdm_cmap *m, struct rdm_centry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		m->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		m->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_push_head(struct rdm_cmap *m, struct rdm_centry *e)
{
	e->prev = NULL;
	e->next = m->head;
	if (m->head)
		m->head->prev = e;
	m->head = e;
	if (!m->tail)
		m->tail = e;
}

struct rdm_centry *rdm_cmap_find(struct rdm_cmap *m, uint32_t block, uint64_t chunk)
{
	struct rdm_centry *e;

	if (!m->cap)
		return NULL;
	for (e = m->buckets[cmap_hash(m, block, chunk)]; e; e = e->hnext)
		if (e->block == block && e->chunk == chunk)
			break;
	if (e && m->head != e) {
		lru_unlink(m, e);
		lru_push_head(m, e);
	}
	return e;
}

struct rdm_centry *rdm_cmap_insert(struct rdm_cmap *m, uint32_t block, uint64_t chunk)
{
	struct rdm_centry *e = m->free;
	uint32_t b;

	if (!e)
		return NULL;
	m->free = e->hnext;
	memset(e, 0, sizeof(*e));
	e->block = block;
	e->chunk = chunk;
	b = cmap_hash(m, block, chunk);
	e->hnext = m->buckets[b];
	m->buckets[b] = e;
	lru_push_head(m, e);
	m->count++;
	return e;
}

struct rdm_centry *rdm_cmap_victim(struct rdm_cmap *m)
{
	for (struct rdm_centry *e = m->tail; e; e = e->prev)
		if (!e->refs)
			return e;
	return NULL;
}

void rdm_cmap_remove(struct rdm_cmap *m, struct rdm_centry *e)
{
	struct rdm_centry **pp = &m->buckets[cmap_hash(m, e->block, e->chunk)];

	while (*pp && *pp != e)
		pp = &(*pp)->hnext;
	if (*pp)
		*pp = e->hnext;
	lru_unlink(m, e);
	e->hnext = m->free;
	m->free = e;
	m->count--;
}

/* ---- strategies --------------------------------------------------------------- */

int rdm_mem_init(struct rdm_mem *mem, const struct ferry_rdma_block *blocks, uint32_t n,
		 const char *side)
{
	memset(mem, 0, sizeof(*mem));
	if (!blocks || n == 0 || n > FERRY_RDMA_MAX_BLOCKS) {
		rdm_err("%s: %u blocks (expected 1..%u)", side, n, FERRY_RDMA_MAX_BLOCKS);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)blocks[i].host;

		if (!a || a % 4096 || !blocks[i].length || blocks[i].length % 4096 ||
		    a + blocks[i].length < a) {
			rdm_err("%s: block %u (%p, %lu bytes) is not page-aligned and non-empty",
				side, i, blocks[i].host, (unsigned long)blocks[i].length);
			return -EINVAL;
		}
		mem->total += blocks[i].length;
	}
	mem->blocks = malloc(n * sizeof(*blocks));
	if (!mem->blocks)
		return -ENOMEM;
	memcpy(mem->blocks, blocks, n * sizeof(*blocks));
	mem->n_blocks = n;
	return 0;
}

static uint64_t total_chunks(const struct rdm_mem *mem)
{
	uint64_t n = 0;

	for (uint32_t i = 0; i < mem->n_blocks; i++)
		n += rdm_mem_nchunks(mem, i);
	return n;
}

int rdm_mem_choose(struct rdm_mem *mem, struct rdm_dev *dev, enum ferry_rdma_reg want,
		   uint64_t chunk_size, uint64_t budget, uint32_t lanes, uint64_t overhead,
		   int access, const char *side)
{
	uint64_t limit, allow, avail, max_block = 0, per_lane;
	enum ferry_rdma_reg reg = want;
	bool from_limit;

	mem->dev = dev;
	mem->access = access;
	mem->chunk_size = chunk_size ? chunk_size : FERRY_RDMA_CHUNK_DEFAULT;
	if (mem->chunk_size < 65536 || (mem->chunk_size & (mem->chunk_size - 1))) {
		rdm_err("%s: chunk size %lu is not a power of two >= 64 KiB", side,
			(unsigned long)mem->chunk_size);
		return -EINVAL;
	}
	for (uint32_t i = 0; i < mem->n_blocks; i++)
		if (mem->blocks[i].length > max_block)
			max_block = mem->blocks[i].length;

	allow = rdm_memlock_allowance(&limit);
	avail = allow == UINT64_MAX ? UINT64_MAX : (allow > overhead ? allow - overhead : 0);

	if (reg == FERRY_RDMA_REG_ODP && !dev->odp) {
		rdm_err("%s: %s does not report on-demand paging for RDMA WRITE on RC "
			"(odp caps); choose pin-all or chunked",
			side, dev->name);
		return -EOPNOTSUPP;
	}
	if (reg == FERRY_RDMA_REG_AUTO) {
		if (dev->odp)
			reg = FERRY_RDMA_REG_ODP;
		else if (mem->total <= avail && max_block <= dev->max_mr_size)
			reg = FERRY_RDMA_REG_PIN_ALL;
		else
			reg = FERRY_RDMA_REG_CHUNKED;
	}
	if (reg == FERRY_RDMA_REG_PIN_ALL) {
		if (mem->total > avail) {
			rdm_err(
			    "%s: pin-all needs %.1f MiB registered but RLIMIT_MEMLOCK (%.1f MiB) "
			    "allows %.1f MiB more; raise it (ulimit -l, LimitMEMLOCK=) or use "
			    "chunked registration",
			    side, mem->total / MIB, limit / MIB, avail / MIB);
			return -ENOMEM;
		}
		if (max_block > dev->max_mr_size) {
			rdm_err("%s: a block of %.1f MiB exceeds %s's largest region (%.1f MiB); "
				"use chunked registration",
				side, max_block / MIB, dev->name, dev->max_mr_size / MIB);
			return -E2BIG;
		}
	}
	if (reg == FERRY_RDMA_REG_CHUNKED) {
		if (mem->chunk_size > dev->max_mr_size) {
			rdm_err("%s: chunk of %lu bytes exceeds %s's largest region", side,
				(unsigned long)mem->chunk_size, dev->name);
			return -E2BIG;
		}
		if (budget && budget > avail) {
			rdm_err("%s: a registration budget of %.1f MiB exceeds what RLIMIT_MEMLOCK "
				"(%.1f MiB) allows (%.1f MiB); raise it (ulimit -l) or lower the "
				"budget",
				side, budget / MIB, limit / MIB, avail / MIB);
			return -ENOMEM;
		}
		from_limit = !budget && avail != UINT64_MAX;
		if (!budget)
			budget = avail == UINT64_MAX ? mem->total : avail;
		per_lane = budget / lanes / mem->chunk_size;
		if (per_lane < 1) {
			rdm_err(
			    "%s: %.1f MiB of registration budget%s is less than one %lu KiB chunk "
			    "for each of %u lanes; raise RLIMIT_MEMLOCK (ulimit -l), or use "
			    "smaller chunks or fewer lanes",
			    side, budget / MIB, from_limit ? " (what RLIMIT_MEMLOCK allows)" : "",
			    (unsigned long)(mem->chunk_size / 1024), lanes);
			return -ENOMEM;
		}
		if (per_lane > total_chunks(mem))
			per_lane = total_chunks(mem);
		if (per_lane > UINT32_MAX / 4)
			per_lane = UINT32_MAX / 4;
		mem->lane_chunks = (uint32_t)per_lane;
	}
	mem->reg = reg;
	if (reg == FERRY_RDMA_REG_CHUNKED)
		rdm_info(
		    "%s: registration %s%s: %u chunks of %lu KiB per lane (%.1f MiB of memory)",
		    side, ferry_rdma_reg_name(reg), want ? "" : " (auto)", mem->lane_chunks,
		    (unsigned long)(mem->chunk_size / 1024), mem->total / MIB);
	else
		rdm_info("%s: registration %s%s (%.1f MiB of memory)", side,
			 ferry_rdma_reg_name(reg), want ? "" : " (auto)", mem->total / MIB);
	return 0;
}

struct ibv_mr *rdm_mem_reg(struct rdm_mem *mem, void *addr, uint64_t len, int *err)
{
	int access = mem->access;
	int64_t t0 = rdm_now_ns();
	struct ibv_mr *mr;

	if (mem->reg == FERRY_RDMA_REG_ODP)
		access |= IBV_ACCESS_ON_DEMAND;
	mr = ibv_reg_mr(mem->dev->pd, addr, len, access);
	rdm_add(&mem->reg_ns, (uint64_t)(rdm_now_ns() - t0));
	if (!mr) {
		*err = rdm_errno("%s: ibv_reg_mr(%p, %lu bytes, %s)", mem->dev->name, addr,
				 (unsigned long)len, ferry_rdma_reg_name(mem->reg));
		if (*err == -ENOMEM || *err == -EAGAIN) {
			uint64_t limit;

			if (rdm_memlock_allowance(&limit) != UINT64_MAX)
				rdm_err(
				    "RLIMIT_MEMLOCK is %.1f MiB: the registration may exceed it",
				    limit / MIB);
			*err = -ENOMEM;
		}
		return NULL;
	}
	rdm_add(&mem->reg_count, 1);
	rdm_add(&mem->registered_bytes, len);
	return mr;
}

void rdm_mem_dereg(struct rdm_mem *mem, struct ibv_mr *mr)
{
	int64_t t0 = rdm_now_ns();
	uint64_t len = mr->length;
	int ret;

	ret = ibv_dereg_mr(mr);
	rdm_add(&mem->reg_ns, (uint64_t)(rdm_now_ns() - t0));
	if (ret) {
		rdm_errval(ret, "%s: ibv_dereg_mr", mem->dev->name);
		return;
	}
	rdm_add(&mem->dereg_count, 1);
	rdm_sub(&mem->registered_bytes, len);
}

int rdm_mem_register_blocks(struct rdm_mem *mem)
{
	int64_t t0 = rdm_now_ns();
	int err = 0;

	if (mem->reg != FERRY_RDMA_REG_PIN_ALL && mem->reg != FERRY_RDMA_REG_ODP)
		return 0;
	mem->block_mr = calloc(mem->n_blocks, sizeof(*mem->block_mr));
	if (!mem->block_mr)
		return -ENOMEM;
	for (uint32_t i = 0; i < mem->n_blocks; i++) {
		mem->block_mr[i] =
		    rdm_mem_reg(mem, mem->blocks[i].host, mem->blocks[i].length, &err);
		if (!mem->block_mr[i])
			return err;
	}
	rdm_info("registered %u blocks (%.1f MiB, %s) in %.1f ms", mem->n_blocks, mem->total / MIB,
		 ferry_rdma_reg_name(mem->reg), (rdm_now_ns() - t0) / 1e6);
	return 0;
}

void rdm_mem_fini(struct rdm_mem *mem)
{
	if (mem->block_mr) {
		for (uint32_t i = 0; i < mem->n_blocks; i++)
			if (mem->block_mr[i])
				rdm_mem_dereg(mem, mem->block_mr[i]);
		free(mem->block_mr);
		mem->block_mr = NULL;
	}
	free(mem->blocks);
	mem->blocks = NULL;
	mem->n_blocks = 0;
}
