/* SPDX-License-Identifier: MIT */
/*
 * The synthetic guest: RAM in this process and "vCPU" threads that dirty it
 * at a chosen rate and pattern, plus the sample devices. It embeds libferry
 * through the public API only, the way a hypervisor would: its RAM is one
 * block, its writes are tracked by a real userfaultfd write-protect dirty log
 * (or, where userfaultfd is unavailable, reported through the explicit log),
 * and its vCPUs stop, resume and throttle on the engine's request.
 *
 * Patterns:
 *   ab          each vCPU increments the first byte of every page of its share
 *               of RAM, in ascending order, round after round (the A-B
 *               workload of QEMU's migration tests); bench_guest_check_ab()
 *               verifies the result
 *   uniform     random pages, a counter written into each
 *   hot         90 % of writes into the first 10 % of RAM
 *   sequential  one pass after another over all of RAM
 *
 * Threads: create/attach/destroy from one thread; stop/resume/throttle are
 * the engine's vcpu ops (migration thread) and are thread-safe.
 */
#ifndef FERRY_BENCH_GUEST_H
#define FERRY_BENCH_GUEST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/engine.h>

#include "sample_devices.h"

enum bench_pattern {
	BENCH_PATTERN_AB = 0,
	BENCH_PATTERN_UNIFORM,
	BENCH_PATTERN_HOT,
	BENCH_PATTERN_SEQUENTIAL,
};

enum bench_dirty_kind {
	BENCH_DIRTY_AUTO = 0, /* userfaultfd if it works here, else explicit */
	BENCH_DIRTY_UFFD,
	BENCH_DIRTY_EXPLICIT,
};

/**
 * struct bench_guest_attr - what guest to build.
 * @ram_bytes:  RAM size, a multiple of 2 MiB
 * @vcpus:      dirtying threads (0: none, an idle guest)
 * @dirty_rate: bytes per second all vCPUs together dirty (each page write
 *              counts 4096); 0 = as fast as they can
 * @pattern:    see above
 * @huge:       back RAM with transparent huge pages (madvise) and track it
 *              in 2 MiB units
 * @fill_seed:  fill every page with non-zero data derived from it (0: leave
 *              RAM zero, so zero-page detection applies)
 * @dirty:      which dirty log the source uses
 * @prefault:   populate every page before use (MADV_POPULATE_WRITE, one
 *              thread per CPU), so first-touch faults are paid up front
 *              rather than during the migration (a destination's choice)
 */
struct bench_guest_attr {
	uint64_t ram_bytes;
	uint32_t vcpus;
	uint64_t dirty_rate;
	enum bench_pattern pattern;
	bool huge;
	uint32_t fill_seed;
	enum bench_dirty_kind dirty;
	bool prefault;
};

struct bench_guest;

/** bench_guest_create() - allocate (and fill) RAM; vCPUs are not started. Returns 0 or -errno. */
int bench_guest_create(const struct bench_guest_attr *attr, struct bench_guest **out);

/**
 * bench_guest_attach_source() - register RAM, devices, the dirty log and the
 * vCPU ops with @eng, and start the vCPUs.
 */
int bench_guest_attach_source(struct bench_guest *g, struct ferry_engine *eng);

/** bench_guest_attach_dest() - register RAM and devices with @eng (vCPUs stay stopped). */
int bench_guest_attach_dest(struct bench_guest *g, struct ferry_engine *eng);

/** bench_guest_start_vcpus() - start (or restart) the vCPU threads, e.g. on the destination. */
int bench_guest_start_vcpus(struct bench_guest *g);

/** bench_guest_stop_vcpus() - stop the vCPU threads and join them. */
void bench_guest_stop_vcpus(struct bench_guest *g);

/** bench_guest_ram() - the RAM and its size. */
uint8_t *bench_guest_ram(struct bench_guest *g, uint64_t *len);

/** bench_guest_devices() - the sample devices' state. */
struct bench_devices *bench_guest_devices(struct bench_guest *g);

/** bench_guest_dirty_kind() - "uffd-async", "uffd-sync", "explicit", or "none". */
const char *bench_guest_dirty_kind(struct bench_guest *g);

/** bench_guest_page_writes() - page writes the vCPUs have made so far. */
uint64_t bench_guest_page_writes(struct bench_guest *g);

/**
 * bench_guest_check_ab() - the A-B consistency check: within each vCPU's
 * share, the first bytes of consecutive pages are equal except at most one
 * edge where a page holds the previous page's value minus one (mod 256).
 * Returns the number of bad pages (0 = consistent) and describes the first
 * ones in @why.
 */
uint64_t bench_guest_check_ab(struct bench_guest *g, char *why, size_t whylen);

/**
 * bench_guest_compare() - compare RAM page by page and the devices field by
 * field with @other. Returns 0 when equal, else -1 with the first difference in @why.
 */
int bench_guest_compare(struct bench_guest *g, struct bench_guest *other, char *why, size_t whylen);

/**
 * bench_guest_verify() - check, without the source at hand, that this RAM is
 * what a source created with @attr (same fill seed and pattern) could hold:
 * the A-B check on first bytes, every other byte equal to the fill pattern
 * (except the counters other patterns write at bytes 8..15), and the devices
 * equal to bench_devices_fill(seed). Returns the number of bad pages plus 1
 * if the devices differ (0 = verified); @why names the first problems.
 */
uint64_t bench_guest_verify(struct bench_guest *g, const struct bench_guest_attr *attr, char *why,
			    size_t whylen);

/** bench_guest_destroy() - stop the vCPUs, free RAM and the dirty log. NULL is allowed. */
void bench_guest_destroy(struct bench_guest *g);

#endif
