/* SPDX-License-Identifier: MIT */
/* Page bitmaps: word-at-a-time set/clear/count/search, atomic OR and take. */
#include "bitmap.h"

/* Mask of bits [lo, hi) within one word, 0 <= lo < hi <= 64. */
static inline uint64_t word_mask(unsigned int lo, unsigned int hi)
{
	uint64_t upper = hi == 64 ? ~(uint64_t)0 : ((uint64_t)1 << hi) - 1;
	return upper & ~(((uint64_t)1 << lo) - 1);
}

void eng_bitmap_set_range(uint64_t *map, uint64_t start, uint64_t len)
{
	uint64_t end = start + len;

	if (len == 0)
		return;
	size_t w = start / 64, last = (end - 1) / 64;
	if (w == last) {
		map[w] |= word_mask(start % 64, (unsigned int)((end - 1) % 64) + 1);
		return;
	}
	map[w++] |= word_mask(start % 64, 64);
	for (; w < last; w++)
		map[w] = ~(uint64_t)0;
	map[last] |= word_mask(0, (unsigned int)((end - 1) % 64) + 1);
}

void eng_bitmap_clear_range(uint64_t *map, uint64_t start, uint64_t len)
{
	uint64_t end = start + len;

	if (len == 0)
		return;
	size_t w = start / 64, last = (end - 1) / 64;
	if (w == last) {
		map[w] &= ~word_mask(start % 64, (unsigned int)((end - 1) % 64) + 1);
		return;
	}
	map[w++] &= ~word_mask(start % 64, 64);
	for (; w < last; w++)
		map[w] = 0;
	map[last] &= ~word_mask(0, (unsigned int)((end - 1) % 64) + 1);
}

uint64_t eng_bitmap_count_range(const uint64_t *map, uint64_t start, uint64_t len)
{
	uint64_t end = start + len, n = 0;

	if (len == 0)
		return 0;
	size_t w = start / 64, last = (end - 1) / 64;
	if (w == last)
		return (uint64_t)__builtin_popcountll(
		    map[w] & word_mask(start % 64, (unsigned int)((end - 1) % 64) + 1));
	n += (uint64_t)__builtin_popcountll(map[w++] & word_mask(start % 64, 64));
	for (; w < last; w++)
		n += (uint64_t)__builtin_popcountll(map[w]);
	n += (uint64_t)__builtin_popcountll(map[last] &
					    word_mask(0, (unsigned int)((end - 1) % 64) + 1));
	return n;
}

uint64_t eng_bitmap_count(const uint64_t *map, uint64_t nbits)
{
	return eng_bitmap_count_range(map, 0, nbits);
}

/*
 * One search for both polarities: @invert flips every word read, so looking for
 * a clear bit is looking for a set bit in ~word.
 */
static uint64_t find_next(const uint64_t *map, uint64_t nbits, uint64_t from, uint64_t invert)
{
	if (from >= nbits)
		return nbits;
	size_t w = from / 64, nwords = eng_bitmap_words(nbits);
	uint64_t word = (map[w] ^ invert) & word_mask(from % 64, 64);

	for (;;) {
		if (word) {
			uint64_t bit = (uint64_t)w * 64 + (uint64_t)__builtin_ctzll(word);
			return bit < nbits ? bit : nbits;
		}
		if (++w >= nwords)
			return nbits;
		word = map[w] ^ invert;
	}
}

uint64_t eng_bitmap_next_set(const uint64_t *map, uint64_t nbits, uint64_t from)
{
	return find_next(map, nbits, from, 0);
}

uint64_t eng_bitmap_next_clear(const uint64_t *map, uint64_t nbits, uint64_t from)
{
	return find_next(map, nbits, from, ~(uint64_t)0);
}

bool eng_bitmap_next_run(const uint64_t *map, uint64_t nbits, uint64_t *pos, uint64_t *run_start,
			 uint64_t *run_len)
{
	uint64_t s = eng_bitmap_next_set(map, nbits, *pos);

	if (s >= nbits) {
		*pos = nbits;
		return false;
	}
	uint64_t e = eng_bitmap_next_clear(map, nbits, s);
	*run_start = s;
	*run_len = e - s;
	*pos = e;
	return true;
}

uint64_t eng_bitmap_or(uint64_t *dst, const uint64_t *src, size_t nwords)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nwords; i++) {
		if (!src[i])
			continue;
		dst[i] |= src[i];
		n += (uint64_t)__builtin_popcountll(src[i]);
	}
	return n;
}

uint64_t eng_bitmap_or_coarse(uint64_t *dst, const uint64_t *src, uint64_t src_bits,
			      unsigned int shift)
{
	size_t nwords = eng_bitmap_words(src_bits);
	uint64_t n = 0;

	if (shift == 0)
		return eng_bitmap_or(dst, src, nwords);
	if (shift >= 6) {
		/* A coarse bit covers whole words: test each group of words for any bit. */
		size_t group = (size_t)1 << (shift - 6);
		for (size_t i = 0, j = 0; i < nwords; i += group, j++) {
			size_t end = i + group < nwords ? i + group : nwords;
			uint64_t any = 0;
			for (size_t k = i; k < end; k++)
				any |= src[k];
			if (any) {
				eng_bitmap_set(dst, j);
				n++;
			}
		}
		return n;
	}
	/* Several coarse bits per word: walk the runs. Runs come in order, so a coarse
	 * bit shared by two runs is counted once by remembering the last one set. */
	uint64_t pos = 0, s, len, last = UINT64_MAX;
	while (eng_bitmap_next_run(src, src_bits, &pos, &s, &len)) {
		uint64_t cs = s >> shift, ce = (s + len - 1) >> shift;
		eng_bitmap_set_range(dst, cs, ce - cs + 1);
		n += ce - cs + 1 - (cs == last ? 1 : 0);
		last = ce;
	}
	return n;
}

void eng_abitmap_set_range(_Atomic uint64_t *map, uint64_t start, uint64_t len)
{
	uint64_t end = start + len;

	if (len == 0)
		return;
	size_t w = start / 64, last = (end - 1) / 64;
	for (; w <= last; w++) {
		unsigned int lo = w == start / 64 ? (unsigned int)(start % 64) : 0;
		unsigned int hi = w == last ? (unsigned int)((end - 1) % 64) + 1 : 64;
		/*
		 * Always a real RMW, even when the bits look set already: skipping it
		 * after a plain load would let the caller's earlier stores to the page
		 * (still in the store buffer) pass a concurrent take, and the page could
		 * be read before the data it is marked for has landed.
		 */
		atomic_fetch_or_explicit(&map[w], word_mask(lo, hi), memory_order_seq_cst);
	}
}

uint64_t eng_abitmap_take(_Atomic uint64_t *src, uint64_t *dst, size_t nwords)
{
	uint64_t n = 0;

	for (size_t i = 0; i < nwords; i++) {
		/* A relaxed peek first: most words are 0 and need no locked exchange. */
		if (!atomic_load_explicit(&src[i], memory_order_relaxed))
			continue;
		uint64_t v = atomic_exchange_explicit(&src[i], 0, memory_order_acquire);
		dst[i] |= v;
		n += (uint64_t)__builtin_popcountll(v);
	}
	return n;
}
