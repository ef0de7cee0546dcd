/* SPDX-License-Identifier: MIT */
/*
 * The migration engine: what a hypervisor embeds.
 *
 * One engine per VM side. The embedder registers its guest RAM blocks, its
 * devices (through ferry_engine_devices() and <ferry/savevm.h>), a dirty-log
 * source (<ferry/dirty.h>) and vCPU controls, then either migrates out
 * (source) or waits for an incoming migration (destination).
 *
 *   source:      ferry_engine_create -> add_ram... -> devices -> set_dirty_log
 *                -> set_vcpu_ops -> ferry_migrate(uri, done_cb) ... done_cb(status)
 *   destination: ferry_engine_create -> add_ram... -> devices
 *                -> ferry_incoming(uri, done_cb) ... done_cb(status) -> resume vCPUs
 *
 * Threads: configuration calls (create, add_ram, set_*) are made before a
 * migration starts, from one thread. ferry_migrate()/ferry_incoming() start a
 * migration thread of the engine's own; the done and event callbacks run in
 * it. ferry_engine_cancel() and ferry_engine_get_stats() are thread-safe and
 * may be called at any time from any thread, including from callbacks.
 * ferry_engine_destroy() waits for the migration thread to finish.
 *
 * The source guest is never harmed: a migration that fails or is cancelled
 * leaves guest memory untouched and, if it had stopped the vCPUs, resumes them
 * before the done callback runs.
 */
#ifndef FERRY_ENGINE_H
#define FERRY_ENGINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/dirty.h>
#include <ferry/savevm.h>
#include <ferry/tls.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_engine;

/* The most data channels (ferry_params.channels) a migration may use. */
#define FERRY_MAX_CHANNELS 64

/** Migration status, as QEMU's query-migrate reports it. */
enum ferry_status {
	FERRY_STATUS_NONE = 0,
	FERRY_STATUS_SETUP,	/* connecting, negotiating, starting the dirty log */
	FERRY_STATUS_ACTIVE,	/* bulk and iterative rounds, guest running */
	FERRY_STATUS_DEVICE,	/* vCPUs stopped: last pages and device state */
	FERRY_STATUS_COMPLETED, /* the destination confirmed it loaded everything */
	FERRY_STATUS_FAILED,	/* see ferry_stats.error / error_msg */
	FERRY_STATUS_CANCELLING,
	FERRY_STATUS_CANCELLED,
};

/** ferry_status_name() - "setup", "active", ... for messages and JSON. */
const char *ferry_status_name(enum ferry_status st);

/**
 * struct ferry_ram_block - one region of guest RAM.
 * @name:      block id on the wire ("pc.ram"); < 256 bytes, unique
 * @host:      where it is mapped in this process; page aligned
 * @length:    bytes; a multiple of 4096
 * @page_size: 4096, or 2 MiB for a huge-page backing (informational: pages
 *             travel as 4 KiB target pages either way)
 * @numa_node: the node that holds it, or -1 to let ferry find out
 */
struct ferry_ram_block {
	const char *name;
	void *host;
	uint64_t length;
	uint64_t page_size;
	int numa_node;
};

/**
 * struct ferry_vcpu_ops - how the engine controls the guest's vCPUs.
 * @stop:     stop every vCPU and return once none runs (0 or -errno).
 *            Migration thread; may block briefly.
 * @resume:   let them run again (0 or -errno). Migration thread.
 * @throttle: make the vCPUs sleep @percent of their time (0 = none, up to
 *            99), for auto-converge; may be NULL when unsupported.
 *            Migration thread; must not block.
 * @opaque:   passed to each.
 */
struct ferry_vcpu_ops {
	int (*stop)(void *opaque);
	int (*resume)(void *opaque);
	int (*throttle)(void *opaque, int percent);
	void *opaque;
};

/**
 * struct ferry_params - migration parameters (QEMU's names where they exist).
 * Zero means "the default" for every member.
 * @downtime_limit_ms:   switch over once the expected downtime is below this
 *                       (default 300)
 * @max_bandwidth:       bytes per second on the wire, 0 = unlimited
 * @timeout_ms:          fail a migration still running after this long
 *                       (default 0 = never). This and @stall_timeout_ms are
 *                       at most UINT64_MAX / 2 / 1000000 (292 years; kept in
 *                       nanoseconds); more is -EINVAL
 * @auto_converge:       throttle the vCPUs when rounds stop shrinking
 * @throttle_initial:    first throttle step, percent (default 20)
 * @throttle_increment:  each further step (default 10)
 * @throttle_max:        ceiling (default 99)
 * @no_zero_detection:   send zero pages in full instead of as ZERO records
 * @machine:             machine type in the configuration section
 *                       (default "ferry"); both sides must agree
 * @max_rounds:          give up (fail) after this many iterative rounds
 *                       without converging, unless auto-converge is on
 *                       (default 0 = no limit)
 * @channels:            source: move the pages over this many data
 *                       connections beside the main stream, one worker
 *                       thread each: TCP connections for tcp: and unix:
 *                       URIs, RDMA queue pairs for rdma: URIs; 0 = pages
 *                       in the main stream (rdma: then uses 1). At most
 *                       FERRY_MAX_CHANNELS. The destination follows
 *                       what the source announces. docs/data-path.md
 * @zerocopy:            source, with @channels: send pages with
 *                       MSG_ZEROCOPY (and wait for its completions at each
 *                       round's end); falls back to copying sends per
 *                       connection where the kernel refuses it; refused
 *                       with TLS (ferry_engine_set_tls())
 * @numa_topology:       where the data-path workers are placed: NULL for
 *                       this machine (workers bound to the CPUs of the node
 *                       that holds their RAM), or a described topology for
 *                       testing, "synthetic:<hwloc synthetic description>"
 *                       or "xml:<path of an hwloc XML export>" (placement is
 *                       computed and reported, threads are not bound). Not
 *                       copied: must stay valid while a migration runs
 * @rdma_registration:   rdma: how this side registers its guest RAM with the
 *                       device: "auto" (NULL, the default: ODP where the
 *                       device has it, else pin-all if RLIMIT_MEMLOCK
 *                       allows, else chunked), "pin-all", "chunked" or
 *                       "odp". Each side sets its own; what was used and
 *                       the time it took are in ferry_stats. Not copied
 * @no_fallback:         source, rdma: fail the migration when the RDMA data
 *                       path cannot be set up, instead of moving the pages
 *                       over TCP lanes to the same host (the default, with
 *                       a warning saying why). docs/rdma.md
 * @stall_timeout_ms:    fail once no byte moved on the migration's
 *                       connections (main stream and data lanes, either
 *                       way) for this long while connected, so that a peer
 *                       that stops without closing (a hung host, a dead
 *                       link that sends no reset) cannot hold the migration
 *                       forever (default 60000; the wait for a source to
 *                       connect is not counted: @timeout_ms bounds that)
 * @rdma_port:           rdma: the rdma_cm port of the queue pairs, 1 to
 *                       65535, on the URI's host; 0 (the default) = the
 *                       URI's PORT + 1. The destination listens there, the
 *                       source connects there: both sides must agree (a
 *                       source in front of a proxy on the main stream names
 *                       the destination's port). More than 65535 is refused
 *                       (-EINVAL). docs/rdma.md
 */
struct ferry_params {
	uint64_t downtime_limit_ms;
	uint64_t max_bandwidth;
	uint64_t timeout_ms;
	bool auto_converge;
	int throttle_initial;
	int throttle_increment;
	int throttle_max;
	bool no_zero_detection;
	const char *machine;
	uint32_t max_rounds;
	uint32_t channels;
	bool zerocopy;
	const char *numa_topology;
	const char *rdma_registration;
	bool no_fallback;
	uint64_t stall_timeout_ms;
	uint32_t rdma_port;
};

/**
 * struct ferry_stats - a snapshot of a migration, like QEMU's query-migrate.
 * Times are milliseconds; rates are per second.
 */
struct ferry_stats {
	enum ferry_status status;
	int error;	      /* negative code when FAILED */
	char error_msg[512];  /* what happened, for a person */
	uint64_t setup_ms;    /* connect .. first page */
	uint64_t total_ms;    /* start .. end (so far while running) */
	uint64_t downtime_ms; /* vCPUs stopped .. destination confirmed */
	uint64_t expected_downtime_ms;
	uint64_t transferred;  /* bytes put on the wire, all channels */
	uint64_t remaining;    /* dirty bytes still to send (last sync) */
	uint64_t total_ram;    /* bytes of guest RAM */
	uint64_t dirty_rate;   /* bytes dirtied per second, last round */
	uint64_t throughput;   /* bytes per second, last round */
	uint64_t rounds;       /* dirty-log syncs (QEMU's dirty-sync-count) */
	uint64_t normal_pages; /* pages sent in full */
	uint64_t zero_pages;   /* pages sent as ZERO records (or zero runs on a data path) */
	uint64_t normal_bytes; /* page data bytes of the normal pages */
	uint64_t
	    memcpy_bytes; /* page bytes copied in user space (0 on zero-copy paths; TLS: see tls) */
	int throttle_pct; /* current auto-converge throttle */
	uint64_t cpu_ms;  /* CPU time of the migration thread and the data-path workers (kernel
			   * copies included) */
	uint64_t downtime_limit_ms;
	char transport[32];	   /* "tcp", "unix", "file", "exec", "fd", "tcp-multi", "rdma": the
				    * data path actually used (tcp-multi after an RDMA fallback) */
	uint32_t channels;	   /* data-path lanes (workers); 0 = pages in the main stream */
	uint64_t syscalls;	   /* system calls the data path made for page data, all lanes */
	char registration[16];	   /* this side's memory registration (rdma): "pin-all",
				    * "chunked", "odp"; empty when nothing is registered */
	uint64_t registration_us;  /* time this side spent registering and releasing it */
	char fallback_reason[160]; /* why the data path asked for (rdma) was not used;
				    * empty when it was */
	/* "" without TLS; else the main stream's protocol, cipher and credential
	 * kind ("TLS1.3 AES-256-GCM x509"); data lanes use the same. With TLS,
	 * memcpy_bytes counts every page byte once more: encrypting into (or
	 * decrypting out of) a TLS record is a copy. */
	char tls[48];
};

/**
 * struct ferry_worker_stats - one data-path worker (worker i drives lane i),
 * on either side. Read with ferry_engine_get_worker_stats().
 * @index:      the worker (and lane) number
 * @numa_node:  the NUMA node it was placed on (OS numbering), -1 if none
 * @bound:      its thread is bound to @cpus (false on a described topology,
 *              or when binding failed; see the log)
 * @cpus:       the CPUs of its placement, as a list ("0-7,16-23")
 * @ram_bytes:  bytes of guest RAM whose pages travel through it
 * @pages:      pages it moved with their data
 * @zero_pages: pages it moved as zero runs
 * @bytes:      page data bytes
 * @wire_bytes: bytes on its lane's connection, protocol included
 * @packets:    transport messages on its lane
 * @syscalls:   system calls for its lane's data
 * @cpu_ns:     CPU time of its thread (updated once per batch or sync point)
 * @sync_round: the last round whose sync point its lane completed
 */
struct ferry_worker_stats {
	uint32_t index;
	int numa_node;
	bool bound;
	char cpus[64];
	uint64_t ram_bytes;
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t bytes;
	uint64_t wire_bytes;
	uint64_t packets;
	uint64_t syscalls;
	uint64_t cpu_ns;
	uint64_t sync_round;
};

/** Kinds of events delivered to the event callback. */
enum ferry_event_type {
	FERRY_EVENT_STATUS = 1, /* the status changed */
	FERRY_EVENT_ROUND,	/* a dirty-log sync ended a round */
	FERRY_EVENT_PROGRESS,	/* periodic, about every 100 ms while pages move */
};

/**
 * ferry_event_fn - progress reporting.
 * @stats: a snapshot taken for this event; valid during the call.
 * Thread context: the migration thread; must not block for long and must not
 * call ferry_engine_destroy().
 */
typedef void (*ferry_event_fn)(void *opaque, enum ferry_event_type type,
			       const struct ferry_stats *stats);

/**
 * ferry_done_fn - the migration ended.
 * @status: FERRY_STATUS_COMPLETED, FAILED or CANCELLED.
 * Thread context: the migration thread, once, as its last action; the engine
 * may not be destroyed from inside it.
 */
typedef void (*ferry_done_fn)(void *opaque, enum ferry_status status);

/**
 * ferry_engine_create() - a new engine with no RAM and no devices.
 * Returns 0 or -ENOMEM.
 */
int ferry_engine_create(struct ferry_engine **out);

/**
 * ferry_engine_destroy() - cancel any migration, wait for its thread, free.
 * Does not free the dirty log or touch guest RAM. NULL is allowed.
 */
void ferry_engine_destroy(struct ferry_engine *eng);

/**
 * ferry_engine_add_ram() - register a block of guest RAM.
 * Returns its index (0, 1, ...), or -EINVAL (bad alignment, empty, name too
 * long), -EEXIST (name taken) or FERRY_ESTATE (a migration runs).
 */
int ferry_engine_add_ram(struct ferry_engine *eng, const struct ferry_ram_block *block);

/**
 * ferry_engine_devices() - the device registry, to add devices to with
 * ferry_devices_add*(). Owned by the engine. The RAM handler is registered
 * in it as "ram" (instance 0) when a migration starts.
 */
struct ferry_devices *ferry_engine_devices(struct ferry_engine *eng);

/**
 * ferry_engine_set_dirty_log() - the source's dirty-log source, built over the
 * same blocks in the same order as ferry_engine_add_ram(). Not owned.
 * Without one, the source can only migrate a stopped guest (non-live).
 */
int ferry_engine_set_dirty_log(struct ferry_engine *eng, struct ferry_dirty_log *log);

/** ferry_engine_set_vcpu_ops() - copy @ops; without them the guest is assumed stopped. */
int ferry_engine_set_vcpu_ops(struct ferry_engine *eng, const struct ferry_vcpu_ops *ops);

/**
 * ferry_engine_set_params() - copy @p (zero members take defaults).
 * With @p->channels or @p->numa_topology, the NUMA topology is read here
 * (tens of milliseconds), so that a migration's setup does not pay for it.
 * Returns 0, -EINVAL (a value out of range, a described topology that does
 * not load: the log says why) or FERRY_ESTATE (a migration runs).
 */
int ferry_engine_set_params(struct ferry_engine *eng, const struct ferry_params *p);

/**
 * ferry_engine_set_tls() - run the migration inside TLS (<ferry/tls.h>): the
 * main stream and every data connection. The source is the TLS client, the
 * destination the TLS server.
 * @attr: x509 directory or PSK file, host name, verify-peer; the strings
 *        are copied. NULL turns TLS off again.
 *
 * The credential files are loaded when a migration starts (ferry_migrate()
 * as client, ferry_incoming() as server), which then fails at once, before
 * any connection, on a missing or broken file (-ENOENT, -EACCES, -EINVAL).
 * Needs a tcp: or unix: URI (rdma: too: its main stream is tcp); file:,
 * exec: and fd: are refused (FERRY_EBADURI). ferry_params.zerocopy is
 * refused with TLS (-EINVAL at start): pages are encrypted, not sent in
 * place. A peer that fails the checks (certificate, host name, PSK key) or
 * does not speak TLS fails the migration with FERRY_EAUTH or FERRY_ETLS
 * and a message in ferry_stats.error_msg; the source guest keeps running.
 *
 * Thread context: the embedder's thread, not during a migration.
 * Returns 0, FERRY_ESTATE (a migration is running), -EINVAL (neither or
 * both of x509_dir and psk_file), or -ENOMEM.
 */
int ferry_engine_set_tls(struct ferry_engine *eng, const struct ferry_tls_attr *attr);

/** ferry_engine_set_event_cb() - progress events; NULL to stop them. */
int ferry_engine_set_event_cb(struct ferry_engine *eng, ferry_event_fn fn, void *opaque);

/**
 * ferry_migrate() - start migrating this guest to @uri, asynchronously.
 * @uri: tcp:host:port, unix:path, fd:N, file:path, exec:command, or
 *       rdma:host:port (main stream over TCP to host:port, pages by RDMA
 *       WRITE to the rdma_cm port port + 1, or params.rdma_port, TCP lanes
 *       as the fallback; docs/rdma.md).
 * @done: called once when the migration ends (may be NULL).
 *
 * Returns 0 when the migration thread started (@done will be called), or a
 * negative error and nothing started (@done will not be called): FERRY_EBADURI,
 * FERRY_ESTATE (one is already running or no RAM is registered).
 */
int ferry_migrate(struct ferry_engine *eng, const char *uri, ferry_done_fn done, void *opaque);

/**
 * ferry_incoming() - accept a migration from @uri into this engine's RAM and
 * devices, asynchronously. For tcp/unix it listens (ferry_engine_listen_port()
 * gives the port bound for tcp:host:0); rdma:host:port listens for TCP on
 * port and, once the source offers RDMA, for rdma_cm on port + 1 or
 * params.rdma_port (RAM is
 * registered then, as params.rdma_registration says); file: and exec: read a
 * stream.
 * Same return convention as ferry_migrate(). On COMPLETED the embedder
 * resumes its vCPUs; on FAILED the guest must not run.
 */
int ferry_incoming(struct ferry_engine *eng, const char *uri, ferry_done_fn done, void *opaque);

/**
 * ferry_engine_listen_port() - the TCP port an incoming migration listens on,
 * once ferry_incoming() returned (0 for other transports).
 */
int ferry_engine_listen_port(struct ferry_engine *eng);

/**
 * ferry_engine_wait() - block until the current migration ends.
 * Returns its final status (FERRY_STATUS_NONE when none was started).
 */
enum ferry_status ferry_engine_wait(struct ferry_engine *eng);

/**
 * ferry_engine_cancel() - stop the running migration. Thread-safe. The source
 * ends CANCELLED with its guest running; the destination ends CANCELLED (its
 * guest must not run). Returns 0, or FERRY_ESTATE when nothing is running.
 * A migration that already completed is not affected.
 */
int ferry_engine_cancel(struct ferry_engine *eng);

/** ferry_engine_get_stats() - a consistent snapshot. Thread-safe. */
void ferry_engine_get_stats(struct ferry_engine *eng, struct ferry_stats *out);

/**
 * ferry_engine_get_worker_stats() - the data-path workers of the running
 * migration, or of the last one once it ended.
 * @out: room for @max entries (may be NULL when @max is 0).
 * Thread-safe. Returns the number of workers (which may exceed @max: only
 * @max are written); 0 when the migration used no data path.
 */
int ferry_engine_get_worker_stats(struct ferry_engine *eng, struct ferry_worker_stats *out,
				  uint32_t max);

/** ferry_migrate_sync() - ferry_migrate() then ferry_engine_wait(). Returns the status. */
enum ferry_status ferry_migrate_sync(struct ferry_engine *eng, const char *uri);

/** ferry_incoming_sync() - ferry_incoming() then ferry_engine_wait(). Returns the status. */
enum ferry_status ferry_incoming_sync(struct ferry_engine *eng, const char *uri);

#ifdef __cplusplus
}
#endif
#endif
