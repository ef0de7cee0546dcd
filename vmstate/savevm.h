/* SPDX-License-Identifier: MIT */
/*
 * Sections of a savevm v3 stream (FORMAT.md §3-§6, §9): the registry of
 * devices, and the functions that write and read a whole stream.
 *
 * A source writes, in order:
 *   ferry_save_begin()      magic, version, configuration, optional commands
 *   ferry_save_setup()      START section of every iterative handler (RAM),
 *                           and the FULL sections of early-setup devices
 *   ferry_save_iterate()    one PART per iterative handler, as often as needed
 *   ferry_save_complete()   END of every iterative handler, FULL sections of
 *                           the devices in priority order, EOF, vmdesc JSON
 * ferry_save_snapshot() does all of it for a stopped machine.
 *
 * A destination calls ferry_load() once; it reads up to EOF (and the vmdesc)
 * and dispatches every section to the registered device.
 *
 * Threads: a registry is not thread-safe; build it before a migration and do
 * not change it during one. Save and load run in the caller's thread, and so
 * do every hook and handler they call.
 */
#ifndef FERRY_SAVEVM_H
#define FERRY_SAVEVM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/stream.h>
#include <ferry/vmstate.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FERRY_VM_FILE_MAGIC   0x5145564du /* "QEVM" */
#define FERRY_VM_FILE_VERSION 3u

enum ferry_vm_record {
	FERRY_VM_EOF = 0x00,
	FERRY_VM_SECTION_START = 0x01,
	FERRY_VM_SECTION_PART = 0x02,
	FERRY_VM_SECTION_END = 0x03,
	FERRY_VM_SECTION_FULL = 0x04,
	FERRY_VM_SUBSECTION = 0x05,
	FERRY_VM_VMDESCRIPTION = 0x06,
	FERRY_VM_CONFIGURATION = 0x07,
	FERRY_VM_COMMAND = 0x08,
	FERRY_VM_SECTION_FOOTER = 0x7e,
};

/* COMMAND records (FORMAT.md §6). */
enum ferry_vm_command {
	FERRY_CMD_OPEN_RETURN_PATH = 1,
	FERRY_CMD_PING = 2,
	FERRY_CMD_POSTCOPY_ADVISE = 3,
	FERRY_CMD_POSTCOPY_LISTEN = 4,
	FERRY_CMD_POSTCOPY_RUN = 5,
	FERRY_CMD_POSTCOPY_RAM_DISCARD = 6,
	FERRY_CMD_PACKAGED = 7,
	FERRY_CMD_ENABLE_COLO = 8,
	FERRY_CMD_POSTCOPY_RESUME = 9,
	FERRY_CMD_RECV_BITMAP = 10,
	FERRY_CMD_SWITCHOVER_START = 11,
};

/* Bounds a loader enforces on what a peer declares. */
#define FERRY_VMDESC_MAX_LEN  (16u << 20) /* vmdesc JSON */
#define FERRY_COMMAND_MAX_LEN 65535u	  /* be16 length */
#define FERRY_MAX_NESTING     16	  /* structs/subsections within each other */

struct ferry_devices;

/**
 * struct ferry_legacy_ops - a device that writes its own opaque payload.
 * @version_id: version written in its section header
 * @priority:   see enum ferry_vms_priority (0 = default)
 * @save:       write the payload; 0 or -errno. Migration thread.
 * @load:       read exactly what @save wrote for @version_id; 0 or a
 *              negative error (use ferry_reader_fail() for the message).
 */
struct ferry_legacy_ops {
	int version_id;
	int priority;
	int (*save)(struct ferry_writer *w, void *opaque);
	int (*load)(struct ferry_reader *r, void *opaque, int version_id);
};

/**
 * struct ferry_iter_ops - a handler whose state is too large to send at once
 * (guest RAM), sent over several sections while the guest runs.
 * @version_id: version written in its START section
 * @priority:   order among iterative handlers (0 = default)
 * @setup:      write the START payload (e.g. the RAM block list); 0 or -errno
 * @pending:    bytes still to send (an estimate; drives convergence)
 * @iterate:    write one PART payload; return 1 when this handler has nothing
 *              left to send for now, 0 when it stopped early (rate limit) and
 *              wants another PART, or -errno
 * @complete:   write the END payload, with the guest stopped; 0 or -errno
 * @load:       read one START/PART/END payload (@type says which) of the
 *              version in the START header; 0 or a negative error
 * @cleanup:    after the migration ends, successfully or not; may be NULL
 *
 * Every member runs in the migration thread of its side.
 */
struct ferry_iter_ops {
	int version_id;
	int priority;
	int (*setup)(struct ferry_writer *w, void *opaque);
	uint64_t (*pending)(void *opaque);
	int (*iterate)(struct ferry_writer *w, void *opaque);
	int (*complete)(struct ferry_writer *w, void *opaque);
	int (*load)(struct ferry_reader *r, void *opaque, int version_id,
		    enum ferry_vm_record type);
	void (*cleanup)(void *opaque);
};

/** ferry_devices_create() - an empty registry. Returns 0 or -ENOMEM. */
int ferry_devices_create(struct ferry_devices **out);

/** ferry_devices_destroy() - free the registry (not the devices). NULL is allowed. */
void ferry_devices_destroy(struct ferry_devices *devs);

/**
 * ferry_devices_add() - register a device described by @vmsd.
 * @idstr: section name (< 256 bytes, e.g. "0000:00:01.0/uart" or "uart")
 * @instance_id: tells devices of the same @idstr apart (0, 1, ...)
 * @vmsd: its description; must outlive the registry
 * @opaque: the device struct the fields are relative to
 *
 * Returns 0; -EEXIST when (@idstr, @instance_id) is taken; -EINVAL for a name
 * too long or a description that is malformed (e.g. a subsection name that
 * does not start with its parent's).
 */
int ferry_devices_add(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
		      const struct ferry_vmsd *vmsd, void *opaque);

/** ferry_devices_add_legacy() - register a device with its own save/load pair. */
int ferry_devices_add_legacy(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
			     const struct ferry_legacy_ops *ops, void *opaque);

/** ferry_devices_add_iterative() - register an iterative handler (RAM). */
int ferry_devices_add_iterative(struct ferry_devices *devs, const char *idstr, uint32_t instance_id,
				const struct ferry_iter_ops *ops, void *opaque);

/** ferry_devices_pending() - the sum of every iterative handler's pending bytes. */
uint64_t ferry_devices_pending(struct ferry_devices *devs);

/**
 * struct ferry_stream_config - what the configuration section carries and checks.
 * @machine:      machine type name ("pc-i440fx-7.2", "ferry-demo")
 * @capabilities: validated capability names, sent in the
 *                "configuration/capabilities" subsection when @ncaps > 0
 * @ncaps:        their number
 * @uuid:         16 bytes sent in "configuration/uuid" when non-NULL
 * @page_size:    the target page size written in the vmdesc (0: 4096)
 * @send_vmdesc:  write the vmdesc JSON after EOF (QEMU does by default)
 */
struct ferry_stream_config {
	const char *machine;
	const char *const *capabilities;
	size_t ncaps;
	const uint8_t *uuid;
	uint32_t page_size;
	bool send_vmdesc;
};

/**
 * ferry_save_begin() - magic, version and configuration section.
 * Returns 0 or the writer's error.
 */
int ferry_save_begin(struct ferry_writer *w, const struct ferry_stream_config *cfg);

/** ferry_save_command() - one COMMAND record (@len <= 65535). Returns 0 or an error. */
int ferry_save_command(struct ferry_writer *w, uint16_t cmd, const void *data, uint16_t len);

/**
 * ferry_save_setup() - a START section for every iterative handler and a FULL
 * section for every early-setup device (ferry_vmsd.early_setup), in priority
 * order. The early sections' vmdesc entries are kept for ferry_save_complete().
 */
int ferry_save_setup(struct ferry_writer *w, struct ferry_devices *devs);

/**
 * ferry_save_iterate() - one PART section for every iterative handler that still
 * has data this round. Returns 1 when all of them reported they are done, 0
 * when some stopped early, or a negative error.
 */
int ferry_save_iterate(struct ferry_writer *w, struct ferry_devices *devs);

/**
 * ferry_save_complete() - with the guest stopped: END sections, then a FULL
 * section for every other device in priority order, EOF, and the vmdesc when
 * @cfg->send_vmdesc. Calls pre_save/post_save hooks. Returns 0 or an error.
 */
int ferry_save_complete(struct ferry_writer *w, struct ferry_devices *devs,
			const struct ferry_stream_config *cfg);

/**
 * ferry_save_snapshot() - the whole stream of a stopped machine: begin, setup,
 * iterate until done, complete. Does not flush or close @w.
 */
int ferry_save_snapshot(struct ferry_writer *w, struct ferry_devices *devs,
			const struct ferry_stream_config *cfg);

/* What the loader does after EOF (FORMAT.md §3). */
enum ferry_vmdesc_mode {
	FERRY_VMDESC_OPTIONAL = 0, /* read it if the stream goes on (files, pipes that end) */
	FERRY_VMDESC_REQUIRED = 1, /* it must follow EOF */
	FERRY_VMDESC_NONE = 2,	   /* stop at EOF: a live socket whose sender sends none */
};

/**
 * struct ferry_load_config - the destination's expectations and callbacks.
 * @machine:      the local machine type; the stream's must match (NULL: any)
 * @capabilities: validated capabilities enabled here; the stream's set must
 *                be the same
 * @ncaps:        their number
 * @uuid:         16 bytes; a stream UUID that differs is refused (NULL: not checked)
 * @command:      called for each COMMAND record the loader does not handle
 *                itself (all but PACKAGED, which is refused); return 0 to go
 *                on or a negative error to stop. NULL: every command except
 *                OPEN_RETURN_PATH and PING is refused. Loader's thread.
 * @opaque:       passed to @command
 * @vmdesc_mode:  whether to read the vmdesc after EOF; OPTIONAL (the zero
 *                value) reads until the stream ends, so on a live socket
 *                use REQUIRED or NONE to match what the sender does
 * @vmdesc:       if non-NULL, receives the vmdesc JSON (malloc'd, NUL-terminated;
 *                the caller frees it) or NULL when the stream has none
 */
struct ferry_load_config {
	const char *machine;
	const char *const *capabilities;
	size_t ncaps;
	const uint8_t *uuid;
	int (*command)(void *opaque, uint16_t cmd, const uint8_t *data, uint16_t len);
	void *opaque;
	enum ferry_vmdesc_mode vmdesc_mode;
	char **vmdesc;
};

/**
 * ferry_load() - read a whole stream from @r into the registered devices.
 *
 * Every length, count, name and version is checked before use. On failure
 * the return value is negative and ferry_reader_errmsg(@r) names the offset,
 * section, field and what was expected; devices may be partly loaded and must
 * be discarded by the caller (the destination guest never runs on them).
 * Each iterative handler's cleanup runs before returning, success or not.
 */
int ferry_load(struct ferry_reader *r, struct ferry_devices *devs,
	       const struct ferry_load_config *cfg);

#ifdef __cplusplus
}
#endif
#endif
