/* SPDX-License-Identifier: MIT */
/*
 * The devices the fuzz_load target loads into, and make-seeds saves from.
 *
 * Besides the sample devices of bench/ (serial, clock, vdev), a set that
 * reaches every kind of field and section the loader has:
 *
 *   "fz"        scalars of every width, a timer, an EQUAL field, a variable
 *               array and a variable buffer with capacities, UNUSED bytes, a
 *               nested struct, an array of structs, an array of pointers to
 *               structs (one NULL), a version-gated and a test-gated field,
 *               and a subsection ("fz/extra") with a nested subsection of
 *               its own struct ("fz-regs/shadow")
 *   "fzlegacy"  a device with its own save/load pair (a bounded list)
 *   "fzram"     an iterative handler: START carries a total size, each PART
 *               a bounded chunk, END a checksum of what was sent
 *
 * and, when tests/vmstate/test_devices.h is in the tree (the build defines
 * FZ_HAVE_TEST_DEVICES), the VMState suites' own devices: their section set
 * (td_set_register()) and one "td-<name>" device per description of theirs.
 *
 * Not thread-safe: one set per process, as a fuzz target is.
 */
#ifndef FERRY_TESTS_FUZZ_DEVICES_H
#define FERRY_TESTS_FUZZ_DEVICES_H

#include <stdbool.h>
#include <stdint.h>

#include <ferry/savevm.h>

#include "bench/sample_devices.h"
#ifdef FZ_HAVE_TEST_DEVICES
#include "tests/vmstate/test_devices.h"
#endif

#define FZ_NVALS_MAX   12
#define FZ_BLOB_MAX    32
#define FZ_LEGACY_MAX  8
#define FZ_RAM_MAX     4096 /* bytes the iterative handler accepts in all */
#define FZ_RAM_CHUNK   256  /* bytes at most in one PART */
#define FZ_ID_EXPECTED 0x5a /* the EQUAL field's value on both sides */

struct fz_regs {
	uint32_t ctrl;
	uint16_t mask;
	int8_t bias;
	bool shadowed;	 /* "fz-regs/shadow" travels when set */
	uint64_t shadow; /* travels in "fz-regs/shadow" */
};

struct fz_dev {
	bool enabled;
	int8_t i8;
	int16_t i16;
	int32_t i32;
	int64_t i64;
	uint8_t id; /* EQUAL: must be FZ_ID_EXPECTED on the destination too */
	uint16_t u16;
	uint32_t u32;
	uint64_t u64;
	int64_t deadline_ns; /* timer, -1 when not armed */
	uint16_t nvals;
	uint32_t vals[FZ_NVALS_MAX];
	uint32_t blob_len;
	uint8_t blob[FZ_BLOB_MAX];
	struct fz_regs regs;
	struct fz_regs banks[3];
	struct fz_regs port_store[2];
	struct fz_regs *ports[2]; /* ports[1] stays NULL: sent as the 0x30 marker */
	uint32_t since_v2;	  /* only in version >= 2 */
	uint16_t gated;		  /* only while enabled */
	bool extra_on;		  /* "fz/extra" travels when set */
	uint64_t extra;
	struct fz_regs extra_regs;
};

struct fz_legacy {
	uint8_t count;
	uint16_t items[FZ_LEGACY_MAX];
};

struct fz_ram {
	uint32_t total; /* bytes to send / announced by START */
	uint32_t done;	/* bytes sent / received so far */
	uint8_t data[FZ_RAM_MAX];
	uint64_t sum; /* checksum of the received bytes */
	bool started, ended;
};

#ifdef FZ_HAVE_TEST_DEVICES
struct fz_td {
	struct td_set set;
	struct td_scalars scalars;
	struct td_arrays arrays;
	struct td_varrays varrays;
	struct td_buffers buffers;
	struct td_wrap wrap;
	struct td_poly poly;
	struct td_pt poly_store[4]; /* what poly.ptrs[0] and [2] point to; [1], [3] are NULL */
	struct td_equal equal;
	struct td_versioned versioned;
	struct td_subdev subdev;
	struct td_hooked hooked;
	struct td_vnet vnet;
};
#endif

struct fz_devices {
	struct fz_dev dev;
	struct fz_legacy legacy;
	struct fz_ram ram;
	struct bench_devices bench;
#ifdef FZ_HAVE_TEST_DEVICES
	struct fz_td td;
#endif
};

/**
 * fz_devices_init() - reset @d to a destination's state (zeros, pointers set)
 * or, with @seed non-zero, fill it with a source's deterministic state.
 */
void fz_devices_init(struct fz_devices *d, uint32_t seed);

/**
 * fz_devices_register() - register the devices of @d (fz, fzlegacy, fzram,
 * the bench samples and, with @with_test_devices, the suites' devices when
 * built with them) with @reg. Returns 0 or an error.
 */
int fz_devices_register(struct fz_devices *d, struct ferry_devices *reg, bool with_test_devices);

#endif
