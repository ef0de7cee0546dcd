/* SPDX-License-Identifier: MIT */
/*
 * Page bitmaps of the engine: one bit per page, bit i of the map is bit (i % 64)
 * of 64-bit word i / 64 (so the layout is the same as KVM's dirty bitmap on a
 * little-endian host). Internal to the engine: the dirty-log sources and the RAM
 * code use it; it is not a public header.
 *
 * Plain functions work on uint64_t words and are not thread-safe. The eng_abitmap_*
 * functions work on _Atomic words and may race with each other freely: a bit set
 * by eng_abitmap_set_range() is either taken by a concurrent eng_abitmap_take() or
 * left for the next one, never lost.
 *
 * Ranges are given as (start, len) in bits; the caller keeps them inside the map.
 */
#ifndef ENG_BITMAP_H
#define ENG_BITMAP_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define ENG_BITMAP_WORD_BITS 64u

/* Words needed for @nbits bits. */
static inline size_t eng_bitmap_words(uint64_t nbits)
{
	return (size_t)((nbits + ENG_BITMAP_WORD_BITS - 1) / ENG_BITMAP_WORD_BITS);
}

static inline bool eng_bitmap_test(const uint64_t *map, uint64_t bit)
{
	return (map[bit / 64] >> (bit % 64)) & 1u;
}

static inline void eng_bitmap_set(uint64_t *map, uint64_t bit)
{
	map[bit / 64] |= (uint64_t)1 << (bit % 64);
}

static inline void eng_bitmap_clear(uint64_t *map, uint64_t bit)
{
	map[bit / 64] &= ~((uint64_t)1 << (bit % 64));
}

/* Set / clear bits [start, start + len). */
void eng_bitmap_set_range(uint64_t *map, uint64_t start, uint64_t len);
void eng_bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t len);

/* Number of set bits among the first @nbits. */
uint64_t eng_bitmap_count(const uint64_t *map, uint64_t nbits);

/* Number of set bits in [start, start + len). */
uint64_t eng_bitmap_count_range(const uint64_t *map, uint64_t start, uint64_t len);

/* First set (clear) bit at or after @from and below @nbits; @nbits when there is none. */
uint64_t eng_bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t from);
uint64_t eng_bitmap_next_clear(const uint64_t *map, uint64_t nbits, uint64_t from);

/*
 * eng_bitmap_next_run() - the next run of set bits.
 * @pos: where to search from; on return, just past the run found.
 *
 * Returns true and the run [*run_start, *run_start + *run_len) when one starts
 * at or after *pos, false when there is none below @nbits. Loop:
 *	for (uint64_t pos = 0, s, n; eng_bitmap_next_run(map, nbits, &pos, &s, &n);)
 */
bool eng_bitmap_next_run(const uint64_t *map, uint64_t nbits, uint64_t *pos, uint64_t *run_start,
			 uint64_t *run_len);

/* dst |= src over @nwords words; returns how many bits are set in src. */
uint64_t eng_bitmap_or(uint64_t *dst, const uint64_t *src, size_t nwords);

/*
 * eng_bitmap_or_coarse() - OR a fine bitmap into a coarse one.
 * @dst: coarse map; bit j covers fine bits [j << shift, (j + 1) << shift).
 * @src: fine map of @src_bits bits.
 * @shift: log2 of the fine bits per coarse bit (0: a plain OR).
 *
 * Used where the kernel reports 4 KiB pages and the block has 2 MiB pages.
 * Returns how many coarse bits cover at least one set fine bit. Bits of @src
 * at or above @src_bits must be clear.
 */
uint64_t eng_bitmap_or_coarse(uint64_t *dst, const uint64_t *src, uint64_t src_bits,
			      unsigned int shift);

/* Atomic maps. */

/* Set bits [start, start + len) with one atomic OR per word touched. */
void eng_abitmap_set_range(_Atomic uint64_t *map, uint64_t start, uint64_t len);

/* Atomically replace word @i with @val; returns the old word. */
static inline uint64_t eng_abitmap_xchg_word(_Atomic uint64_t *map, size_t i, uint64_t val)
{
	return atomic_exchange_explicit(&map[i], val, memory_order_acq_rel);
}

/* Atomically OR @val into word @i; returns the old word. */
static inline uint64_t eng_abitmap_or_word(_Atomic uint64_t *map, size_t i, uint64_t val)
{
	return atomic_fetch_or_explicit(&map[i], val, memory_order_acq_rel);
}

/*
 * eng_abitmap_take() - move every set bit of @src into @dst.
 *
 * Each word of @src is exchanged with 0 atomically and ORed into @dst (plain).
 * Returns how many bits were taken (set in @src), whether or not they were
 * already set in @dst.
 */
uint64_t eng_abitmap_take(_Atomic uint64_t *src, uint64_t *dst, size_t nwords);

#endif
