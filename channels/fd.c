/* SPDX-License-Identifier: MIT */
/*
 * fd:N, a descriptor the embedder hands over, and the pipe ops it needs when
 * that descriptor is a pipe, FIFO or character device.
 *
 * A pipe cannot be woken by shutdown(2) and a blocking write to it waits for
 * the whole buffer, so pipes run in non-blocking mode with poll() on the pipe
 * and on an eventfd that ferry_channel_shutdown() makes readable. Writing to
 * a pipe whose reader is gone raises SIGPIPE, and there is no MSG_NOSIGNAL
 * for write(2): the writing thread blocks SIGPIPE around the call and
 * consumes the signal it caused.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/error.h>

#include "internal.h"

/* Bigger pipes mean fewer wake-ups; 1 MiB is the default unprivileged cap. */
#define PIPE_WANT_SIZE (1 << 20)

/* Wait for @events on the pipe; -ECANCELED as soon as the eventfd fires. */
static int pipe_wait(struct ferry_channel *ch, short events)
{
	struct pollfd p[2] = {{.fd = ch->fd, .events = events},
			      {.fd = ch->wake_fd, .events = POLLIN}};

	for (;;) {
		if (atomic_load(&ch->shut))
			return -ECANCELED;
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			return -errno;
		}
		if (p[1].revents)
			return -ECANCELED;
		/* Ready, or POLLHUP/POLLERR: the next call reports which. */
		return 0;
	}
}

/* writev() that turns a broken pipe into -EPIPE without a SIGPIPE. */
static ssize_t writev_nosigpipe(int fd, const struct iovec *iov, int iovcnt)
{
	sigset_t pipe_set, old, pending;
	bool was_pending;
	ssize_t n;
	int err;

	sigemptyset(&pipe_set);
	sigaddset(&pipe_set, SIGPIPE);
	sigpending(&pending);
	/* A SIGPIPE already pending is not ours to consume. */
	was_pending = sigismember(&pending, SIGPIPE) == 1;
	pthread_sigmask(SIG_BLOCK, &pipe_set, &old);
	n = writev(fd, iov, iovcnt);
	err = errno;
	if (n < 0 && err == EPIPE && !was_pending) {
		struct timespec zero = {0, 0};

		while (sigtimedwait(&pipe_set, NULL, &zero) < 0 && errno == EINTR)
			;
	}
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	errno = err;
	return n;
}

static ssize_t pipe_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	for (;;) {
		ssize_t n = writev_nosigpipe(ch->fd, iov, iovcnt);
		int ret;

		if (n > 0)
			return n;
		if (n == 0)
			return -EIO;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return atomic_load(&ch->shut) ? -ECANCELED : -errno;
		ret = pipe_wait(ch, POLLOUT);
		if (ret < 0)
			return ret;
	}
}

static ssize_t pipe_read(struct ferry_channel *ch, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = read(ch->fd, buf, len);
		int ret;

		if (n > 0)
			return n;
		if (n == 0)
			return atomic_load(&ch->shut) ? -ECANCELED : 0;
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK)
			return atomic_load(&ch->shut) ? -ECANCELED : -errno;
		ret = pipe_wait(ch, POLLIN);
		if (ret < 0)
			return ret;
	}
}

static void pipe_shutdown(struct ferry_channel *ch)
{
	uint64_t one = 1;
	ssize_t n = write(ch->wake_fd, &one, sizeof(one));

	(void)n; /* a full eventfd is already readable */
}

static int pipe_close(struct ferry_channel *ch, bool graceful)
{
	/* The open file description may be shared with other processes: give
	 * it back in the mode it came in. */
	if (ch->restore_flags && ch->fd >= 0)
		fcntl(ch->fd, F_SETFL, ch->orig_flags);
	return 0;
}

const struct chan_ops chan_pipe_ops = {
    .name = "pipe",
    .writev = pipe_writev,
    .read = pipe_read,
    .shutdown = pipe_shutdown,
    .close = pipe_close,
};

int chan_fd_open(const struct ferry_uri *uri, struct ferry_channel **out)
{
	const struct chan_ops *ops;
	struct ferry_channel *ch;
	struct stat st;
	int fd = uri->fd, flags, acc, ret;

	/* Nothing about the descriptor changes until every check has passed:
	 * on failure it is still the caller's, as it was. */
	flags = fcntl(fd, F_GETFL);
	if (fd < 0 || flags < 0 || fstat(fd, &st) < 0) {
		chan_err("fd:%d: not an open file descriptor", fd);
		return -EBADF;
	}
	acc = flags & O_ACCMODE;
	if (S_ISSOCK(st.st_mode)) {
		int type = 0, listening = 0;
		socklen_t len = sizeof(type);

		if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0 || type != SOCK_STREAM) {
			chan_err("fd:%d: not a stream socket", fd);
			return -EPROTOTYPE;
		}
		len = sizeof(listening);
		if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) == 0 && listening) {
			chan_err("fd:%d: a listening socket, not a connection", fd);
			return -EINVAL;
		}
		ops = &chan_sock_ops;
		acc = O_RDWR;
	} else if (S_ISREG(st.st_mode) || S_ISBLK(st.st_mode)) {
		ops = &chan_file_ops;
	} else if (S_ISFIFO(st.st_mode) || S_ISCHR(st.st_mode)) {
		ops = &chan_pipe_ops;
	} else {
		chan_err("fd:%d: not a socket, pipe or file", fd);
		return -EINVAL;
	}
	ret = chan_alloc(FERRY_URI_FD, ops, &ch);
	if (ret < 0)
		return ret;
	ch->can_read = acc == O_RDONLY || acc == O_RDWR;
	ch->can_write = acc == O_WRONLY || acc == O_RDWR;
	snprintf(ch->peer, sizeof(ch->peer), "fd:%d", fd);
	if (ops == &chan_pipe_ops) {
		ch->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
		if (ch->wake_fd < 0) {
			ret = -errno;
			goto err_destroy;
		}
		if (!(flags & O_NONBLOCK) && fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
			ret = -errno;
			goto err_destroy;
		}
		ch->orig_flags = flags;
		ch->restore_flags = true;
		if (S_ISFIFO(st.st_mode))
			fcntl(fd, F_SETPIPE_SZ, PIPE_WANT_SIZE); /* best effort */
	}
	/* Ours from here on: it must not leak into exec: children or the embedder's. */
	chan_set_cloexec(fd);
	ch->fd = fd;
	*out = ch;
	return 0;

err_destroy:
	chan_err("fd:%d: %s", fd, ferry_strerror(ret));
	ferry_channel_destroy(ch);
	return ret;
}
