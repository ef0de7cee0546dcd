/* SPDX-License-Identifier: MIT */
/*
 * What fuzz_ram registers, shared with make-seeds (which writes its seeds).
 */
#ifndef FERRY_FUZZ_RAM_H
#define FERRY_FUZZ_RAM_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <ferry/savevm.h>
#include <ferry/stream.h>

#define FZ_RAM_BLOCK0	  "pc.ram"
#define FZ_RAM_BLOCK0_LEN (16u * 4096u)
#define FZ_RAM_BLOCK1	  "vga.vram"
#define FZ_RAM_BLOCK1_LEN (4u * 4096u)
#define FZ_RAM_SECTION_ID 2u

/* Cuts the input into the START, PART... and END sections' payloads. */
#define FZ_RAM_SEP     "\xf0RAM"
#define FZ_RAM_SEP_LEN 4u

/*
 * Write the stream fuzz_ram loads for @data: header, an empty configuration
 * section, the "ram" section's START, PARTs and END around the pieces of
 * @data cut at FZ_RAM_SEP, then EOF.
 */
static inline void fz_ram_frame(struct ferry_writer *w, const uint8_t *data, size_t size)
{
	const uint8_t *p = data, *end = data + size;
	size_t npieces = 0;

	ferry_put_be32(w, FERRY_VM_FILE_MAGIC);
	ferry_put_be32(w, FERRY_VM_FILE_VERSION);
	ferry_put_u8(w, FERRY_VM_CONFIGURATION);
	ferry_put_be32(w, 0);
	for (;;) {
		const uint8_t *sep = memmem(p, (size_t)(end - p), FZ_RAM_SEP, FZ_RAM_SEP_LEN);
		const uint8_t *stop = sep ? sep : end;
		uint8_t type = FERRY_VM_SECTION_PART;

		if (npieces == 0)
			type = FERRY_VM_SECTION_START;
		else if (!sep)
			type = FERRY_VM_SECTION_END;
		ferry_put_u8(w, type);
		ferry_put_be32(w, FZ_RAM_SECTION_ID);
		if (type == FERRY_VM_SECTION_START) {
			ferry_put_u8(w, 3);
			ferry_put_buffer(w, "ram", 3);
			ferry_put_be32(w, 0); /* instance */
			ferry_put_be32(w, 4); /* version */
		}
		ferry_put_buffer(w, p, (size_t)(stop - p));
		ferry_put_u8(w, FERRY_VM_SECTION_FOOTER);
		ferry_put_be32(w, FZ_RAM_SECTION_ID);
		npieces++;
		if (!sep)
			break;
		p = sep + FZ_RAM_SEP_LEN;
	}
	ferry_put_u8(w, FERRY_VM_EOF);
}

#endif
