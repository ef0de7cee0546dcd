/* SPDX-License-Identifier: MIT */
/*
 * A small set of sample devices for the synthetic guest, the CLI, tests,
 * fuzzers and benchmarks, described with the public VMState API only:
 *
 *   "serial"   a UART: registers, a divisor latch added in version 2, and a
 *              "serial/fifo" subsection sent only while the FIFO holds bytes
 *   "clock"    a timer device: an armed-or-not expiry and a tick count
 *   "vdev"     a layered virtio-like device: core fields (status, features,
 *              queues), transport fields (a PCI config buffer, MSI-X vectors),
 *              device fields (block config), and subsections for state added
 *              in later versions ("vdev/packed" since 2, "vdev/reset" since 3)
 *
 * Not thread-safe; one set per guest.
 */
#ifndef FERRY_BENCH_SAMPLE_DEVICES_H
#define FERRY_BENCH_SAMPLE_DEVICES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/savevm.h>

struct bench_uart {
	uint8_t rbr, ier, iir, lcr, mcr, lsr, msr, scr;
	uint16_t divider;
	uint8_t fifo_len;
	uint8_t fifo[16];
	bool thr_ipending;
};

struct bench_clock {
	int64_t expiry_ns; /* -1: not armed */
	uint64_t ticks;
	bool enabled;
};

struct bench_vq {
	uint16_t num;
	uint64_t desc, avail, used;
	uint16_t last_avail_idx;
	uint16_t vector;
};

struct bench_vdev {
	/* core */
	uint8_t status;
	uint8_t isr;
	uint64_t guest_features;
	uint16_t queue_sel;
	uint32_t nvq;
	struct bench_vq vq[8];
	/* transport */
	uint8_t pci_config[64];
	uint16_t config_vector;
	/* device: a block device's configuration */
	uint64_t capacity;
	uint32_t blk_size;
	/* added in version 2, travels in "vdev/packed" when packed is on */
	bool packed;
	uint16_t packed_wrap[8];
	/* added in version 3, travels in "vdev/reset" when a reset is pending */
	bool reset_pending;
	uint32_t reset_mask;
};

struct bench_devices {
	struct bench_uart uart;
	struct bench_clock clock;
	struct bench_vdev vdev;
};

extern const struct ferry_vmsd bench_uart_vmsd;
extern const struct ferry_vmsd bench_clock_vmsd;
extern const struct ferry_vmsd bench_vdev_vmsd;

/** bench_devices_fill() - deterministic, non-trivial state derived from @seed (all subsections
 * needed). */
void bench_devices_fill(struct bench_devices *d, uint32_t seed);

/** bench_devices_register() - register the three devices of @d with @reg. Returns 0 or an error. */
int bench_devices_register(struct bench_devices *d, struct ferry_devices *reg);

/**
 * bench_devices_compare() - compare two sets field by field.
 * Returns 0 when equal; otherwise -1 and names the first differing field in @why.
 */
int bench_devices_compare(const struct bench_devices *a, const struct bench_devices *b, char *why,
			  size_t whylen);

/**
 * bench_write_sample_stream() - a complete v3 stream of @d (machine "ferry-sample",
 * with vmdesc) to the file descriptor @fd. Returns 0 or an error.
 */
int bench_write_sample_stream(int fd, struct bench_devices *d);

#endif
