/* SPDX-License-Identifier: MIT */
/*
 * Inside the rdma module: the objects behind <ferry/rdma.h> and what the
 * per-concern files share. Included by rdma/ only.
 *
 *   common.c  time, deadlines, errno conversion, the sticky failure
 *   device.c  device discovery and selection, capabilities, NUMA (hwloc), memlock
 *   mr.c      registration strategies, the chunk cache
 *   ctrl.c    control messages: wire structs, to/from wire, buffers, send/recv
 *   conn.c    rdma_cm: events, the source's lane connect, the destination's listen/accept/reject
 *   write.c   a source lane: RDMA WRITE work requests, completions, flush, unplaced set
 *   source.c  the source object (create, monitor thread, close, stats)
 *   dest.c    the destination object (create, service thread, requests, close)
 */
#ifndef FERRY_RDMA_INTERNAL_H
#define FERRY_RDMA_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <infiniband/verbs.h>
#include <rdma/rdma_cma.h>

#include <ferry/error.h>
#include <ferry/rdma.h>
#include <ferry_log_internal.h>

#define RDM_LOG	      "rdma"
#define rdm_err(...)  ferry_log_msg(FERRY_LOG_ERROR, RDM_LOG, __VA_ARGS__)
#define rdm_warn(...) ferry_log_msg(FERRY_LOG_WARN, RDM_LOG, __VA_ARGS__)
#define rdm_info(...) ferry_log_msg(FERRY_LOG_INFO, RDM_LOG, __VA_ARGS__)
#define rdm_dbg(...)  ferry_log_msg(FERRY_LOG_DEBUG, RDM_LOG, __VA_ARGS__)

/* Protocol version carried in the rdma_cm private data and in HELLO
 * (2: FLUSH_REQ/FLUSH carry the lane's byte counts). */
#define RDM_VERSION 2
/* "FRDM": first word of every rdma_cm private data ferry sends. */
#define RDM_MAGIC 0x4652444du

/*
 * Control messages: each lane has RDM_CTRL_DEPTH receive buffers posted on
 * both sides. The source never has more than RDM_CTRL_DEPTH requests without
 * a reply on a lane, and the destination answers each request exactly once,
 * so neither side can overrun the other's receive queue (no RNR).
 */
#define RDM_CTRL_DEPTH 16
#define RDM_CTRL_SEND  (2 * RDM_CTRL_DEPTH)
#define RDM_CTRL_BUF   4096
#define RDM_CTRL_BYTES ((uint64_t)(RDM_CTRL_DEPTH + RDM_CTRL_SEND) * RDM_CTRL_BUF)

/* Scatter/gather entries a WRITE may use (several local chunks under one remote range). */
#define RDM_SGE_MAX 4
/* WRITEs chained into one ibv_post_send(). */
#define RDM_BATCH 32
/* How long close waits for the disconnect handshake (and the lanes' BYE). */
#define RDM_CLOSE_WAIT_MS 2000
/* The zero buffer zero runs are written from (registered once per source). */
#define RDM_ZERO_BUF (256u * 1024)

/* wr_id: kind in the top byte, a slot or sequence number below. */
#define RDM_WR_WRITE	    1ull
#define RDM_WR_SEND	    2ull
#define RDM_WR_RECV	    3ull
#define RDM_WR_KIND(id)	    ((id) >> 56)
#define RDM_WR_VAL(id)	    ((id) & ((1ull << 56) - 1))
#define RDM_WR(kind, v)	    (((kind) << 56) | ((uint64_t)(v) & ((1ull << 56) - 1)))
#define RDM_WR_LANE(v)	    ((uint32_t)((v) >> 32))
#define RDM_WR_SLOT(v)	    ((uint32_t)(v))
#define RDM_LANE_SLOT(l, s) (((uint64_t)(l) << 32) | (uint32_t)(s))

/* ---- common.c ---------------------------------------------------------------- */

int64_t rdm_now_ns(void);
/* An absolute deadline in ns from a timeout in ms (negative: none, INT64_MAX). */
int64_t rdm_deadline(int timeout_ms);
/* Milliseconds left before @deadline for poll(): -1 for none, 0 once past. */
int rdm_remaining_ms(int64_t deadline);
/* Round up to a power of two (at least 1). */
uint32_t rdm_pow2(uint32_t v);

/*
 * The one place errno of an ibv_* or rdma_* call is turned into -errno: logs
 * "@what: <strerror>" and returns -errno (-EIO when errno is 0). Call it right
 * after the failing call.
 */
__attribute__((format(printf, 1, 2))) int rdm_errno(const char *fmt, ...);
/* The same for calls that return a positive errno (ibv_post_send, ibv_modify_qp...). */
__attribute__((format(printf, 2, 3))) int rdm_errval(int err, const char *fmt, ...);
/* rdma_cm connection-phase errors that mean "no RDMA here": mapped to FERRY_ENORDMA. */
bool rdm_is_nodev(int err);

/*
 * struct rdm_fail - a sticky failure: the first error wins, later ones are
 * only logged. Readable from any thread.
 */
struct rdm_fail {
	atomic_int err;
	pthread_mutex_t lock;
	char msg[FERRY_RDMA_MSG_MAX];
};
void rdm_fail_init(struct rdm_fail *f);
void rdm_fail_fini(struct rdm_fail *f);
/* Records @err (negative) with a message if nothing was recorded yet; returns the recorded error.
 */
__attribute__((format(printf, 3, 4))) int rdm_fail_set(struct rdm_fail *f, int err, const char *fmt,
						       ...);
static inline int rdm_fail_get(struct rdm_fail *f)
{
	return atomic_load_explicit(&f->err, memory_order_acquire);
}
/* As rdm_fail_set(), without a log message (the cause was logged already). */
__attribute__((format(printf, 3, 4))) int rdm_fail_note(struct rdm_fail *f, int err,
							const char *fmt, ...);
int rdm_fail_copy(struct rdm_fail *f, char *why, size_t len);

/* Relaxed counters, read by stats from any thread. */
typedef _Atomic uint64_t rdm_counter;
static inline void rdm_add(rdm_counter *c, uint64_t v)
{
	atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}
static inline void rdm_sub(rdm_counter *c, uint64_t v)
{
	atomic_fetch_sub_explicit(c, v, memory_order_relaxed);
}
static inline uint64_t rdm_read(rdm_counter *c)
{
	return atomic_load_explicit(c, memory_order_relaxed);
}

/* Parse @host (name or literal) and @port into @ss; NULL/"" host: the wildcard. */
int rdm_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss);
/* "192.0.2.15:4444" for logs. */
void rdm_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len);

/* ---- device.c ---------------------------------------------------------------- */

/*
 * struct rdm_dev - the device a source or destination uses and its protection
 * domain. @ctx belongs to rdma_cm (the cm_id's verbs context): never closed here.
 */
struct rdm_dev {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	char name[64];
	int numa_node;
	bool odp;
	uint32_t max_msg_sz;
	uint32_t max_sge;
	uint32_t max_qp_wr;
	uint32_t max_cqe;
	uint64_t max_mr_size;
};

/* Query @ctx's capabilities (port 1) and allocate a PD. */
int rdm_dev_open(struct ibv_context *ctx, struct rdm_dev *dev);
void rdm_dev_close(struct rdm_dev *dev);
/* NUMA node of the device named @name by hwloc (rxe: its parent netdev), -1 if none. */
int rdm_dev_numa_node(const char *name);
/* Fill @info for one device (opens and closes its own context). */
int rdm_dev_info(struct ibv_device *d, struct ferry_rdma_device_info *info);
/*
 * With several devices and a NUMA preference: a local address on the device
 * nearest @numa_node from which @dst resolves. Returns 1 with @src filled, 0
 * when the route should decide (one device, no preference, no better one).
 */
int rdm_dev_pick_source(const struct sockaddr *dst, int numa_node, int timeout_ms,
			struct sockaddr_storage *src);
/*
 * Bytes this process may still pin under RLIMIT_MEMLOCK: UINT64_MAX with
 * CAP_IPC_LOCK or no limit; otherwise the limit minus what is pinned already.
 * @limit receives the raw limit for messages.
 */
uint64_t rdm_memlock_allowance(uint64_t *limit);

/* ---- mr.c --------------------------------------------------------------------- */

/* One entry of a chunk cache: a chunk of a block, registered locally or remotely. */
struct rdm_centry {
	uint32_t block;
	uint64_t chunk;
	uint32_t refs;	/* writes in flight that use it (+1 while a registration is asked for) */
	bool pending;	/* remote: asked for ahead of need, no answer yet */
	uint64_t start; /* byte offset of the chunk in its block */
	uint64_t len;
	struct ibv_mr *mr; /* local registration (source lcache, destination lane) */
	uint64_t raddr;	   /* remote registration (source rcache) */
	uint32_t rkey;
	struct rdm_centry *prev, *next; /* LRU list: head is the most recently used */
	struct rdm_centry *hnext;	/* hash chain */
};

/* struct rdm_cmap - a bounded map (block, chunk) -> entry with LRU order. Single-threaded. */
struct rdm_cmap {
	struct rdm_centry *pool;
	struct rdm_centry *free;
	struct rdm_centry **buckets;
	uint32_t nbuckets;
	uint32_t cap, count;
	struct rdm_centry *head, *tail;
};
int rdm_cmap_init(struct rdm_cmap *m, uint32_t cap);
void rdm_cmap_fini(struct rdm_cmap *m);
/* Find and mark most recently used; NULL if absent. */
struct rdm_centry *rdm_cmap_find(struct rdm_cmap *m, uint32_t block, uint64_t chunk);
/* Insert (count < cap required); the entry is most recently used, refs 0. */
struct rdm_centry *rdm_cmap_insert(struct rdm_cmap *m, uint32_t block, uint64_t chunk);
/* The least recently used entry with no refs, or NULL. */
struct rdm_centry *rdm_cmap_victim(struct rdm_cmap *m);
void rdm_cmap_remove(struct rdm_cmap *m, struct rdm_centry *e);
static inline bool rdm_cmap_full(const struct rdm_cmap *m)
{
	return m->count >= m->cap;
}

/*
 * struct rdm_mem - one side's memory and how it is registered. The block
 * MRs (PIN_ALL, ODP) are shared by every lane; CHUNKED caches are per lane.
 */
struct rdm_mem {
	enum ferry_rdma_reg reg;
	struct ferry_rdma_block *blocks;
	uint32_t n_blocks;
	uint64_t total;
	struct ibv_mr **block_mr;
	uint64_t chunk_size;
	uint32_t lane_chunks; /* CHUNKED: chunks each lane may keep registered */
	int access;
	struct rdm_dev *dev;
	rdm_counter reg_ns, reg_count, dereg_count, registered_bytes;
};

/* Copy and check the blocks (page-aligned, non-empty, no overflow). */
int rdm_mem_init(struct rdm_mem *mem, const struct ferry_rdma_block *blocks, uint32_t n,
		 const char *side);
/*
 * Choose the strategy (@want, AUTO resolved) against the device and
 * RLIMIT_MEMLOCK, and compute the chunk budget per lane. @overhead: bytes
 * of other registrations (control buffers). Logs the choice.
 */
int rdm_mem_choose(struct rdm_mem *mem, struct rdm_dev *dev, enum ferry_rdma_reg want,
		   uint64_t chunk_size, uint64_t budget, uint32_t lanes, uint64_t overhead,
		   int access, const char *side);
/* PIN_ALL / ODP: register every block (timed). CHUNKED: nothing. */
int rdm_mem_register_blocks(struct rdm_mem *mem);
/* Register one byte range (a chunk), timed and counted. NULL on failure (logged). */
struct ibv_mr *rdm_mem_reg(struct rdm_mem *mem, void *addr, uint64_t len, int *err);
void rdm_mem_dereg(struct rdm_mem *mem, struct ibv_mr *mr);
void rdm_mem_fini(struct rdm_mem *mem);
/* Chunks in @block (CHUNKED). */
static inline uint64_t rdm_mem_nchunks(const struct rdm_mem *mem, uint32_t block)
{
	return (mem->blocks[block].length + mem->chunk_size - 1) / mem->chunk_size;
}

/* ---- ctrl.c ------------------------------------------------------------------- */

/* Requests are odd, their replies the next even number. */
enum rdm_msg_type {
	RDM_MSG_HELLO_REQ = 1,
	RDM_MSG_HELLO = 2,
	RDM_MSG_TABLE_REQ = 3,
	RDM_MSG_TABLE = 4,
	RDM_MSG_REG_REQ = 5,
	RDM_MSG_REG = 6,
	RDM_MSG_UNREG_REQ = 7,
	RDM_MSG_UNREG = 8,
	RDM_MSG_FLUSH_REQ = 9,
	RDM_MSG_FLUSH = 10,
	RDM_MSG_NOP_REQ = 11,
	RDM_MSG_NOP = 12,
	RDM_MSG_BYE_REQ = 13, /* the lane ends normally (after its last flush) */
	RDM_MSG_BYE = 14,
	RDM_MSG_LAST = RDM_MSG_BYE,
};
const char *rdm_msg_name(uint16_t type);

/* Reply status on the wire. */
enum rdm_wire_status {
	RDM_ST_OK = 0,
	RDM_ST_BADMSG = 1,   /* malformed request */
	RDM_ST_RANGE = 2,    /* block or chunk out of range */
	RDM_ST_BUDGET = 3,   /* more chunks than the lane's budget */
	RDM_ST_REGFAIL = 4,  /* registration failed on the destination */
	RDM_ST_NOTREG = 5,   /* unregister of a chunk not registered */
	RDM_ST_NOTREADY = 6, /* the destination has no memory registered (failed) */
};

/* Reasons in the reject private data. */
enum rdm_reject {
	RDM_REJ_NONE = 0,
	RDM_REJ_VERSION = 1,
	RDM_REJ_ID = 2,
	RDM_REJ_LANES = 3,
	RDM_REJ_LANE = 4,
	RDM_REJ_DUPLICATE = 5,
	RDM_REJ_DEVICE = 6,
	RDM_REJ_INTERNAL = 7,
	RDM_REJ_FAILED = 8,
	RDM_REJ_AUTH = 9, /* no authenticator, or one that does not verify */
};
const char *rdm_reject_name(uint16_t reason);

/* A block table entry: where a block lives on the destination and its key. */
struct rdm_table_entry {
	uint64_t addr;
	uint64_t length;
	uint32_t rkey; /* 0 with a CHUNKED destination: ask for each chunk */
};

/* A decoded control message (every type but TABLE's entries). */
struct rdm_msg {
	uint16_t type;
	uint16_t status;
	uint32_t length;
	uint64_t req;
	union {
		struct {
			uint32_t version, lane;
		} hello_req;
		struct {
			uint32_t version, reg;
			uint64_t chunk_size;
			uint32_t lane_budget, n_blocks;
		} hello;
		struct {
			uint32_t first, max;
		} table_req;
		struct {
			uint32_t first, count;
		} table;
		struct {
			uint32_t block, rkey;
			uint64_t chunk, addr, length;
		} chunk; /* REG_REQ, REG, UNREG_REQ, UNREG */
		struct {
			uint64_t tag, seq;
			/* FLUSH_REQ: bytes the lane wrote so far, of them zero pages
			 * (the source's account; FLUSH echoes them) */
			uint64_t bytes, zero_bytes;
		} flush; /* FLUSH_REQ, FLUSH */
	} u;
};

/* Entries one TABLE message carries. */
#define RDM_TABLE_PER_MSG ((RDM_CTRL_BUF - 24) / 24)

/* Encode @m into @buf (RDM_CTRL_BUF bytes); returns the length. TABLE: use rdm_table_to_wire(). */
uint32_t rdm_msg_to_wire(const struct rdm_msg *m, void *buf);
/*
 * Decode @len bytes received. Hostile input: the length must match the type
 * exactly (TABLE: its count), the type must be known. Returns 0 or
 * FERRY_EBADSTREAM with @why set.
 */
int rdm_msg_from_wire(const void *buf, uint32_t len, struct rdm_msg *m, const char **why);
uint32_t rdm_table_to_wire(uint64_t req, uint16_t status, uint32_t first,
			   const struct rdm_table_entry *e, uint32_t count, void *buf);
/* Entries of a decoded TABLE message (already validated by rdm_msg_from_wire). */
/* 0, or -EBADMSG when the entry's reserved bytes are not zero (@e is filled either way). */
int rdm_table_entry_from_wire(const void *buf, uint32_t i, struct rdm_table_entry *e);

/* rdma_cm private data. */
struct rdm_conn_req {
	uint16_t version, lane, lanes;
	uint8_t id[FERRY_RDMA_ID_LEN];
	bool has_auth; /* @auth holds a tag (RDM_REQ_F_AUTH on the wire) */
	uint8_t auth[FERRY_RDMA_AUTH_TAG_LEN];
};
#define RDM_CONN_REQ_LEN 48
/* Flags of the connect request. */
#define RDM_REQ_F_AUTH 0x1u
/* The authenticator of (id, lane, lanes) under @key. Returns 0 or -EIO. */
int rdm_auth_tag(const uint8_t key[FERRY_RDMA_AUTH_KEY_LEN], const uint8_t id[FERRY_RDMA_ID_LEN],
		 uint16_t lane, uint16_t lanes, uint8_t tag[FERRY_RDMA_AUTH_TAG_LEN]);
/* Whether @req carries a tag that verifies under @key; constant time in the tag. */
bool rdm_auth_check(const uint8_t key[FERRY_RDMA_AUTH_KEY_LEN], const struct rdm_conn_req *req);
/* Compare @n bytes without an early exit. */
bool rdm_ct_equal(const void *a, const void *b, size_t n);
#define RDM_CONN_REPLY_LEN 16
void rdm_conn_req_to_wire(const struct rdm_conn_req *r, void *buf);
/* 0, or an RDM_REJ_* reason; hostile input. */
int rdm_conn_req_from_wire(const void *buf, uint8_t len, struct rdm_conn_req *r);
void rdm_conn_reply_to_wire(uint16_t status, uint32_t lanes, void *buf);
/* Returns 1 and fills @status when @buf is a ferry reply, 0 otherwise. */
int rdm_conn_reply_from_wire(const void *buf, uint8_t len, uint16_t *status, uint32_t *lanes);

/*
 * struct rdm_ctrl - a lane's control buffers: RDM_CTRL_DEPTH receive slots
 * then RDM_CTRL_SEND send slots, in one registered area.
 */
struct rdm_ctrl {
	uint8_t *area;
	struct ibv_mr *mr;
	uint32_t lane;
	uint32_t send_free[RDM_CTRL_SEND];
	uint32_t n_free;
};
int rdm_ctrl_init(struct rdm_ctrl *c, struct rdm_mem *mem, uint32_t lane);
void rdm_ctrl_fini(struct rdm_ctrl *c, struct rdm_mem *mem);
static inline uint8_t *rdm_ctrl_recv_buf(struct rdm_ctrl *c, uint32_t slot)
{
	return c->area + (uint64_t)slot * RDM_CTRL_BUF;
}
static inline uint8_t *rdm_ctrl_send_buf(struct rdm_ctrl *c, uint32_t slot)
{
	return c->area + (uint64_t)(RDM_CTRL_DEPTH + slot) * RDM_CTRL_BUF;
}
int rdm_ctrl_post_recv(struct rdm_ctrl *c, struct ibv_qp *qp, uint32_t slot);
int rdm_ctrl_post_all_recv(struct rdm_ctrl *c, struct ibv_qp *qp);
/* A free send slot, or -1. */
int rdm_ctrl_get_send(struct rdm_ctrl *c);
void rdm_ctrl_put_send(struct rdm_ctrl *c, uint32_t slot);
/* Post slot @slot (@len bytes) as a signaled SEND. */
int rdm_ctrl_post_send(struct rdm_ctrl *c, struct ibv_qp *qp, uint32_t slot, uint32_t len);

/* ---- conn.c ------------------------------------------------------------------- */

const char *rdm_event_name(enum rdma_cm_event_type ev);
/*
 * Wait for the next event on @ch (non-blocking channel) until @deadline.
 * Returns 0 with *@ev set (ack it), -ETIMEDOUT, or -errno.
 */
int rdm_cm_next(struct rdma_event_channel *ch, int64_t deadline, struct rdma_cm_event **ev);
/* The same, and -ECANCELED as soon as @wake_fd (an eventfd, or -1) is readable. */
int rdm_cm_next_or(struct rdma_event_channel *ch, int64_t deadline, int wake_fd,
		   struct rdma_cm_event **ev);
struct rdma_event_channel *rdm_cm_channel(int *err);
/* Set the ACK timeout option on @id (before connect/accept). */
int rdm_cm_ack_timeout(struct rdma_cm_id *id, uint8_t t);

/* ---- write.c (source lanes) -------------------------------------------------- */

struct ferry_rdma_source;

/* One WRITE in flight, as the lane remembers it (for retiring and the unplaced set). */
struct rdm_slot {
	uint32_t block;
	uint32_t flags; /* of the run (FERRY_RDMA_RUN_ZERO) */
	uint32_t length;
	uint64_t offset;
	struct rdm_centry *rc;
	struct rdm_centry *lc[RDM_SGE_MAX];
	uint8_t nlc;
};

struct rdm_lane {
	struct ferry_rdma_source *src;
	uint32_t index;
	struct rdma_cm_id *id;
	struct ibv_comp_channel *cc;
	struct ibv_cq *cq;
	struct ibv_qp *qp;
	bool connected;
	/* The destination disconnected and the monitor answered (source side). */
	atomic_bool peer_gone;
	struct rdm_ctrl ctrl;
	uint32_t recv_posted;
	/* The send slot of each control message posted: the ring position it covers. */
	uint64_t send_mark[RDM_CTRL_SEND];
	/* WRITE ring: [tail, head) posted or pending, not known complete. */
	struct rdm_slot *ring;
	uint32_t ring_mask;
	uint64_t head, tail, posted;
	uint32_t unsig;
	/* The batch being built: [posted, head) of the ring. */
	struct ibv_send_wr wr[RDM_BATCH];
	struct ibv_sge sge[RDM_BATCH][RDM_SGE_MAX];
	uint32_t nwr;
	/* Chunk caches (CHUNKED only). */
	struct rdm_cmap lcache, rcache;
	/* Control requests. */
	uint64_t next_req;
	uint32_t outstanding;
	uint64_t await_req;
	bool await_done;
	struct rdm_msg await_msg;
	uint8_t await_buf[RDM_CTRL_BUF];
	uint64_t flush_seq;
	/* CHUNKED destination: registrations asked for ahead of need, by request number. */
	struct {
		uint64_t req;
		struct rdm_centry *e;
	} pend[RDM_CTRL_DEPTH];
	uint32_t n_pend;
	/* The runs of the write call in progress (for asking ahead). */
	const struct ferry_rdma_run *ahead;
	size_t n_ahead;
	/* After a failure: the part of the failed call that was never posted. */
	struct ferry_rdma_run *unposted;
	size_t n_unposted;
	rdm_counter bytes, zero_bytes, writes, signaled, flushes, remote_regs, last_tag;
};

int rdm_lane_setup(struct rdm_lane *l);
void rdm_lane_teardown(struct rdm_lane *l);
int rdm_lane_write(struct rdm_lane *l, const struct ferry_rdma_run *runs, size_t n);
int rdm_lane_flush(struct rdm_lane *l, uint64_t tag);
ssize_t rdm_lane_unplaced(struct rdm_lane *l, struct ferry_rdma_run *out, size_t cap);
/* Send a request and wait for its reply (copied into l->await_msg/await_buf). */
int rdm_lane_call(struct rdm_lane *l, struct rdm_msg *req, uint16_t reply_type);

/* ---- source.c ----------------------------------------------------------------- */

struct ferry_rdma_source {
	struct ferry_rdma_source_attr attr; /* host and bind_host point to the copies below */
	char *host, *bind_host;
	bool connect_called;
	struct rdma_event_channel *ch;
	struct rdm_dev dev;
	bool dev_open;
	struct rdm_mem mem;
	/* The destination's blocks (HELLO + TABLE). */
	enum ferry_rdma_reg peer_reg;
	uint64_t peer_chunk;
	uint32_t peer_budget;
	struct rdm_table_entry *table;
	uint32_t max_wr;
	uint32_t ring_size;
	/* Zero runs are written from here (never written after registration). */
	uint8_t *zero;
	struct ibv_mr *zero_mr;
	struct rdm_lane *lanes;
	uint32_t n_lanes;
	struct rdm_fail fail;
	int wake_fd; /* eventfd: written once on failure, wakes every lane's wait */
	int stop_fd; /* eventfd: stops the monitor */
	pthread_t monitor;
	bool monitor_running;
	uint64_t connect_ns;
};

/* Record a failure of the source, log it, wake every lane. Any thread. */
__attribute__((format(printf, 3, 4))) int rdm_src_fail(struct ferry_rdma_source *src, int err,
						       const char *fmt, ...);

/* source.c: the first lane to resolve its route opens the device and registers memory. */
int rdm_src_open_device(struct ferry_rdma_source *src, struct ibv_context *ctx);
/* conn.c: connect lane @l (resolve address and route, QP, connect), retrying a
 * peer that does not listen yet until @deadline. */
int rdm_lane_connect(struct rdm_lane *l, const struct sockaddr *dst, const struct sockaddr *bind,
		     int64_t deadline);

/* ---- dest.c ------------------------------------------------------------------- */

enum rdm_dlane_state {
	RDM_DL_FREE = 0,  /* no connection yet */
	RDM_DL_ACCEPTING, /* accepted, not established */
	RDM_DL_UP,	  /* established */
	RDM_DL_DOWN,	  /* disconnected or failed; never reused */
};

struct ferry_rdma_dest;

struct rdm_dlane {
	struct ferry_rdma_dest *dst;
	uint32_t index;
	enum rdm_dlane_state state; /* written by the service thread under dst->lock */
	struct rdma_cm_id *id;
	struct ibv_qp *qp;
	struct rdm_ctrl ctrl;
	struct rdm_cmap chunks; /* CHUNKED: the chunks this lane's source registered */
	uint64_t flush_tag;	/* under dst->lock */
	/* the source's account in its last FLUSH_REQ (stats); under dst->lock */
	uint64_t src_bytes, src_zero_bytes;
	bool flushed; /* under dst->lock */
	bool ended;   /* the source said BYE: the lane ends normally; under dst->lock */
	rdm_counter flushes;
};

struct ferry_rdma_dest {
	struct ferry_rdma_dest_attr attr;
	struct rdma_event_channel *ch;
	struct rdma_cm_id *listen;
	uint16_t port;
	char where[64];
	struct rdm_dev dev;
	bool dev_open;
	struct rdm_mem mem;
	struct ibv_comp_channel *cc;
	struct ibv_cq *recv_cq; /* with @cc: requests wake the service thread */
	struct ibv_cq *send_cq; /* replies, reaped when a send slot is needed */
	struct rdm_dlane *lanes;
	uint32_t n_lanes;
	uint32_t up; /* lanes established, under @lock */
	pthread_mutex_t lock;
	pthread_cond_t cond;
	pthread_t thread;
	bool thread_running;
	int stop_fd;
	struct rdm_fail fail;
	rdm_counter flushes, remote_regs;
};

/* dest.c: open the device of the first connection (or of the bound address). */
int rdm_dest_open_device(struct ferry_rdma_dest *dst, struct ibv_context *ctx);
/*
 * dest.c: release a lane's verbs resources (service thread or close); its
 * cm_id too when @destroy_id (not for the id of an unacknowledged event).
 */
void rdm_dlane_release(struct rdm_dlane *dl, bool destroy_id);
/* conn.c: bind, listen, learn the port (and the device when the address names one). */
int rdm_dest_listen(struct ferry_rdma_dest *dst);
/*
 * conn.c: a CONNECT_REQUEST: check the private data, set the lane up and
 * accept, or reject with a reason. Returns the id to destroy once the event is
 * acknowledged (a rejected request), or NULL.
 */
struct rdma_cm_id *rdm_dest_on_connect(struct ferry_rdma_dest *dst, struct rdma_cm_event *ev);

#endif
