/* SPDX-License-Identifier: MIT */
/*
 * Inspect a savevm v3 stream (ferry's or QEMU's) and describe it as JSON:
 * header, configuration, COMMAND records, every section, RAM records counted
 * by kind and block, device sections decoded field by field through the
 * vmdesc, EOF and the vmdesc. docs/inspect.md documents the JSON keys.
 *
 * The stream is read from memory and treated as hostile: every length and
 * count is checked against the bytes that are really there, nothing is
 * allocated from a size the stream declares without a bound, and a broken
 * stream gives an error naming the offset, what was expected and what was
 * found, together with the JSON of everything read before the error.
 *
 * Threads: ferry_inspect() keeps no state between calls; concurrent calls on
 * different (or the same, read-only) buffers are safe. Warnings go through
 * the log callback (module "vmstate") in the caller's thread.
 */
#ifndef FERRY_INSPECT_H
#define FERRY_INSPECT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct ferry_inspect_opts - what ferry_inspect() prints and how picky it is.
 * @desc_only: print the vmdesc JSON alone (the stream is not walked beyond
 *             its header); an error when the stream has no vmdesc
 * @summary:   counts only: sections, RAM records by kind and block, but no
 *             per-field decode of device sections (they are still walked,
 *             so their footers are still checked)
 * @strict:    turn every warning into an error: bytes after EOF that are no
 *             vmdesc, a ZERO page with a non-zero fill byte, a vmdesc whose
 *             device list does not match the FULL sections, a bool that is
 *             neither 0 nor 1, a null-pointer marker that is not '0'
 * @indent:    spaces per level of the JSON text; 0 gives one compact line
 *             (values above 31 are treated as 31)
 *
 * A zeroed struct (or NULL) means: full decode, lenient, compact.
 */
struct ferry_inspect_opts {
	bool desc_only;
	bool summary;
	bool strict;
	unsigned int indent;
};

/**
 * ferry_inspect() - decode the savevm v3 stream in @data into JSON text.
 * @data:     the whole stream (a mapped file, or stdin read into memory)
 * @len:      its length in bytes
 * @opts:     options; NULL for the defaults
 * @json_out: receives the JSON text (malloc'd, NUL-terminated; free() it).
 *            On failure it still receives the JSON of what was read before
 *            the error, with an "error" member, unless memory ran out
 *            (then NULL). Never NULL on success.
 * @err_out:  if non-NULL, receives NULL on success, or a malloc'd message
 *            such as "offset 1234: section 5 'serial' instance 0: expected
 *            footer 0x7e, found 0x12" on failure (NULL if memory ran out).
 *
 * Thread context: any thread; see the top of this header.
 *
 * Returns 0 when the whole stream was walked (up to EOF and its vmdesc),
 * or a negative code:
 *   FERRY_EBADMAGIC, FERRY_EVERSION  not a savevm v3 stream
 *   FERRY_ETRUNCATED                 the stream ends inside a record
 *   FERRY_EFOOTER                    a payload is not followed by its footer
 *   FERRY_EBADSTREAM                 a malformed record (unknown type or
 *                                    flags, a vmdesc that disagrees, ...)
 *   FERRY_ENOSECTION                 a section inspect cannot walk: a FULL
 *                                    section with no vmdesc to size it, an
 *                                    iterative section other than "ram";
 *                                    with desc_only, a stream with no vmdesc
 *   FERRY_ELIMIT                     a declared count or size over a bound
 *   -EINVAL                          @data, @json_out missing
 *   -ENOMEM                          out of memory
 */
int ferry_inspect(const uint8_t *data, size_t len, const struct ferry_inspect_opts *opts,
		  char **json_out, char **err_out);

#ifdef __cplusplus
}
#endif
#endif
