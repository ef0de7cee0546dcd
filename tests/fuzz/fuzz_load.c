/* SPDX-License-Identifier: MIT */
/*
 * fuzz_load: the input is a whole incoming stream, loaded with ferry_load()
 * from a memory reader into the devices of fuzz_devices.h.
 *
 * Besides the sanitizers' findings (overruns, leaks, undefined behaviour), it
 * traps when a failed load leaves no error on the reader or no message, when
 * a successful one left the reader in an error state, or when a loaded count
 * exceeds its capacity (a device's post_load would refuse it, but a loader
 * that skipped post_load would not be caught by that).
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/savevm.h>
#include <ferry/stream.h>

#include "fuzz_devices.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const fuzz_caps[] = {"x-ferry-fuzz"};
static const uint8_t fuzz_uuid[16] = {0xf0, 0x0d, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14};

static volatile uint8_t command_sink;

static int accept_command(void *opaque, uint16_t cmd, const uint8_t *data, uint16_t len)
{
	(void)opaque;
	(void)cmd;
	/* Touch every byte, so a length beyond the buffer is an ASan report. */
	for (uint16_t i = 0; i < len; i++)
		command_sink ^= data[i];
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct fz_devices devs;
	struct ferry_devices *reg = NULL;
	struct ferry_reader *r = NULL;
	char *vmdesc = NULL;
	struct ferry_load_config cfg = {
	    .command = accept_command,
	    .vmdesc = &vmdesc,
	};
	int ret;

	/*
	 * A destination configured like the seeds' source: when the stream
	 * carries capabilities, expect the fuzz set, so a load can get past the
	 * configuration section; the UUID is checked against the seeds' too.
	 */
	if (memmem(data, size, "configuration/capabilities", 26)) {
		cfg.capabilities = fuzz_caps;
		cfg.ncaps = 1;
		cfg.uuid = fuzz_uuid;
	}

	fz_devices_init(&devs, 0);
	if (ferry_devices_create(&reg) < 0 || fz_devices_register(&devs, reg, true) < 0 ||
	    ferry_reader_create_mem(data, size, &r) < 0)
		abort(); /* out of memory or a broken fuzz harness, not a finding */

	ret = ferry_load(r, reg, &cfg);
	if (ret < 0) {
		if (ferry_reader_error(r) == 0 || ferry_reader_errmsg(r)[0] == '\0')
			__builtin_trap();
	} else {
		if (ferry_reader_error(r) != 0)
			__builtin_trap();
		if (devs.dev.nvals > FZ_NVALS_MAX || devs.dev.blob_len > FZ_BLOB_MAX ||
		    devs.legacy.count > FZ_LEGACY_MAX || devs.ram.done > FZ_RAM_MAX ||
		    devs.bench.vdev.nvq > 8 || devs.bench.uart.fifo_len > 16)
			__builtin_trap();
		if (devs.dev.ports[1] != NULL || devs.dev.ports[0] != &devs.dev.port_store[0])
			__builtin_trap();
		if (vmdesc && strlen(vmdesc) > FERRY_VMDESC_MAX_LEN)
			__builtin_trap();
	}
	free(vmdesc);
	ferry_reader_destroy(r);
	ferry_devices_destroy(reg);
	return 0;
}
