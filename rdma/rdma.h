/* SPDX-License-Identifier: MIT */
/*
 * The RDMA data path: guest RAM moved from the source's memory straight into
 * the destination's by RDMA WRITE on reliable-connected queue pairs, one per
 * lane (a lane is what one worker thread of the engine drives), with nothing
 * copied on either side.
 *
 * Two objects:
 *   struct ferry_rdma_dest    the destination: listens (rdma_cm), registers
 *                             its RAM for remote write, accepts the source's
 *                             lanes if they carry the migration id, answers
 *                             the source's control messages (block table,
 *                             chunk registration, flush) on a service thread
 *                             of its own.
 *   struct ferry_rdma_source  the source: connects the lanes, fetches the
 *                             block table, registers its RAM for local
 *                             access, turns runs of pages into RDMA WRITEs,
 *                             flushes a lane (every write before the flush is
 *                             placed in the destination's memory when it
 *                             returns).
 *
 * Memory is described as blocks (struct ferry_rdma_block); block i of the
 * source is written into block i of the destination, and both sides must
 * describe blocks of equal lengths. A run (struct ferry_rdma_run) is a byte
 * range of one block; the engine hands runs of dirty pages to a lane.
 *
 * Registration strategies (enum ferry_rdma_reg), chosen per side:
 *   PIN_ALL  every block registered (pinned) up front;
 *   CHUNKED  chunks registered on first use, in a per-lane cache bounded by a
 *            memlock budget (least recently used chunks are released); the
 *            destination registers a chunk when the source asks for it;
 *   ODP      every block registered with on-demand paging (nothing pinned),
 *            where the device reports ODP for RDMA WRITE;
 *   AUTO     ODP if available, else PIN_ALL if RLIMIT_MEMLOCK allows the
 *            whole memory, else CHUNKED within what it allows.
 * What was chosen and the time it cost are in the stats.
 *
 * Errors follow <ferry/error.h>: 0 or a count on success, a negative errno or
 * FERRY_E* code on failure; every failure is also logged (module "rdma"). The
 * codes an engine acts on (fall back to TCP, re-send unplaced pages):
 *   FERRY_ENORDMA   no RDMA device on this host, or none on the route to the
 *                   peer (the host without rdma_cm gives this, errno 19/38)
 *   -ENETUNREACH, -EHOSTUNREACH   no route to the peer / address resolution failed
 *   -ECONNREFUSED   nothing listens there, or the destination refused the
 *                   lane (wrong migration id, lane count or version)
 *   -ETIMEDOUT      a connect, a reply or a completion did not come in time,
 *                   or the peer stopped acknowledging (retries exhausted)
 *   -ECONNRESET     the peer disconnected or a queue pair failed
 *   -ENODEV         the RDMA device was removed (rdma link delete)
 *   -ENOMEM         RLIMIT_MEMLOCK (or the budget) is too small for the
 *                   strategy asked for (the message says what would fit)
 *   FERRY_EBADSTREAM  the peer sent a malformed control message
 *   FERRY_EMISMATCH   the destination's blocks differ from the source's
 * After a failure in ferry_rdma_source_write() or _flush(), the failure is
 * sticky for the whole source (every lane reports it), and
 * ferry_rdma_source_unplaced() lists, per lane, the runs not known to have
 * been placed in the destination's memory: re-send those (and everything not
 * given to a lane yet) another way.
 *
 * Threads: see each function. In short, create/connect/close/destroy run on
 * one thread; a lane is driven by one thread at a time, and different lanes
 * run in parallel on different threads; abort, stats and status may be called
 * from any thread. Nothing here calls back into the caller. Protocol and
 * semantics: docs/rdma.md.
 */
#ifndef FERRY_RDMA_H
#define FERRY_RDMA_H

#include <stddef.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Most lanes (queue pairs) of one source or destination. */
#define FERRY_RDMA_MAX_LANES 64
/* Most blocks one migration describes (a bound on the peer's block table). */
#define FERRY_RDMA_MAX_BLOCKS 4096
/* Length of the per-migration id carried in the rdma_cm private data. */
#define FERRY_RDMA_ID_LEN 16
/*
 * The lane authenticator's key: both sides derive it from the TLS session of
 * the main stream, as ferry_channel_tls_export(main, FERRY_RDMA_AUTH_LABEL,
 * id, FERRY_RDMA_ID_LEN, key, FERRY_RDMA_AUTH_KEY_LEN) (<ferry/tls.h>), so
 * only the two ends of that session know it. Each lane's connect carries
 * HMAC-SHA256(key, "ferry-rdma-lane" | id | lane | lanes), cut to
 * FERRY_RDMA_AUTH_TAG_LEN bytes; docs/rdma.md has the layout.
 */
#define FERRY_RDMA_AUTH_KEY_LEN 32
#define FERRY_RDMA_AUTH_TAG_LEN 16
#define FERRY_RDMA_AUTH_LABEL	"EXPORTER-ferry-rdma-auth"
/* Default chunk of the CHUNKED strategy (also its alignment within a block). */
#define FERRY_RDMA_CHUNK_DEFAULT (1u << 20)
#define FERRY_RDMA_MSG_MAX	 160

enum ferry_rdma_reg {
	FERRY_RDMA_REG_AUTO = 0,
	FERRY_RDMA_REG_PIN_ALL = 1,
	FERRY_RDMA_REG_CHUNKED = 2,
	FERRY_RDMA_REG_ODP = 3,
};

/** ferry_rdma_reg_name() - "auto", "pin-all", "chunked" or "odp" ("?" otherwise). */
const char *ferry_rdma_reg_name(enum ferry_rdma_reg reg);

/**
 * struct ferry_rdma_block - one range of guest RAM (plain data).
 * @host: its address in this process; page-aligned.
 * @length: bytes, a multiple of 4096, > 0.
 * Block i of the source goes to block i of the destination.
 */
struct ferry_rdma_block {
	void *host;
	uint64_t length;
};

/* Flags of a run. */
enum ferry_rdma_run_flags {
	/*
	 * The range must end up as zeros on the destination: it is written from
	 * a registered zero buffer (scatter lists over it), never read from the
	 * source's memory.
	 */
	FERRY_RDMA_RUN_ZERO = 1u << 0,
};

/**
 * struct ferry_rdma_run - a byte range of one block to write (plain data).
 * @block: index into the blocks given at creation.
 * @flags: enum ferry_rdma_run_flags.
 * @offset, @length: the range; @length > 0 and within the block. Page-aligned
 *   ranges are what the engine sends, but any byte range works.
 */
struct ferry_rdma_run {
	uint32_t block;
	uint32_t flags;
	uint64_t offset;
	uint64_t length;
};

/**
 * struct ferry_rdma_source_attr - how to open a source. Fill it with
 * ferry_rdma_source_attr_init() first, then set what you need; the struct may
 * grow at its end (@size says which version the caller knows).
 * @size: sizeof(struct ferry_rdma_source_attr) as the caller was compiled.
 * @host, @port: the destination's address (a name or numeric IPv4/IPv6) and
 *   its rdma_cm port.
 * @bind_host: local address to connect from, or NULL: the route to @host
 *   decides (and with several devices, @numa_node breaks the tie).
 * @id: the per-migration id, from the main stream; the destination refuses
 *   lanes that do not carry its own.
 * @lanes: queue pairs to open, 1..FERRY_RDMA_MAX_LANES.
 * @blocks, @n_blocks: the memory to send from (1..FERRY_RDMA_MAX_BLOCKS);
 *   the array is copied, the memory must stay mapped until destroy.
 * @reg: registration strategy of the source's memory (default AUTO).
 * @chunk_size: CHUNKED: bytes per chunk, a power of two >= 64 KiB (default
 *   FERRY_RDMA_CHUNK_DEFAULT).
 * @memlock_budget: CHUNKED: bytes the source may keep registered (shared out
 *   equally between lanes); 0: what RLIMIT_MEMLOCK allows. Checked up front.
 * @numa_node: NUMA node of the memory (device preference), -1 for none.
 * @timeout_ms: bound on the whole connect (every lane and the block table),
 *   and on each later wait for a completion or reply (default 10000).
 * @max_inflight: RDMA WRITEs in flight per lane (default 128, 8..4096).
 * @max_wr_bytes: largest RDMA WRITE (default and cap: the port's max_msg_sz).
 * @signal_every: request a completion every N writes (default 16).
 * @ack_timeout: local ACK timeout exponent (4.096 us << n) given to rdma_cm
 *   (RDMA_OPTION_ID_ACK_TIMEOUT); with @retry_cnt it bounds how fast a dead
 *   peer is noticed (default 16: about 0.27 s per try).
 * @retry_cnt: transport retries, 0..6 (default 6). 7 means "forever" to
 *   rxe and is refused.
 * @auth: put an authenticator keyed with @auth_key in every lane's connect
 *   (default false). The engine sets it whenever the main stream runs TLS.
 * @auth_key: the key (FERRY_RDMA_AUTH_LABEL says how it is derived); the
 *   destination must hold the same one.
 */
struct ferry_rdma_source_attr {
	uint32_t size;
	const char *host;
	uint16_t port;
	const char *bind_host;
	uint8_t id[FERRY_RDMA_ID_LEN];
	uint32_t lanes;
	const struct ferry_rdma_block *blocks;
	uint32_t n_blocks;
	enum ferry_rdma_reg reg;
	uint64_t chunk_size;
	uint64_t memlock_budget;
	int numa_node;
	int timeout_ms;
	uint32_t max_inflight;
	uint32_t max_wr_bytes;
	uint32_t signal_every;
	uint8_t ack_timeout;
	uint8_t retry_cnt;
	bool auth;
	uint8_t auth_key[FERRY_RDMA_AUTH_KEY_LEN];
};

/**
 * struct ferry_rdma_dest_attr - how to open a destination. Fill it with
 * ferry_rdma_dest_attr_init() first.
 * @size: sizeof(struct ferry_rdma_dest_attr) as the caller was compiled.
 * @host: address to listen on (its device is the one used), or NULL / "" for
 *   every address (the device is then taken from the first connection when
 *   the host has several; with one device registration happens at create).
 * @port: rdma_cm port; 0 picks a free one (ferry_rdma_dest_port()).
 * @id: the per-migration id; lanes carrying another are rejected.
 * @lanes: lanes to accept, 1..FERRY_RDMA_MAX_LANES.
 * @blocks, @n_blocks: the memory the source writes into; the array is copied,
 *   the memory must stay mapped until destroy.
 * @reg, @chunk_size, @memlock_budget: as for the source; a CHUNKED budget is
 *   shared out equally between lanes.
 * @timeout_ms: default bound for ferry_rdma_dest_accept() and close.
 * @ack_timeout, @retry_cnt: as for the source.
 * @auth: refuse every lane whose connect does not carry an authenticator that
 *   verifies with @auth_key (compared in constant time); default false (the
 *   id alone admits a lane). The engine sets it whenever the main stream
 *   runs TLS.
 * @auth_key: as for the source.
 */
struct ferry_rdma_dest_attr {
	uint32_t size;
	const char *host;
	uint16_t port;
	uint8_t id[FERRY_RDMA_ID_LEN];
	uint32_t lanes;
	const struct ferry_rdma_block *blocks;
	uint32_t n_blocks;
	enum ferry_rdma_reg reg;
	uint64_t chunk_size;
	uint64_t memlock_budget;
	int timeout_ms;
	uint8_t ack_timeout;
	uint8_t retry_cnt;
	bool auth;
	uint8_t auth_key[FERRY_RDMA_AUTH_KEY_LEN];
};

/**
 * struct ferry_rdma_stats - counters of one source or destination (plain data).
 * @device: the RDMA device used ("rxe0"); empty before one is chosen.
 * @numa_node: the device's NUMA node (hwloc), -1 if it has none.
 * @reg: the strategy this side chose for its own memory.
 * @peer_reg: source: the destination's strategy (from its block table).
 * @lanes: lanes connected.
 * @max_wr_bytes: largest RDMA WRITE used.
 * @connect_ns: source: create from start to ready (all lanes, block table).
 * @reg_ns: time spent registering and deregistering memory, up front and on
 *   demand (this side only).
 * @reg_count, @dereg_count: registrations made and released (blocks or
 *   chunks; evictions included).
 * @registered_bytes: bytes registered now.
 * @remote_reg_requests: source: chunk registrations asked of the destination
 *   (destination: such requests served).
 * @bytes_written, @writes, @signaled: source: RDMA WRITE payload bytes,
 *   work requests and those that requested a completion.
 * @flushes: flushes completed (source) or acknowledged (destination).
 * @zero_bytes: source: bytes of zero runs (written from the zero buffer).
 * @memcpy_bytes: page bytes copied; always 0 (zero copy), kept so that an
 *   engine can add it to its own counter.
 */
struct ferry_rdma_stats {
	char device[64];
	int numa_node;
	enum ferry_rdma_reg reg;
	enum ferry_rdma_reg peer_reg;
	uint32_t lanes;
	uint32_t max_wr_bytes;
	uint64_t connect_ns;
	uint64_t reg_ns;
	uint64_t reg_count;
	uint64_t dereg_count;
	uint64_t registered_bytes;
	uint64_t remote_reg_requests;
	uint64_t bytes_written;
	uint64_t writes;
	uint64_t signaled;
	uint64_t flushes;
	uint64_t zero_bytes;
	uint64_t memcpy_bytes;
};

/**
 * struct ferry_rdma_lane_stats - the counters of one lane (plain data; they
 * only grow, and may lag a little behind the lane's thread).
 * @bytes: source: RDMA WRITE payload bytes (zero runs included); destination:
 *   the same count as the source gave it in its last flush (the writes land
 *   without the destination's CPU, so it has only the source's account).
 * @zero_bytes: bytes of zero runs (destination: as the source accounted).
 * @writes, @signaled: source: work requests, and those that asked for a completion.
 * @flushes: flushes completed (source) or received (destination).
 * @last_tag: the tag of the lane's last completed (source) or received
 *   (destination) flush.
 * @memcpy_bytes: always 0.
 */
struct ferry_rdma_lane_stats {
	uint64_t bytes;
	uint64_t zero_bytes;
	uint64_t writes;
	uint64_t signaled;
	uint64_t flushes;
	uint64_t last_tag;
	uint64_t memcpy_bytes;
};

/**
 * struct ferry_rdma_device_info - one RDMA device of this host (plain data).
 * @name: "rxe0", "mlx5_0"...
 * @netdev: the network device of port 1 ("eth0"), empty if unknown.
 * @numa_node: NUMA node by hwloc (for soft-RoCE, that of the parent netdev),
 *   -1 if the device has no locality.
 * @port_active: port 1 is ACTIVE.
 * @odp: ODP works for RDMA WRITE on RC (both as writer and as target).
 * @max_msg_sz: port 1's largest message.
 * @max_sge: scatter/gather entries per work request.
 * @max_mr_size: largest memory region.
 */
struct ferry_rdma_device_info {
	char name[64];
	char netdev[32];
	int numa_node;
	int port_active;
	int odp;
	uint32_t max_msg_sz;
	uint32_t max_sge;
	uint64_t max_mr_size;
};

/**
 * ferry_rdma_devices() - list the RDMA devices usable through rdma_cm.
 * @out: array filled with up to @cap entries (may be NULL when @cap is 0).
 * @cap: its capacity.
 *
 * Any thread. Loads an hwloc topology (tens of milliseconds).
 * Returns the number of devices (which may exceed @cap), or FERRY_ENORDMA
 * when there are none (the host has no rdma_cm or no device), or -errno.
 */
int ferry_rdma_devices(struct ferry_rdma_device_info *out, size_t cap);

/* ---- destination ----------------------------------------------------------- */

struct ferry_rdma_dest;

/** ferry_rdma_dest_attr_init() - fill @attr with the defaults (size, AUTO, timeouts...). */
void ferry_rdma_dest_attr_init(struct ferry_rdma_dest_attr *attr);

/**
 * ferry_rdma_dest_create() - listen for a source and prepare the memory.
 * @attr: see struct ferry_rdma_dest_attr.
 * @out: the destination, on success.
 *
 * Binds and listens (the listener exists when this returns, so a source
 * started afterwards cannot race it), registers the memory when the device is
 * known (PIN_ALL, ODP; timed in the stats), and starts the destination's
 * service thread, which from then on accepts lanes with the right id, rejects
 * others (with a reason the source logs) and answers the source's control
 * messages.
 *
 * Thread context: any thread. Returns 0, FERRY_ENORDMA, -EADDRINUSE,
 * -EADDRNOTAVAIL, -ENOMEM (memlock), -EINVAL (bad attributes), -errno.
 */
int ferry_rdma_dest_create(const struct ferry_rdma_dest_attr *attr, struct ferry_rdma_dest **out);

/** ferry_rdma_dest_port() - the port listened on (the one picked for port 0). Any thread. */
uint16_t ferry_rdma_dest_port(const struct ferry_rdma_dest *dst);

/**
 * ferry_rdma_dest_accept() - wait until every lane is connected.
 * @timeout_ms: bound; negative: the attribute's timeout_ms.
 *
 * Thread context: any one thread at a time. Returns 0 when all lanes are
 * established, -ETIMEDOUT, or the destination's failure (a device removed...).
 */
int ferry_rdma_dest_accept(struct ferry_rdma_dest *dst, int timeout_ms);

/**
 * ferry_rdma_dest_wait_flush() - wait until every lane has been flushed with
 * a tag >= @tag, i.e. all the source's writes before those flushes are placed.
 * @timeout_ms: bound; negative: the attribute's timeout_ms.
 *
 * Thread context: any thread. Returns 0, -ETIMEDOUT, -ECONNRESET (a lane
 * disconnected before reaching @tag), or the destination's failure.
 */
int ferry_rdma_dest_wait_flush(struct ferry_rdma_dest *dst, uint64_t tag, int timeout_ms);

/**
 * ferry_rdma_dest_receive() - wait for the next sync point of one lane.
 * @lane: 0..lanes-1.
 * @after: the last tag already reported for this lane (0 at first).
 * @tag: receives the lane's newest flush tag when it is > @after.
 * @timeout_ms: bound; negative: no bound (ferry_rdma_dest_abort() ends it).
 *
 * The destination's half of an engine's receive loop: nothing arrives on the
 * CPU with RDMA WRITE, so a lane's worker only waits here for its flushes.
 * Thread context: any thread (normally the lane's worker).
 * Returns 1 with *@tag set (every write of the lane before that flush is
 * placed; flushes that came in between are folded into the newest), 0 when
 * the source ended the lane normally (ferry_rdma_source_close() after its last
 * flush), -ECONNRESET when the lane went down without that end, -ETIMEDOUT,
 * -ECANCELED after an abort, or the destination's failure.
 */
int ferry_rdma_dest_receive(struct ferry_rdma_dest *dst, uint32_t lane, uint64_t after,
			    uint64_t *tag, int timeout_ms);

/**
 * ferry_rdma_dest_abort() - fail the destination with -ECANCELED: every wait
 * (accept, wait_flush, receive) returns at once, and so does every later one.
 * Thread context: any thread, any time before close; does not block.
 */
void ferry_rdma_dest_abort(struct ferry_rdma_dest *dst);

/** ferry_rdma_dest_lane_stats() - copy @lane's counters (zeros if out of range). Any thread. */
void ferry_rdma_dest_lane_stats(struct ferry_rdma_dest *dst, uint32_t lane,
				struct ferry_rdma_lane_stats *out);

/**
 * ferry_rdma_dest_status() - 0 while healthy, else the sticky failure.
 * @why: receives a message (FERRY_RDMA_MSG_MAX bytes is enough), or NULL.
 * Any thread.
 */
int ferry_rdma_dest_status(struct ferry_rdma_dest *dst, char *why, size_t len);

/** ferry_rdma_dest_stats() - copy the counters. Any thread. */
void ferry_rdma_dest_stats(struct ferry_rdma_dest *dst, struct ferry_rdma_stats *out);

/**
 * ferry_rdma_dest_close() - disconnect, release every registration and
 * resource, free the destination.
 *
 * Waits (bounded by the attribute's timeout_ms) for the lanes' disconnect
 * handshakes. Thread context: the thread that owns @dst, once no other call on
 * it runs. Returns 0 or the sticky failure (the object is freed either way).
 */
int ferry_rdma_dest_close(struct ferry_rdma_dest *dst);

/** ferry_rdma_dest_destroy() - as close, without reporting; accepts NULL. */
void ferry_rdma_dest_destroy(struct ferry_rdma_dest *dst);

/* ---- source ---------------------------------------------------------------- */

struct ferry_rdma_source;

/** ferry_rdma_source_attr_init() - fill @attr with the defaults. */
void ferry_rdma_source_attr_init(struct ferry_rdma_source_attr *attr);

/**
 * ferry_rdma_source_create() - check the attributes and allocate a source,
 * without any I/O (nothing is resolved, opened or connected yet).
 * @attr: see struct ferry_rdma_source_attr; its strings and block array are
 *   copied.
 * @out: the source, on success.
 *
 * Thread context: any thread; does not block. Returns 0, -EINVAL (bad
 * attributes, logged) or -ENOMEM; nothing is left allocated on failure.
 */
int ferry_rdma_source_create(const struct ferry_rdma_source_attr *attr,
			     struct ferry_rdma_source **out);

/**
 * ferry_rdma_source_connect() - connect every lane and prepare to write.
 *
 * Resolves the route to the destination (which decides the device), checks
 * RLIMIT_MEMLOCK against the strategy, registers the memory (PIN_ALL, ODP),
 * connects the lanes carrying the migration id, fetches and checks the block
 * table, and starts a small monitor thread that watches rdma_cm for
 * disconnects and device removal. Everything within timeout_ms; a destination
 * not listening yet is retried until then; ferry_rdma_source_abort() cuts it
 * short.
 *
 * Thread context: the owner, once. Returns 0 or one of the codes in the header
 * comment (FERRY_ENORDMA, -ENETUNREACH, -ECONNREFUSED, -ETIMEDOUT, -ENOMEM,
 * FERRY_EMISMATCH, -ECANCELED...); after a failure only close/destroy may be
 * called.
 */
int ferry_rdma_source_connect(struct ferry_rdma_source *src);

/**
 * ferry_rdma_source_abort() - fail the source with -ECANCELED: a connect in
 * progress and every lane's wait return promptly, and so does every later
 * call. Thread context: any thread, any time before close; does not block.
 */
void ferry_rdma_source_abort(struct ferry_rdma_source *src);

/**
 * ferry_rdma_source_write() - post RDMA WRITEs for @n runs on @lane.
 * @lane: 0..lanes-1.
 * @runs, @n: the ranges; all are checked before anything is posted.
 *
 * Each run becomes one WRITE per contiguous piece (split only at the device's
 * message size and at registration boundaries; several local registrations
 * under one remote one become a scatter list). Returns once every run is
 * posted, not placed: completions are reaped as the lane goes and a bounded
 * number of writes stay in flight. Only ferry_rdma_source_flush() says that
 * the data is placed. The memory of posted runs must not be unmapped before
 * the next flush (it may change: a later round re-sends it).
 *
 * Thread context: one thread per lane at a time; lanes in parallel.
 * Returns 0, -EINVAL (a run out of bounds, a bad lane), or a failure (the
 * header comment), after which ferry_rdma_source_unplaced() tells what to
 * re-send.
 */
int ferry_rdma_source_write(struct ferry_rdma_source *src, uint32_t lane,
			    const struct ferry_rdma_run *runs, size_t n);

/**
 * ferry_rdma_source_flush() - make every write posted on @lane placed.
 * @tag: a number the destination records (ferry_rdma_dest_wait_flush()),
 *   e.g. the dirty round; it should not decrease between flushes.
 *
 * Sends a flush message after the writes on the same queue pair and waits
 * (bounded by timeout_ms) for the destination's acknowledgement: reliable
 * connections execute in order, so when the destination sees the message,
 * every earlier write on the lane is in its memory.
 *
 * Thread context: the lane's thread. Returns 0 or a failure.
 */
int ferry_rdma_source_flush(struct ferry_rdma_source *src, uint32_t lane, uint64_t tag);

/**
 * ferry_rdma_source_unplaced() - after a failure, the runs of @lane not known
 * to be placed: writes posted since the lane's last flush that did not
 * complete successfully, and the part of the failed call not posted. The
 * answer is conservative (pieces of runs may in fact have landed).
 * @out, @cap: filled with up to @cap runs.
 *
 * Thread context: the lane's thread. Returns the number of runs (may exceed
 * @cap), 0 when everything posted on the lane is known placed.
 */
ssize_t ferry_rdma_source_unplaced(struct ferry_rdma_source *src, uint32_t lane,
				   struct ferry_rdma_run *out, size_t cap);

/**
 * ferry_rdma_source_status() - 0 while healthy, else the sticky failure.
 * @why: receives a message (FERRY_RDMA_MSG_MAX bytes is enough), or NULL.
 * Any thread.
 */
int ferry_rdma_source_status(struct ferry_rdma_source *src, char *why, size_t len);

/** ferry_rdma_source_stats() - copy the counters. Any thread. */
void ferry_rdma_source_stats(struct ferry_rdma_source *src, struct ferry_rdma_stats *out);

/** ferry_rdma_source_lane_stats() - copy @lane's counters (zeros if out of range). Any thread. */
void ferry_rdma_source_lane_stats(struct ferry_rdma_source *src, uint32_t lane,
				  struct ferry_rdma_lane_stats *out);

/**
 * ferry_rdma_source_close() - end every lane normally, release every
 * registration and resource, free the source.
 *
 * While the source is healthy, each connected lane first tells the
 * destination that it ends normally (a BYE message, answered; the
 * destination's ferry_rdma_dest_receive() then returns 0 for it), then
 * disconnects. Does not flush: flush first if the writes matter. Waits are
 * bounded (about 2 s for the whole close).
 *
 * Thread context: the owner, once no lane call runs. Returns 0 or the sticky
 * failure (the object is freed either way).
 */
int ferry_rdma_source_close(struct ferry_rdma_source *src);

/**
 * ferry_rdma_source_destroy() - drop every lane without the normal end (the
 * destination sees broken lanes), release everything, free the source.
 * Accepts NULL and a source that never connected.
 */
void ferry_rdma_source_destroy(struct ferry_rdma_source *src);

#ifdef __cplusplus
}
#endif
#endif
