/* SPDX-License-Identifier: MIT */
/*
 * Declarative, versioned device state (QEMU's VMState model, FORMAT.md §7).
 *
 * A device describes its migratable state once, as a table of fields over its
 * own struct; ferry saves and loads it in QEMU's savevm encoding and describes
 * it in the vmdesc JSON. A description is read-only data: define it `static
 * const` and share it between instances.
 *
 *   struct uart { uint8_t lsr, ier; uint16_t divider; bool fifo; };
 *   static const struct ferry_vmsd uart_vmsd = {
 *       .name = "uart", .version_id = 2, .minimum_version_id = 1,
 *       .fields = (const struct ferry_vms_field[]) {
 *           FERRY_VMS_UINT8(struct uart, lsr),
 *           FERRY_VMS_UINT8(struct uart, ier),
 *           FERRY_VMS_UINT16_V(struct uart, divider, 2),   // only in version >= 2
 *           FERRY_VMS_END(),
 *       },
 *       .subsections = (const struct ferry_vmsd *const[]) { &uart_fifo_vmsd, NULL },
 *   };
 *
 * Field macros check the C type of the named member at compile time: naming a
 * uint16_t member with FERRY_VMS_UINT32 does not build.
 *
 * Threads: descriptions are immutable and may be used from any thread. The
 * hooks run in the thread that saves or loads the device (the migration
 * thread), with the device's state not otherwise being changed (vCPUs stopped).
 */
#ifndef FERRY_VMSTATE_H
#define FERRY_VMSTATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_vmsd;

/* What a field is, on the wire and in memory. */
enum ferry_vms_kind {
	FERRY_VMS_BOOL = 1, /* bool; u8 0/1 on the wire */
	FERRY_VMS_INT8,
	FERRY_VMS_INT16,
	FERRY_VMS_INT32,
	FERRY_VMS_INT64,
	FERRY_VMS_UINT8,
	FERRY_VMS_UINT16,
	FERRY_VMS_UINT32,
	FERRY_VMS_UINT64,
	FERRY_VMS_TIMER,  /* int64_t expiry in ns, -1 when not armed; be64 */
	FERRY_VMS_BUFFER, /* raw bytes: `size` bytes, or the count field's value */
	FERRY_VMS_UNUSED, /* `size` zero bytes on save, skipped on load; no memory */
	FERRY_VMS_STRUCT, /* a nested description, inline, with its subsections */
};

/* Modifiers of a field (bit flags). */
enum ferry_vms_flags {
	FERRY_VMS_F_ARRAY = 1u << 0,	    /* `num` elements back to back */
	FERRY_VMS_F_VARRAY = 1u << 1,	    /* element count from another field (<= num) */
	FERRY_VMS_F_POINTER = 1u << 2,	    /* the member is a pointer to the data */
	FERRY_VMS_F_ARRAY_OF_PTR = 1u << 3, /* array of pointers; NULL travels as '0' (0x30) */
	FERRY_VMS_F_EQUAL = 1u << 4,	    /* loaded value must equal the current one */
};

/**
 * struct ferry_vms_field - one entry of a description's field table.
 *
 * Fill it with the FERRY_VMS_* macros below rather than by hand.
 * @name:         field name (also in vmdesc); unique within its description
 *                except where QEMU repeats one (vmdesc then numbers them)
 * @kind:         what the element is
 * @flags:        FERRY_VMS_F_*
 * @offset:       offset of the member in the device struct
 * @size:         bytes of one element in memory (struct size for STRUCT;
 *                byte count for BUFFER and UNUSED)
 * @num:          element count of a fixed array; the capacity of a variable
 *                array or buffer (a loaded count above it is refused)
 * @count_offset: offset of the count member for F_VARRAY and variable buffers
 * @count_kind:   FERRY_VMS_UINT8/UINT16/UINT32/INT32: the count member's type
 * @version_id:   emitted only when the section's version is >= this
 * @field_exists: if set, decides instead of @version_id (opaque, version)
 * @vmsd:         the nested description for STRUCT
 */
struct ferry_vms_field {
	const char *name;
	enum ferry_vms_kind kind;
	uint32_t flags;
	size_t offset;
	size_t size;
	uint32_t num;
	size_t count_offset;
	enum ferry_vms_kind count_kind;
	int version_id;
	bool (*field_exists)(void *opaque, int version_id);
	const struct ferry_vmsd *vmsd;
};

/* Ordering of device sections in a stream: higher first (FORMAT.md §3). */
enum ferry_vms_priority {
	FERRY_PRI_DEFAULT = 0, /* 0 in a description means DEFAULT (2) */
	FERRY_PRI_LOW = 1,
	FERRY_PRI_NORMAL = 2,
	FERRY_PRI_IOMMU = 3,
	FERRY_PRI_PCI_BUS = 4,
	FERRY_PRI_VIRTIO_MEM = 5,
	FERRY_PRI_APIC = 6,
	FERRY_PRI_GICV3_ITS = 7,
	FERRY_PRI_GICV3 = 8,
};

/**
 * struct ferry_vmsd - a versioned description of a device's (or a part's) state.
 * @name:               the vmsd name; a subsection's must start with its
 *                      parent's name followed by '/' (e.g. "uart/fifo")
 * @version_id:         the version this build writes
 * @minimum_version_id: the oldest version this build can still load
 * @priority:           section order, see enum ferry_vms_priority
 * @needed:             subsections only: send it only when this returns true
 *                      (NULL: always)
 * @pre_save:           before saving; return 0 or -errno (aborts the save)
 * @post_save:          after saving, whether it succeeded or not
 * @pre_load:           before loading; set the defaults that an absent
 *                      subsection leaves in place; 0 or -errno
 * @post_load:          after fields and subsections loaded; @version_id is the
 *                      stream's; 0 or -errno (the load fails)
 * @fields:             table ended by FERRY_VMS_END()
 * @subsections:        NULL-terminated list, or NULL
 * @early_setup:        top-level devices only: send the FULL section in the
 *                      setup phase, right after the START sections of the
 *                      iterative handlers before it in priority order, rather
 *                      than after RAM (QEMU's early_setup, FORMAT.md §3); it
 *                      is listed first in the vmdesc, in stream order
 *
 * Hooks take the device pointer given at registration (for nested structs,
 * the nested struct's address).
 */
struct ferry_vmsd {
	const char *name;
	int version_id;
	int minimum_version_id;
	int priority;
	bool (*needed)(void *opaque);
	int (*pre_save)(void *opaque);
	int (*post_save)(void *opaque);
	int (*pre_load)(void *opaque);
	int (*post_load)(void *opaque, int version_id);
	const struct ferry_vms_field *fields;
	const struct ferry_vmsd *const *subsections;
	bool early_setup;
};

/* ---- compile-time checks ------------------------------------------------------ */

/* 0, if member @f of struct @s has type @t; a compile error otherwise. */
#define FERRY_VMS_TYPE_CHECK_(s, f, t) (0 * sizeof(_Generic(((s *)0)->f, t : 1)))
/* 0, if member @f of @s is an array of exactly @n elements of type @t. */
#define FERRY_VMS_ARRAY_CHECK_(s, f, t, n)                                                         \
	(0 * sizeof(_Generic(((s *)0)->f, t * : 1)) +                                              \
	 0 * sizeof(char[sizeof(((s *)0)->f) == (size_t)(n) * sizeof(t) ? 1 : -1]))
#define FERRY_VMS_OFF_(s, f, t)	    (offsetof(s, f) + FERRY_VMS_TYPE_CHECK_(s, f, t))
#define FERRY_VMS_AOFF_(s, f, t, n) (offsetof(s, f) + FERRY_VMS_ARRAY_CHECK_(s, f, t, n))
#define FERRY_VMS_NELEM_(s, f)	    (sizeof(((s *)0)->f) / sizeof(((s *)0)->f[0]))

/* ---- scalar fields ------------------------------------------------------------ */

/* Generic form: member @f of struct @s, C type @t, field kind @k, from version @v. */
#define FERRY_VMS_SCALAR_V(s, f, t, k, v)                                                          \
	{                                                                                          \
		.name = #f, .kind = (k), .offset = FERRY_VMS_OFF_(s, f, t), .size = sizeof(t),     \
		.version_id = (v),                                                                 \
	}
#define FERRY_VMS_SCALAR_TEST(s, f, t, k, test)                                                    \
	{                                                                                          \
		.name = #f, .kind = (k), .offset = FERRY_VMS_OFF_(s, f, t), .size = sizeof(t),     \
		.field_exists = (test),                                                            \
	}
#define FERRY_VMS_SCALAR_EQUAL(s, f, t, k)                                                         \
	{                                                                                          \
		.name = #f, .kind = (k), .flags = FERRY_VMS_F_EQUAL,                               \
		.offset = FERRY_VMS_OFF_(s, f, t), .size = sizeof(t),                              \
	}

#define FERRY_VMS_BOOL_V(s, f, v)   FERRY_VMS_SCALAR_V(s, f, bool, FERRY_VMS_BOOL, v)
#define FERRY_VMS_INT8_V(s, f, v)   FERRY_VMS_SCALAR_V(s, f, int8_t, FERRY_VMS_INT8, v)
#define FERRY_VMS_INT16_V(s, f, v)  FERRY_VMS_SCALAR_V(s, f, int16_t, FERRY_VMS_INT16, v)
#define FERRY_VMS_INT32_V(s, f, v)  FERRY_VMS_SCALAR_V(s, f, int32_t, FERRY_VMS_INT32, v)
#define FERRY_VMS_INT64_V(s, f, v)  FERRY_VMS_SCALAR_V(s, f, int64_t, FERRY_VMS_INT64, v)
#define FERRY_VMS_UINT8_V(s, f, v)  FERRY_VMS_SCALAR_V(s, f, uint8_t, FERRY_VMS_UINT8, v)
#define FERRY_VMS_UINT16_V(s, f, v) FERRY_VMS_SCALAR_V(s, f, uint16_t, FERRY_VMS_UINT16, v)
#define FERRY_VMS_UINT32_V(s, f, v) FERRY_VMS_SCALAR_V(s, f, uint32_t, FERRY_VMS_UINT32, v)
#define FERRY_VMS_UINT64_V(s, f, v) FERRY_VMS_SCALAR_V(s, f, uint64_t, FERRY_VMS_UINT64, v)
#define FERRY_VMS_TIMER_V(s, f, v)  FERRY_VMS_SCALAR_V(s, f, int64_t, FERRY_VMS_TIMER, v)

#define FERRY_VMS_BOOL(s, f)   FERRY_VMS_BOOL_V(s, f, 0)
#define FERRY_VMS_INT8(s, f)   FERRY_VMS_INT8_V(s, f, 0)
#define FERRY_VMS_INT16(s, f)  FERRY_VMS_INT16_V(s, f, 0)
#define FERRY_VMS_INT32(s, f)  FERRY_VMS_INT32_V(s, f, 0)
#define FERRY_VMS_INT64(s, f)  FERRY_VMS_INT64_V(s, f, 0)
#define FERRY_VMS_UINT8(s, f)  FERRY_VMS_UINT8_V(s, f, 0)
#define FERRY_VMS_UINT16(s, f) FERRY_VMS_UINT16_V(s, f, 0)
#define FERRY_VMS_UINT32(s, f) FERRY_VMS_UINT32_V(s, f, 0)
#define FERRY_VMS_UINT64(s, f) FERRY_VMS_UINT64_V(s, f, 0)
#define FERRY_VMS_TIMER(s, f)  FERRY_VMS_TIMER_V(s, f, 0)

#define FERRY_VMS_UINT8_EQUAL(s, f)  FERRY_VMS_SCALAR_EQUAL(s, f, uint8_t, FERRY_VMS_UINT8)
#define FERRY_VMS_UINT16_EQUAL(s, f) FERRY_VMS_SCALAR_EQUAL(s, f, uint16_t, FERRY_VMS_UINT16)
#define FERRY_VMS_UINT32_EQUAL(s, f) FERRY_VMS_SCALAR_EQUAL(s, f, uint32_t, FERRY_VMS_UINT32)
#define FERRY_VMS_INT32_EQUAL(s, f)  FERRY_VMS_SCALAR_EQUAL(s, f, int32_t, FERRY_VMS_INT32)
#define FERRY_VMS_INT64_EQUAL(s, f)  FERRY_VMS_SCALAR_EQUAL(s, f, int64_t, FERRY_VMS_INT64)

/* ---- arrays --------------------------------------------------------------------- */

/* Fixed array: member @f is `t f[n]`. */
#define FERRY_VMS_ARRAY_V(s, f, n, t, k, v)                                                        \
	{                                                                                          \
		.name = #f, .kind = (k), .flags = FERRY_VMS_F_ARRAY,                               \
		.offset = FERRY_VMS_AOFF_(s, f, t, n), .size = sizeof(t), .num = (n),              \
		.version_id = (v),                                                                 \
	}
#define FERRY_VMS_ARRAY(s, f, n, t, k)	FERRY_VMS_ARRAY_V(s, f, n, t, k, 0)
#define FERRY_VMS_UINT8_ARRAY(s, f, n)	FERRY_VMS_ARRAY(s, f, n, uint8_t, FERRY_VMS_UINT8)
#define FERRY_VMS_UINT16_ARRAY(s, f, n) FERRY_VMS_ARRAY(s, f, n, uint16_t, FERRY_VMS_UINT16)
#define FERRY_VMS_UINT32_ARRAY(s, f, n) FERRY_VMS_ARRAY(s, f, n, uint32_t, FERRY_VMS_UINT32)
#define FERRY_VMS_UINT64_ARRAY(s, f, n) FERRY_VMS_ARRAY(s, f, n, uint64_t, FERRY_VMS_UINT64)
#define FERRY_VMS_INT32_ARRAY(s, f, n)	FERRY_VMS_ARRAY(s, f, n, int32_t, FERRY_VMS_INT32)
#define FERRY_VMS_INT64_ARRAY(s, f, n)	FERRY_VMS_ARRAY(s, f, n, int64_t, FERRY_VMS_INT64)
#define FERRY_VMS_BOOL_ARRAY(s, f, n)	FERRY_VMS_ARRAY(s, f, n, bool, FERRY_VMS_BOOL)

/*
 * Variable array: member @f is `t f[cap]` (inline storage), and the number of
 * elements in use is member @cnt of type @ct (uint8_t, uint16_t, uint32_t or
 * int32_t), with kind @ck. A loaded count above @cap is refused, so the
 * stream can never overrun the storage.
 */
#define FERRY_VMS_VARRAY(s, f, cap, cnt, ct, ck, t, k)                                             \
	{                                                                                          \
		.name = #f, .kind = (k), .flags = FERRY_VMS_F_VARRAY,                              \
		.offset = FERRY_VMS_AOFF_(s, f, t, cap), .size = sizeof(t), .num = (cap),          \
		.count_offset = FERRY_VMS_OFF_(s, cnt, ct), .count_kind = (ck),                    \
	}
#define FERRY_VMS_VARRAY_UINT8(s, f, cap, cnt, t, k)                                               \
	FERRY_VMS_VARRAY(s, f, cap, cnt, uint8_t, FERRY_VMS_UINT8, t, k)
#define FERRY_VMS_VARRAY_UINT16(s, f, cap, cnt, t, k)                                              \
	FERRY_VMS_VARRAY(s, f, cap, cnt, uint16_t, FERRY_VMS_UINT16, t, k)
#define FERRY_VMS_VARRAY_UINT32(s, f, cap, cnt, t, k)                                              \
	FERRY_VMS_VARRAY(s, f, cap, cnt, uint32_t, FERRY_VMS_UINT32, t, k)
#define FERRY_VMS_VARRAY_INT32(s, f, cap, cnt, t, k)                                               \
	FERRY_VMS_VARRAY(s, f, cap, cnt, int32_t, FERRY_VMS_INT32, t, k)

/* ---- buffers ---------------------------------------------------------------------- */

/* Fixed buffer: member @f is `uint8_t f[N]`, all N bytes travel. */
#define FERRY_VMS_BUFFER(s, f)                                                                     \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_BUFFER,                                              \
		.offset = FERRY_VMS_AOFF_(s, f, uint8_t, FERRY_VMS_NELEM_(s, f)),                  \
		.size = sizeof(((s *)0)->f), .num = 1,                                             \
	}
/*
 * Variable buffer: member @f is `uint8_t f[cap]`; member @len (uint32_t)
 * holds how many bytes travel; a loaded length above @cap is refused.
 */
#define FERRY_VMS_VBUFFER_UINT32(s, f, cap, len)                                                   \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_BUFFER, .flags = FERRY_VMS_F_VARRAY,                 \
		.offset = FERRY_VMS_AOFF_(s, f, uint8_t, cap), .size = 1, .num = (cap),            \
		.count_offset = FERRY_VMS_OFF_(s, len, uint32_t), .count_kind = FERRY_VMS_UINT32,  \
	}

/* @n zero bytes kept for compatibility with an older layout; no member. */
#define FERRY_VMS_UNUSED_V(n, v)                                                                   \
	{                                                                                          \
		.name = "unused", .kind = FERRY_VMS_UNUSED, .size = (n), .version_id = (v),        \
	}
#define FERRY_VMS_UNUSED(n) FERRY_VMS_UNUSED_V(n, 0)

/* ---- structs ---------------------------------------------------------------------- */

/* Nested struct: member @f of type @t, described by @d (a const struct ferry_vmsd). */
#define FERRY_VMS_STRUCT_V(s, f, d, t, v)                                                          \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_STRUCT, .offset = FERRY_VMS_OFF_(s, f, t),           \
		.size = sizeof(t), .vmsd = &(d), .version_id = (v),                                \
	}
#define FERRY_VMS_STRUCT(s, f, d, t) FERRY_VMS_STRUCT_V(s, f, d, t, 0)

/* Array of structs: member @f is `t f[n]`. */
#define FERRY_VMS_STRUCT_ARRAY(s, f, n, d, t)                                                      \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_STRUCT, .flags = FERRY_VMS_F_ARRAY,                  \
		.offset = FERRY_VMS_AOFF_(s, f, t, n), .size = sizeof(t), .num = (n),              \
		.vmsd = &(d),                                                                      \
	}

/*
 * Variable array of structs: member @f is `t f[cap]`, member @cnt (type @ct,
 * kind @ck) says how many are in use; a loaded count above @cap is refused.
 */
#define FERRY_VMS_STRUCT_VARRAY(s, f, cap, cnt, ct, ck, d, t)                                      \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_STRUCT, .flags = FERRY_VMS_F_VARRAY,                 \
		.offset = FERRY_VMS_AOFF_(s, f, t, cap), .size = sizeof(t), .num = (cap),          \
		.count_offset = FERRY_VMS_OFF_(s, cnt, ct), .count_kind = (ck), .vmsd = &(d),      \
	}
#define FERRY_VMS_STRUCT_VARRAY_UINT32(s, f, cap, cnt, d, t)                                       \
	FERRY_VMS_STRUCT_VARRAY(s, f, cap, cnt, uint32_t, FERRY_VMS_UINT32, d, t)
#define FERRY_VMS_STRUCT_VARRAY_INT32(s, f, cap, cnt, d, t)                                        \
	FERRY_VMS_STRUCT_VARRAY(s, f, cap, cnt, int32_t, FERRY_VMS_INT32, d, t)

/*
 * Array of pointers to structs: member @f is `t *f[n]`. A NULL element travels
 * as the single byte 0x30 and must be NULL on the destination too; a non-NULL
 * one as the struct's payload into the destination's (existing) object.
 */
#define FERRY_VMS_STRUCT_PTR_ARRAY(s, f, n, d, t)                                                  \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_STRUCT,                                              \
		.flags = FERRY_VMS_F_ARRAY | FERRY_VMS_F_ARRAY_OF_PTR,                             \
		.offset = FERRY_VMS_AOFF_(s, f, t *, n), .size = sizeof(t), .num = (n),            \
		.vmsd = &(d),                                                                      \
	}

/* ---- gates ---------------------------------------------------------------------- */

/* Scalars present only when @test(opaque, stream_version) returns true. */
#define FERRY_VMS_BOOL_TEST(s, f, test)	 FERRY_VMS_SCALAR_TEST(s, f, bool, FERRY_VMS_BOOL, test)
#define FERRY_VMS_UINT8_TEST(s, f, test) FERRY_VMS_SCALAR_TEST(s, f, uint8_t, FERRY_VMS_UINT8, test)
#define FERRY_VMS_UINT16_TEST(s, f, test)                                                          \
	FERRY_VMS_SCALAR_TEST(s, f, uint16_t, FERRY_VMS_UINT16, test)
#define FERRY_VMS_UINT32_TEST(s, f, test)                                                          \
	FERRY_VMS_SCALAR_TEST(s, f, uint32_t, FERRY_VMS_UINT32, test)
#define FERRY_VMS_UINT64_TEST(s, f, test)                                                          \
	FERRY_VMS_SCALAR_TEST(s, f, uint64_t, FERRY_VMS_UINT64, test)
#define FERRY_VMS_INT32_TEST(s, f, test) FERRY_VMS_SCALAR_TEST(s, f, int32_t, FERRY_VMS_INT32, test)

/* A nested struct present only when @test(opaque, stream_version) returns true. */
#define FERRY_VMS_STRUCT_TEST(s, f, d, t, test)                                                    \
	{                                                                                          \
		.name = #f, .kind = FERRY_VMS_STRUCT, .offset = FERRY_VMS_OFF_(s, f, t),           \
		.size = sizeof(t), .vmsd = &(d), .field_exists = (test),                           \
	}

#define FERRY_VMS_END()                                                                            \
	{                                                                                          \
		.name = NULL                                                                       \
	}

/* The marker a NULL element of an array of pointers is sent as (FORMAT.md §7). */
#define FERRY_VMS_NULLPTR_MARKER 0x30

#ifdef __cplusplus
}
#endif
#endif
