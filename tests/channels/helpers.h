/* SPDX-License-Identifier: MIT */
/* Shared by the channels suites: a page pattern to move, fd counting, log capture. */
#ifndef FERRY_TESTS_CHANNELS_HELPERS_H
#define FERRY_TESTS_CHANNELS_HELPERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <ferry/channel.h>
#include <ferry/stream.h>

#define CT_PAGE	     4096
#define CT_BIG_BYTES (64u << 20) /* the large transfer of every kind */
#define CT_BIG_PAGES (CT_BIG_BYTES / CT_PAGE)

/* Number of open descriptors of this process. */
int ct_count_fds(void);
int64_t ct_now_ms(void);

/* Guest-RAM stand-in: @pages pages, each filled with a pattern of its index and @seed. */
uint8_t *ct_ram_new(size_t pages, uint64_t seed);
void ct_ram_free(uint8_t *ram, size_t pages);
/* Zeroed memory of the same size, for the receiving side. */
uint8_t *ct_ram_zeroed(size_t pages);

/*
 * Send every page in a scattered order: a small header (be32 magic, be32
 * index) copied into the stream, then the page by reference
 * (ferry_put_buffer_ref), like the RAM section does. Returns the writer's
 * error after a final flush.
 */
int ct_send_pages(struct ferry_writer *w, const uint8_t *ram, size_t pages);
/* Receive what ct_send_pages sent, each page read in place; checks headers. */
int ct_recv_pages(struct ferry_reader *r, uint8_t *ram, size_t pages);

/* Writer thread: ct_send_pages over a channel's writer. */
struct ct_sender {
	struct ferry_channel *ch;
	const uint8_t *ram;
	size_t pages;
	bool shutdown_write; /* half-close after the last page */
	bool close;	     /* or close the channel (a pipe cannot half-close) */
	int ret;
	void *thread; /* pthread_t storage */
};
void ct_sender_start(struct ct_sender *s);
int ct_sender_join(struct ct_sender *s);

/*
 * Move @pages pages from @src to @dst (a writer thread on @src, a reader here
 * on @dst) and assert that every byte arrived in its place and that the
 * stream ends right after. @close_src: the sender thread closes @src to end
 * the stream (then @src is gone), else it half-closes it.
 */
void ct_transfer(struct ferry_channel *src, struct ferry_channel *dst, size_t pages,
		 bool close_src);
#define ct_transfer_big(src, dst) ct_transfer((src), (dst), CT_BIG_PAGES, false)

/* A connected pair through a listener on @listen_text: @src connected, @dst accepted. */
void ct_pair(const char *listen_text, struct ferry_channel **src, struct ferry_channel **dst);

/* A thread blocked reading @len bytes from @ch; ret is the reader's error. */
struct ct_reader_thread {
	struct ferry_channel *ch;
	size_t len;
	int ret;
	void *thread;
};
void ct_reader_start(struct ct_reader_thread *t);

/* Capture every log message (all levels) into a buffer for ct_log_has(). */
void ct_log_capture(void);
bool ct_log_has(const char *needle);

/* A free tcp port on 127.0.0.1 (bound, read, closed: nothing listens there). */
int ct_free_port(void);
/* true when ::1 can be bound (IPv6 loopback usable). */
bool ct_have_ipv6(void);

/*
 * Make the TLS test credentials (tests/channels/make-tls-certs.sh) in a new
 * directory; @dir gets its path. false with the reason in @why when certtool
 * is missing or fails (the caller skips).
 */
bool ct_tls_certs(char *dir, size_t size, char *why, size_t whysize);
/* Remove what ct_tls_certs() made. */
void ct_tls_certs_remove(const char *dir);
/*
 * A TLS suite's .init/.fini: credentials made once per test (the test is
 * skipped with the reason when certtool is missing) and removed after; and
 * a path inside them ("ca-cert.pem", "psk.key"...), from a ring of 8 buffers.
 * FERRY_TEST_LOG turns on ferry's debug log.
 */
void ct_tls_suite_setup(void);
void ct_tls_suite_teardown(void);
const char *ct_tls_path(const char *name);

/*
 * A pre-shared key file written now (identity "ferry", 32 random bytes), at a
 * new /tmp path put in @path; the caller unlinks it.
 */
void ct_psk_file(char *path, size_t len);

/* Wait for @thread up to @ms; true if it ended. */
bool ct_join_within(void *thread, int ms);

#endif
