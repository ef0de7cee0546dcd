/* SPDX-License-Identifier: MIT */
/*
 * The data path: how guest pages travel beside the main stream.
 *
 * With a data path, the main stream (<ferry/savevm.h>) carries only the RAM
 * block list, the data path's negotiation and one sync marker per round;
 * the pages themselves go over N lanes (TCP connections, RDMA queue pairs),
 * straight from source guest RAM into destination guest RAM. The engine
 * decides which pages go and when; a transport (channels/ for multi-channel
 * TCP, rdma/ for RDMA) implements the two ops tables below and decides how
 * they move. This header is the whole contract between them: a transport
 * includes it, <ferry/error.h> and <ferry/log.h>, and nothing else of the
 * engine.
 *
 * One migration, source side (the engine's calls, in order):
 *
 *   create(attr)                     migration thread: no I/O yet
 *   connect()                        migration thread: bring every lane up
 *   per round r = 1, 2, ...:
 *     send(lane, runs)...            worker thread `lane`, many times
 *     flush(lane, r)                 worker thread `lane`, once per round
 *   close(graceful)                  migration thread, workers stopped
 *   abort()                          any thread, any time between create
 *                                    and close (it cuts connect short)
 *
 * Destination side:
 *
 *   create(attr)                     migration thread: no I/O yet
 *   accept()                         migration thread: every lane is up
 *   receive(lane) -> round r         worker thread `lane`, in a loop, until
 *                                    it reports the lane's end or an error
 *   close()                          migration thread, workers stopped
 *   abort()                          any thread, any time between create
 *                                    and close (it cuts accept short)
 *
 * Ordering: a page always travels on the same lane for a whole migration
 * (the engine guarantees it), so within a lane a newer copy of a page can
 * never be overtaken by an older one; a transport must keep each lane's
 * sends in order (TCP does; RDMA WRITEs on one QP do). There is no ordering
 * between lanes and none is needed.
 *
 * Sync points: flush(lane, r) returns once every page handed to the lane
 * before it has been placed in destination guest RAM; on the destination,
 * receive() reports r once the same is true there. The engine writes its
 * round marker on the main stream only after every lane's flush returned,
 * and the destination does not read past that marker before every lane
 * reported r; so the main stream's end of RAM means every page has landed.
 *
 * Errors follow <ferry/error.h>: 0 or a count, or a negative errno or
 * FERRY_E* code. A transport logs what it was doing and with whom (module
 * name of its own); the engine fails the migration on any error (the source
 * guest is left unharmed, see docs/data-path.md).
 */
#ifndef FERRY_DATAPATH_H
#define FERRY_DATAPATH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The version of this interface and of the negotiation record on the main stream. */
#define FERRY_DP_VERSION 1
/* Bytes of the per-migration random id every lane presents to the destination. */
#define FERRY_DP_ID_LEN 16
/*
 * The lane key: with TLS on the main stream, both sides derive it with the
 * TLS exporter (label FERRY_DP_AUTH_LABEL, context the migration id) and
 * pass it in the attributes; a transport whose lanes do not run inside TLS
 * (rdma) authenticates each lane with it (docs/rdma.md).
 */
#define FERRY_DP_AUTH_KEY_LEN 32
#define FERRY_DP_AUTH_LABEL   "EXPORTER-ferry-rdma-auth"
/* The most lanes one migration may use (a destination refuses more). */
#define FERRY_DP_MAX_LANES 64
/* The longest data path name, terminating NUL included ("tcp-multi", "rdma"). */
#define FERRY_DP_NAME_MAX 16
/* The most runs the engine passes to one send() call, and pages in one call. */
#define FERRY_DP_MAX_BATCH_RUNS	 512
#define FERRY_DP_MAX_BATCH_PAGES 512

/*
 * Flags of the negotiation record (docs/data-path.md). CHOICE: the data path
 * named there is an offer the source tries first; a "ferry-datapath-use"
 * section follows in the setup phase and names the one actually used (the
 * offered one, or tcp-multi when the source fell back). The destination makes
 * the offered one ready (listen()) without waiting for its lanes, and accepts
 * the lanes of the one the source names.
 */
#define FERRY_DP_NEGO_F_CHOICE 0x1u

/* Opaque types of other modules, named here so a transport need not include them. */
struct ferry_listener;
struct ferry_tls_creds;

/**
 * struct ferry_dp_block - one block of guest RAM, as the data path sees it.
 * @name:      its id in the RAM block list ("pc.ram")
 * @host:      where it is mapped in this process (page aligned)
 * @length:    bytes, a multiple of the page size
 * @numa_node: the node that holds it, -1 when unknown (for choosing the
 *             device nearest to the RAM, where a transport has several)
 *
 * Blocks are indexed in the order of the RAM block list the source sent,
 * on both sides (the destination maps them by name to its own).
 */
struct ferry_dp_block {
	const char *name;
	uint8_t *host;
	uint64_t length;
	int numa_node;
};

/* Flags of a run. */
enum ferry_dp_run_flags {
	/* Every page of the run read as zero when the engine looked: the
	 * destination must end up with zeros there, and no page data need travel. */
	FERRY_DP_RUN_ZERO = 1u << 0,
};

/**
 * struct ferry_dp_run - consecutive pages of one block.
 * @block:  index into the block table
 * @flags:  enum ferry_dp_run_flags
 * @first:  first page, counted in pages from the start of the block
 * @npages: how many (>= 1)
 */
struct ferry_dp_run {
	uint32_t block;
	uint32_t flags;
	uint64_t first;
	uint64_t npages;
};

/**
 * struct ferry_dp_lane_stats - what one lane has done so far. Counters only
 * grow; they may lag a little behind the lane's thread when read elsewhere.
 * @wire_bytes:      bytes sent (source) or received (destination) on the
 *                   lane's connection, protocol headers included
 * @page_bytes:      page data moved (zero runs count nothing)
 * @pages:           pages sent or placed with their data
 * @zero_pages:      pages of zero runs
 * @packets:         transport messages (tcp: packets; rdma: work requests)
 * @syscalls:        system calls made for the lane's data (sendmsg,
 *                   recvmsg, poll, ...), the handshake excluded
 * @memcpy_bytes:    page bytes the transport copied in user space (0 on a
 *                   zero-copy path)
 * @zerocopy_sends:  sends made with MSG_ZEROCOPY (tcp)
 * @zerocopy_copied: of those, completions in which the kernel reported it
 *                   copied after all (loopback always does)
 * @sync_round:      the last round whose sync point the lane completed
 */
struct ferry_dp_lane_stats {
	uint64_t wire_bytes;
	uint64_t page_bytes;
	uint64_t pages;
	uint64_t zero_pages;
	uint64_t packets;
	uint64_t syscalls;
	uint64_t memcpy_bytes;
	uint64_t zerocopy_sends;
	uint64_t zerocopy_copied;
	uint64_t sync_round;
};

/* Flags of struct ferry_dp_source_attr. */
enum ferry_dp_flags {
	/* tcp: send with MSG_ZEROCOPY (and wait for its completions at flush). */
	FERRY_DP_F_ZEROCOPY = 1u << 0,
};

/**
 * struct ferry_dp_source_attr - what the source's create() gets.
 * @uri:        the main stream's URI (e.g. "tcp:10.0.0.2:4444"); the lanes
 *              go to the same peer
 * @blocks:     the block table; valid until close() returns
 * @nblocks:    its length
 * @page_size:  bytes per page in runs (4096)
 * @lanes:      how many lanes to bring up, 1..FERRY_DP_MAX_LANES
 * @id:         the migration id: random, also sent on the main stream; each
 *              lane presents it so the destination can refuse strangers
 * @flags:      enum ferry_dp_flags
 * @timeout_ms: the longest connect() may take to bring every lane up
 * @tls:        the main stream runs TLS with these (client) credentials:
 *              a byte-stream transport runs TLS on every lane too, before
 *              anything else; NULL: no TLS. FERRY_DP_F_ZEROCOPY is refused
 *              with TLS (-EINVAL from create()). <ferry/tls.h>
 * @tls_hostname: with @tls: the name the destination's certificate must
 *              carry (NULL: the URI's host); copied by create()
 * @auth:       @auth_key holds the lane key (TLS on the main stream)
 * @auth_key:   FERRY_DP_AUTH_KEY_LEN bytes, derived as said above; the same
 *              on both sides. Copied by create()
 * @registration: for transports that register memory (rdma): the strategy,
 *              "auto", "pin-all", "chunked" or "odp"; NULL means "auto".
 *              Others ignore it
 * @port:       for transports with their own listener (rdma): the port the
 *              lanes use on the URI's host; 0 = the transport's default
 *              (rdma: the URI's PORT + 1). Others ignore it
 */
struct ferry_dp_source_attr {
	const char *uri;
	const struct ferry_dp_block *blocks;
	uint32_t nblocks;
	uint32_t page_size;
	uint32_t lanes;
	uint8_t id[FERRY_DP_ID_LEN];
	uint32_t flags;
	int timeout_ms;
	const struct ferry_tls_creds *tls;
	const char *tls_hostname;
	bool auth;
	uint8_t auth_key[FERRY_DP_AUTH_KEY_LEN];
	const char *registration;
	uint16_t port;
};

/**
 * struct ferry_dp_info - what a transport reports about itself beyond the
 * lane counters (all optional: empty / 0 where it does not apply).
 * @registration:    the memory registration strategy this side uses
 *                   ("pin-all", "chunked", "odp"; empty: none)
 * @registration_ns: time spent registering and releasing memory so far
 * @registered_bytes: bytes registered now
 * @device:          the device used ("rxe0"), empty if none
 */
struct ferry_dp_info {
	char registration[16];
	uint64_t registration_ns;
	uint64_t registered_bytes;
	char device[64];
};

/**
 * struct ferry_dp_source_ops - the sending side of a data path.
 * @name: the data path's name, sent to the destination, which picks the
 *        dest ops of the same name ("tcp-multi", "rdma").
 *
 * @create: check @attr and allocate a context for it, without any I/O
 *   (so that the engine can publish the context for abort() before anything
 *   blocks). Copies what it needs of @attr; the block table stays valid
 *   until close(). Thread: the migration thread; must not block. Returns 0
 *   and the context in *@ctx, or -EINVAL / -ENOMEM with nothing allocated.
 *
 * @connect: bring @attr->lanes lanes up, each accepted by the destination.
 *   Thread: the migration thread; blocks up to @attr->timeout_ms; abort()
 *   cuts it short (-ECANCELED). Returns 0, or an error after which only
 *   close() may be called (a lane the destination refused:
 *   FERRY_EPEERABORT; no answer in time: -ETIMEDOUT).
 *
 * @send: queue the pages of @runs (1..FERRY_DP_MAX_BATCH_RUNS runs, at most
 *   FERRY_DP_MAX_BATCH_PAGES pages in all) on @lane, in order. Pages are
 *   read by reference from guest RAM, never copied in user space: their
 *   content may be read any time until the next flush() of the lane
 *   returns, and a page written meanwhile travels with either content (the
 *   dirty log catches the write). Zero runs carry no data. Thread: worker
 *   thread @lane only; may block while the lane is full. Returns 0 or an
 *   error (the lane is then unusable).
 *
 * @flush: return once every page sent on @lane before this call has been
 *   placed in destination guest RAM, and mark sync point @round (rounds
 *   only grow) so that the destination's receive() reports it. Thread:
 *   worker thread @lane only; blocks for a round trip (with a timeout of the
 *   transport's, reported as -ETIMEDOUT). Returns 0 or an error.
 *
 * @abort: make every blocked and later call on every lane fail promptly
 *   (-ECANCELED). Thread: any thread, at any time between create() and
 *   close() (connect() included); it must not block.
 *
 * @close: end every lane and free the context. @graceful: the migration
 *   completed and each lane's last flush() returned; tell the destination
 *   the lanes end normally. Otherwise drop them. Thread: the migration
 *   thread, once no worker uses a lane.
 *
 * @lane_stats: copy @lane's counters (zeros for a lane not up yet).
 *   Thread: any thread, between create() and close().
 *
 * @info: may be NULL. Fill @out (zeroed by the caller) with what the
 *   transport reports about itself. Thread: any, between create() and close().
 *
 * @unplaced: may be NULL (then a failed lane fails the migration). After
 *   send() or flush() of @lane failed, the runs of the lane not known to be
 *   placed in destination RAM (sent since the lane's last successful flush
 *   and not proven placed, and the part of the failed call not sent), whole
 *   pages; the engine sends them again over another data path (RDMA: a
 *   queue-pair error moves the migration to TCP lanes). Fills up to @cap
 *   runs of @out and returns how many there are (which may exceed @cap), or
 *   an error. Thread: worker thread @lane.
 */
struct ferry_dp_source_ops {
	const char *name;
	int (*create)(const struct ferry_dp_source_attr *attr, void **ctx);
	int (*connect)(void *ctx);
	int (*send)(void *ctx, uint32_t lane, const struct ferry_dp_run *runs, uint32_t nruns);
	int (*flush)(void *ctx, uint32_t lane, uint64_t round);
	void (*abort)(void *ctx);
	void (*close)(void *ctx, bool graceful);
	void (*lane_stats)(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out);
	void (*info)(void *ctx, struct ferry_dp_info *out);
	long (*unplaced)(void *ctx, uint32_t lane, struct ferry_dp_run *out, size_t cap);
};

/**
 * struct ferry_dp_dest_attr - what the destination's create() gets, once the
 * main stream negotiated the data path.
 * @uri:        the URI the destination listens on
 * @listener:   tcp/unix: the listener the main stream came through; lanes
 *              connect to the same address. NULL for transports that accept
 *              their lanes some other way (rdma: its own CM listener)
 * @blocks:     the block table in the source's order; every run a lane
 *              carries is checked against it; valid until close() returns
 * @nblocks:    its length
 * @page_size:  bytes per page (4096)
 * @lanes:      how many lanes to accept (what the source announced,
 *              <= FERRY_DP_MAX_LANES)
 * @id:         the migration id the main stream carried; a lane that does
 *              not present it is refused and does not count
 * @timeout_ms: the longest accept() may wait for every lane
 * @peer_gone:  may be NULL; otherwise accept() calls it (in its own thread)
 *              about every 100 ms while it waits, and gives up with
 *              FERRY_EPEERABORT once it returns true: the engine's main
 *              stream says the source hung up, so no lane will come
 * @peer_opaque: passed to @peer_gone
 * @tls:        the main stream runs TLS with these (server) credentials: a
 *              lane must complete a TLS handshake with them before its
 *              first byte is believed; NULL: no TLS
 * @auth, @auth_key: as in struct ferry_dp_source_attr: a lane that cannot
 *              prove it holds the key is refused
 * @registration: as in struct ferry_dp_source_attr, for this side's memory
 * @port:       as in struct ferry_dp_source_attr: where this side listens
 */
struct ferry_dp_dest_attr {
	const char *uri;
	struct ferry_listener *listener;
	const struct ferry_dp_block *blocks;
	uint32_t nblocks;
	uint32_t page_size;
	uint32_t lanes;
	uint8_t id[FERRY_DP_ID_LEN];
	int timeout_ms;
	bool (*peer_gone)(void *peer_opaque);
	void *peer_opaque;
	const struct ferry_tls_creds *tls;
	bool auth;
	uint8_t auth_key[FERRY_DP_AUTH_KEY_LEN];
	const char *registration;
	uint16_t port;
};

/**
 * struct ferry_dp_dest_ops - the receiving side of a data path.
 * @name: as in struct ferry_dp_source_ops.
 *
 * @create: as the source's (no I/O, must not block).
 *
 * @accept: accept @attr->lanes lanes presenting @attr->id, refusing (and
 *   closing, with a logged reason) any other connection that arrives
 *   meanwhile. Thread: the migration thread; blocks up to
 *   @attr->timeout_ms; abort() cuts it short. Returns 0, or an error after
 *   which only close() may be called.
 *
 * @receive: place what arrives on @lane into guest RAM, in place (no
 *   staging copy where the transport can avoid one), until the next sync
 *   point. Everything a lane carries is checked against the block table
 *   before a byte of guest RAM is written: a bad run is FERRY_EBADSTREAM.
 *   Thread: worker thread @lane only. Returns 1 with *@round set when the
 *   source's flush of @round completed on this lane (every page it sent
 *   before is in place), 0 when the source ended the lane normally (after
 *   its last flush), or an error (a lane that breaks without that end:
 *   -ECONNRESET, FERRY_ETRUNCATED, ...; after abort(): -ECANCELED).
 *
 * @abort: as the source's.
 * @close: free everything. Thread: the migration thread, once no worker
 *   uses a lane.
 * @lane_stats: as the source's.
 * @info: as the source's (may be NULL).
 *
 * @listen: may be NULL (then accept() does everything). Get ready to take
 *   lanes in the background and return without waiting for them: the engine
 *   calls it when the source offered this data path (FERRY_DP_NEGO_F_CHOICE)
 *   and reads on while the source tries to connect; accept() follows if the
 *   source then names this data path, close() if it fell back to another.
 *   Thread: the migration thread; may block while it prepares (an RDMA
 *   destination registers its memory here). Returns 0 or an error (the
 *   source will not manage to connect and will fall back, or fail).
 */
struct ferry_dp_dest_ops {
	const char *name;
	int (*create)(const struct ferry_dp_dest_attr *attr, void **ctx);
	int (*accept)(void *ctx);
	int (*receive)(void *ctx, uint32_t lane, uint64_t *round);
	void (*abort)(void *ctx);
	void (*close)(void *ctx);
	void (*lane_stats)(void *ctx, uint32_t lane, struct ferry_dp_lane_stats *out);
	void (*info)(void *ctx, struct ferry_dp_info *out);
	int (*listen)(void *ctx);
};

#ifdef __cplusplus
}
#endif
#endif
