/* SPDX-License-Identifier: MIT */
/*
 * The multi-channel lane records as bytes (docs/data-path.md), for fuzz_lanes
 * and the seeds make-seeds writes for it. Written from the protocol's
 * description, not from multi.c's private structs, so the fuzzer's framing
 * is an independent reading of the format.
 */
#ifndef FERRY_FUZZ_LANES_H
#define FERRY_FUZZ_LANES_H

#include <endian.h>
#include <stdint.h>
#include <string.h>

#define FZ_LANES_BLOCK0_PAGES 16u
#define FZ_LANES_BLOCK1_PAGES 4u
#define FZ_LANES_ID	      "fuzz-lane-id-016"
#define FZ_LANES_HELLO_LEN    64u
#define FZ_LANES_PKT_LEN      32u
#define FZ_LANES_RUN_LEN      16u
#define FZ_LANES_MAGIC	      0x46525944u /* "FRYD" */

enum { FZ_PKT_PAGES = 1, FZ_PKT_SYNC = 2, FZ_PKT_END = 3 };

static inline void fz_put16(uint8_t *p, uint16_t v)
{
	v = htobe16(v);
	memcpy(p, &v, 2);
}

static inline void fz_put32(uint8_t *p, uint32_t v)
{
	v = htobe32(v);
	memcpy(p, &v, 4);
}

static inline void fz_put64(uint8_t *p, uint64_t v)
{
	v = htobe64(v);
	memcpy(p, &v, 8);
}

/* HELLO: magic, version 1, lane, lanes, flags 0, page size, id, 32 reserved bytes. */
static inline void fz_lanes_hello(uint8_t out[FZ_LANES_HELLO_LEN], uint16_t lane, uint16_t lanes)
{
	memset(out, 0, FZ_LANES_HELLO_LEN);
	fz_put32(out, FZ_LANES_MAGIC);
	fz_put16(out + 4, 1);
	fz_put16(out + 6, lane);
	fz_put16(out + 8, lanes);
	fz_put16(out + 10, 0);
	fz_put32(out + 12, 4096);
	memcpy(out + 16, FZ_LANES_ID, 16);
}

/* A packet header: magic, type, flags, block, ndata, nzero, data pages, zero pages, seq. */
static inline void fz_lanes_pkt(uint8_t out[FZ_LANES_PKT_LEN], uint16_t type, uint32_t block,
				uint16_t ndata, uint16_t nzero, uint32_t data_pages,
				uint32_t zero_pages, uint64_t seq)
{
	fz_put32(out, FZ_LANES_MAGIC);
	fz_put16(out + 4, type);
	fz_put16(out + 6, 0);
	fz_put32(out + 8, block);
	fz_put16(out + 12, ndata);
	fz_put16(out + 14, nzero);
	fz_put32(out + 16, data_pages);
	fz_put32(out + 20, zero_pages);
	fz_put64(out + 24, seq);
}

/* A run of the table: first page, page count, 4 reserved bytes. */
static inline void fz_lanes_run(uint8_t out[FZ_LANES_RUN_LEN], uint64_t first, uint32_t npages)
{
	fz_put64(out, first);
	fz_put32(out + 8, npages);
	fz_put32(out + 12, 0);
}

#endif
