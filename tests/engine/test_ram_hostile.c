/* SPDX-License-Identifier: MIT */
/*
 * engine_ram_hostile: the destination's RAM record parser (engine/ram.c)
 * against hand-made hostile records, framed as fuzz_ram frames them
 * (tests/fuzz/fuzz_ram.h): every bad record fails the load with its code and
 * a message that names the problem, and no byte of guest RAM is written,
 * inside the blocks or beyond them (guard pages on both sides). Also every
 * truncation of a valid section fails cleanly.
 */
#include <criterion/criterion.h>
#include <criterion/parameterized.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>

#include "fuzz/fuzz_ram.h"

#define F_ZERO	   0x002u
#define F_MEM_SIZE 0x004u
#define F_PAGE	   0x008u
#define F_EOS	   0x010u
#define F_CONTINUE 0x020u
#define F_XBZRLE   0x040u
#define F_HOOK	   0x080u
#define GUARD	   4096u
#define ARENA	   (GUARD + FZ_RAM_BLOCK0_LEN + GUARD + FZ_RAM_BLOCK1_LEN + GUARD)

struct rig {
	struct ferry_engine *eng;
	uint8_t *arena;
	struct ferry_writer *w; /* the section payloads */
};

static void rig_init(struct rig *g)
{
	struct ferry_ram_block b0 = {
	    .name = FZ_RAM_BLOCK0, .length = FZ_RAM_BLOCK0_LEN, .page_size = 4096, .numa_node = -1};
	struct ferry_ram_block b1 = {
	    .name = FZ_RAM_BLOCK1, .length = FZ_RAM_BLOCK1_LEN, .page_size = 4096, .numa_node = -1};

	g->arena = aligned_alloc(4096, ARENA);
	cr_assert_not_null(g->arena);
	memset(g->arena, 0xa5, ARENA);
	b0.host = g->arena + GUARD;
	b1.host = g->arena + GUARD + FZ_RAM_BLOCK0_LEN + GUARD;
	memset(b0.host, 0, FZ_RAM_BLOCK0_LEN);
	memset(b1.host, 0, FZ_RAM_BLOCK1_LEN);
	cr_assert_eq(ferry_engine_create(&g->eng), 0);
	cr_assert_geq(ferry_engine_add_ram(g->eng, &b0), 0);
	cr_assert_geq(ferry_engine_add_ram(g->eng, &b1), 0);
	cr_assert_eq(ferry_writer_create_mem(0, &g->w), 0);
}

static void rig_fini(struct rig *g)
{
	ferry_writer_destroy(g->w);
	ferry_engine_destroy(g->eng);
	free(g->arena);
}

/* Load @len bytes of payloads; returns the result and copies the message. */
static int load_payload(struct rig *g, const uint8_t *p, size_t len, char *msg, size_t msglen)
{
	struct ferry_load_config cfg = {.vmdesc_mode = FERRY_VMDESC_NONE};
	struct ferry_writer *fw;
	struct ferry_reader *r;
	const uint8_t *s;
	size_t slen;
	int ret;

	cr_assert_eq(ferry_writer_create_mem(0, &fw), 0);
	fz_ram_frame(fw, p, len);
	s = ferry_writer_mem_data(fw, &slen);
	cr_assert_eq(ferry_reader_create_mem(s, slen, &r), 0);
	ret = ferry_load(r, ferry_engine_devices(g->eng), &cfg);
	snprintf(msg, msglen, "%s", ferry_reader_errmsg(r));
	ferry_reader_destroy(r);
	ferry_writer_destroy(fw);
	return ret;
}

static int load(struct rig *g, char *msg, size_t msglen)
{
	size_t len;
	const uint8_t *p = ferry_writer_mem_data(g->w, &len);

	return load_payload(g, p, len, msg, msglen);
}

/* Nothing written anywhere: blocks still zero, guards still 0xa5. */
static void expect_untouched(struct rig *g, const char *what)
{
	for (size_t i = 0; i < ARENA; i++) {
		bool guard =
		    i < GUARD ||
		    (i >= GUARD + FZ_RAM_BLOCK0_LEN && i < GUARD + FZ_RAM_BLOCK0_LEN + GUARD) ||
		    i >= ARENA - GUARD;

		cr_assert_eq(g->arena[i], guard ? 0xa5 : 0, "%s: byte %zu of the arena written",
			     what, i);
	}
}

static void block_list(struct ferry_writer *w, uint64_t total, bool twice)
{
	ferry_put_be64(w, total | F_MEM_SIZE);
	ferry_put_cstr(w, FZ_RAM_BLOCK0);
	ferry_put_be64(w, FZ_RAM_BLOCK0_LEN);
	ferry_put_cstr(w, twice ? FZ_RAM_BLOCK0 : FZ_RAM_BLOCK1);
	ferry_put_be64(w, twice ? FZ_RAM_BLOCK0_LEN : FZ_RAM_BLOCK1_LEN);
	ferry_put_be64(w, F_EOS);
}

static void good_list(struct ferry_writer *w)
{
	block_list(w, FZ_RAM_BLOCK0_LEN + FZ_RAM_BLOCK1_LEN, false);
	ferry_put_buffer(w, FZ_RAM_SEP, FZ_RAM_SEP_LEN);
}

static void page(struct ferry_writer *w, uint64_t word, const char *block)
{
	static const uint8_t data[4096] = {1, 2, 3, 4};

	ferry_put_be64(w, word);
	if (block)
		ferry_put_cstr(w, block);
	ferry_put_buffer(w, data, sizeof(data));
}

enum hostile_case {
	H_TOTAL_MISMATCH,
	H_BLOCK_TWICE,
	H_UNKNOWN_BLOCK_IN_LIST,
	H_LIST_IN_PART,
	H_PAGE_BEFORE_LIST,
	H_UNKNOWN_BLOCK,
	H_CONTINUE_FIRST,
	H_OFFSET_PAST_BLOCK,
	H_OFFSET_PAST_SMALL_BLOCK,
	H_ZERO_FILL,
	H_XBZRLE,
	H_HOOK,
	H_UNKNOWN_FLAGS,
	H_TRUNCATED_PAGE,
	H_EOS_WITH_ADDRESS,
	H_FLUSH_WITH_ADDRESS,
	H_HOOK_WITH_ADDRESS,
	H_COUNT,
};

/* No pointers: Criterion runs each parameter in a fresh exec of the runner. */
struct hostile {
	enum hostile_case c;
	int err;
	char msg[48];
};

static struct hostile cases[] = {
    {H_TOTAL_MISMATCH, FERRY_EMISMATCH, "this side has"},
    {H_BLOCK_TWICE, FERRY_EBADSTREAM, "listed twice"},
    {H_UNKNOWN_BLOCK_IN_LIST, FERRY_EMISMATCH, "does not exist here"},
    {H_LIST_IN_PART, FERRY_EBADSTREAM, "outside the START"},
    {H_PAGE_BEFORE_LIST, FERRY_EBADSTREAM, "before the block list"},
    {H_UNKNOWN_BLOCK, FERRY_EBADSTREAM, "unknown RAM block"},
    {H_CONTINUE_FIRST, FERRY_EBADSTREAM, "CONTINUE record with no block"},
    {H_OFFSET_PAST_BLOCK, FERRY_EBADSTREAM, "beyond block"},
    {H_OFFSET_PAST_SMALL_BLOCK, FERRY_EBADSTREAM, "beyond block"},
    {H_ZERO_FILL, FERRY_EBADSTREAM, "fill byte"},
    {H_XBZRLE, FERRY_EBADSTREAM, "XBZRLE"},
    /* A HOOK moves a data path to TCP lanes: refused when there is none to move. */
    {H_HOOK, FERRY_EBADSTREAM, "moving the data path to TCP lanes"},
    {H_HOOK_WITH_ADDRESS, FERRY_EBADSTREAM, "HOOK record with address bits"},
    {H_UNKNOWN_FLAGS, FERRY_EBADSTREAM, "unsupported RAM record flags"},
    {H_TRUNCATED_PAGE, 0, ""}, /* any error: the section ends inside a page */
    {H_EOS_WITH_ADDRESS, FERRY_EBADSTREAM, "EOS record with address bits"},
    {H_FLUSH_WITH_ADDRESS, FERRY_EBADSTREAM, "MULTIFD_FLUSH record with address bits"},
};

ParameterizedTestParameters(engine_ram_hostile, refused)
{
	return cr_make_param_array(struct hostile, cases, sizeof(cases) / sizeof(cases[0]));
}

ParameterizedTest(struct hostile *h, engine_ram_hostile, refused)
{
	struct rig g;
	struct ferry_writer *w;
	char msg[512];
	int ret;

	rig_init(&g);
	w = g.w;
	switch (h->c) {
	case H_TOTAL_MISMATCH:
		block_list(w, FZ_RAM_BLOCK0_LEN, false);
		break;
	case H_BLOCK_TWICE:
		/* The right total, but the big block twice instead of both. */
		block_list(w, FZ_RAM_BLOCK0_LEN + FZ_RAM_BLOCK1_LEN, true);
		break;
	case H_UNKNOWN_BLOCK_IN_LIST:
		ferry_put_be64(w, (FZ_RAM_BLOCK0_LEN + FZ_RAM_BLOCK1_LEN) | F_MEM_SIZE);
		ferry_put_cstr(w, "rom");
		ferry_put_be64(w, 4096);
		break;
	case H_LIST_IN_PART:
		good_list(w);
		block_list(w, FZ_RAM_BLOCK0_LEN + FZ_RAM_BLOCK1_LEN, false);
		break;
	case H_PAGE_BEFORE_LIST:
		page(w, F_PAGE, FZ_RAM_BLOCK0);
		break;
	case H_UNKNOWN_BLOCK:
		good_list(w);
		page(w, F_PAGE, "vga.rom");
		break;
	case H_CONTINUE_FIRST:
		good_list(w);
		page(w, F_PAGE | F_CONTINUE, NULL);
		break;
	case H_OFFSET_PAST_BLOCK:
		good_list(w);
		page(w, (uint64_t)FZ_RAM_BLOCK0_LEN | F_PAGE, FZ_RAM_BLOCK0);
		break;
	case H_OFFSET_PAST_SMALL_BLOCK:
		/* Inside the bigger block, past the smaller one that the record names. */
		good_list(w);
		page(w, F_PAGE, FZ_RAM_BLOCK1);
		page(w, (uint64_t)FZ_RAM_BLOCK1_LEN | F_PAGE | F_CONTINUE, NULL);
		break;
	case H_ZERO_FILL:
		good_list(w);
		ferry_put_be64(w, 4096 | F_ZERO);
		ferry_put_cstr(w, FZ_RAM_BLOCK0);
		ferry_put_u8(w, 0x11);
		break;
	case H_XBZRLE:
		good_list(w);
		page(w, F_XBZRLE, FZ_RAM_BLOCK0);
		break;
	case H_HOOK:
		good_list(w);
		ferry_put_be64(w, F_HOOK);
		break;
	case H_UNKNOWN_FLAGS:
		good_list(w);
		ferry_put_be64(w, 0x400 | F_PAGE);
		break;
	case H_TRUNCATED_PAGE: {
		static const uint8_t half[2048];

		good_list(w);
		ferry_put_be64(w, F_PAGE);
		ferry_put_cstr(w, FZ_RAM_BLOCK0);
		ferry_put_buffer(w, half, sizeof(half));
		break;
	}
	case H_EOS_WITH_ADDRESS:
		/* One flipped byte in an EOS word used to be accepted as EOS. */
		good_list(w);
		ferry_put_be64(w, 0x5a00000000000000ull | F_EOS);
		break;
	case H_FLUSH_WITH_ADDRESS:
		good_list(w);
		ferry_put_be64(w, 0x1000 | 0x200);
		break;
	case H_HOOK_WITH_ADDRESS:
		good_list(w);
		ferry_put_be64(w, 0x3000 | F_HOOK);
		break;
	case H_COUNT:
		break;
	}
	ret = load(&g, msg, sizeof(msg));
	if (h->err)
		cr_assert_eq(ret, h->err, "case %d: %d (%s), expected %d", h->c, ret, msg, h->err);
	else
		cr_assert_lt(ret, 0, "case %d loaded", h->c);
	cr_assert(strstr(msg, h->msg), "case %d: message '%s' lacks '%s'", h->c, msg, h->msg);
	/* The truncated page may have been partly received into its page: that
	 * is guest RAM the load then refuses, never a byte outside the blocks. */
	if (h->c != H_TRUNCATED_PAGE && h->c != H_OFFSET_PAST_SMALL_BLOCK)
		expect_untouched(&g, "refused load");
	rig_fini(&g);
}

/* Every prefix of a valid PART payload (cut inside a record) fails, never loads. */
Test(engine_ram_hostile, every_truncation_fails)
{
	struct rig g;
	struct ferry_writer *w;
	const uint8_t *p;
	size_t len, list_len;
	char msg[512];

	rig_init(&g);
	w = g.w;
	good_list(w);
	p = ferry_writer_mem_data(w, &list_len);
	page(w, F_PAGE, FZ_RAM_BLOCK0);
	ferry_put_be64(w, 4096 | F_ZERO | F_CONTINUE);
	ferry_put_u8(w, 0);
	page(w, 3 * 4096 | F_PAGE, FZ_RAM_BLOCK1);
	ferry_put_be64(w, F_EOS);
	p = ferry_writer_mem_data(w, &len);
	cr_assert_eq(load_payload(&g, p, len, msg, sizeof(msg)), 0, "%s", msg);
	for (size_t cut = list_len; cut < len; cut++) {
		int ret = load_payload(&g, p, cut, msg, sizeof(msg));

		cr_assert_lt(ret, 0, "a payload cut at %zu of %zu loaded", cut, len);
		cr_assert_neq(msg[0], '\0', "cut at %zu: no message", cut);
	}
	rig_fini(&g);
}
