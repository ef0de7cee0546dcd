/* SPDX-License-Identifier: MIT */
/*
 * Guest RAM in the main stream: the "ram" iterative handler, version 4, in
 * QEMU's record encoding (FORMAT.md §8).
 *
 * Source: setup sends the block list; each PART sends pages of the to_send
 * maps for up to one time slice and ends with EOS; the engine refills the
 * maps from the dirty log between rounds; END sends what is left with the
 * vCPUs stopped. Page bytes are queued by reference, so they leave guest RAM
 * through writev without a copy, and they are read at flush time, after their
 * dirty bit was collected, which is what makes a later write to the page
 * either visible in this copy or recorded for the next round.
 *
 * Destination: every record is checked (flags, block, offset) before a byte
 * of guest RAM is written.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/dirty.h>

#include "internal.h"

bool eng_page_is_zero(const uint8_t *p)
{
	const uint64_t *w = (const uint64_t *)(const void *)p;
	uint64_t acc = 0;

	/* Check the first line alone: most non-zero pages differ there. */
	for (int i = 0; i < 8; i++)
		acc |= w[i];
	if (acc)
		return false;
	for (size_t i = 8; i < ENG_PAGE_SIZE / 8; i += 8)
		acc |= w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] |
		       w[i + 7];
	return acc == 0;
}

/* ---- source ------------------------------------------------------------------------- */

int eng_ram_prepare_source(struct ferry_engine *eng)
{
	struct eng_ram *ram = &eng->ram;

	memset(ram, 0, sizeof(*ram));
	ram->last_block = -1;
	ram->slice_ns = 50 * 1000000ull; /* as QEMU: a PART yields after 50 ms */
	for (uint32_t i = 0; i < eng->nblocks; i++) {
		struct eng_block *b = &eng->blocks[i];
		size_t words = eng_bitmap_words(b->npages);

		free(b->to_send);
		b->to_send = calloc(words ? words : 1, sizeof(uint64_t));
		if (!b->to_send)
			return -ENOMEM;
		/* The bulk round: every page once. */
		eng_bitmap_set_range(b->to_send, 0, b->npages);
		ram->pending_pages += b->npages;
	}
	return 0;
}

void eng_ram_release(struct ferry_engine *eng)
{
	for (uint32_t i = 0; i < eng->nblocks; i++) {
		free(eng->blocks[i].to_send);
		eng->blocks[i].to_send = NULL;
	}
	free(eng->ram.src_order);
	eng->ram.src_order = NULL;
}

/*
 * OR one block's dirty pages into its to_send map. The log reports in the
 * block's page size; a 2 MiB page that was written makes all 512 of its
 * 4 KiB target pages go out again.
 */
static int sync_block(struct ferry_engine *eng, uint32_t i)
{
	struct eng_block *b = &eng->blocks[i];
	uint64_t log_pages = ferry_dirty_log_block_pages(eng->dirty, i);
	uint64_t *coarse;
	unsigned shift = 0;
	int ret;

	if (log_pages == b->npages)
		return ferry_dirty_log_sync(eng->dirty, i, b->to_send);
	if (log_pages == 0 || b->npages % log_pages)
		return -EINVAL;
	while ((log_pages << shift) < b->npages)
		shift++;
	if ((log_pages << shift) != b->npages)
		return -EINVAL;
	coarse = calloc(eng_bitmap_words(log_pages), sizeof(uint64_t));
	if (!coarse)
		return -ENOMEM;
	ret = ferry_dirty_log_sync(eng->dirty, i, coarse);
	if (ret >= 0) {
		uint64_t pos = 0, s, n;

		while (eng_bitmap_next_run(coarse, log_pages, &pos, &s, &n))
			eng_bitmap_set_range(b->to_send, s << shift, n << shift);
	}
	free(coarse);
	return ret;
}

/* Refill the to_send maps from the dirty log. Returns 0 or an error. */
int eng_ram_sync(struct ferry_engine *eng)
{
	struct eng_ram *ram = &eng->ram;
	uint64_t pending = 0;

	for (uint32_t i = 0; i < eng->nblocks; i++) {
		struct eng_block *b = &eng->blocks[i];
		int ret = sync_block(eng, i);

		if (ret < 0) {
			eng_fail(eng, ret, "dirty log sync of block '%s' failed: %s", b->name,
				 ferry_strerror(ret));
			return ret;
		}
		pending += eng_bitmap_count(b->to_send, b->npages);
	}
	ram->pending_pages = pending;
	ram->cursor_block = 0;
	ram->cursor_page = 0;
	return 0;
}

static int ram_setup(struct ferry_writer *w, void *opaque)
{
	struct ferry_engine *eng = opaque;

	ferry_put_be64(w, eng->total_ram | RAM_FLAG_MEM_SIZE);
	for (uint32_t i = 0; i < eng->nblocks; i++) {
		ferry_put_cstr(w, eng->blocks[i].name);
		ferry_put_be64(w, eng->blocks[i].length);
	}
	ferry_put_be64(w, RAM_FLAG_EOS);
	return ferry_writer_error(w);
}

uint64_t eng_ram_pending_pages(struct ferry_engine *eng)
{
	uint64_t pending = eng->ram.pending_pages;

	/* A data-path round hands pages out from several threads at once. */
	if (eng->dp.active && eng->dp.round_open) {
		uint64_t taken = atomic_load(&eng->dp.round_pages);

		pending = taken < pending ? pending - taken : 0;
	}
	return pending;
}

static uint64_t ram_pending(void *opaque)
{
	return eng_ram_pending_pages(opaque) * ENG_PAGE_SIZE;
}

/* One page record; the page itself by reference. */
static void put_page(struct ferry_engine *eng, struct ferry_writer *w, uint32_t bi, uint64_t page)
{
	struct eng_block *b = &eng->blocks[bi];
	const uint8_t *p = b->host + (page << ENG_PAGE_SHIFT);
	bool same = eng->ram.last_block == (int)bi;
	bool zero = !eng->params.no_zero_detection && eng_page_is_zero(p);
	uint64_t word = (page << ENG_PAGE_SHIFT) | (zero ? RAM_FLAG_ZERO : RAM_FLAG_PAGE);

	if (same)
		word |= RAM_FLAG_CONTINUE;
	ferry_put_be64(w, word);
	if (!same)
		ferry_put_cstr(w, b->name);
	eng->ram.last_block = (int)bi;
	if (zero) {
		ferry_put_u8(w, 0);
		eng_stats_add(eng, &eng->stats.zero_pages, 1);
	} else {
		ferry_put_buffer_ref(w, p, ENG_PAGE_SIZE);
		eng_stats_add(eng, &eng->stats.normal_pages, 1);
		eng_stats_add(eng, &eng->stats.normal_bytes, ENG_PAGE_SIZE);
	}
}

/*
 * Send pages from the cursor on. Returns 1 when every map is empty, 0 when
 * the slice or the byte budget ran out first.
 */
static int send_pages(struct ferry_engine *eng, struct ferry_writer *w, bool unbounded)
{
	struct eng_ram *ram = &eng->ram;
	uint64_t t0 = eng_now_ns(), start = ferry_writer_offset(w);
	unsigned n = 0;

	while (ram->cursor_block < eng->nblocks) {
		struct eng_block *b = &eng->blocks[ram->cursor_block];
		uint64_t pos = ram->cursor_page, s, len;

		if (!eng_bitmap_next_run(b->to_send, b->npages, &pos, &s, &len)) {
			ram->cursor_block++;
			ram->cursor_page = 0;
			continue;
		}
		for (uint64_t pg = s; pg < s + len; pg++) {
			eng_bitmap_clear(b->to_send, pg);
			ram->pending_pages--;
			put_page(eng, w, ram->cursor_block, pg);
			ram->cursor_page = pg + 1;
			/* Hand full batches to the socket as they fill. */
			if ((++n & 63) == 0) {
				if (ferry_writer_flush(w) < 0)
					return ferry_writer_error(w);
				if (unbounded)
					continue;
				if (eng_cancelled(eng))
					return FERRY_ECANCELED;
				if (eng_now_ns() - t0 >= ram->slice_ns)
					return 0;
				if (ram->budget_bytes &&
				    ferry_writer_offset(w) - start >= ram->budget_bytes)
					return 0;
			}
		}
	}
	return 1;
}

/*
 * With a data path, a PART carries no page: it waits (one slice at most) for
 * the workers to finish the round, and once every lane flushed, marks the
 * round's end with MULTIFD_FLUSH before EOS. Returns as send_pages().
 */
static int dp_pages(struct ferry_engine *eng, struct ferry_writer *w, bool unbounded)
{
	int ret = eng_dp_round(eng, unbounded ? 0 : eng->ram.slice_ns);

	/* Lanes failed: move to TCP lanes (a HOOK record tells the destination), go on. */
	while (ret == 2) {
		ret = eng_dp_switch(eng, w);
		if (ret == 0)
			ret = eng_dp_round(eng, unbounded ? 0 : eng->ram.slice_ns);
	}

	if (ret == 1) {
		eng->ram.pending_pages = 0;
		ferry_put_be64(w, RAM_FLAG_MULTIFD_FLUSH);
	}
	return ret;
}

static int ram_iterate(struct ferry_writer *w, void *opaque)
{
	struct ferry_engine *eng = opaque;
	int ret = eng->dp.active ? dp_pages(eng, w, false) : send_pages(eng, w, false);

	if (ret < 0)
		return ret;
	ferry_put_be64(w, RAM_FLAG_EOS);
	return ferry_writer_error(w) ? ferry_writer_error(w) : ret;
}

static int ram_complete(struct ferry_writer *w, void *opaque)
{
	struct ferry_engine *eng = opaque;
	int ret = eng->dp.active ? dp_pages(eng, w, true) : send_pages(eng, w, true);

	if (ret < 0)
		return ret;
	ferry_put_be64(w, RAM_FLAG_EOS);
	return ferry_writer_error(w);
}

/* ---- destination ------------------------------------------------------------------------ */

static int find_block(struct ferry_engine *eng, const char *name)
{
	for (uint32_t i = 0; i < eng->nblocks; i++)
		if (strcmp(eng->blocks[i].name, name) == 0)
			return (int)i;
	return -1;
}

static int load_block_list(struct ferry_engine *eng, struct ferry_reader *r, uint64_t total)
{
	uint64_t sum = 0;
	uint32_t seen = 0;

	free(eng->ram.src_order);
	eng->ram.src_order = calloc(eng->nblocks, sizeof(*eng->ram.src_order));
	if (!eng->ram.src_order)
		return ferry_reader_fail(r, -ENOMEM, "out of memory");
	if (total != eng->total_ram)
		return ferry_reader_fail(r, FERRY_EMISMATCH,
					 "guest RAM of %" PRIu64 " bytes, this side has %" PRIu64,
					 total, eng->total_ram);
	while (sum < total) {
		char name[256];
		uint64_t len;
		int bi;

		ferry_get_cstr(r, name);
		len = ferry_get_be64(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		bi = find_block(eng, name);
		if (bi < 0)
			return ferry_reader_fail(r, FERRY_EMISMATCH,
						 "RAM block '%s' does not exist here", name);
		if (len != eng->blocks[bi].length)
			return ferry_reader_fail(r, FERRY_EMISMATCH,
						 "RAM block '%s' has %" PRIu64 " bytes, %" PRIu64
						 " here",
						 name, len, eng->blocks[bi].length);
		/* Every block once: a repeat could make the sum reach the total early. */
		for (uint32_t i = 0; i < seen; i++)
			if (eng->ram.src_order[i] == (uint32_t)bi)
				return ferry_reader_fail(r, FERRY_EBADSTREAM,
							 "RAM block '%s' listed twice", name);
		if (seen == eng->nblocks)
			return ferry_reader_fail(r, FERRY_EBADSTREAM, "RAM block '%s' listed twice",
						 name);
		eng->ram.src_order[seen++] = (uint32_t)bi;
		sum += len;
	}
	if (sum != total || seen != eng->nblocks)
		return ferry_reader_fail(r, FERRY_EMISMATCH,
					 "the block list does not cover this side's %u blocks",
					 eng->nblocks);
	eng->ram.blocks_seen = true;
	return 0;
}

static int ram_load(struct ferry_reader *r, void *opaque, int version_id, enum ferry_vm_record type)
{
	struct ferry_engine *eng = opaque;
	struct eng_ram *ram = &eng->ram;

	if (version_id != RAM_SECTION_VERSION)
		return ferry_reader_fail(r, FERRY_EVERSION, "RAM section version %d, expected 4",
					 version_id);
	if (type == FERRY_VM_SECTION_START) {
		ram->recv_block = -1;
		ram->blocks_seen = false;
		ram->copied = 0;
		eng_set_status(eng, FERRY_STATUS_ACTIVE);
	} else {
		/* Setup is over: a data path would have been negotiated by now (one that
		 * may move to TCP lanes mid-migration keeps the listener for them). */
		if (!eng->dp.keep_listener)
			eng_conn_stop_listening(eng);
	}
	for (;;) {
		uint64_t word = ferry_get_be64(r);
		uint64_t flags = word & (ENG_PAGE_SIZE - 1),
			 addr = word & ~(uint64_t)(ENG_PAGE_SIZE - 1);
		uint64_t kind = flags & ~(uint64_t)RAM_FLAG_CONTINUE;
		struct eng_block *b;

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		/* Markers carry no address: a stray bit there is a corrupted record. */
		if ((kind == RAM_FLAG_EOS || kind == RAM_FLAG_MULTIFD_FLUSH ||
		     kind == RAM_FLAG_HOOK) &&
		    (addr || (flags & RAM_FLAG_CONTINUE)))
			return ferry_reader_fail(r, FERRY_EBADSTREAM,
						 "RAM %s record with address bits 0x%" PRIx64,
						 kind == RAM_FLAG_EOS	 ? "EOS"
						 : kind == RAM_FLAG_HOOK ? "HOOK"
									 : "MULTIFD_FLUSH",
						 word);
		if (kind == RAM_FLAG_EOS)
			return 0;
		if (kind == RAM_FLAG_MULTIFD_FLUSH) {
			/* A round's end: with a data path, every lane must have landed it. */
			if (eng->dp.active) {
				int ret = eng_dp_wait_flush(eng);

				if (ret < 0)
					return ferry_reader_fail(r, ret,
								 "waiting for the data "
								 "connections at a round's end");
			}
			continue;
		}
		if (kind == RAM_FLAG_HOOK) {
			/* The source moved its data path to TCP lanes (datapath.c). */
			int ret = eng_dp_switch_dest(eng);

			if (ret < 0)
				return ferry_reader_fail(r, ret,
							 "moving the data path to TCP lanes");
			continue;
		}
		if (kind == RAM_FLAG_MEM_SIZE) {
			int ret;

			if (type != FERRY_VM_SECTION_START || ram->blocks_seen)
				return ferry_reader_fail(r, FERRY_EBADSTREAM,
							 "block list outside the START section");
			ret = load_block_list(eng, r, addr);
			if (ret)
				return ret;
			continue;
		}
		if (kind != RAM_FLAG_ZERO && kind != RAM_FLAG_PAGE)
			return ferry_reader_fail(
			    r, FERRY_EBADSTREAM,
			    "unsupported RAM record flags 0x%03" PRIx64
			    " (XBZRLE, compression and RDMA hooks are not accepted)",
			    flags);
		if (!ram->blocks_seen)
			return ferry_reader_fail(r, FERRY_EBADSTREAM, "page before the block list");
		if (!(flags & RAM_FLAG_CONTINUE)) {
			char name[256];
			int bi;

			ferry_get_cstr(r, name);
			if (ferry_reader_error(r))
				return ferry_reader_error(r);
			bi = find_block(eng, name);
			if (bi < 0)
				return ferry_reader_fail(r, FERRY_EBADSTREAM,
							 "page of unknown RAM block '%s'", name);
			ram->recv_block = bi;
		} else if (ram->recv_block < 0) {
			return ferry_reader_fail(r, FERRY_EBADSTREAM,
						 "CONTINUE record with no block before it");
		}
		b = &eng->blocks[ram->recv_block];
		if (addr >= b->length)
			return ferry_reader_fail(r, FERRY_EBADSTREAM,
						 "page offset 0x%" PRIx64
						 " beyond block '%s' (%" PRIu64 " bytes)",
						 addr, b->name, b->length);
		if (kind == RAM_FLAG_ZERO) {
			uint8_t fill = ferry_get_u8(r);
			uint8_t *p = b->host + addr;

			if (ferry_reader_error(r))
				return ferry_reader_error(r);
			if (fill != 0)
				return ferry_reader_fail(r, FERRY_EBADSTREAM,
							 "ZERO record with fill byte 0x%02x", fill);
			/* Touch the page only if needed: fresh memory is already zero. */
			if (!eng_page_is_zero(p))
				memset(p, 0, ENG_PAGE_SIZE);
			eng_stats_add(eng, &eng->stats.zero_pages, 1);
		} else {
			uint64_t copied = ferry_reader_copied(r);

			if (ferry_get_buffer(r, b->host + addr, ENG_PAGE_SIZE) < 0)
				return ferry_reader_error(r);
			/* Bytes that came through the read-ahead buffer were copied once. */
			ram->copied += ferry_reader_copied(r) - copied;
			eng_stats_add(eng, &eng->stats.normal_pages, 1);
			eng_stats_add(eng, &eng->stats.normal_bytes, ENG_PAGE_SIZE);
		}
	}
}

const struct ferry_iter_ops eng_ram_ops = {
    .version_id = RAM_SECTION_VERSION,
    .priority = FERRY_PRI_NORMAL,
    .setup = ram_setup,
    .pending = ram_pending,
    .iterate = ram_iterate,
    .complete = ram_complete,
    .load = ram_load,
};
