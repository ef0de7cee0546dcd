/* SPDX-License-Identifier: MIT */
/*
 * Byte channels: the single-stream transports a migration stream travels on
 * (tcp, unix, fd, file, exec), and the URIs that name them.
 *
 * A channel moves bytes and nothing else; it knows no stream format. The
 * stream layer (<ferry/stream.h>) runs on top of it through
 * ferry_channel_writer() and ferry_channel_reader().
 *
 * Errors follow <ferry/error.h>: 0 or a count on success, a negative errno or
 * FERRY_E* code on failure. Every failure is also logged (module "channels")
 * with what was being done and to whom. The codes worth telling apart:
 *   FERRY_EBADURI   the URI is malformed, or names a kind that cannot do what
 *                   was asked (listening on file:, connecting to port 0, rdma:)
 *   -ETIMEDOUT      a connect or accept did not complete within its timeout
 *   -ECANCELED      the channel (or listener) was shut down by
 *                   ferry_channel_shutdown() / ferry_listener_shutdown()
 *   -ECONNREFUSED, -ENOENT, -EPIPE, ...   what the kernel said
 *   -EIO            an exec: command exited non-zero or was killed
 *
 * Threads: a channel is used by one reading thread and one writing thread at
 * a time (they may be different threads: a socket carries the main stream
 * one way and the return path the other). ferry_channel_shutdown() may be
 * called from any thread at any time before ferry_channel_close() or
 * ferry_channel_destroy(); everything else needs external serialisation. No
 * function here calls back into the caller, and none raises SIGPIPE.
 */
#ifndef FERRY_CHANNEL_H
#define FERRY_CHANNEL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ferry_writer;
struct ferry_reader;

/* ---- URIs -------------------------------------------------------------------- */

enum ferry_uri_scheme {
	FERRY_URI_NONE = 0, /* a URI that failed to parse */
	FERRY_URI_TCP,	    /* tcp:HOST:PORT, tcp:[IPV6]:PORT, tcp::PORT (any address) */
	FERRY_URI_UNIX,	    /* unix:PATH (a stream socket in the file system) */
	FERRY_URI_FD,	    /* fd:N (an open descriptor handed over by the embedder) */
	FERRY_URI_FILE,	    /* file:PATH or file:PATH,offset=N */
	FERRY_URI_EXEC,	    /* exec:COMMAND (run by /bin/sh -c) */
	FERRY_URI_RDMA,	    /* rdma:HOST:PORT (parsed here, served by the rdma module) */
};

/* Bounds of the fixed-size fields of struct ferry_uri, terminating NUL included. */
#define FERRY_URI_HOST_MAX 254	/* a DNS name is at most 253 characters */
#define FERRY_URI_PATH_MAX 4096 /* PATH_MAX; also the longest exec: command */
#define FERRY_URI_UNIX_MAX 108	/* sizeof(sockaddr_un.sun_path) */
#define FERRY_URI_ERR_MAX  256
/* A file: offset must be a multiple of this (the smallest page size ferry supports). */
#define FERRY_URI_FILE_ALIGN 4096

/**
 * struct ferry_uri - a parsed migration URI; plain data in caller storage.
 * @scheme: what kind of channel; FERRY_URI_NONE after a failed parse.
 * @host: tcp, rdma: a host name, dotted IPv4 address or IPv6 address (without
 *        the brackets of the text form); empty for "any address" (tcp::PORT),
 *        which only a listener accepts.
 * @host_is_ipv6: @host is an IPv6 literal (it was written in brackets).
 * @port: tcp, rdma: 0..65535; 0 means "pick a free port" to a listener.
 * @path: unix: the socket path (shorter than FERRY_URI_UNIX_MAX); file: the
 *        file path; exec: the shell command.
 * @fd: fd: the descriptor number.
 * @offset: file: where the stream starts in the file (FERRY_URI_FILE_ALIGN
 *          aligned); 0 when not given.
 * @has_offset: file: ",offset=N" was given (so format prints it back).
 * @err: after a failed parse, what is wrong, for a person ("tcp: port '99999'
 *       out of range (0-65535)"); empty after a successful one.
 */
struct ferry_uri {
	enum ferry_uri_scheme scheme;
	char host[FERRY_URI_HOST_MAX];
	bool host_is_ipv6;
	uint16_t port;
	char path[FERRY_URI_PATH_MAX];
	int fd;
	uint64_t offset;
	bool has_offset;
	char err[FERRY_URI_ERR_MAX];
};

/**
 * ferry_uri_parse() - parse a migration URI.
 * @text: the URI, NUL-terminated (see docs/channels.md for the grammar).
 * @out: filled in completely, on failure too (then @out->scheme is
 *       FERRY_URI_NONE and @out->err says what is wrong).
 *
 * Only the syntax is checked: host names are not resolved, paths not opened.
 * A failure is also logged at FERRY_LOG_WARN.
 *
 * Thread context: any thread; reentrant.
 * Returns 0, or FERRY_EBADURI.
 */
int ferry_uri_parse(const char *text, struct ferry_uri *out);

/**
 * ferry_uri_format() - print a URI back in its text form.
 * @uri: a successfully parsed (or correctly filled in) URI.
 * @buf: where to write; always NUL-terminated when @size > 0.
 * @size: the size of @buf.
 *
 * Parsing the result gives back an equal URI.
 *
 * Thread context: any thread; reentrant.
 * Returns the length of the full text (as snprintf: a value >= @size means
 * @buf was too small and holds a truncated text), or -EINVAL for a URI whose
 * scheme is FERRY_URI_NONE or unknown.
 */
int ferry_uri_format(const struct ferry_uri *uri, char *buf, size_t size);

/**
 * ferry_uri_scheme_name() - "tcp", "unix", "fd", "file", "exec", "rdma", or
 * "none". Thread context: any. Returns a static string, never NULL.
 */
const char *ferry_uri_scheme_name(enum ferry_uri_scheme scheme);

/* ---- channels ---------------------------------------------------------------- */

struct ferry_channel;
struct ferry_listener;

/**
 * ferry_channel_connect() - open the source side of a channel (the side that
 * writes the migration stream).
 * @uri: tcp/unix: connect to it (TCP_NODELAY is set on tcp); fd: take over
 *       the descriptor; file: create the file (mode 0600) or cut it to
 *       @uri->offset bytes, keeping what lies before the offset, and write
 *       from there; exec: run "/bin/sh -c COMMAND" with its stdin reading
 *       from the channel (its stdout goes to /dev/null, its stderr is ours).
 * @timeout_ms: the longest the connect may wait for the peer (tcp, unix);
 *       negative means no limit. Host name resolution is not covered: it is
 *       bounded by the resolver's own settings (resolv.conf timeout/attempts).
 * @out: the new channel.
 *
 * fd: the descriptor belongs to the channel on success only (closed by
 * ferry_channel_close()); on failure it stays the caller's. It is made
 * close-on-exec; a pipe or FIFO is also switched to non-blocking mode (the
 * original flags are restored before it is closed).
 *
 * Thread context: any thread; blocks up to @timeout_ms.
 * Returns 0, FERRY_EBADURI (rdma:, tcp port 0, tcp without host), -ETIMEDOUT,
 * or the kernel's error (-ECONNREFUSED, -ENOENT, -EACCES, -EBADF, ...).
 */
int ferry_channel_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out);

/**
 * ferry_channel_open_incoming() - open the destination side of a channel (the
 * side that reads the migration stream).
 * @uri: tcp/unix: listen, accept one connection, stop listening (port 0
 *       cannot be learnt this way: use ferry_listener_create() for that);
 *       fd: take over the descriptor (as ferry_channel_connect()); file: open
 *       for reading at @uri->offset; exec: run "/bin/sh -c COMMAND" with its
 *       stdout writing into the channel (its stdin is /dev/null).
 * @timeout_ms: tcp/unix: the longest to wait for the peer to connect;
 *       negative means no limit.
 * @out: the new channel.
 *
 * Thread context: any thread; blocks up to @timeout_ms. The wait cannot be
 * cut short from another thread; use a listener for that.
 * Returns 0, FERRY_EBADURI, -ETIMEDOUT, or the kernel's error.
 */
int ferry_channel_open_incoming(const struct ferry_uri *uri, int timeout_ms,
				struct ferry_channel **out);

/**
 * ferry_listener_create() - listen on a tcp: or unix: URI.
 * @uri: tcp: "tcp::PORT" listens on every address (IPv6 and IPv4 where the
 *       host has IPv6, else IPv4), a host name on the first address it
 *       resolves to; port 0 picks a free port. unix: a stale socket file at
 *       the path is replaced; any other file there is an error (-EEXIST).
 * @out: the new listener.
 *
 * Thread context: any thread; does not block (beyond name resolution).
 * Returns 0, FERRY_EBADURI for other schemes, or the kernel's error
 * (-EADDRINUSE, -EACCES, ...).
 */
int ferry_listener_create(const struct ferry_uri *uri, struct ferry_listener **out);

/**
 * ferry_listener_port() - the tcp port the listener is bound to (the chosen
 * one after port 0); 0 for a unix listener. Thread context: any thread.
 */
int ferry_listener_port(const struct ferry_listener *l);

/**
 * ferry_listener_name() - where it listens, as a URI ("tcp:0.0.0.0:4444",
 * "tcp:[::]:4444", "unix:/run/x.sock"), with the real port.
 * Thread context: any thread. Valid until ferry_listener_destroy().
 */
const char *ferry_listener_name(const struct ferry_listener *l);

/**
 * ferry_listener_accept() - wait for one connection.
 * @l: the listener; it keeps listening afterwards.
 * @timeout_ms: the longest to wait; negative means no limit.
 * @out: the new channel (blocking; TCP_NODELAY on tcp).
 *
 * Thread context: one thread at a time per listener; may be woken early by
 * ferry_listener_shutdown() from another thread.
 * Returns 0, -ETIMEDOUT, -ECANCELED after ferry_listener_shutdown(), or the
 * kernel's error (-EMFILE, ...).
 */
int ferry_listener_accept(struct ferry_listener *l, int timeout_ms, struct ferry_channel **out);

/**
 * ferry_listener_shutdown() - make a waiting ferry_listener_accept() (and
 * every later one) return -ECANCELED promptly.
 * Thread context: any thread, before ferry_listener_destroy(); async-signal
 * safe.
 */
void ferry_listener_shutdown(struct ferry_listener *l);

/**
 * ferry_listener_destroy() - stop listening and free; a unix listener removes
 * the socket file it created (if it is still the same file). NULL and a
 * half-built listener are allowed.
 * Thread context: any thread, once no other thread uses @l.
 */
void ferry_listener_destroy(struct ferry_listener *l);

/**
 * ferry_channel_writer() - a stream writer whose sink is the channel.
 * @ch: a channel that can be written (everything but an incoming file: or
 *      exec:); it stays the caller's and must outlive the writer.
 * @out: the new writer. Closing or destroying it flushes (close only) and
 *       frees the writer but leaves the channel open.
 *
 * The writer's flushes reach the channel as the iovecs it was given (sockets:
 * one sendmsg(MSG_NOSIGNAL) per batch), so ferry_put_buffer_ref() pages go
 * out of guest RAM without a copy.
 *
 * Thread context: any thread; then the writer is used by one thread at a time.
 * Returns 0, -ENOMEM, or -EOPNOTSUPP for a read-only channel.
 */
int ferry_channel_writer(struct ferry_channel *ch, struct ferry_writer **out);

/**
 * ferry_channel_reader() - a stream reader whose source is the channel.
 * @ch: a channel that can be read (everything but an outgoing file: or
 *      exec:); it stays the caller's and must outlive the reader.
 * @out: the new reader; destroying it leaves the channel open.
 *
 * Thread context: any thread; then the reader is used by one thread at a time.
 * A writer and a reader on the same socket channel may run in two threads at
 * once (that is the return path).
 * Returns 0, -ENOMEM, or -EOPNOTSUPP for a write-only channel.
 */
int ferry_channel_reader(struct ferry_channel *ch, struct ferry_reader **out);

/**
 * ferry_channel_writev() - write some of @iov (the raw sink under the writer).
 * @iovcnt: 1..IOV_MAX entries.
 *
 * Thread context: the channel's one writing thread. Blocks until at least one
 * byte is written (the kernel may take less than all).
 * Returns the bytes written (> 0), -ECANCELED after ferry_channel_shutdown(),
 * -EOPNOTSUPP on a read-only channel, or the kernel's error (-EPIPE,
 * -ECONNRESET, -ENOSPC, ...).
 */
ssize_t ferry_channel_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt);

/**
 * ferry_channel_read() - read up to @len bytes (the raw source under the reader).
 *
 * Thread context: the channel's one reading thread. Blocks until at least one
 * byte arrives or the stream ends.
 * Returns the count (> 0), 0 at end of stream, -ECANCELED after
 * ferry_channel_shutdown(), -EOPNOTSUPP on a write-only channel, or the
 * kernel's error.
 */
ssize_t ferry_channel_read(struct ferry_channel *ch, void *buf, size_t len);

/**
 * ferry_channel_shutdown_write() - tell the peer the stream is complete while
 * keeping the read direction (the return path) open: the peer reads end of
 * stream after the bytes already sent.
 *
 * Sockets (tcp, unix, exec, socket fd:) send a FIN (shutdown(SHUT_WR)); an
 * exec: command sees end of input. A file needs nothing (returns 0). A pipe
 * fd: cannot half-close (-EOPNOTSUPP; close the channel instead).
 *
 * Thread context: the channel's writing thread, after its last write.
 * Returns 0 or a negative error.
 */
int ferry_channel_shutdown_write(struct ferry_channel *ch);

/**
 * ferry_channel_shutdown() - cancel: make every blocked and every later read
 * or write on the channel fail promptly with -ECANCELED.
 *
 * Sockets are shut down in both directions (the peer sees end of stream, or
 * -EPIPE/-ECONNRESET when it writes); pipes are woken through an eventfd;
 * file I/O is never blocked for long and fails from its next call on. The
 * descriptor stays open until close/destroy, so no other thread can end up
 * using a recycled descriptor number. Calling it twice is harmless.
 *
 * Thread context: any thread, concurrently with reads and writes, but it must
 * have returned before ferry_channel_close()/destroy() starts. Async-signal safe.
 */
void ferry_channel_shutdown(struct ferry_channel *ch);

/**
 * ferry_channel_close() - close the channel and free it, reporting how it ended.
 *
 * exec: closes our end (the command sees end of input / output), then waits
 * for the command up to 60 s; one that exits non-zero or dies of a signal is
 * an error (-EIO, logged with the status), one still running after the wait
 * is killed (-ETIMEDOUT). After ferry_channel_shutdown() the command's
 * process group is terminated at once instead.
 * fd: a pipe's original file status flags are restored before closing.
 *
 * Thread context: any thread, once no other thread uses @ch (writers and
 * readers on it must be gone or never used again).
 * Returns 0; -ECANCELED if the channel had been shut down; -EIO, -ETIMEDOUT
 * (exec); or close()'s error (for a file, a late write-back failure).
 */
int ferry_channel_close(struct ferry_channel *ch);

/**
 * ferry_channel_destroy() - close and free without reporting: an exec: command
 * is killed (SIGKILL to its process group) and reaped. NULL and a half-built
 * channel are allowed.
 * Thread context: as ferry_channel_close().
 */
void ferry_channel_destroy(struct ferry_channel *ch);

/**
 * ferry_channel_peer_name() - who is at the other end, for messages:
 * "tcp:192.0.2.7:49152", "tcp:[::1]:4444", "unix:/run/m.sock", "fd:5",
 * "file:/tmp/vm.state", "exec:gzip -c > x (pid 1234)" (long commands cut).
 * Thread context: any thread. Valid until close/destroy.
 */
const char *ferry_channel_peer_name(const struct ferry_channel *ch);

/**
 * ferry_channel_peer_closed() - whether the peer of a socket channel has hung
 * up (closed or reset its end: the stream ends after what is already
 * buffered). Looks without waiting and without consuming anything.
 * Thread context: any thread, between open and close/destroy.
 * Returns true for a socket whose peer hung up; false otherwise, and for
 * channels that are not sockets.
 */
bool ferry_channel_peer_closed(const struct ferry_channel *ch);

/**
 * ferry_channel_readable() - whether a read of a socket channel would not
 * block: bytes (for TLS, records or decrypted bytes) are waiting, or the peer
 * hung up. Looks without waiting and without consuming anything; bytes a
 * struct ferry_reader has already buffered are not seen. ferry's TLS sends
 * nothing after its handshake unasked (no session tickets), so on a TLS
 * channel it means the peer wrote or hung up.
 * Thread context: any thread, between open and close/destroy, while no other
 * thread reads the channel.
 * Returns false for channels that are not sockets.
 */
bool ferry_channel_readable(const struct ferry_channel *ch);

/** ferry_channel_scheme() - the kind of channel. Thread context: any thread. */
enum ferry_uri_scheme ferry_channel_scheme(const struct ferry_channel *ch);

/**
 * ferry_channel_bytes() - bytes moved through ferry_channel_read() and
 * ferry_channel_writev() so far, both ways together: a progress counter.
 * Thread context: any thread, while the channel exists.
 */
uint64_t ferry_channel_bytes(const struct ferry_channel *ch);

#ifdef __cplusplus
}
#endif
#endif
