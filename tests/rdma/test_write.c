/* SPDX-License-Identifier: MIT */
/*
 * RDMA WRITE transfers on a real device: a destination and a source in this
 * process (the destination's service thread, one source thread per lane) on
 * one RDMA device (rxe0 in the soft-RoCE rig). Each case fills multi-MiB
 * blocks with a pattern, writes runs of pages with holes left out, flushes
 * every lane, and compares every byte; then it changes the source and sends
 * it all again (a second round over the same registrations). Skips where
 * there is no RDMA device (the host of the rig).
 */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "helpers.h"

struct xcase {
	uint32_t lanes;
	uint32_t n_blocks;
	uint64_t block_len;
	enum ferry_rdma_reg src_reg, dst_reg;
	uint64_t src_chunk, dst_chunk;
	uint64_t src_budget, dst_budget;
	uint32_t max_wr;
	bool wildcard;
	uint32_t max_run; /* pages */
};

/* Pieces a run becomes when cut at every @chunk boundary. */
static uint64_t pieces(const struct rt_plan *p, uint64_t chunk)
{
	uint64_t n = 0;

	for (size_t i = 0; i < p->n_runs; i++) {
		const struct ferry_rdma_run *r = &p->runs[i];

		n += (r->offset + r->length - 1) / chunk - r->offset / chunk + 1;
	}
	return n;
}

static void xfer(const struct xcase *c, struct ferry_rdma_stats *sst,
		 struct ferry_rdma_stats *dstst, struct rt_plan *plan_out)
{
	struct ferry_rdma_block sb[4], db[4];
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct rt_lane_result res[FERRY_RDMA_MAX_LANES];
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct rt_plan plan;
	struct rt_env env;
	double t0, ms;
	int ret;

	rt_env_or_skip(&env);
	if ((c->src_reg == FERRY_RDMA_REG_ODP || c->dst_reg == FERRY_RDMA_REG_ODP) && !env.dev.odp)
		cr_skip_test("%s reports no on-demand paging for RDMA WRITE (rxe of Linux 6.1 has "
			     "none); the ODP strategy cannot run here",
			     env.dev.name);
	cr_assert_leq(c->n_blocks, 4);
	for (uint32_t b = 0; b < c->n_blocks; b++) {
		sb[b] = (struct ferry_rdma_block){rt_map(c->block_len), c->block_len};
		db[b] = (struct ferry_rdma_block){rt_map(c->block_len), c->block_len};
		cr_assert(sb[b].host && db[b].host);
		rt_fill(sb[b].host, c->block_len, 1000 + b);
	}

	ferry_rdma_dest_attr_init(&da);
	da.host = c->wildcard ? NULL : env.ip;
	da.port = 0;
	rt_id(da.id, 1);
	da.lanes = c->lanes;
	da.blocks = db;
	da.n_blocks = c->n_blocks;
	da.reg = c->dst_reg;
	da.chunk_size = c->dst_chunk;
	da.memlock_budget = c->dst_budget;
	ret = ferry_rdma_dest_create(&da, &dst);
	cr_assert_eq(ret, 0, "dest_create: %s", ferry_strerror(ret));
	cr_assert_gt(ferry_rdma_dest_port(dst), 0);

	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = ferry_rdma_dest_port(dst);
	rt_id(sa.id, 1);
	sa.lanes = c->lanes;
	sa.blocks = sb;
	sa.n_blocks = c->n_blocks;
	sa.reg = c->src_reg;
	sa.chunk_size = c->src_chunk;
	sa.memlock_budget = c->src_budget;
	sa.max_wr_bytes = c->max_wr;
	ret = rt_source_open(&sa, &src);
	cr_assert_eq(ret, 0, "source_create: %s", ferry_strerror(ret));
	cr_assert_eq(ferry_rdma_dest_accept(dst, 10000), 0);

	rt_plan_make(&plan, sb, c->n_blocks, c->lanes, c->max_run ? c->max_run : 48, 7, 42);
	t0 = rt_now_ms();
	rt_run_lanes(src, &plan, 8, 1, res);
	ms = rt_now_ms() - t0;
	for (uint32_t l = 0; l < c->lanes; l++) {
		cr_assert_eq(res[l].write_err, 0, "lane %u write: %s", l,
			     ferry_strerror(res[l].write_err));
		cr_assert_eq(res[l].flush_err, 0, "lane %u flush: %s", l,
			     ferry_strerror(res[l].flush_err));
	}
	cr_assert_eq(ferry_rdma_dest_wait_flush(dst, 1, 10000), 0);
	cr_assert_eq(rt_check(&plan, sb, db), 0, "round 1: pages differ");
	cr_log_info("%u lanes, %s -> %s: %.1f MiB in %.0f ms (%.1f MB/s)", c->lanes,
		    ferry_rdma_reg_name(c->src_reg), ferry_rdma_reg_name(c->dst_reg),
		    plan.bytes / (double)MIB, ms, plan.bytes / ms / 1e3);

	/* Round 2: the guest changed everything; the same runs go again. */
	for (uint32_t b = 0; b < c->n_blocks; b++)
		rt_fill(sb[b].host, c->block_len, 2000 + b);
	rt_run_lanes(src, &plan, 8, 2, res);
	for (uint32_t l = 0; l < c->lanes; l++)
		cr_assert(!res[l].write_err && !res[l].flush_err, "lane %u round 2: %s / %s", l,
			  ferry_strerror(res[l].write_err), ferry_strerror(res[l].flush_err));
	cr_assert_eq(ferry_rdma_dest_wait_flush(dst, 2, 10000), 0);
	cr_assert_eq(rt_check(&plan, sb, db), 0, "round 2: pages differ");

	ferry_rdma_source_stats(src, sst);
	ferry_rdma_dest_stats(dst, dstst);
	cr_assert_eq(sst->bytes_written, 2 * plan.bytes);
	cr_assert_eq(sst->memcpy_bytes, 0);
	cr_assert_eq(sst->flushes, 2 * c->lanes);
	cr_assert_eq(dstst->flushes, 2 * c->lanes);
	cr_assert_eq(sst->lanes, c->lanes);
	cr_assert_str_eq(sst->device, env.dev.name);
	cr_assert_eq(sst->peer_reg, dstst->reg);
	if (c->src_reg)
		cr_assert_eq(sst->reg, c->src_reg);
	if (c->dst_reg)
		cr_assert_eq(dstst->reg, c->dst_reg);

	cr_assert_eq(ferry_rdma_source_close(src), 0);
	cr_assert_eq(ferry_rdma_dest_close(dst), 0);
	for (uint32_t b = 0; b < c->n_blocks; b++) {
		rt_unmap(sb[b].host, c->block_len);
		rt_unmap(db[b].host, c->block_len);
	}
	if (plan_out)
		*plan_out = plan;
	else
		rt_plan_free(&plan);
}

#define PIN FERRY_RDMA_REG_PIN_ALL
#define CHK FERRY_RDMA_REG_CHUNKED

Test(rdma_write, pin_all_1_lane, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {
	    .lanes = 1, .n_blocks = 1, .block_len = 16 * MIB, .src_reg = PIN, .dst_reg = PIN};

	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.reg_count, 1);
	cr_assert_eq(d.reg_count, 1);
	cr_assert_eq(s.registered_bytes, 16 * MIB);
}

Test(rdma_write, pin_all_2_lanes_2_blocks, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {
	    .lanes = 2, .n_blocks = 2, .block_len = 8 * MIB, .src_reg = PIN, .dst_reg = PIN};

	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.reg_count, 2);
	cr_assert_eq(d.reg_count, 2);
}

Test(rdma_write, pin_all_4_lanes, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {
	    .lanes = 4, .n_blocks = 1, .block_len = 32 * MIB, .src_reg = PIN, .dst_reg = PIN};

	xfer(&c, &s, &d, NULL);
	/* One completion per 16 writes at most, plus the ring-full ones. */
	cr_assert_lt(s.signaled, s.writes / 4 + 8);
}

/* Budgets smaller than the memory: both sides must evict and re-register. */
static void chunked(uint32_t lanes)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {.lanes = lanes,
			  .n_blocks = 1,
			  .block_len = 16 * MIB,
			  .src_reg = CHK,
			  .dst_reg = CHK,
			  .src_chunk = 256 * 1024,
			  .dst_chunk = 256 * 1024,
			  .src_budget = 2 * MIB,
			  .dst_budget = 2 * MIB};

	xfer(&c, &s, &d, NULL);
	cr_assert_gt(s.dereg_count, 0, "the source never evicted a chunk");
	cr_assert_gt(d.dereg_count, 0, "the destination never dropped a chunk");
	cr_assert_gt(s.reg_count, 16 * MIB / (256 * 1024), "every chunk at least once");
	cr_assert_eq(s.remote_reg_requests, d.remote_reg_requests);
	/* Never more registered than the budget (checked after the transfer: nothing leaked). */
	cr_assert_leq(s.registered_bytes, 2 * MIB);
	cr_assert_leq(d.registered_bytes, 2 * MIB);
	cr_log_info("chunked, %u lanes: source %lu registrations (%.1f ms), destination %lu", lanes,
		    (unsigned long)s.reg_count, s.reg_ns / 1e6, (unsigned long)d.reg_count);
}

Test(rdma_write, chunked_1_lane, .timeout = 120)
{
	chunked(1);
}

Test(rdma_write, chunked_2_lanes, .timeout = 120)
{
	chunked(2);
}

Test(rdma_write, chunked_4_lanes, .timeout = 120)
{
	chunked(4);
}

Test(rdma_write, odp, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {.lanes = 2,
			  .n_blocks = 1,
			  .block_len = 16 * MIB,
			  .src_reg = FERRY_RDMA_REG_ODP,
			  .dst_reg = FERRY_RDMA_REG_ODP};

	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.reg, FERRY_RDMA_REG_ODP);
}

/*
 * Small local chunks under one remote registration: a write spans several
 * local chunks as a scatter list instead of one write per chunk.
 */
Test(rdma_write, scatter_list, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct rt_plan plan;
	struct xcase c = {.lanes = 2,
			  .n_blocks = 1,
			  .block_len = 8 * MIB,
			  .src_reg = CHK,
			  .dst_reg = PIN,
			  .src_chunk = 64 * 1024,
			  .src_budget = 4 * MIB,
			  .max_run = 64};

	xfer(&c, &s, &d, &plan);
	cr_assert_lt(s.writes, 2 * pieces(&plan, 64 * 1024), "no write had several entries");
	rt_plan_free(&plan);
}

/* Writes cut at max_wr_bytes: one page each. */
Test(rdma_write, small_writes, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {.lanes = 2,
			  .n_blocks = 1,
			  .block_len = 4 * MIB,
			  .src_reg = PIN,
			  .dst_reg = PIN,
			  .max_wr = 4096};

	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.writes, s.bytes_written / 4096);
	cr_assert_eq(s.max_wr_bytes, 4096);
}

/* The destination listens on every address: the device comes from the connection. */
Test(rdma_write, wildcard_listen, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {.lanes = 2,
			  .n_blocks = 1,
			  .block_len = 4 * MIB,
			  .src_reg = PIN,
			  .dst_reg = CHK,
			  .dst_chunk = 1 * MIB,
			  .dst_budget = 2 * MIB,
			  .wildcard = true};

	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.peer_reg, FERRY_RDMA_REG_CHUNKED);
}

/* Automatic choice: ODP where the device has it, else pin-all when memlock allows. */
Test(rdma_write, auto_choice, .timeout = 120)
{
	struct ferry_rdma_stats s, d;
	struct xcase c = {.lanes = 1, .n_blocks = 3, .block_len = 4 * MIB};
	struct rt_env env;

	rt_env_or_skip(&env);
	xfer(&c, &s, &d, NULL);
	cr_assert_eq(s.reg, env.dev.odp ? FERRY_RDMA_REG_ODP : FERRY_RDMA_REG_PIN_ALL);
	cr_assert_eq(d.reg, s.reg);
	cr_assert_gt(s.reg_ns, 0);
}

/*
 * Zero runs: the destination's memory starts as garbage; runs flagged ZERO
 * must leave zeros there without reading the source (whose memory holds a
 * pattern at those places), the others carry their data.
 */
Test(rdma_write, zero_runs, .timeout = 120)
{
	const uint64_t len = 8 * MIB;
	struct ferry_rdma_block sb = {rt_map(len), len}, db = {rt_map(len), len};
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_dest_attr da;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_dest *dst = NULL;
	struct ferry_rdma_run runs[64];
	struct ferry_rdma_stats st;
	struct rt_env env;
	uint64_t zero = 0, off = 0;
	size_t n = 0;

	rt_env_or_skip(&env);
	cr_assert(sb.host && db.host);
	rt_fill(sb.host, len, 3);
	memset(db.host, 0xff, len);
	ferry_rdma_dest_attr_init(&da);
	da.host = env.ip;
	rt_id(da.id, 11);
	da.blocks = &db;
	da.n_blocks = 1;
	cr_assert_eq(ferry_rdma_dest_create(&da, &dst), 0);
	ferry_rdma_source_attr_init(&sa);
	sa.host = env.ip;
	sa.port = ferry_rdma_dest_port(dst);
	rt_id(sa.id, 11);
	sa.blocks = &sb;
	sa.n_blocks = 1;
	cr_assert_eq(rt_source_open(&sa, &src), 0);
	/* Alternate data and zero runs of growing sizes (a zero run up to 2 MiB: many SGEs). */
	for (uint64_t k = 1; off < len && n < 64; k++, n++) {
		uint64_t l = (k % 2 ? k : k * 37) * PS;

		if (l > len - off)
			l = len - off;
		runs[n] = (struct ferry_rdma_run){.block = 0,
						  .flags = k % 2 ? 0 : FERRY_RDMA_RUN_ZERO,
						  .offset = off,
						  .length = l};
		if (runs[n].flags)
			zero += l;
		off += l;
	}
	cr_assert_eq(ferry_rdma_source_write(src, 0, runs, n), 0);
	cr_assert_eq(ferry_rdma_source_flush(src, 0, 1), 0);
	for (size_t i = 0; i < n; i++) {
		const uint8_t *d = (const uint8_t *)db.host + runs[i].offset;

		if (runs[i].flags & FERRY_RDMA_RUN_ZERO) {
			for (uint64_t j = 0; j < runs[i].length; j++)
				cr_assert_eq(d[j], 0, "run %zu byte %lu not zero", i,
					     (unsigned long)j);
		} else {
			cr_assert_eq(
			    memcmp(d, (const uint8_t *)sb.host + runs[i].offset, runs[i].length), 0,
			    "run %zu", i);
		}
	}
	ferry_rdma_source_stats(src, &st);
	cr_assert_eq(st.zero_bytes, zero);
	cr_assert_eq(st.bytes_written, off);
	{
		/* Unknown flags are refused before anything is posted. */
		struct ferry_rdma_run bad = {.block = 0, .flags = 0x80, .offset = 0, .length = PS};

		cr_assert_eq(ferry_rdma_source_write(src, 0, &bad, 1), -EINVAL);
	}
	cr_assert_eq(ferry_rdma_source_close(src), 0);
	cr_assert_eq(ferry_rdma_dest_close(dst), 0);
	rt_unmap(sb.host, len);
	rt_unmap(db.host, len);
}
