/* SPDX-License-Identifier: MIT */
/*
 * A forwarding TCP proxy between a source and a destination engine in the
 * same process, for the fault tests (engine_datapath, engine_faults). It
 * accepts on a loopback port, connects each connection on to the
 * destination, forwards both ways, keeps a copy of the main stream, and can
 * break one connection on request:
 *
 *   - the older fixed faults: cut (reset) a connection after N source bytes,
 *     flip a byte of a lane's HELLO id, open a stray connection first;
 *   - one general fault (struct px_fault): on connection @conn, in one
 *     direction, once the test arms it (from a migration event, say) and
 *     @after more bytes went by (or at the first @pattern after that):
 *     reset it (RST), kill it (both ends closed, as when a process dies),
 *     stall it (stop forwarding either way, ends left open), or flip a byte.
 *
 * Connections are numbered in the order they arrive: 0 is the main stream,
 * 1.. the data lanes (in whatever order they connected).
 *
 * Threads: the proxy runs its own thread between px_start() and px_stop();
 * px_arm() and the atomics may be used from any thread.
 */
#ifndef FERRY_TESTS_FAULT_PROXY_H
#define FERRY_TESTS_FAULT_PROXY_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PX_MAX 16
/* The longest pattern a fault can wait for. */
#define PX_PATTERN_MAX 16

enum px_fault_kind {
	PX_FAULT_NONE = 0,
	PX_FAULT_RESET,	  /* abortive close of both ends: the peers get RST */
	PX_FAULT_KILL,	  /* orderly close of both ends: the peers see EOF, as when a peer dies */
	PX_FAULT_STALL,	  /* forward nothing more, either way; the sockets stay open */
	PX_FAULT_CORRUPT, /* flip one byte (xor 0x5a) and forward on */
};

/*
 * struct px_fault - one fault.
 * @kind:        what to do
 * @conn:        which connection (0: main stream, k: the k-th lane to connect)
 * @down:        in the destination-to-source direction (the return path)
 * @after:       bytes in that direction after arming before it strikes
 * @pattern:     if set, strike at the first occurrence that ends after arming
 *               and @after more bytes (it may begin before) instead:
 *               RESET/KILL/STALL just before it, CORRUPT flips its byte
 *               @pattern_at
 * @pattern_len: its length (at most PX_PATTERN_MAX)
 * @pattern_at:  which of its bytes CORRUPT flips
 */
struct px_fault {
	enum px_fault_kind kind;
	int conn;
	bool down;
	uint64_t after;
	const uint8_t *pattern;
	size_t pattern_len;
	size_t pattern_at;
};

struct proxy {
	int listen_fd, port, dest_port;
	char dest_host[64]; /* the destination's IPv4 address, listened on too; empty: loopback */
	pthread_t th;
	atomic_bool stop;
	int cut_conn;	    /* connection to cut (0 = the main stream, k = lane k-1); -1 none */
	uint64_t cut_after; /* source bytes forwarded before the cut */
	int corrupt_conn;   /* connection whose HELLO id gets a flipped byte; -1 none */
	int stray_before;   /* open a stray connection before forwarding this one; -1 none */
	atomic_int conns;
	atomic_bool cut_done, stray_refused;
	/* the general fault */
	struct px_fault fault;
	atomic_bool armed, fault_done;
	uint64_t fault_offset; /* bytes of that direction forwarded before it struck */
	/* called (proxy thread) the moment the general fault strikes; may be NULL */
	void (*on_strike)(void *opaque);
	void *strike_opaque;
	/* the main stream as the source sent it */
	uint8_t *main;
	size_t main_len, main_cap;
};

/* No faults, nothing armed. */
void px_init(struct proxy *px);
/*
 * Listen on a free port (px->port) of loopback, or of px->dest_host when set,
 * and forward to @dest_port there.
 */
void px_start(struct proxy *px, int dest_port);
/* Let the general fault strike (any thread; idempotent). */
void px_arm(struct proxy *px);
/* Stop the thread, close everything, free the copy of the main stream. */
void px_stop(struct proxy *px);

#endif
