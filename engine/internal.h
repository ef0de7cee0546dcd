/* SPDX-License-Identifier: MIT */
/* The engine's private structures: shared by the engine's .c files, included by no other module. */
#ifndef FERRY_ENGINE_INTERNAL_H
#define FERRY_ENGINE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>

#include <ferry/datapath.h>
#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/savevm.h>
#include <ferry/stream.h>
#include <ferry/tls.h>
#include <ferry_log_internal.h>

#include "bitmap.h"
#include "placement.h"

#define eng_log(level, ...) ferry_log_msg(level, "engine", __VA_ARGS__)

/* Pages travel as 4 KiB target pages whatever the block's backing (FORMAT.md §8). */
#define ENG_PAGE_SHIFT 12
#define ENG_PAGE_SIZE  (1u << ENG_PAGE_SHIFT)

/* RAM record flags (FORMAT.md §8). */
#define RAM_FLAG_ZERO	       0x002u
#define RAM_FLAG_MEM_SIZE      0x004u
#define RAM_FLAG_PAGE	       0x008u
#define RAM_FLAG_EOS	       0x010u
#define RAM_FLAG_CONTINUE      0x020u
#define RAM_FLAG_XBZRLE	       0x040u
#define RAM_FLAG_HOOK	       0x080u
#define RAM_FLAG_MULTIFD_FLUSH 0x200u
#define RAM_SECTION_VERSION    4

/* Return-path messages, destination to source (FORMAT.md §11). */
#define RP_MSG_SHUT 1
#define RP_MSG_PONG 2
/*
 * ferry's own, far from QEMU's numbers: the destination cannot take the
 * offered lanes. be32 error (negative errno or ferry code), then the reason,
 * printable text of at most RP_DP_REASON_MAX bytes (no terminator).
 */
#define RP_MSG_DP_REFUSED 0x4601
#define RP_DP_REASON_MAX  200

struct eng_block {
	char name[256];
	uint8_t *host;
	uint64_t length;
	uint64_t page_size;
	int numa_node;
	uint64_t npages;   /* 4 KiB pages */
	uint64_t *to_send; /* source: pages still to send */
};

/* A connection to the peer: the main stream and, on sockets, its return path. */
struct eng_conn {
	struct ferry_channel *ch;
	struct ferry_writer *w; /* source: the stream; destination: the return path */
	struct ferry_reader *r; /* destination: the stream; source: the return path */
	bool has_return_path;	/* sockets (tcp, unix, fd on a socket) */
	bool ends;		/* the stream ends at EOF (file, exec): vmdesc optional */
	char kind[16];
};

/* Per-migration RAM state of the source's "ram" handler, and the destination's. */
struct eng_ram {
	/* source */
	uint32_t cursor_block;
	uint64_t cursor_page;
	int last_block;		/* CONTINUE applies while the block does not change */
	uint64_t pending_pages; /* set bits in every to_send map */
	uint64_t slice_ns;	/* how long one PART may run */
	uint64_t budget_bytes;	/* rate limit: bytes allowed in this PART, 0 = none */
	/* destination */
	int recv_block;
	bool blocks_seen;
	uint32_t *src_order; /* the source's block list order: our block index for each */
	uint64_t copied;     /* page bytes copied out of the main stream's buffer */
};

/* The negotiation record: the "ferry-datapath" early-setup FULL section. */
struct eng_dp_nego {
	uint32_t version;		      /* FERRY_DP_VERSION */
	uint32_t lanes;			      /* data lanes, one worker each */
	uint32_t page_size;		      /* bytes per page in runs */
	uint32_t flags;			      /* reserved, 0 */
	uint8_t transport[FERRY_DP_NAME_MAX]; /* data path name, NUL padded */
	uint8_t id[FERRY_DP_ID_LEN];	      /* the migration id lanes present */
};

/*
 * After an offer (FERRY_DP_NEGO_F_CHOICE): the "ferry-datapath-use" early-setup
 * FULL section, the data path the source actually uses.
 */
struct eng_dp_use {
	uint8_t transport[FERRY_DP_NAME_MAX]; /* data path name, NUL padded */
	uint32_t flags;			      /* reserved, 0 */
};

/* A chunk of guest RAM a source worker owns (placement.h). */
struct eng_chunk_ref {
	uint32_t block; /* dp block index */
	uint32_t chunk; /* ENG_CHUNK_PAGES pages from chunk * ENG_CHUNK_PAGES */
};

/* One data-path worker: worker i drives lane i. */
struct eng_worker {
	struct ferry_engine *eng;
	uint32_t index;
	pthread_t thread;
	bool started;
	bool bound;
	/* source */
	struct eng_chunk_ref *chunks; /* the chunks it owns, in block order */
	uint64_t nchunks;
	struct ferry_dp_run *runs; /* a batch being built */
	/* relaxed atomics: the worker adds, anyone reads */
	_Atomic uint64_t pages, zero_pages, cpu_ns;
};

/*
 * The data path of one migration (workers.c, datapath.c). @lock protects the
 * round state, the lane sync points and @err; @ctx is published and cleared
 * under eng->conn_lock so that the watchdog can abort it.
 */
struct eng_dp {
	bool active;
	/* source: the lanes are connecting (the watchdog watches the main stream meanwhile) */
	atomic_bool connecting;
	/* source: whether the watchdog reads the return path while they connect (not
	 * for the TCP lanes of a fallback: a refusal may still be on its way then) */
	atomic_bool watch_rp;
	/* source: the destination wrote on the return path while they connected */
	atomic_bool dest_spoke;
	char refused[RP_DP_REASON_MAX + 48]; /* source: its refusal, when that is what it wrote */
	const struct ferry_dp_source_ops *sops;
	const struct ferry_dp_dest_ops *dops;
	void *ctx;
	char *uri;		       /* where the lanes go (source) or come (destination) */
	struct ferry_dp_block *blocks; /* in the source's block list order */
	uint32_t nblocks;
	uint32_t *to_eng; /* dp block index -> engine block index */
	uint32_t lanes;
	struct eng_dp_nego nego;
	struct eng_dp_use use;
	/* source, after an offer: what to use if the offered data path cannot be set up */
	const struct ferry_dp_source_ops *fallback_sops;
	char *fallback_uri;
	bool connected; /* source: the lanes are up (the offer was taken) */
	/* destination, after an offer: the offered data path could not listen here */
	int offer_err;
	/*
	 * Moving to TCP lanes mid-migration (the offered data path failed after it
	 * was taken). Source: workers whose lane failed put the pages not known to
	 * be placed back into to_send, count themselves in @failed and wait for
	 * @switch_gen to change; the migration thread switches once every lane is
	 * finished or failed. Destination: a receiver whose lane fails stops
	 * (@lanes_down) without failing the migration; the HOOK record on the main
	 * stream says the source switched. Under @lock.
	 */
	uint32_t failed;
	int fail_err;
	uint64_t switch_gen;
	uint32_t lanes_down;
	bool keep_listener; /* destination: the listener stays open for a switch */
	uint64_t wire_base; /* wire bytes of the data path closed by a switch */
	struct eng_placement place;
	struct eng_worker *workers;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	atomic_bool quit;
	int err;
	/* source: rounds */
	uint64_t round;		      /* the last round dispatched */
	bool round_open;	      /* dispatched, not yet finished by every worker */
	uint32_t finished;	      /* workers done with @round (sent and flushed) */
	uint64_t pace_bps;	      /* the whole data path's cap, 0 = unlimited */
	pthread_mutex_t pace_lock;    /* guards pace_next_ns */
	uint64_t pace_next_ns;	      /* where the next send's slot starts (workers.c) */
	_Atomic uint64_t round_pages; /* pages handed out in the open round */
	/* source, migration thread: the round's last progress seen (eng_dp_round) */
	uint64_t seen_pages, seen_at_ns;
	uint32_t seen_finished;
	/* destination */
	uint64_t *lane_round; /* the last sync point each lane reported */
	bool *lane_ended;     /* the lane ended normally (END after its last sync) */
	uint64_t flushes;     /* round markers read on the main stream */
	uint64_t cpu_ms;      /* the workers' CPU time, once they ended */
	/* after the migration: the workers' last statistics */
	struct ferry_worker_stats *final;
	uint32_t nfinal;
};

struct ferry_engine {
	pthread_mutex_t lock; /* stats, status, thread state */
	pthread_cond_t cond;

	struct eng_block *blocks;
	uint32_t nblocks;
	uint64_t total_ram;
	struct ferry_devices *devs;
	struct ferry_dirty_log *dirty;
	struct ferry_vcpu_ops vcpu;
	bool has_vcpu;
	struct ferry_params params;
	/* ferry_engine_set_tls(): the settings (strings owned), and the
	 * credentials loaded for the migration in progress (role by side) */
	bool tls_on;
	struct ferry_tls_attr tls_attr;
	struct ferry_tls_creds *tls;
	char tls_host[256]; /* source: the name the destination's certificate must carry */
	ferry_event_fn ev_fn;
	void *ev_opaque;
	ferry_done_fn done_fn;
	void *done_opaque;

	/* the migration in progress */
	pthread_t thread;
	bool thread_started; /* joinable */
	bool running;	     /* between start and done callback */
	atomic_bool cancel;
	/* cancel came from ferry_engine_cancel(), not from the watchdog's timers */
	atomic_bool user_cancel;
	bool is_source;
	char uri[1024];
	struct ferry_listener *listener;
	int listen_port;
	struct eng_conn conn;
	pthread_mutex_t conn_lock; /* conn.ch shutdown from other threads */
	struct eng_ram ram;
	struct eng_dp dp;
	struct eng_topology *topology; /* loaded for the data path, kept: loading is slow */
	bool vcpus_stopped;
	uint64_t t_start_ns, t_setup_ns, t_down_ns, t_round_ns, t_progress_ns;
	uint64_t round_bytes_start;
	/* watchdog: cancel and time limits turn into a channel shutdown */
	pthread_t watchdog;
	bool watchdog_started;
	bool watchdog_stop;
	uint64_t deadline_ns; /* 0: none */

	struct ferry_stats stats; /* under lock */
};

/* engine.c */
uint64_t eng_now_ns(void);
uint64_t eng_thread_cpu_ms(void);
void eng_set_status(struct ferry_engine *eng, enum ferry_status st);
void eng_fail(struct ferry_engine *eng, int err, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
void eng_emit(struct ferry_engine *eng, enum ferry_event_type type);
bool eng_cancelled(struct ferry_engine *eng);
void eng_stats_add(struct ferry_engine *eng, uint64_t *field, uint64_t v);
int eng_watchdog_start(struct ferry_engine *eng);
void eng_watchdog_stop(struct ferry_engine *eng);
void eng_conn_shutdown(struct ferry_engine *eng);
/* Forget the ferry_engine_set_tls() settings. */
void eng_tls_clear(struct ferry_engine *eng);
void eng_finish(struct ferry_engine *eng, enum ferry_status final);

/* converge.c: pure arithmetic of convergence */
uint64_t eng_bandwidth(uint64_t bytes, uint64_t elapsed_ns);
uint64_t eng_expected_downtime_ms(uint64_t remaining, uint64_t bandwidth);
bool eng_round_is_hot(uint64_t dirtied, uint64_t sent);
int eng_next_throttle(int current, int initial, int increment, int max);

/* ram.c */
extern const struct ferry_iter_ops eng_ram_ops;
int eng_ram_prepare_source(struct ferry_engine *eng);
int eng_ram_sync(struct ferry_engine *eng);
uint64_t eng_ram_pending_pages(struct ferry_engine *eng);
void eng_ram_release(struct ferry_engine *eng);
bool eng_page_is_zero(const uint8_t *p);

/* datapath.c: choosing, negotiating, starting and stopping the data path */
extern const struct ferry_vmsd eng_dp_nego_vmsd;
extern const struct ferry_vmsd eng_dp_use_vmsd;
int eng_dp_prepare_source(struct ferry_engine *eng);
int eng_dp_connect(struct ferry_engine *eng);
int eng_dp_accept(struct ferry_engine *eng);
void eng_dp_stop(struct ferry_engine *eng, bool graceful);
void eng_dp_quiesce(struct ferry_engine *eng);
void eng_dp_abort(struct ferry_engine *eng); /* conn_lock held */
uint64_t eng_dp_wire_bytes(struct ferry_engine *eng);
/* The current lanes' wire bytes alone, a progress counter (watchdog); conn_lock held. */
uint64_t eng_dp_lane_bytes(struct ferry_engine *eng);
void eng_dp_refresh_stats(struct ferry_engine *eng);
uint64_t eng_bytes_sent(struct ferry_engine *eng);
void eng_dp_fini(struct ferry_engine *eng);
int eng_dp_topology(struct ferry_engine *eng, char *err, size_t errlen);

/* workers.c: the worker pool */
int eng_workers_start(struct ferry_engine *eng);
void eng_workers_stop(struct ferry_engine *eng);
int eng_dp_round(struct ferry_engine *eng, uint64_t wait_ns);
int eng_dp_switch(struct ferry_engine *eng, struct ferry_writer *w);
int eng_dp_switch_dest(struct ferry_engine *eng);
bool eng_dp_can_switch(struct ferry_engine *eng, int err);
int eng_dp_wait_flush(struct ferry_engine *eng);
void eng_workers_snapshot(struct ferry_engine *eng, struct ferry_worker_stats *out, uint32_t n);

/* transport.c */
int eng_conn_connect(struct ferry_engine *eng, const char *uri);
int eng_conn_listen(struct ferry_engine *eng, const char *uri);
int eng_conn_accept(struct ferry_engine *eng);
int eng_conn_finish(struct ferry_engine *eng);
void eng_conn_close(struct ferry_engine *eng);
void eng_conn_stop_listening(struct ferry_engine *eng);

/* migrate.c, incoming.c */
void *eng_source_thread(void *arg);
void *eng_dest_thread(void *arg);

#endif
