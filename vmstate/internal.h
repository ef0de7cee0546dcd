/* SPDX-License-Identifier: MIT */
/* vmstate's private interfaces: shared by its own .c files, included by no other module. */
#ifndef FERRY_VMSTATE_INTERNAL_H
#define FERRY_VMSTATE_INTERNAL_H

#include <jansson.h>

#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>
#include <ferry/vmstate.h>
#include <ferry_log_internal.h>

#define vms_log(level, ...) ferry_log_msg(level, "vmstate", __VA_ARGS__)

/*
 * vms_check() - validate a description before it is registered: every field
 * table ends, kinds and flags are consistent, counts fit, subsection names
 * start with "<parent>/", nesting is bounded. Returns 0 or -EINVAL (and logs
 * what is wrong).
 */
int vms_check(const struct ferry_vmsd *vmsd);

/*
 * vms_save() - write @vmsd's fields of @opaque, then its needed subsections
 * (FORMAT.md §7), calling pre_save/post_save. When @desc is non-NULL it is a
 * JSON object to which the vmdesc keys "vmsd_name", "version", "fields" and
 * (if any) "subsections" are appended, with sizes of what was written.
 * Returns 0 or a negative error (also left in the writer).
 */
int vms_save(struct ferry_writer *w, const struct ferry_vmsd *vmsd, void *opaque, json_t *desc);

/*
 * vms_load() - read what vms_save() wrote for stream version @version_id
 * into @opaque: version checks against version_id/minimum_version_id,
 * pre_load, fields, subsections in any order, post_load. On error the
 * reader's message names the field ("field 'lsr': ...") and the caller adds
 * the section.
 */
int vms_load(struct ferry_reader *r, const struct ferry_vmsd *vmsd, void *opaque, int version_id);

#endif
