/* SPDX-License-Identifier: MIT */
/*
 * fuzz_ram: the destination's RAM record parser (engine/ram.c, the "ram"
 * iterative section), against a small engine with two registered RAM blocks.
 *
 * Input layout: the contents of the "ram" section's records, cut at every
 * FZ_RAM_SEP. The first piece is the START section's payload, the last one
 * (when there are two or more) the END's, the ones between PARTs. The harness
 * writes the framing around them (header, configuration, section headers and
 * footers, EOF), so the fuzzer spends its time on the records themselves:
 * flags, block names, offsets, the block list, ZERO fill bytes, page data.
 *
 * Checks, besides the sanitizers: a failed load leaves an error and a
 * message on the reader; a successful one wrote nothing outside the blocks
 * (the guard pages around them are compared with their pattern).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/engine.h>
#include <ferry/log.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>

#include "fuzz_ram.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

/* Guest RAM: [guard][block 0][guard][block 1][guard], one mapping. */
#define GUARD	   4096u
#define GUARD_FILL 0xa5

static uint8_t *arena;
static struct ferry_engine *eng;

static void quiet(void *opaque, enum ferry_log_level level, const char *module, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)module;
	(void)msg;
}

static size_t arena_len(void)
{
	return GUARD + FZ_RAM_BLOCK0_LEN + GUARD + FZ_RAM_BLOCK1_LEN + GUARD;
}

static void setup_once(void)
{
	struct ferry_ram_block b0 = {
	    .name = FZ_RAM_BLOCK0, .length = FZ_RAM_BLOCK0_LEN, .page_size = 4096, .numa_node = -1};
	struct ferry_ram_block b1 = {
	    .name = FZ_RAM_BLOCK1, .length = FZ_RAM_BLOCK1_LEN, .page_size = 4096, .numa_node = -1};

	if (eng)
		return;
	/* The loader logs every refusal; at this rate that is only noise. */
	ferry_set_log(quiet, NULL, FERRY_LOG_ERROR);
	arena = aligned_alloc(4096, arena_len());
	if (!arena)
		abort();
	b0.host = arena + GUARD;
	b1.host = arena + GUARD + FZ_RAM_BLOCK0_LEN + GUARD;
	if (ferry_engine_create(&eng) < 0 || ferry_engine_add_ram(eng, &b0) < 0 ||
	    ferry_engine_add_ram(eng, &b1) < 0)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ferry_load_config cfg = {.vmdesc_mode = FERRY_VMDESC_NONE};
	struct ferry_writer *w = NULL;
	struct ferry_reader *r = NULL;
	const uint8_t *stream;
	size_t stream_len;
	int ret;

	setup_once();
	memset(arena, GUARD_FILL, arena_len());
	memset(arena + GUARD, 0, FZ_RAM_BLOCK0_LEN);
	memset(arena + GUARD + FZ_RAM_BLOCK0_LEN + GUARD, 0, FZ_RAM_BLOCK1_LEN);

	if (ferry_writer_create_mem(0, &w) < 0)
		abort();
	fz_ram_frame(w, data, size);
	stream = ferry_writer_mem_data(w, &stream_len);
	if (!stream || ferry_reader_create_mem(stream, stream_len, &r) < 0)
		abort();

	ret = ferry_load(r, ferry_engine_devices(eng), &cfg);
	if (ret < 0) {
		CHECK(ferry_reader_error(r) != 0);
		CHECK(ferry_reader_errmsg(r)[0] != '\0');
	} else {
		CHECK(ferry_reader_error(r) == 0);
	}
	/* Whatever the records said, nothing outside the blocks was written. */
	for (size_t i = 0; i < GUARD; i++) {
		CHECK(arena[i] == GUARD_FILL);
		CHECK(arena[GUARD + FZ_RAM_BLOCK0_LEN + i] == GUARD_FILL);
		CHECK(arena[arena_len() - GUARD + i] == GUARD_FILL);
	}
	ferry_reader_destroy(r);
	ferry_writer_destroy(w);
	return 0;
}
