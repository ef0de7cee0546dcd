/* SPDX-License-Identifier: MIT */
/*
 * Convergence arithmetic, kept pure so it can be tested on its own: how long
 * the switchover would take, whether to switch now, and the next throttle step.
 */
#include "internal.h"

uint64_t eng_bandwidth(uint64_t bytes, uint64_t elapsed_ns)
{
	if (elapsed_ns == 0)
		elapsed_ns = 1;
	/* 128-bit intermediate: bytes * 1e9 overflows 64 bits past 18 GB. */
	return (uint64_t)((unsigned __int128)bytes * 1000000000u / elapsed_ns);
}

uint64_t eng_expected_downtime_ms(uint64_t remaining, uint64_t bandwidth)
{
	if (remaining == 0)
		return 0;
	if (bandwidth == 0)
		return UINT64_MAX;
	return (uint64_t)(((unsigned __int128)remaining * 1000 + bandwidth - 1) / bandwidth);
}

bool eng_round_is_hot(uint64_t dirtied, uint64_t sent)
{
	/* The guest dirtied more than half of what the round could move. */
	return dirtied > sent / 2;
}

int eng_next_throttle(int current, int initial, int increment, int max)
{
	int next = current ? current + increment : initial;

	return next > max ? max : next;
}
