/* SPDX-License-Identifier: MIT */
/*
 * The benchmark harness behind `ferry bench`: a matrix of scenarios, each run
 * as a real migration of the synthetic guest (bench/guest.h) and verified by
 * the destination, repeated; the fabric's ceiling measured in the same
 * session by ferry's own microbenchmark; results as JSON lines, CSV, a
 * Markdown report and gnuplot plots.
 *
 * Pieces, one file each:
 *   matrix.c   option lists ("256M,1G") and the scenario matrix
 *   stats.c    median / minimum / maximum over repetitions
 *   report.c   JSON lines, CSV, Markdown, gnuplot data and scripts
 *   ctrl.c     the two-host control protocol (ctrl.h)
 *   fabric.c   the ceiling: TCP / unix streams, RDMA WRITE, memcpy
 *   run.c      one migration: destination and source halves
 *   session.c  the drivers: local, --server, --peer; progress and SIGINT
 *
 * Threads: everything here runs on the caller's thread, except the helper
 * threads fabric.c starts and joins within one call, and the engine's own.
 */
#ifndef FERRY_BENCH_HARNESS_H
#define FERRY_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include <ferry/tls.h>

#include "guest.h"

#define BENCH_MAX_VALUES    16 /* values in one option list */
#define BENCH_MAX_ROUNDS    64 /* rounds whose remaining bytes a result keeps */
#define BENCH_MAX_SCENARIOS 4096
#define BENCH_MAX_REPS	    100
#define BENCH_REG_NONE	    (-1) /* registration does not apply (not rdma) */

enum bench_transport {
	BENCH_TR_TCP = 0,
	BENCH_TR_UNIX,
	BENCH_TR_RDMA,
	BENCH_TR_COUNT,
};

/* "tcp", "unix", "rdma" ("?" otherwise). */
const char *bench_transport_name(enum bench_transport t);
/* "ab", "uniform", "hot", "sequential". */
const char *bench_pattern_name(enum bench_pattern p);
/* "auto", "pin-all", "chunked", "odp", or "-" for BENCH_REG_NONE. */
const char *bench_reg_name(int reg);

/** struct bench_list - one option's values, in the order given. */
struct bench_list {
	uint32_t n;
	uint64_t v[BENCH_MAX_VALUES];
};

/**
 * struct bench_spec - what to run: one list per dimension, and the constants.
 * Dimensions: ram (bytes), dirty_rate (bytes/s, 0 = idle guest, no vCPUs),
 * pattern (enum bench_pattern), transport (enum bench_transport), channels
 * (0 = pages in the main stream), reg (enum ferry_rdma_reg; applies to rdma
 * only), page_size (4096 or 2 MiB), downtime (ms).
 */
struct bench_spec {
	struct bench_list ram, dirty_rate, pattern, transport, channels, reg, page_size, downtime;
	uint32_t reps;
	uint32_t vcpus;	     /* dirtying threads when dirty_rate > 0 */
	uint32_t seed;	     /* fill seed (non-zero) */
	uint64_t timeout_ms; /* per migration */
	uint64_t msg_size;   /* the ceiling's message size */
	uint64_t ceiling_ms; /* how long each ceiling measurement streams */
};

/** bench_spec_init() - the defaults: 256M, idle, uniform, tcp, 1 channel, 4k, 300 ms, 3 reps. */
/* A size or rate ("256M", "1.5G", "100MiB/s"): 0 or -EINVAL. */
int bench_parse_size(const char *s, uint64_t *out);

void bench_spec_init(struct bench_spec *s);

/**
 * bench_spec_set() - parse one option's comma-separated list into @s.
 * @name: "ram", "dirty-rate", "pattern", "transport", "channels",
 *        "registration", "page-size", "downtime", "reps", "vcpus", "seed",
 *        "timeout", "msg-size", "ceiling-time".
 * Returns 0, or -EINVAL with the reason in @why (bad value, too many values,
 * a duplicate, out of range), -ENOENT for an unknown @name.
 */
int bench_spec_set(struct bench_spec *s, const char *name, const char *value, char *why,
		   size_t whylen);

/** struct bench_scenario - one cell of the matrix. */
struct bench_scenario {
	uint32_t index; /* 0.. in matrix order */
	uint64_t ram_bytes;
	uint64_t dirty_rate;
	enum bench_pattern pattern;
	enum bench_transport transport;
	uint32_t channels;
	int reg; /* enum ferry_rdma_reg, or BENCH_REG_NONE */
	uint64_t page_size;
	uint64_t downtime_ms;
	uint32_t vcpus; /* 0 when dirty_rate is 0 */
};

/**
 * bench_matrix_expand() - every combination of @s's lists, the first list
 * outermost (ram, dirty rate, pattern, transport, channels, registration,
 * page size, downtime). Idle scenarios (dirty rate 0) take one pattern only;
 * non-rdma transports take no registration. Returns the count (> 0) and a
 * malloc'd array in @out, or -E2BIG past BENCH_MAX_SCENARIOS, -EINVAL.
 */
int bench_matrix_expand(const struct bench_spec *s, struct bench_scenario **out);

/** bench_scenario_label() - "256M idle tcp ch1 4k dt300" style, for people. */
void bench_scenario_label(const struct bench_scenario *sc, char *buf, size_t len);

/** struct bench_ceiling - the fabric's ceiling for one transport and stream count. */
struct bench_ceiling {
	enum bench_transport transport;
	uint32_t streams;
	uint64_t msg_size;
	double bytes_per_s;
	char method[48]; /* "tcp streams", "unix streams", "rdma write", "tcp (no rdma device)" */
};

/** struct bench_result - one repetition of one scenario. */
struct bench_result {
	struct bench_scenario sc;
	uint32_t rep;
	char status[16]; /* ferry_status_name() of the source */
	bool verified;	 /* the destination's check passed */
	char verify_error[256];
	char transport_used[32]; /* what the engine reported ("tcp" for rdma's fallback) */
	double total_ms, downtime_ms, setup_ms;
	double registration_ms;	    /* source's registration time; < 0: none (not rdma) */
	double registration_dst_ms; /* destination's; < 0: none */
	char registration_used[16]; /* the source's strategy ("pin-all"...), "" if none */
	char fallback_reason[160];  /* why rdma was not used, "" when it was or not asked */
	char tls[48];		    /* the main stream's TLS session (the engine's), "" if none */
	double throughput;	    /* wire bytes per second from first page to the end */
	uint64_t rounds, transferred, total_ram;
	uint64_t normal_pages, zero_pages, normal_bytes;
	uint64_t memcpy_src, memcpy_dst;
	uint64_t dirty_rate_measured; /* the engine's, last round */
	double cpu_src_s, cpu_dst_s;  /* the engines' migration and worker threads */
	double ceiling;		      /* bytes per second; 0 when unknown */
	double ratio;		      /* throughput / ceiling; 0 when unknown */
	uint32_t n_remaining;
	uint64_t remaining[BENCH_MAX_ROUNDS]; /* dirty bytes left after each round */
};

/** struct bench_summary - median, minimum and maximum of a sample. */
struct bench_summary {
	double median, min, max;
	uint32_t n;
};

/**
 * bench_summarize() - over @n values (n may be 0: all zero). The median of an
 * even count is the mean of the two middle values. @v is not modified.
 */
void bench_summarize(const double *v, size_t n, struct bench_summary *out);

/** struct bench_session - what a report says about the whole run. */
struct bench_session {
	char command[2048]; /* the command line, as typed */
	char mode[16];	    /* "local", "peer" */
	char peer[128];	    /* the --peer host */
	char host[64];	    /* uname: node, machine */
	char kernel[64];
	int cpus;
	double loadavg_start, loadavg_end;
	char started[32]; /* ISO 8601 UTC */
	double memcpy_bytes_per_s;
	uint32_t n_ceilings;
	struct bench_ceiling ceilings[64];
	bool interrupted;
};

/* The ceiling for a scenario's transport and stream count, or NULL. */
const struct bench_ceiling *bench_session_ceiling(const struct bench_session *ses,
						  enum bench_transport t, uint32_t streams);

/* ---- report.c -------------------------------------------------------------- */

struct json_t;
/** bench_result_json() - every parameter and metric (jansson; the caller owns it). */
struct json_t *bench_result_json(const struct bench_result *r);
/** bench_session_json() - the session line (machine, memcpy, ceilings). */
struct json_t *bench_session_json(const struct bench_session *s);
/** bench_csv_header() / bench_csv_row() - one row per result, same columns as the JSON. */
void bench_csv_header(FILE *f);
void bench_csv_row(FILE *f, const struct bench_result *r);
/**
 * bench_report_markdown() - the report: machine, ceilings, one table row per
 * scenario (median, min-max of its repetitions), every run, the plots.
 * @plots: file names of the plots written beside it (NULL entries skipped).
 */
void bench_report_markdown(FILE *f, const struct bench_session *s, const struct bench_result *r,
			   size_t n, const char *const *plots, size_t n_plots);
/**
 * bench_plots_write() - gnuplot data and scripts in @dir, and the plots
 * (PNG, gnuplot's pngcairo) when gnuplot is found on PATH. The throughput plot also draws
 * @ses's ceilings (dashed; @ses may be NULL). @names receives the plot files made
 * (up to @max). Returns how many were made, or -ENOENT when gnuplot is
 * missing (the data and scripts are written anyway).
 */
int bench_plots_write(const char *dir, const struct bench_session *ses,
		      const struct bench_result *r, size_t n, const char **names, size_t max);

/* ---- fabric.c -------------------------------------------------------------- */

/**
 * bench_memcpy_bandwidth() - bytes per second of memcpy over two 64 MiB
 * buffers on this thread (best of a few passes).
 */
double bench_memcpy_bandwidth(void);

/** A sink for the stream ceiling: @streams connections read until EOF. */
struct bench_sink;
/**
 * bench_sink_start() - listen on @uri ("tcp:ADDR:PORT", port 0 for any, or
 * "unix:PATH") and accept @streams connections in a thread of its own.
 * Returns 0 and the port (tcp) in *port, or -errno.
 */
int bench_sink_start(const char *uri, uint32_t streams, uint64_t msg_size, int timeout_ms,
		     struct bench_sink **out, int *port);
/** bench_sink_finish() - wait for the streams to end; bytes and seconds from first byte to last. */
int bench_sink_finish(struct bench_sink *s, uint64_t *bytes, double *seconds);
/**
 * bench_stream_send() - open @streams connections to @uri and write
 * @msg_size messages on each for @ms milliseconds, then close them.
 * @stop: checked between messages. Returns 0 or -errno.
 */
int bench_stream_send(const char *uri, uint32_t streams, uint64_t msg_size, uint64_t ms,
		      volatile int *stop);
/**
 * bench_rdma_sink_start() - an RDMA WRITE target of @lanes queue pairs on
 * @addr (ferry's rdma/ destination, port chosen). FERRY_ENORDMA without a
 * device. bench_rdma_sink_wait() waits up to @timeout_ms for every lane to
 * connect and flush; bench_rdma_sink_close() frees it (after the source
 * closed, ideally: closing first cuts the source's own close short).
 */
struct bench_rdma_sink;
int bench_rdma_sink_start(const char *addr, uint32_t lanes, uint64_t msg,
			  struct bench_rdma_sink **out, int *port);
int bench_rdma_sink_wait(struct bench_rdma_sink *s, int timeout_ms);
void bench_rdma_sink_close(struct bench_rdma_sink *s);
/**
 * bench_rdma_send() - RDMA WRITE @msg bytes per work request on @lanes
 * queue pairs to @addr:@port for @ms, flush, and report bytes per second
 * (from the first post to the last flush). Returns 0 or a negative code.
 */
int bench_rdma_send(const char *addr, int port, uint32_t lanes, uint64_t msg, uint64_t ms,
		    volatile int *stop, double *bytes_per_s);
/**
 * bench_rdma_local_addr() - the IPv4 address of the first RDMA device's
 * network interface (rdma_cm needs it: 127.0.0.1 reaches no RDMA device).
 * Returns 0, or FERRY_ENORDMA without a device or an address.
 */
int bench_rdma_local_addr(char *addr, size_t len);
/**
 * bench_ceiling_local() - measure @c's transport with @c->streams streams of
 * @c->msg_size in this process (sink and sender over loopback / a unix
 * socket; RDMA WRITE on the local device, falling back to TCP when there is
 * none, said in @c->method). Fills @c->bytes_per_s. Returns 0 or -errno.
 */
int bench_ceiling_local(struct bench_ceiling *c, uint64_t ms, const char *dir, volatile int *stop);

/* ---- run.c ----------------------------------------------------------------- */

/** The guest a scenario migrates (same on both sides, apart from the fill). */
void bench_scenario_guest(const struct bench_scenario *sc, uint32_t seed,
			  struct bench_guest_attr *out);

/** The destination half of one run. */
struct bench_dest;
/**
 * bench_dest_start() - build the destination guest (RAM prefaulted) and
 * listen on @uri (tcp port 0 for any). @tls: the migration inside TLS with
 * these (server) credentials, or NULL. Returns 0 and the port in *port.
 */
int bench_dest_start(const struct bench_scenario *sc, uint32_t seed, uint64_t timeout_ms,
		     const char *uri, const struct ferry_tls_attr *tls, struct bench_dest **out,
		     int *port);
/** struct bench_dest_result - what the destination measured. */
struct bench_dest_result {
	char status[16];
	bool verified;
	char verify_error[256];
	double cpu_s;
	uint64_t memcpy_bytes;
	double registration_ms; /* < 0: nothing registered */
};
/** bench_dest_finish() - wait for the migration to end, verify, and free. */
void bench_dest_finish(struct bench_dest *d, struct bench_dest_result *r);
/** bench_dest_stats() - the destination engine's stats so far (any thread). */
void bench_dest_stats(struct bench_dest *d, struct ferry_stats *st);
/** bench_dest_cancel() - stop waiting (any thread). */
void bench_dest_cancel(struct bench_dest *d);

/** Called about every 200 ms while the source runs (main thread). */
typedef void (*bench_progress_fn)(void *opaque, const struct ferry_stats *st);

/**
 * bench_source_run() - build the source guest, migrate it to @uri and fill
 * @r's source-side figures. @tls: the migration inside TLS with these
 * (client) credentials, or NULL. @stop: when it becomes non-zero the
 * migration is cancelled. Returns 0 when the migration completed, else a
 * negative code.
 */
int bench_source_run(const struct bench_scenario *sc, uint32_t seed, uint64_t timeout_ms,
		     const char *uri, const struct ferry_tls_attr *tls, volatile int *stop,
		     bench_progress_fn progress, void *opaque, struct bench_result *r);

/**
 * bench_dump_ram() - write the RAM of the source guest that a scenario with
 * @ram_bytes and @seed builds (page-specific non-zero data) to @path, so that
 * another hypervisor (bench/peers/) migrates exactly the same bytes.
 * Returns 0 or -errno.
 */
int bench_dump_ram(const char *path, uint64_t ram_bytes, uint32_t seed);

/* ---- session.c ------------------------------------------------------------- */

/** struct bench_options - the whole command line of `ferry bench`. */
struct bench_options {
	struct bench_spec spec;
	const char *out_dir;   /* results.jsonl, results.csv, report.md, plots */
	const char *server;    /* --server [URI]: be the destination; NULL otherwise */
	const char *peer;      /* --peer HOST[:PORT]: be the source */
	const char *data_addr; /* --server: address the migrations listen on */
	uint64_t max_ram;      /* --server: the largest guest it accepts */
	bool once;	       /* --server: serve one peer, then exit */
	bool quiet;	       /* no progress display */
	const char *dump_ram;  /* --dump-ram FILE: write the guest's RAM there and exit */
	/* --tls-creds / --tls-psk ...: every migration inside TLS when x509_dir or psk_file */
	struct ferry_tls_attr tls;
	char command[2048];
};

/* The default control port of `ferry bench --server`. */
#define BENCH_CTRL_PORT 4480

/** bench_run_local() - the matrix in this process. Returns a CLI exit status. */
int bench_run_local(const struct bench_options *o);
/** bench_run_peer() - the matrix as the source against a --server. */
int bench_run_peer(const struct bench_options *o);
/** bench_run_server() - serve peers' runs as the destination. */
int bench_run_server(const struct bench_options *o);

#endif
