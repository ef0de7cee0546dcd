/* SPDX-License-Identifier: MIT */
/*
 * The channel object: dispatch from a URI to the kind that opens it, the
 * stream sink/source glue, shutdown and close. What differs per kind lives in
 * tcp.c, fd.c, file.c and exec.c behind struct chan_ops.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/stream.h>

#include "internal.h"

int chan_alloc(enum ferry_uri_scheme scheme, const struct chan_ops *ops, struct ferry_channel **out)
{
	struct ferry_channel *ch = calloc(1, sizeof(*ch));

	if (!ch)
		return -ENOMEM;
	ch->ops = ops;
	ch->scheme = scheme;
	ch->fd = -1;
	ch->wake_fd = -1;
	ch->child = -1;
	atomic_init(&ch->shut, false);
	*out = ch;
	return 0;
}

int64_t chan_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int64_t chan_deadline(int timeout_ms)
{
	return timeout_ms < 0 ? -1 : chan_now_ms() + timeout_ms;
}

int chan_remaining(int64_t deadline)
{
	int64_t left;

	if (deadline < 0)
		return -1;
	left = deadline - chan_now_ms();
	if (left <= 0)
		return 0;
	return left > INT_MAX ? INT_MAX : (int)left;
}

void chan_copy_cut(char *dst, size_t size, const char *src)
{
	size_t len = strlen(src);

	if (len < size) {
		memcpy(dst, src, len + 1);
		return;
	}
	memcpy(dst, src, size - 4);
	memcpy(dst + size - 4, "...", 4);
}

void chan_set_peer(struct ferry_channel *ch, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(ch->peer, sizeof(ch->peer), fmt, ap);
	va_end(ap);
	if (n >= (int)sizeof(ch->peer))
		memcpy(ch->peer + sizeof(ch->peer) - 4, "...", 4);
}

int chan_set_cloexec(int fd)
{
	int flags = fcntl(fd, F_GETFD);

	if (flags < 0 || fcntl(fd, F_SETFD, flags | FD_CLOEXEC) < 0)
		return -errno;
	return 0;
}

int ferry_channel_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out)
{
	*out = NULL;
	switch (uri->scheme) {
	case FERRY_URI_TCP:
	case FERRY_URI_UNIX:
		return chan_sock_connect(uri, timeout_ms, out);
	case FERRY_URI_FD:
		return chan_fd_open(uri, out);
	case FERRY_URI_FILE:
		return chan_file_open(uri, true, out);
	case FERRY_URI_EXEC:
		return chan_exec_open(uri, true, out);
	case FERRY_URI_RDMA:
		chan_err("rdma:%s:%u is not a byte channel; the rdma module serves it", uri->host,
			 uri->port);
		return FERRY_EBADURI;
	case FERRY_URI_NONE:
		break;
	}
	chan_err("connect: no valid URI given");
	return FERRY_EBADURI;
}

int ferry_channel_open_incoming(const struct ferry_uri *uri, int timeout_ms,
				struct ferry_channel **out)
{
	struct ferry_listener *l;
	int ret;

	*out = NULL;
	switch (uri->scheme) {
	case FERRY_URI_TCP:
	case FERRY_URI_UNIX:
		ret = ferry_listener_create(uri, &l);
		if (ret < 0)
			return ret;
		ret = ferry_listener_accept(l, timeout_ms, out);
		ferry_listener_destroy(l);
		return ret;
	case FERRY_URI_FD:
		return chan_fd_open(uri, out);
	case FERRY_URI_FILE:
		return chan_file_open(uri, false, out);
	case FERRY_URI_EXEC:
		return chan_exec_open(uri, false, out);
	case FERRY_URI_RDMA:
		chan_err("rdma:%s:%u is not a byte channel; the rdma module serves it", uri->host,
			 uri->port);
		return FERRY_EBADURI;
	case FERRY_URI_NONE:
		break;
	}
	chan_err("incoming: no valid URI given");
	return FERRY_EBADURI;
}

ssize_t ferry_channel_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	if (!ch->can_write)
		return -EOPNOTSUPP;
	if (iovcnt <= 0 || iovcnt > IOV_MAX)
		return -EINVAL;
	if (atomic_load(&ch->shut))
		return -ECANCELED;
	n = ch->ops->writev(ch, iov, iovcnt);
	if (n > 0)
		atomic_fetch_add_explicit(&ch->moved, (uint64_t)n, memory_order_relaxed);
	return n;
}

ssize_t ferry_channel_read(struct ferry_channel *ch, void *buf, size_t len)
{
	ssize_t n;

	if (!ch->can_read)
		return -EOPNOTSUPP;
	if (atomic_load(&ch->shut))
		return -ECANCELED;
	if (len == 0)
		return -EINVAL;
	n = ch->ops->read(ch, buf, len);
	if (n > 0)
		atomic_fetch_add_explicit(&ch->moved, (uint64_t)n, memory_order_relaxed);
	return n;
}

uint64_t ferry_channel_bytes(const struct ferry_channel *ch)
{
	return atomic_load_explicit(&((struct ferry_channel *)ch)->moved, memory_order_relaxed);
}

/* The stream layer's view of a channel: the sink/source have no close, so
 * closing a writer or reader leaves the channel to its owner. */
static ssize_t chan_sink_writev(void *opaque, const struct iovec *iov, int iovcnt)
{
	return ferry_channel_writev(opaque, iov, iovcnt);
}

static ssize_t chan_source_read(void *opaque, void *buf, size_t len)
{
	return ferry_channel_read(opaque, buf, len);
}

static const struct ferry_sink_ops chan_sink_ops = {
    .writev = chan_sink_writev,
};

static const struct ferry_source_ops chan_source_ops = {
    .read = chan_source_read,
};

int ferry_channel_writer(struct ferry_channel *ch, struct ferry_writer **out)
{
	if (!ch->can_write) {
		chan_err("%s: channel is read-only", ch->peer);
		return -EOPNOTSUPP;
	}
	return ferry_writer_create(&chan_sink_ops, ch, out);
}

int ferry_channel_reader(struct ferry_channel *ch, struct ferry_reader **out)
{
	if (!ch->can_read) {
		chan_err("%s: channel is write-only", ch->peer);
		return -EOPNOTSUPP;
	}
	return ferry_reader_create(&chan_source_ops, ch, out);
}

int ferry_channel_shutdown_write(struct ferry_channel *ch)
{
	if (!ch->can_write)
		return -EOPNOTSUPP;
	if (atomic_load(&ch->shut))
		return -ECANCELED;
	return ch->ops->shutdown_write ? ch->ops->shutdown_write(ch) : -EOPNOTSUPP;
}

void ferry_channel_shutdown(struct ferry_channel *ch)
{
	/* Set the flag first: a woken read or write checks it to tell a cancel
	 * from a real end of stream or broken pipe. */
	atomic_store(&ch->shut, true);
	if (ch->ops->shutdown)
		ch->ops->shutdown(ch);
}

static int chan_free(struct ferry_channel *ch, bool graceful)
{
	int ret = 0;

	if (ch->ops && ch->ops->close)
		ret = ch->ops->close(ch, graceful);
	if (ch->fd >= 0 && close(ch->fd) < 0 && ret == 0) {
		ret = -errno;
		if (graceful)
			chan_err("%s: close: %s", ch->peer, ferry_strerror(ret));
	}
	if (ch->wake_fd >= 0)
		close(ch->wake_fd);
	if (atomic_load(&ch->shut) && ret == 0)
		ret = -ECANCELED;
	free(ch);
	return ret;
}

int ferry_channel_close(struct ferry_channel *ch)
{
	return chan_free(ch, true);
}

void ferry_channel_destroy(struct ferry_channel *ch)
{
	if (ch)
		chan_free(ch, false);
}

bool ferry_channel_readable(const struct ferry_channel *ch)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLIN};

	if ((ch->ops != &chan_sock_ops && ch->ops != &chan_tls_ops) || ch->fd < 0)
		return false;
	if (ch->ops == &chan_tls_ops && chan_tls_pending(ch) > 0)
		return true;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLIN | POLLRDHUP | POLLHUP | POLLERR));
}

const char *ferry_channel_peer_name(const struct ferry_channel *ch)
{
	return ch->peer;
}

bool ferry_channel_peer_closed(const struct ferry_channel *ch)
{
	struct pollfd p = {.fd = ch->fd, .events = POLLRDHUP};

	if ((ch->ops != &chan_sock_ops && ch->ops != &chan_tls_ops) || ch->fd < 0)
		return false;
	return poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

enum ferry_uri_scheme ferry_channel_scheme(const struct ferry_channel *ch)
{
	return ch->scheme;
}
