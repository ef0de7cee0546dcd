/* SPDX-License-Identifier: MIT */
/* The engine's page bitmaps, checked against a bit-at-a-time model. */
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "engine/bitmap.h"

#define NBITS  1000 /* not a multiple of 64: the last word is partial */
#define NWORDS ((NBITS + 63) / 64)

/* The model: one byte per bit. */
struct model {
	uint8_t bit[NBITS];
};

static void check_same(const uint64_t *map, const struct model *m)
{
	for (uint64_t i = 0; i < NBITS; i++)
		cr_assert_eq(eng_bitmap_test(map, i), m->bit[i], "bit %llu", (unsigned long long)i);
	/* Nothing beyond NBITS ever gets set. */
	uint64_t last = map[eng_bitmap_words(NBITS) - 1];
	cr_assert_eq(last >> (NBITS % 64), 0, "bits past the end are set");
}

Test(engine_bitmap, words)
{
	cr_assert_eq(eng_bitmap_words(0), 0);
	cr_assert_eq(eng_bitmap_words(1), 1);
	cr_assert_eq(eng_bitmap_words(64), 1);
	cr_assert_eq(eng_bitmap_words(65), 2);
	cr_assert_eq(eng_bitmap_words((uint64_t)1 << 40), (size_t)1 << 34);
}

Test(engine_bitmap, layout_is_little_endian_words)
{
	uint64_t map[2] = {0, 0};

	eng_bitmap_set(map, 0);
	eng_bitmap_set(map, 63);
	eng_bitmap_set(map, 64);
	eng_bitmap_set(map, 66);
	cr_assert_eq(map[0], 0x8000000000000001ull);
	cr_assert_eq(map[1], 0x5);
	eng_bitmap_clear(map, 63);
	cr_assert_eq(map[0], 1);
}

Test(engine_bitmap, ranges_match_the_model)
{
	uint64_t map[NWORDS];
	struct model m;
	unsigned int seed = 12345;

	memset(map, 0, sizeof(map));
	memset(&m, 0, sizeof(m));
	for (int round = 0; round < 2000; round++) {
		uint64_t start = (uint64_t)rand_r(&seed) % NBITS;
		uint64_t len = (uint64_t)rand_r(&seed) % (NBITS - start + 1);
		/* Favour the interesting lengths: 0, 1, word edges. */
		if (round % 7 == 0)
			len = len % 2;
		bool set = rand_r(&seed) & 1;
		if (set)
			eng_bitmap_set_range(map, start, len);
		else
			eng_bitmap_clear_range(map, start, len);
		memset(m.bit + start, set, len);
		if (round % 50 == 0)
			check_same(map, &m);

		/* count_range agrees with the model on a random window. */
		uint64_t cs = (uint64_t)rand_r(&seed) % NBITS;
		uint64_t cl = (uint64_t)rand_r(&seed) % (NBITS - cs + 1);
		uint64_t expect = 0;
		for (uint64_t i = cs; i < cs + cl; i++)
			expect += m.bit[i];
		cr_assert_eq(eng_bitmap_count_range(map, cs, cl), expect);
	}
	check_same(map, &m);
	uint64_t total = 0;
	for (int i = 0; i < NBITS; i++)
		total += m.bit[i];
	cr_assert_eq(eng_bitmap_count(map, NBITS), total);
}

Test(engine_bitmap, next_set_next_clear_and_runs)
{
	uint64_t map[NWORDS];
	struct model m;
	unsigned int seed = 777;

	for (int round = 0; round < 200; round++) {
		memset(map, 0, sizeof(map));
		memset(&m, 0, sizeof(m));
		/* Sparse in some rounds, dense in others. */
		int density = round % 4 == 0 ? 2 : round % 4 == 1 ? 50 : 98;
		for (uint64_t i = 0; i < NBITS; i++) {
			if (rand_r(&seed) % 100 < density) {
				eng_bitmap_set(map, i);
				m.bit[i] = 1;
			}
		}
		for (uint64_t from = 0; from <= NBITS; from += 1 + (uint64_t)rand_r(&seed) % 5) {
			uint64_t es = from, ec = from;
			while (es < NBITS && !m.bit[es])
				es++;
			while (ec < NBITS && m.bit[ec])
				ec++;
			cr_assert_eq(eng_bitmap_next_set(map, NBITS, from), es);
			cr_assert_eq(eng_bitmap_next_clear(map, NBITS, from), ec);
		}
		/* Runs rebuild the map exactly, each maximal. */
		uint8_t seen[NBITS] = {0};
		uint64_t pos = 0, s, n, prev_end = 0;
		bool first = true;
		while (eng_bitmap_next_run(map, NBITS, &pos, &s, &n)) {
			cr_assert_gt(n, 0);
			cr_assert(first || s > prev_end, "runs not maximal: %llu after %llu",
				  (unsigned long long)s, (unsigned long long)prev_end);
			cr_assert(s == 0 || !m.bit[s - 1]);
			cr_assert(s + n == NBITS || !m.bit[s + n]);
			memset(seen + s, 1, n);
			prev_end = s + n;
			first = false;
		}
		cr_assert_eq(pos, NBITS);
		cr_assert_arr_eq(seen, m.bit, NBITS);
	}
}

Test(engine_bitmap, edges)
{
	uint64_t map[2] = {0, 0};
	uint64_t pos = 0, s, n;

	cr_assert_eq(eng_bitmap_next_set(map, 128, 0), 128);
	cr_assert_eq(eng_bitmap_next_clear(map, 128, 0), 0);
	cr_assert_not(eng_bitmap_next_run(map, 128, &pos, &s, &n));
	eng_bitmap_set_range(map, 0, 128);
	cr_assert_eq(map[0], ~0ull);
	cr_assert_eq(map[1], ~0ull);
	cr_assert_eq(eng_bitmap_next_clear(map, 128, 0), 128);
	cr_assert_eq(eng_bitmap_next_set(map, 128, 128), 128);
	pos = 0;
	cr_assert(eng_bitmap_next_run(map, 128, &pos, &s, &n));
	cr_assert_eq(s, 0);
	cr_assert_eq(n, 128);
	/* A map of 70 bits ends inside word 1: bits past the end are never found. */
	map[1] = ~0ull;
	cr_assert_eq(eng_bitmap_next_clear(map, 70, 0), 70);
	cr_assert_eq(eng_bitmap_count(map, 70), 70);
	eng_bitmap_clear_range(map, 63, 2);
	cr_assert_eq(map[0], ~0ull >> 1);
	cr_assert_eq(map[1], ~0ull << 1);
	cr_assert_eq(eng_bitmap_count_range(map, 60, 10), 8);
}

Test(engine_bitmap, or_counts_source_bits)
{
	uint64_t dst[3] = {0x1, 0, 0xff}, src[3] = {0x3, 0, 0xf00};

	cr_assert_eq(eng_bitmap_or(dst, src, 3), 2 + 4);
	cr_assert_eq(dst[0], 0x3);
	cr_assert_eq(dst[1], 0);
	cr_assert_eq(dst[2], 0xfff);
}

/* Model of or_coarse: coarse bit j set when any fine bit in its span is set. */
static void check_coarse(unsigned int shift, uint64_t fine_bits, unsigned int seed)
{
	size_t fw = eng_bitmap_words(fine_bits);
	uint64_t coarse_bits = (fine_bits + ((uint64_t)1 << shift) - 1) >> shift;
	uint64_t *fine = calloc(fw, sizeof(uint64_t));
	uint64_t *dst = calloc(eng_bitmap_words(coarse_bits), sizeof(uint64_t));
	uint64_t expect_n = 0;

	cr_assert(fine && dst);
	for (uint64_t i = 0; i < fine_bits; i++)
		if (rand_r(&seed) % 97 == 0)
			eng_bitmap_set(fine, i);
	uint64_t n = eng_bitmap_or_coarse(dst, fine, fine_bits, shift);
	for (uint64_t j = 0; j < coarse_bits; j++) {
		uint64_t lo = j << shift, hi = (j + 1) << shift;
		bool any = eng_bitmap_count_range(fine, lo, (hi < fine_bits ? hi : fine_bits) - lo);
		expect_n += any;
		cr_assert_eq(eng_bitmap_test(dst, j), any, "shift %u coarse bit %llu", shift,
			     (unsigned long long)j);
	}
	cr_assert_eq(n, expect_n, "shift %u: %llu reported, %llu expected", shift,
		     (unsigned long long)n, (unsigned long long)expect_n);
	free(fine);
	free(dst);
}

Test(engine_bitmap, or_coarse_every_shift)
{
	/* 0: plain; 2: 16 KiB pages over 4 KiB; 9: 2 MiB over 4 KiB; 18: 1 GiB over 4 KiB. */
	unsigned int shifts[] = {0, 1, 2, 5, 6, 7, 9, 18};
	for (size_t i = 0; i < sizeof(shifts) / sizeof(shifts[0]); i++) {
		check_coarse(shifts[i], (uint64_t)1 << 20, 1000 + (unsigned int)i);
		check_coarse(shifts[i], ((uint64_t)1 << 12) + 64 * 3, 2000 + (unsigned int)i);
	}
	/* Runs that share a coarse bit count it once. */
	uint64_t fine[1] = {0x0f0f}, dst[1] = {0};
	cr_assert_eq(eng_bitmap_or_coarse(dst, fine, 16, 3), 2);
	cr_assert_eq(dst[0], 0x3);
}

Test(engine_bitmap, atomic_set_and_take)
{
	_Atomic uint64_t amap[NWORDS];
	uint64_t out[NWORDS];

	for (size_t i = 0; i < eng_bitmap_words(NBITS); i++)
		atomic_init(&amap[i], 0);
	memset(out, 0, sizeof(out));
	eng_abitmap_set_range(amap, 3, 1);
	eng_abitmap_set_range(amap, 60, 10);
	eng_abitmap_set_range(amap, 999, 1);
	cr_assert_eq(eng_abitmap_take(amap, out, eng_bitmap_words(NBITS)), 12);
	cr_assert_eq(out[0], (1ull << 3) | (0xfull << 60));
	cr_assert_eq(out[1], 0x3f);
	cr_assert(eng_bitmap_test(out, 999));
	for (size_t i = 0; i < eng_bitmap_words(NBITS); i++)
		cr_assert_eq(atomic_load(&amap[i]), 0);
	cr_assert_eq(eng_abitmap_take(amap, out, eng_bitmap_words(NBITS)), 0);
	cr_assert_eq(eng_abitmap_or_word(amap, 2, 0x10), 0);
	cr_assert_eq(eng_abitmap_xchg_word(amap, 2, 0), 0x10);
}

#define RACE_BITS    4096
#define RACE_SETTERS 2

struct race {
	_Atomic uint64_t map[RACE_BITS / 64];
	atomic_bool go;
	atomic_int done;
	/* Bits each setter set, to check every one was taken. */
	uint8_t set[RACE_SETTERS][RACE_BITS];
};

static struct race g_race;

static void *race_setter(void *arg)
{
	int id = (int)(intptr_t)arg;
	unsigned int seed = 99 + (unsigned int)id;

	while (!atomic_load(&g_race.go))
		;
	for (int i = 0; i < 200000; i++) {
		uint64_t b = (uint64_t)rand_r(&seed) % RACE_BITS;
		uint64_t len = 1 + (uint64_t)rand_r(&seed) % 3;
		if (b + len > RACE_BITS)
			len = RACE_BITS - b;
		eng_abitmap_set_range(g_race.map, b, len);
		memset(g_race.set[id] + b, 1, len);
	}
	atomic_fetch_add(&g_race.done, 1);
	return NULL;
}

Test(engine_bitmap, atomic_take_races_setters_without_loss)
{
	pthread_t t[RACE_SETTERS];
	uint64_t taken[RACE_BITS / 64];

	memset(&g_race, 0, sizeof(g_race));
	memset(taken, 0, sizeof(taken));
	for (int i = 0; i < RACE_SETTERS; i++)
		cr_assert_eq(pthread_create(&t[i], NULL, race_setter, (void *)(intptr_t)i), 0);
	atomic_store(&g_race.go, true);
	uint64_t takes = 0;
	while (atomic_load(&g_race.done) < RACE_SETTERS)
		takes += eng_abitmap_take(g_race.map, taken, RACE_BITS / 64);
	for (int i = 0; i < RACE_SETTERS; i++)
		pthread_join(t[i], NULL);
	eng_abitmap_take(g_race.map, taken, RACE_BITS / 64);
	cr_assert_gt(takes, 0, "the takes never overlapped the setters");
	for (uint64_t b = 0; b < RACE_BITS; b++) {
		bool want = g_race.set[0][b] || g_race.set[1][b];
		cr_assert_eq(eng_bitmap_test(taken, b), want, "bit %llu", (unsigned long long)b);
	}
}
