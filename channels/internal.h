/* SPDX-License-Identifier: MIT */
/*
 * Inside the channels module: the channel object, its ops table, and the
 * helpers the per-kind files share. Included by channels/ only.
 */
#ifndef FERRY_CHANNELS_INTERNAL_H
#define FERRY_CHANNELS_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#include <ferry/channel.h>
#include <ferry_log_internal.h>

#define CHAN_LOG       "channels"
#define chan_err(...)  ferry_log_msg(FERRY_LOG_ERROR, CHAN_LOG, __VA_ARGS__)
#define chan_warn(...) ferry_log_msg(FERRY_LOG_WARN, CHAN_LOG, __VA_ARGS__)
#define chan_dbg(...)  ferry_log_msg(FERRY_LOG_DEBUG, CHAN_LOG, __VA_ARGS__)

#define CHAN_PEER_MAX 192
/* How long ferry_channel_close() waits for an exec: command to finish. */
#define CHAN_REAP_TIMEOUT_MS 60000
/* After a cancel, how long a SIGTERM'd command gets before SIGKILL. */
#define CHAN_KILL_GRACE_MS 1000

struct ferry_channel;

/*
 * struct chan_ops - one per way of moving bytes (not per URI scheme: tcp,
 * unix, exec and a socket fd: all move bytes over a socket).
 *
 * @writev/@read: as ferry_channel_writev()/read(), called only on a channel
 *   that can write/read; the caller has already checked the shut-down flag
 *   once, the op checks it again when the kernel returns (the wake-up of a
 *   shutdown looks like end of stream or EPIPE).
 * @shutdown: wake blocked I/O; any thread, async-signal safe.
 * @shutdown_write: half-close.
 * @close: release what the kind holds (descriptors, child process); @graceful
 *   is false for destroy (do not wait on anything). Returns 0 or an error.
 */
struct chan_ops {
	const char *name;
	ssize_t (*writev)(struct ferry_channel *ch, const struct iovec *iov, int iovcnt);
	ssize_t (*read)(struct ferry_channel *ch, void *buf, size_t len);
	void (*shutdown)(struct ferry_channel *ch);
	int (*shutdown_write)(struct ferry_channel *ch);
	int (*close)(struct ferry_channel *ch, bool graceful);
};

struct ferry_channel {
	const struct chan_ops *ops;
	enum ferry_uri_scheme scheme;
	int fd;
	/* pipes: an eventfd that ferry_channel_shutdown() makes readable */
	int wake_fd;
	/* pipes taken over by fd:N: the file status flags to restore */
	int orig_flags;
	bool restore_flags;
	/* exec: the command's pid (also its process group id) */
	pid_t child;
	bool can_read, can_write;
	atomic_bool shut;
	/* TLS after ferry_channel_start_tls() (ops then chan_tls_ops) */
	struct chan_tls *tls;
	/* bytes read and written through ferry_channel_read/writev (any thread reads it) */
	_Atomic uint64_t moved;
	char peer[CHAN_PEER_MAX];
};

/* channel.c */
int chan_alloc(enum ferry_uri_scheme scheme, const struct chan_ops *ops,
	       struct ferry_channel **out);
int64_t chan_now_ms(void);
/* A deadline from a timeout (negative: none, returned as -1). */
int64_t chan_deadline(int timeout_ms);
/* The poll() timeout left before @deadline: -1 for none, 0 once past. */
int chan_remaining(int64_t deadline);
/* Copy @src into @dst (size @size), cutting it with "..." when too long. */
void chan_copy_cut(char *dst, size_t size, const char *src);
/* Format the peer name, ending it with "..." when cut. */
__attribute__((format(printf, 2, 3))) void chan_set_peer(struct ferry_channel *ch, const char *fmt,
							 ...);
/* Make @fd close-on-exec; returns 0 or -errno. */
int chan_set_cloexec(int fd);

/* tcp.c: socket channels (tcp, unix, exec's socketpair, socket fd:) */
extern const struct chan_ops chan_sock_ops;
ssize_t chan_sock_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt);
ssize_t chan_sock_read(struct ferry_channel *ch, void *buf, size_t len);
void chan_sock_shutdown(struct ferry_channel *ch);
int chan_sock_shutdown_write(struct ferry_channel *ch);
int chan_sock_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out);
/* The listening socket, for waiting on it together with other things (multi.c). */
int chan_listener_fd(const struct ferry_listener *l);
/* Print a socket address as a URI ("tcp:1.2.3.4:5", "tcp:[::1]:5", "unix:/p"). */
void chan_sockaddr_name(const void *sa, socklen_t len, char *buf, size_t size);

/*
 * multi.c: take @ch (an accepted data connection) through the HELLO/WELCOME
 * handshake of the multi-channel destination @dest_ctx (from
 * ferry_mc_dest_ops.create). Returns 0 when @ch became the lane it named
 * (owned by the lane from then on), a refusal status > 0 (@ch stays the
 * caller's), or an error < 0. For mc_dest_accept() and the lane fuzzer.
 */
int chan_mc_dest_admit(void *dest_ctx, struct ferry_channel *ch, int64_t deadline);

/* fd.c: pipes and FIFOs, and taking over fd:N */
extern const struct chan_ops chan_pipe_ops;
int chan_fd_open(const struct ferry_uri *uri, struct ferry_channel **out);

/* file.c */
extern const struct chan_ops chan_file_ops;
int chan_file_open(const struct ferry_uri *uri, bool for_write, struct ferry_channel **out);

/* tls.c: a socket channel after its TLS handshake */
extern const struct chan_ops chan_tls_ops;
/* Send every byte of @iov inside TLS records; returns the byte count or an error. */
ssize_t chan_tls_send_all(struct ferry_channel *ch, const struct iovec *iov, int iovcnt);
/* Receive up to @len bytes; @timeout_ms < 0 waits without limit (-ETIMEDOUT after it). */
ssize_t chan_tls_recv(struct ferry_channel *ch, void *buf, size_t len, int timeout_ms);
/* Bytes already decrypted and waiting in GnuTLS (a poll on the socket would miss them). */
size_t chan_tls_pending(const struct ferry_channel *ch);

/* exec.c */
int chan_exec_open(const struct ferry_uri *uri, bool for_write, struct ferry_channel **out);

#endif
