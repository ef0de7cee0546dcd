/* SPDX-License-Identifier: MIT */
/*
 * Saving and loading one description's fields and subsections (FORMAT.md §7),
 * and the matching vmdesc JSON (§9).
 *
 * The loader never trusts the stream for sizes: element counts come from the
 * description (fixed arrays) or from a count member already loaded and checked
 * against the storage's capacity; nesting depth is that of the description,
 * which vms_check() bounds, so a stream cannot make the loader recurse deeper.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- description checks ---------------------------------------------------------- */

static bool kind_is_integer(enum ferry_vms_kind k)
{
	return k >= FERRY_VMS_INT8 && k <= FERRY_VMS_UINT64;
}

static size_t kind_width(enum ferry_vms_kind k)
{
	switch (k) {
	case FERRY_VMS_BOOL:
	case FERRY_VMS_INT8:
	case FERRY_VMS_UINT8:
		return 1;
	case FERRY_VMS_INT16:
	case FERRY_VMS_UINT16:
		return 2;
	case FERRY_VMS_INT32:
	case FERRY_VMS_UINT32:
		return 4;
	case FERRY_VMS_INT64:
	case FERRY_VMS_UINT64:
	case FERRY_VMS_TIMER:
		return 8;
	default:
		return 0;
	}
}

static int check_vmsd(const struct ferry_vmsd *vmsd, int depth);

static int check_field(const struct ferry_vmsd *vmsd, const struct ferry_vms_field *f, int depth)
{
	const char *why = NULL;
	uint32_t flags = f->flags;

	if (f->kind < FERRY_VMS_BOOL || f->kind > FERRY_VMS_STRUCT)
		why = "unknown kind";
	else if ((flags & FERRY_VMS_F_ARRAY) && (flags & FERRY_VMS_F_VARRAY))
		why = "both fixed and variable array";
	else if ((flags & (FERRY_VMS_F_ARRAY | FERRY_VMS_F_VARRAY)) && f->num == 0)
		why = "array without elements or capacity";
	else if ((flags & FERRY_VMS_F_VARRAY) && f->count_kind != FERRY_VMS_UINT8 &&
		 f->count_kind != FERRY_VMS_UINT16 && f->count_kind != FERRY_VMS_UINT32 &&
		 f->count_kind != FERRY_VMS_INT32)
		why = "count member must be uint8, uint16, uint32 or int32";
	else if ((flags & FERRY_VMS_F_ARRAY_OF_PTR) && f->kind != FERRY_VMS_STRUCT)
		why = "arrays of pointers must hold structs";
	else if ((flags & FERRY_VMS_F_EQUAL) && !kind_is_integer(f->kind))
		why = "'equal' needs an integer kind";
	else if (f->kind == FERRY_VMS_STRUCT && !f->vmsd)
		why = "struct without a description";
	else if ((f->kind == FERRY_VMS_BUFFER || f->kind == FERRY_VMS_UNUSED) && f->size == 0)
		why = "empty buffer";
	else if (kind_width(f->kind) && f->size != kind_width(f->kind))
		why = "member size does not match the kind";
	if (why) {
		vms_log(FERRY_LOG_ERROR, "description '%s': field '%s': %s", vmsd->name,
			f->name ? f->name : "?", why);
		return -EINVAL;
	}
	if (f->kind == FERRY_VMS_STRUCT)
		return check_vmsd(f->vmsd, depth + 1);
	return 0;
}

static int check_vmsd(const struct ferry_vmsd *vmsd, int depth)
{
	size_t plen;
	int ret;

	if (!vmsd || !vmsd->name || !vmsd->fields) {
		vms_log(FERRY_LOG_ERROR, "description without a name or a field table");
		return -EINVAL;
	}
	if (depth > FERRY_MAX_NESTING) {
		vms_log(FERRY_LOG_ERROR, "description '%s': nested more than %d deep", vmsd->name,
			FERRY_MAX_NESTING);
		return -EINVAL;
	}
	if (vmsd->minimum_version_id < 0 || vmsd->version_id < vmsd->minimum_version_id ||
	    strlen(vmsd->name) > 255) {
		vms_log(FERRY_LOG_ERROR, "description '%s': bad versions or name", vmsd->name);
		return -EINVAL;
	}
	for (const struct ferry_vms_field *f = vmsd->fields; f->name; f++) {
		ret = check_field(vmsd, f, depth);
		if (ret < 0)
			return ret;
	}
	plen = strlen(vmsd->name);
	for (const struct ferry_vmsd *const *s = vmsd->subsections; s && *s; s++) {
		if (!(*s)->name || strncmp((*s)->name, vmsd->name, plen) != 0 ||
		    (*s)->name[plen] != '/') {
			vms_log(FERRY_LOG_ERROR,
				"description '%s': subsection '%s' must be named '%s/...'",
				vmsd->name, (*s)->name ? (*s)->name : "?", vmsd->name);
			return -EINVAL;
		}
		ret = check_vmsd(*s, depth + 1);
		if (ret < 0)
			return ret;
	}
	return 0;
}

int vms_check(const struct ferry_vmsd *vmsd)
{
	return check_vmsd(vmsd, 0);
}

/* ---- shared helpers ---------------------------------------------------------------- */

/*
 * Members are reached through byte offsets; memcpy keeps that free of
 * alignment assumptions the compiler cannot see, and costs nothing.
 */
static uint64_t mem_get(const void *p, size_t width)
{
	uint8_t u8;
	uint16_t u16;
	uint32_t u32;
	uint64_t u64 = 0;

	switch (width) {
	case 1:
		memcpy(&u8, p, 1);
		return u8;
	case 2:
		memcpy(&u16, p, 2);
		return u16;
	case 4:
		memcpy(&u32, p, 4);
		return u32;
	default:
		memcpy(&u64, p, 8);
		return u64;
	}
}

static void mem_set(void *p, size_t width, uint64_t v)
{
	uint8_t u8 = (uint8_t)v;
	uint16_t u16 = (uint16_t)v;
	uint32_t u32 = (uint32_t)v;

	switch (width) {
	case 1:
		memcpy(p, &u8, 1);
		break;
	case 2:
		memcpy(p, &u16, 2);
		break;
	case 4:
		memcpy(p, &u32, 4);
		break;
	default:
		memcpy(p, &v, 8);
		break;
	}
}

static uint8_t *mem_get_ptr(const void *p)
{
	uint8_t *ptr;

	memcpy(&ptr, p, sizeof(ptr));
	return ptr;
}

static bool field_present(const struct ferry_vms_field *f, void *opaque, int version_id)
{
	if (f->field_exists)
		return f->field_exists(opaque, version_id);
	return f->version_id <= version_id;
}

/* The member's address; for F_POINTER the address it points to. */
static uint8_t *field_base(const struct ferry_vms_field *f, void *opaque)
{
	uint8_t *p = (uint8_t *)opaque + f->offset;

	if (f->flags & FERRY_VMS_F_POINTER)
		p = mem_get_ptr(p);
	return p;
}

/* The count member of a variable array, as a signed 64-bit value. */
static int64_t read_count(const struct ferry_vms_field *f, const void *opaque)
{
	const uint8_t *p = (const uint8_t *)opaque + f->count_offset;

	switch (f->count_kind) {
	case FERRY_VMS_UINT8:
		return (int64_t)mem_get(p, 1);
	case FERRY_VMS_UINT16:
		return (int64_t)mem_get(p, 2);
	case FERRY_VMS_UINT32:
		return (int64_t)mem_get(p, 4);
	case FERRY_VMS_INT32:
		return (int32_t)(uint32_t)mem_get(p, 4);
	default:
		return -1;
	}
}

/*
 * Number of elements (or, for a variable buffer, bytes) of @f in @opaque.
 * Returns -1 when the count member is negative or above the capacity.
 */
static int64_t field_count(const struct ferry_vms_field *f, const void *opaque)
{
	if (f->flags & FERRY_VMS_F_VARRAY) {
		int64_t n = read_count(f, opaque);

		return n < 0 || n > (int64_t)f->num ? -1 : n;
	}
	if (f->flags & FERRY_VMS_F_ARRAY)
		return f->num;
	return 1;
}

/* Bytes one element occupies in memory (buffers count as one element). */
static size_t elem_stride(const struct ferry_vms_field *f)
{
	if (f->flags & FERRY_VMS_F_ARRAY_OF_PTR)
		return sizeof(void *);
	return f->size;
}

static const char *kind_type_name(const struct ferry_vms_field *f)
{
	bool eq = f->flags & FERRY_VMS_F_EQUAL;

	switch (f->kind) {
	case FERRY_VMS_BOOL:
		return "bool";
	case FERRY_VMS_INT8:
		return eq ? "int8 equal" : "int8";
	case FERRY_VMS_INT16:
		return eq ? "int16 equal" : "int16";
	case FERRY_VMS_INT32:
		return eq ? "int32 equal" : "int32";
	case FERRY_VMS_INT64:
		return eq ? "int64 equal" : "int64";
	case FERRY_VMS_UINT8:
		return eq ? "uint8 equal" : "uint8";
	case FERRY_VMS_UINT16:
		return eq ? "uint16 equal" : "uint16";
	case FERRY_VMS_UINT32:
		return eq ? "uint32 equal" : "uint32";
	case FERRY_VMS_UINT64:
		return eq ? "uint64 equal" : "uint64";
	case FERRY_VMS_TIMER:
		return "timer";
	case FERRY_VMS_BUFFER:
		return "buffer";
	case FERRY_VMS_UNUSED:
		return "unused_buffer";
	case FERRY_VMS_STRUCT:
		return "struct";
	}
	return "unknown";
}

/* ---- vmdesc --------------------------------------------------------------------------- */

/*
 * A field name repeated within one description is described as name[k], k
 * counting its occurrences (FORMAT.md §9); a unique name stays as it is.
 */
static void desc_field_name(const struct ferry_vmsd *vmsd, const struct ferry_vms_field *f,
			    char *out, size_t outlen)
{
	int before = 0, total = 0;

	for (const struct ferry_vms_field *g = vmsd->fields; g->name; g++) {
		if (strcmp(g->name, f->name) == 0) {
			if (g < f)
				before++;
			total++;
		}
	}
	if (total > 1)
		snprintf(out, outlen, "%s[%d]", f->name, before);
	else
		snprintf(out, outlen, "%s", f->name);
}

/*
 * Whether an array's elements can be described once with "array_len": not
 * when presence is decided per call, nor for structs whose elements may
 * differ in size (because they have subsections).
 */
static bool desc_can_compress(const struct ferry_vms_field *f)
{
	if (f->field_exists)
		return false;
	if (f->kind == FERRY_VMS_STRUCT) {
		const struct ferry_vmsd *d = f->vmsd;

		if (d->subsections && d->subsections[0])
			return false;
		for (const struct ferry_vms_field *g = d->fields; g->name; g++)
			if (!desc_can_compress(g))
				return false;
	}
	return true;
}

static json_t *desc_field_new(const char *name, const char *type, int64_t array_len, int64_t index)
{
	json_t *o = json_object();

	json_object_set_new(o, "name", json_string(name));
	if (array_len >= 0)
		json_object_set_new(o, "array_len", json_integer(array_len));
	if (index >= 0)
		json_object_set_new(o, "index", json_integer(index));
	json_object_set_new(o, "type", json_string(type));
	return o;
}

/* ---- save ----------------------------------------------------------------------------- */

static void put_scalar(struct ferry_writer *w, enum ferry_vms_kind k, const void *p)
{
	switch (k) {
	case FERRY_VMS_BOOL:
		ferry_put_u8(w, mem_get(p, 1) ? 1 : 0);
		break;
	case FERRY_VMS_INT8:
	case FERRY_VMS_UINT8:
		ferry_put_u8(w, (uint8_t)mem_get(p, 1));
		break;
	case FERRY_VMS_INT16:
	case FERRY_VMS_UINT16:
		ferry_put_be16(w, (uint16_t)mem_get(p, 2));
		break;
	case FERRY_VMS_INT32:
	case FERRY_VMS_UINT32:
		ferry_put_be32(w, (uint32_t)mem_get(p, 4));
		break;
	case FERRY_VMS_INT64:
	case FERRY_VMS_UINT64:
	case FERRY_VMS_TIMER:
		ferry_put_be64(w, mem_get(p, 8));
		break;
	default:
		break;
	}
}

static int save_vmsd(struct ferry_writer *w, const struct ferry_vmsd *vmsd, void *opaque,
		     json_t *desc);

/* One element of @f at @p; the element's bytes go to the stream. */
static int save_elem(struct ferry_writer *w, const struct ferry_vms_field *f, uint8_t *p,
		     size_t bytes, json_t *struct_desc)
{
	switch (f->kind) {
	case FERRY_VMS_BUFFER:
		ferry_put_buffer(w, p, bytes);
		return ferry_writer_error(w);
	case FERRY_VMS_UNUSED:
		for (size_t i = 0; i < f->size; i++)
			ferry_put_u8(w, 0);
		return ferry_writer_error(w);
	case FERRY_VMS_STRUCT:
		return save_vmsd(w, f->vmsd, p, struct_desc);
	default:
		put_scalar(w, f->kind, p);
		return ferry_writer_error(w);
	}
}

static int save_field(struct ferry_writer *w, const struct ferry_vmsd *vmsd,
		      const struct ferry_vms_field *f, void *opaque, json_t *fields)
{
	int64_t n = field_count(f, opaque);
	bool is_array = f->flags & (FERRY_VMS_F_ARRAY | FERRY_VMS_F_VARRAY);
	/* Elements of an array of pointers differ (NULL or not): describe each. */
	bool compress = desc_can_compress(f) && !(f->flags & FERRY_VMS_F_ARRAY_OF_PTR);
	uint8_t *base;
	char name[300];
	int ret = 0;

	if (n < 0) {
		vms_log(FERRY_LOG_ERROR, "save '%s': field '%s': count out of range", vmsd->name,
			f->name);
		ferry_writer_set_error(w, FERRY_ELIMIT);
		return FERRY_ELIMIT;
	}
	if (f->kind == FERRY_VMS_UNUSED) {
		base = NULL;
	} else {
		base = field_base(f, opaque);
		if (!base && n > 0) {
			vms_log(FERRY_LOG_ERROR, "save '%s': field '%s': NULL pointer", vmsd->name,
				f->name);
			ferry_writer_set_error(w, -EFAULT);
			return -EFAULT;
		}
	}
	if (fields)
		desc_field_name(vmsd, f, name, sizeof(name));

	/* A buffer is one element whatever its length; a variable buffer's count is bytes. */
	if (f->kind == FERRY_VMS_BUFFER) {
		size_t bytes = (f->flags & FERRY_VMS_F_VARRAY) ? (size_t)n : f->size;
		uint64_t start = ferry_writer_offset(w);

		ret = save_elem(w, f, base, bytes, NULL);
		if (fields && !ret) {
			json_t *o = desc_field_new(name, "buffer", -1, -1);
			json_object_set_new(
			    o, "size", json_integer((json_int_t)(ferry_writer_offset(w) - start)));
			json_array_append_new(fields, o);
		}
		return ret;
	}

	for (int64_t i = 0; i < n && !ret; i++) {
		uint8_t *p = base ? base + (size_t)i * elem_stride(f) : NULL;
		uint64_t start = ferry_writer_offset(w);
		bool null_elem = false;
		json_t *o = NULL, *sd = NULL;

		if (f->flags & FERRY_VMS_F_ARRAY_OF_PTR) {
			p = mem_get_ptr(p);
			null_elem = p == NULL;
		}
		/* Describe every element, or only the first of a compressible array. */
		bool describe = fields && (!is_array || !compress || i == 0);
		if (describe) {
			const char *type = null_elem ? "nullptr" : kind_type_name(f);
			int64_t alen = is_array && compress ? n : -1;
			int64_t idx = is_array && !compress ? i : -1;

			o = desc_field_new(name, type, alen, idx);
			if (f->kind == FERRY_VMS_STRUCT && !null_elem)
				sd = json_object();
		}
		if (null_elem) {
			ferry_put_u8(w, FERRY_VMS_NULLPTR_MARKER);
			ret = ferry_writer_error(w);
		} else {
			ret = save_elem(w, f, p, f->size, sd);
		}
		if (o) {
			if (sd)
				json_object_set_new(o, "struct", sd);
			json_object_set_new(
			    o, "size", json_integer((json_int_t)(ferry_writer_offset(w) - start)));
			json_array_append_new(fields, o);
		}
	}
	return ret;
}

static int save_subsections(struct ferry_writer *w, const struct ferry_vmsd *vmsd, void *opaque,
			    json_t *desc)
{
	json_t *subs = NULL;
	int ret = 0;

	for (const struct ferry_vmsd *const *s = vmsd->subsections; s && *s && !ret; s++) {
		const struct ferry_vmsd *sub = *s;
		json_t *sd = NULL;

		if (sub->needed && !sub->needed(opaque))
			continue;
		if (desc) {
			if (!subs)
				subs = json_array();
			sd = json_object();
		}
		ferry_put_u8(w, FERRY_VM_SUBSECTION);
		ferry_put_cstr(w, sub->name);
		ferry_put_be32(w, (uint32_t)sub->version_id);
		ret = ferry_writer_error(w);
		if (!ret)
			ret = save_vmsd(w, sub, opaque, sd);
		if (sd)
			json_array_append_new(subs, sd);
	}
	if (subs)
		json_object_set_new(desc, "subsections", subs);
	return ret;
}

static int save_vmsd(struct ferry_writer *w, const struct ferry_vmsd *vmsd, void *opaque,
		     json_t *desc)
{
	json_t *fields = NULL;
	int ret = 0;

	if (vmsd->pre_save) {
		ret = vmsd->pre_save(opaque);
		if (ret < 0) {
			vms_log(FERRY_LOG_ERROR, "save '%s': pre_save failed: %s", vmsd->name,
				ferry_strerror(ret));
			ferry_writer_set_error(w, ret);
			return ret;
		}
	}
	if (desc) {
		json_object_set_new(desc, "vmsd_name", json_string(vmsd->name));
		json_object_set_new(desc, "version", json_integer(vmsd->version_id));
		fields = json_array();
		json_object_set_new(desc, "fields", fields);
	}
	for (const struct ferry_vms_field *f = vmsd->fields; f->name && !ret; f++) {
		if (!field_present(f, opaque, vmsd->version_id))
			continue;
		ret = save_field(w, vmsd, f, opaque, fields);
	}
	if (!ret)
		ret = save_subsections(w, vmsd, opaque, desc);
	if (vmsd->post_save) {
		int r = vmsd->post_save(opaque);
		if (!ret && r < 0) {
			ret = r;
			ferry_writer_set_error(w, r);
		}
	}
	return ret ? ret : ferry_writer_error(w);
}

int vms_save(struct ferry_writer *w, const struct ferry_vmsd *vmsd, void *opaque, json_t *desc)
{
	int ret = ferry_writer_error(w);

	return ret ? ret : save_vmsd(w, vmsd, opaque, desc);
}

/* ---- load ------------------------------------------------------------------------------ */

/* Read one scalar of kind @k into @p, or, for an "equal" field, compare with it. */
static int load_scalar(struct ferry_reader *r, const struct ferry_vms_field *f, uint8_t *p)
{
	uint64_t v = 0, cur = 0;
	size_t width = kind_width(f->kind);

	switch (width) {
	case 1:
		v = ferry_get_u8(r);
		break;
	case 2:
		v = ferry_get_be16(r);
		break;
	case 4:
		v = ferry_get_be32(r);
		break;
	case 8:
		v = ferry_get_be64(r);
		break;
	default:
		return ferry_reader_fail(r, -EINVAL, "kind %d is not a scalar", f->kind);
	}
	if (ferry_reader_error(r))
		return ferry_reader_error(r);
	if (f->kind == FERRY_VMS_BOOL) {
		/* Any non-zero byte is true, as QEMU loads it. */
		mem_set(p, 1, v != 0);
		return 0;
	}
	if (f->flags & FERRY_VMS_F_EQUAL) {
		cur = mem_get(p, width);
		if (cur != v)
			return ferry_reader_fail(
			    r, FERRY_EMISMATCH,
			    "stream has %" PRIu64 ", this side requires %" PRIu64, v, cur);
		return 0;
	}
	mem_set(p, width, v);
	return 0;
}

static int load_vmsd(struct ferry_reader *r, const struct ferry_vmsd *vmsd, void *opaque,
		     int version_id);

static int load_field(struct ferry_reader *r, const struct ferry_vmsd *vmsd,
		      const struct ferry_vms_field *f, void *opaque)
{
	int64_t n;
	uint8_t *base;

	if (f->kind == FERRY_VMS_UNUSED)
		return ferry_reader_skip(r, f->size);

	n = field_count(f, opaque);
	if (n < 0)
		return ferry_reader_fail(r, FERRY_ELIMIT, "count %" PRId64 " is outside 0..%u",
					 read_count(f, opaque), f->num);
	base = field_base(f, opaque);
	if (!base && n > 0)
		return ferry_reader_fail(r, -EFAULT, "this side has no storage for it (NULL)");

	if (f->kind == FERRY_VMS_BUFFER)
		return ferry_get_buffer(r, base,
					(f->flags & FERRY_VMS_F_VARRAY) ? (size_t)n : f->size);

	for (int64_t i = 0; i < n; i++) {
		uint8_t *p = base + (size_t)i * elem_stride(f);
		int ret;

		if (f->flags & FERRY_VMS_F_ARRAY_OF_PTR) {
			p = mem_get_ptr(p);
			if (!p) {
				uint8_t m = ferry_get_u8(r);

				ret = ferry_reader_error(r);
				if (!ret && m != FERRY_VMS_NULLPTR_MARKER)
					ret = ferry_reader_fail(r, FERRY_EBADSTREAM,
								"element is NULL here, expected "
								"marker 0x30, found 0x%02x",
								m);
				if (ret) {
					ferry_reader_context(r, "element %" PRId64, i);
					return ret;
				}
				continue;
			}
		}
		if (f->kind == FERRY_VMS_STRUCT)
			ret = load_vmsd(r, f->vmsd, p, f->vmsd->version_id);
		else
			ret = load_scalar(r, f, p);
		if (ret) {
			if (n > 1)
				ferry_reader_context(r, "element %" PRId64, i);
			return ret;
		}
	}
	return 0;
}

static const struct ferry_vmsd *find_subsection(const struct ferry_vmsd *vmsd, const char *name)
{
	for (const struct ferry_vmsd *const *s = vmsd->subsections; s && *s; s++)
		if (strcmp((*s)->name, name) == 0)
			return *s;
	return NULL;
}

/*
 * Subsections follow the fields in any order. One whose name does not start
 * with "<vmsd name>/" belongs to an enclosing description and ends this list.
 */
static int load_subsections(struct ferry_reader *r, const struct ferry_vmsd *vmsd, void *opaque)
{
	size_t plen = strlen(vmsd->name);

	for (;;) {
		uint8_t hdr[2 + 255];
		char name[256];
		const struct ferry_vmsd *sub;
		uint32_t version;
		int n = ferry_peek_buffer(r, hdr, 2);
		int ret;

		if (n < 2 || hdr[0] != FERRY_VM_SUBSECTION)
			return ferry_reader_error(r);
		/* Peek at the name: leave the bytes alone if it is not ours. */
		n = ferry_peek_buffer(r, hdr, 2 + (size_t)hdr[1]);
		if (n < 0)
			return n;
		if (n < 2 + hdr[1] || hdr[1] <= plen || memcmp(hdr + 2, vmsd->name, plen) != 0 ||
		    hdr[2 + plen] != '/')
			return 0;
		ferry_get_u8(r);
		ferry_get_cstr(r, name);
		version = ferry_get_be32(r);
		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		sub = find_subsection(vmsd, name);
		if (!sub)
			return ferry_reader_fail(r, FERRY_ENOSUBSECTION,
						 "subsection '%s' does not exist here", name);
		if (version > (uint32_t)sub->version_id ||
		    version < (uint32_t)sub->minimum_version_id)
			return ferry_reader_fail(
			    r, FERRY_EVERSION,
			    "subsection '%s' version %" PRIu32 " is outside the supported %d..%d",
			    name, version, sub->minimum_version_id, sub->version_id);
		ret = load_vmsd(r, sub, opaque, (int)version);
		if (ret) {
			ferry_reader_context(r, "subsection '%s'", name);
			return ret;
		}
	}
}

static int load_vmsd(struct ferry_reader *r, const struct ferry_vmsd *vmsd, void *opaque,
		     int version_id)
{
	int ret;

	if (version_id > vmsd->version_id)
		return ferry_reader_fail(r, FERRY_EVERSION,
					 "'%s' version %d is newer than this side's %d", vmsd->name,
					 version_id, vmsd->version_id);
	if (version_id < vmsd->minimum_version_id)
		return ferry_reader_fail(r, FERRY_EVERSION,
					 "'%s' version %d is older than the minimum %d", vmsd->name,
					 version_id, vmsd->minimum_version_id);
	if (vmsd->pre_load) {
		ret = vmsd->pre_load(opaque);
		if (ret < 0)
			return ferry_reader_fail(r, ret, "'%s' pre_load failed: %s", vmsd->name,
						 ferry_strerror(ret));
	}
	for (const struct ferry_vms_field *f = vmsd->fields; f->name; f++) {
		if (!field_present(f, opaque, version_id))
			continue;
		ret = load_field(r, vmsd, f, opaque);
		if (ret) {
			ferry_reader_context(r, "field '%s'", f->name);
			return ret;
		}
	}
	ret = load_subsections(r, vmsd, opaque);
	if (ret)
		return ret;
	if (vmsd->post_load) {
		ret = vmsd->post_load(opaque, version_id);
		if (ret < 0)
			return ferry_reader_fail(r, ret, "'%s' post_load failed: %s", vmsd->name,
						 ferry_strerror(ret));
	}
	return 0;
}

int vms_load(struct ferry_reader *r, const struct ferry_vmsd *vmsd, void *opaque, int version_id)
{
	int ret = ferry_reader_error(r);

	return ret ? ret : load_vmsd(r, vmsd, opaque, version_id);
}
