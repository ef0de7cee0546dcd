/* SPDX-License-Identifier: MIT */
/*
 * Socket channels: tcp and unix stream sockets, connect with a timeout,
 * listeners with a cancellable accept, and the socket ops table that exec.c
 * and a socket fd: also use.
 *
 * Sockets stay in blocking mode once connected: a large sendmsg() then moves
 * a whole batch of guest pages per call, with no EAGAIN/poll round trips on
 * the fast path. Cancel does not need non-blocking mode either: shutdown(2)
 * from another thread wakes a blocked send/recv at once.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>

#include "internal.h"

#define LISTEN_BACKLOG 64

struct ferry_listener {
	int fd;
	int wake_fd;
	enum ferry_uri_scheme scheme;
	int port;
	/* unix: the socket file we created, removed on destroy if still ours */
	bool own_path;
	char path[FERRY_URI_UNIX_MAX];
	dev_t dev;
	ino_t ino;
	atomic_bool shut;
	char name[CHAN_PEER_MAX];
};

/* ---- the socket ops ---------------------------------------------------------- */

/* Wait until @fd is ready for @events; a shutdown(2) also makes it ready. */
static int sock_wait(int fd, short events)
{
	struct pollfd p = {.fd = fd, .events = events};

	while (poll(&p, 1, -1) < 0)
		if (errno != EINTR)
			return -errno;
	return 0;
}

ssize_t chan_sock_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	/* The iovecs go to the kernel as given: guest pages are sent in place. */
	struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = (size_t)iovcnt};

	for (;;) {
		ssize_t n = sendmsg(ch->fd, &msg, MSG_NOSIGNAL);
		int err;

		if (n > 0)
			return n;
		if (n == 0)
			return -EIO; /* only for an empty batch, which the writer never sends */
		err = errno;
		if (err == EINTR)
			continue;
		if (atomic_load(&ch->shut))
			return -ECANCELED;
		/* A socket fd: may come in non-blocking mode; wait rather than fail. */
		if (err == EAGAIN || err == EWOULDBLOCK) {
			int ret = sock_wait(ch->fd, POLLOUT);
			if (ret < 0)
				return ret;
			continue;
		}
		return -err;
	}
}

ssize_t chan_sock_read(struct ferry_channel *ch, void *buf, size_t len)
{
	for (;;) {
		ssize_t n = recv(ch->fd, buf, len, 0);
		int err;

		if (n > 0)
			return n;
		/* After shutdown(SHUT_RD) a blocked recv returns 0: not a real end. */
		if (n == 0)
			return atomic_load(&ch->shut) ? -ECANCELED : 0;
		err = errno;
		if (err == EINTR)
			continue;
		if (atomic_load(&ch->shut))
			return -ECANCELED;
		if (err == EAGAIN || err == EWOULDBLOCK) {
			int ret = sock_wait(ch->fd, POLLIN);
			if (ret < 0)
				return ret;
			continue;
		}
		return -err;
	}
}

void chan_sock_shutdown(struct ferry_channel *ch)
{
	shutdown(ch->fd, SHUT_RDWR);
}

int chan_sock_shutdown_write(struct ferry_channel *ch)
{
	if (shutdown(ch->fd, SHUT_WR) < 0)
		return -errno;
	return 0;
}

const struct chan_ops chan_sock_ops = {
    .name = "socket",
    .writev = chan_sock_writev,
    .read = chan_sock_read,
    .shutdown = chan_sock_shutdown,
    .shutdown_write = chan_sock_shutdown_write,
};

/* ---- names ------------------------------------------------------------------- */

void chan_sockaddr_name(const void *sa, socklen_t len, char *buf, size_t size)
{
	const struct sockaddr *s = sa;
	char addr[INET6_ADDRSTRLEN];

	if (len >= sizeof(struct sockaddr_in) && s->sa_family == AF_INET) {
		const struct sockaddr_in *in = sa;

		inet_ntop(AF_INET, &in->sin_addr, addr, sizeof(addr));
		snprintf(buf, size, "tcp:%s:%u", addr, ntohs(in->sin_port));
	} else if (len >= sizeof(struct sockaddr_in6) && s->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = sa;

		/* A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d; show a.b.c.d. */
		if (IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr)) {
			inet_ntop(AF_INET, &in6->sin6_addr.s6_addr[12], addr, sizeof(addr));
			snprintf(buf, size, "tcp:%s:%u", addr, ntohs(in6->sin6_port));
		} else {
			inet_ntop(AF_INET6, &in6->sin6_addr, addr, sizeof(addr));
			snprintf(buf, size, "tcp:[%s]:%u", addr, ntohs(in6->sin6_port));
		}
	} else if (s->sa_family == AF_UNIX) {
		const struct sockaddr_un *un = sa;
		size_t plen = len > offsetof(struct sockaddr_un, sun_path)
				  ? len - offsetof(struct sockaddr_un, sun_path)
				  : 0;

		snprintf(buf, size, "unix:%.*s", (int)strnlen(un->sun_path, plen), un->sun_path);
	} else {
		snprintf(buf, size, "socket");
	}
}

static void sock_set_nodelay(int fd)
{
	int one = 1;

	/* The writer batches already; Nagle would only delay control replies. */
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

static int sock_set_blocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0)
		return -errno;
	return 0;
}

/* getaddrinfo()'s codes as negative errno values, for the one error idiom. */
static int gai_to_errno(int rc)
{
	switch (rc) {
	case EAI_NONAME:
#ifdef EAI_NODATA
	case EAI_NODATA:
#endif
#ifdef EAI_ADDRFAMILY
	case EAI_ADDRFAMILY:
#endif
		return -ENXIO;
	case EAI_AGAIN:
		return -EAGAIN;
	case EAI_MEMORY:
		return -ENOMEM;
	case EAI_SYSTEM:
		return errno ? -errno : -EIO;
	default:
		return -EINVAL;
	}
}

static int sock_resolve(const struct ferry_uri *uri, bool passive, struct addrinfo **res)
{
	struct addrinfo hints = {.ai_socktype = SOCK_STREAM, .ai_protocol = IPPROTO_TCP};
	struct in_addr a4;
	char port[8];
	int rc;

	snprintf(port, sizeof(port), "%u", uri->port);
	hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
	/* Literal addresses must never reach DNS. */
	if (uri->host_is_ipv6 || inet_pton(AF_INET, uri->host, &a4) == 1)
		hints.ai_flags |= AI_NUMERICHOST;
	errno = 0;
	rc = getaddrinfo(uri->host, port, &hints, res);
	if (rc != 0) {
		chan_err("tcp: cannot resolve '%s': %s", uri->host, gai_strerror(rc));
		return gai_to_errno(rc);
	}
	return 0;
}

/* ---- connect ----------------------------------------------------------------- */

/*
 * Connect one socket to @sa before @deadline. Non-blocking connect + poll
 * bounds the wait; the socket is switched back to blocking afterwards.
 */
static int sock_connect_addr(const struct sockaddr *sa, socklen_t len, int64_t deadline, int *fdp)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int ret;

	if (fd < 0)
		return -errno;
	while (connect(fd, sa, len) < 0) {
		int err = errno;

		if (err == EINPROGRESS || err == EINTR) {
			/* The handshake goes on in the kernel; wait for its outcome. */
			struct pollfd p = {.fd = fd, .events = POLLOUT};
			socklen_t elen = sizeof(err);
			int r;

			do {
				r = poll(&p, 1, chan_remaining(deadline));
			} while (r < 0 && errno == EINTR);
			if (r < 0) {
				ret = -errno;
				goto out_close;
			}
			if (r == 0) {
				ret = -ETIMEDOUT;
				goto out_close;
			}
			if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &elen) < 0)
				err = errno;
			if (err) {
				ret = -err;
				goto out_close;
			}
			break;
		}
		if (err == EAGAIN && sa->sa_family == AF_UNIX) {
			/* A unix listener's backlog is full: no handshake to wait on,
			 * so try again shortly until the deadline. */
			int left = chan_remaining(deadline);
			struct timespec ts = {0, 10 * 1000 * 1000};

			if (left == 0) {
				ret = -ETIMEDOUT;
				goto out_close;
			}
			if (left > 0 && left < 10)
				ts.tv_nsec = (long)left * 1000 * 1000;
			nanosleep(&ts, NULL);
			continue;
		}
		ret = -err;
		goto out_close;
	}
	ret = sock_set_blocking(fd);
	if (ret < 0)
		goto out_close;
	*fdp = fd;
	return 0;

out_close:
	close(fd);
	return ret;
}

/*
 * A connect() to a local port nobody listens on can pick that very port as
 * its source port and connect to itself (TCP simultaneous open). Such a
 * socket has the same address at both ends.
 */
static bool sock_is_self_connected(int fd)
{
	struct sockaddr_storage a, b;
	socklen_t al = sizeof(a), bl = sizeof(b);

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	if (getsockname(fd, (struct sockaddr *)&a, &al) != 0 ||
	    getpeername(fd, (struct sockaddr *)&b, &bl) != 0)
		return false;
	return al == bl && memcmp(&a, &b, al) == 0;
}

static int sock_new_channel(int fd, enum ferry_uri_scheme scheme, struct ferry_channel **out)
{
	struct ferry_channel *ch;
	int ret = chan_alloc(scheme, &chan_sock_ops, &ch);

	if (ret < 0) {
		close(fd);
		return ret;
	}
	ch->fd = fd;
	ch->can_read = ch->can_write = true;
	if (scheme == FERRY_URI_TCP)
		sock_set_nodelay(fd);
	*out = ch;
	return 0;
}

static int tcp_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out)
{
	int64_t deadline = chan_deadline(timeout_ms);
	struct addrinfo *res, *ai;
	struct sockaddr_storage peer;
	socklen_t plen = sizeof(peer);
	char name[CHAN_PEER_MAX];
	int fd = -1, ret = -ENXIO;

	if (uri->host[0] == '\0') {
		chan_err("tcp::%u: connect needs a host (an empty host only listens)", uri->port);
		return FERRY_EBADURI;
	}
	if (uri->port == 0) {
		chan_err("tcp: cannot connect to port 0 of '%s'", uri->host);
		return FERRY_EBADURI;
	}
	ret = sock_resolve(uri, false, &res);
	if (ret < 0)
		return ret;
	/* Every address in turn, sharing the one deadline; the last error wins. */
	for (ai = res; ai; ai = ai->ai_next) {
		ret = sock_connect_addr(ai->ai_addr, ai->ai_addrlen, deadline, &fd);
		chan_sockaddr_name(ai->ai_addr, ai->ai_addrlen, name, sizeof(name));
		if (ret == 0)
			break;
		chan_dbg("%s: connect: %s", name, ferry_strerror(ret));
		if (ret == -ETIMEDOUT)
			break;
	}
	if (ret < 0) {
		if (ret == -ETIMEDOUT)
			chan_err("tcp: connect to %s port %u: timed out after %d ms", uri->host,
				 uri->port, timeout_ms);
		else
			chan_err("tcp: connect to %s port %u: %s", uri->host, uri->port,
				 ferry_strerror(ret));
		freeaddrinfo(res);
		return ret;
	}
	freeaddrinfo(res);
	if (sock_is_self_connected(fd)) {
		/* Nobody listened: the kernel chose the port itself as our source port. */
		chan_err("tcp: connect to %s port %u: connection refused (nobody listens; the "
			 "socket connected to itself)",
			 uri->host, uri->port);
		close(fd);
		return -ECONNREFUSED;
	}
	ret = sock_new_channel(fd, FERRY_URI_TCP, out);
	if (ret < 0)
		return ret;
	if (getpeername(fd, (struct sockaddr *)&peer, &plen) == 0)
		chan_sockaddr_name(&peer, plen, (*out)->peer, sizeof((*out)->peer));
	else
		chan_copy_cut((*out)->peer, sizeof((*out)->peer), name);
	return 0;
}

static int unix_addr(const char *path, struct sockaddr_un *sun, socklen_t *len)
{
	size_t plen = strnlen(path, sizeof(sun->sun_path));

	/* The parser bounds the path; a URI filled in by hand may not be. */
	if (plen == 0 || plen >= sizeof(sun->sun_path)) {
		chan_err("unix: socket path must be 1 to %zu bytes long",
			 sizeof(sun->sun_path) - 1);
		return FERRY_EBADURI;
	}
	memset(sun, 0, sizeof(*sun));
	sun->sun_family = AF_UNIX;
	memcpy(sun->sun_path, path, plen);
	*len = (socklen_t)sizeof(*sun);
	return 0;
}

static int unix_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out)
{
	struct sockaddr_un sun;
	socklen_t len;
	int fd, ret;

	ret = unix_addr(uri->path, &sun, &len);
	if (ret < 0)
		return ret;
	ret = sock_connect_addr((struct sockaddr *)&sun, len, chan_deadline(timeout_ms), &fd);
	if (ret < 0) {
		if (ret == -ETIMEDOUT)
			chan_err("unix: connect to %s: timed out after %d ms", uri->path,
				 timeout_ms);
		else
			chan_err("unix: connect to %s: %s", uri->path, ferry_strerror(ret));
		return ret;
	}
	ret = sock_new_channel(fd, FERRY_URI_UNIX, out);
	if (ret < 0)
		return ret;
	chan_set_peer(*out, "unix:%s", uri->path);
	return 0;
}

int chan_sock_connect(const struct ferry_uri *uri, int timeout_ms, struct ferry_channel **out)
{
	return uri->scheme == FERRY_URI_UNIX ? unix_connect(uri, timeout_ms, out)
					     : tcp_connect(uri, timeout_ms, out);
}

/* ---- listeners --------------------------------------------------------------- */

static int listen_on(const struct sockaddr *sa, socklen_t len, bool dual_stack, int *fdp)
{
	int fd = socket(sa->sa_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	int one = 1, zero = 0, ret;

	if (fd < 0)
		return -errno;
	/* A restarted destination must not wait out TIME_WAIT on its port. */
	if (sa->sa_family != AF_UNIX)
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (dual_stack)
		setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, sa, len) < 0 || listen(fd, LISTEN_BACKLOG) < 0) {
		ret = -errno;
		close(fd);
		return ret;
	}
	*fdp = fd;
	return 0;
}

static int tcp_listen(struct ferry_listener *l, const struct ferry_uri *uri)
{
	struct addrinfo *res, *ai;
	int ret;

	if (uri->host[0] == '\0') {
		/* Any address: one dual-stack IPv6 socket, or IPv4 where IPv6 is off. */
		struct sockaddr_in6 in6 = {.sin6_family = AF_INET6,
					   .sin6_port = htons(uri->port),
					   .sin6_addr = IN6ADDR_ANY_INIT};
		struct sockaddr_in in = {.sin_family = AF_INET,
					 .sin_port = htons(uri->port),
					 .sin_addr.s_addr = htonl(INADDR_ANY)};

		ret = listen_on((struct sockaddr *)&in6, sizeof(in6), true, &l->fd);
		if (ret == -EAFNOSUPPORT || ret == -EADDRNOTAVAIL)
			ret = listen_on((struct sockaddr *)&in, sizeof(in), false, &l->fd);
		if (ret < 0)
			chan_err("tcp: listen on port %u: %s", uri->port, ferry_strerror(ret));
		return ret;
	}
	ret = sock_resolve(uri, true, &res);
	if (ret < 0)
		return ret;
	ret = -ENXIO;
	for (ai = res; ai; ai = ai->ai_next) {
		ret = listen_on(ai->ai_addr, ai->ai_addrlen, false, &l->fd);
		if (ret == 0)
			break;
	}
	freeaddrinfo(res);
	if (ret < 0)
		chan_err("tcp: listen on %s port %u: %s", uri->host, uri->port,
			 ferry_strerror(ret));
	return ret;
}

/*
 * A socket file left by a dead process is replaced; one with a live listener
 * behind it, or a file that is no socket, is never touched.
 */
static int unix_clear_stale(const char *path, const struct sockaddr_un *sun, socklen_t len)
{
	struct stat st;
	int fd, ret;

	if (lstat(path, &st) < 0)
		return errno == ENOENT ? 0 : -errno;
	if (!S_ISSOCK(st.st_mode)) {
		chan_err("unix: %s exists and is not a socket", path);
		return -EEXIST;
	}
	fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (fd < 0)
		return -errno;
	ret = connect(fd, (const struct sockaddr *)sun, len) == 0 ? 0 : -errno;
	close(fd);
	if (ret == -ECONNREFUSED) {
		chan_dbg("unix: replacing stale socket %s", path);
		return unlink(path) < 0 && errno != ENOENT ? -errno : 0;
	}
	chan_err("unix: %s: another process is listening there", path);
	return -EADDRINUSE;
}

static int unix_listen(struct ferry_listener *l, const struct ferry_uri *uri)
{
	struct sockaddr_un sun;
	struct stat st;
	socklen_t len;
	int ret;

	ret = unix_addr(uri->path, &sun, &len);
	if (ret < 0)
		return ret;
	ret = unix_clear_stale(uri->path, &sun, len);
	if (ret < 0)
		return ret;
	ret = listen_on((struct sockaddr *)&sun, len, false, &l->fd);
	if (ret < 0) {
		chan_err("unix: listen on %s: %s", uri->path, ferry_strerror(ret));
		return ret;
	}
	/* Remember which file is ours, so destroy never removes a successor's. */
	if (lstat(uri->path, &st) == 0) {
		l->own_path = true;
		l->dev = st.st_dev;
		l->ino = st.st_ino;
		memcpy(l->path, uri->path, strlen(uri->path) + 1);
	}
	snprintf(l->name, sizeof(l->name), "unix:%.*s", FERRY_URI_UNIX_MAX - 1, uri->path);
	return 0;
}

int ferry_listener_create(const struct ferry_uri *uri, struct ferry_listener **out)
{
	struct ferry_listener *l;
	int ret;

	*out = NULL;
	if (uri->scheme != FERRY_URI_TCP && uri->scheme != FERRY_URI_UNIX) {
		chan_err("listen: a %s: URI cannot listen (only tcp: and unix:)",
			 ferry_uri_scheme_name(uri->scheme));
		return FERRY_EBADURI;
	}
	l = calloc(1, sizeof(*l));
	if (!l)
		return -ENOMEM;
	l->fd = -1;
	l->scheme = uri->scheme;
	atomic_init(&l->shut, false);
	l->wake_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
	if (l->wake_fd < 0) {
		ret = -errno;
		goto err_destroy;
	}
	ret = uri->scheme == FERRY_URI_TCP ? tcp_listen(l, uri) : unix_listen(l, uri);
	if (ret < 0)
		goto err_destroy;
	if (uri->scheme == FERRY_URI_TCP) {
		struct sockaddr_storage ss;
		socklen_t len = sizeof(ss);

		if (getsockname(l->fd, (struct sockaddr *)&ss, &len) < 0) {
			ret = -errno;
			goto err_destroy;
		}
		l->port = ss.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&ss)->sin6_port)
						   : ntohs(((struct sockaddr_in *)&ss)->sin_port);
		chan_sockaddr_name(&ss, len, l->name, sizeof(l->name));
	}
	chan_dbg("listening on %s", l->name);
	*out = l;
	return 0;

err_destroy:
	ferry_listener_destroy(l);
	return ret;
}

int chan_listener_fd(const struct ferry_listener *l)
{
	return l->fd;
}

int ferry_listener_port(const struct ferry_listener *l)
{
	return l->port;
}

const char *ferry_listener_name(const struct ferry_listener *l)
{
	return l->name;
}

int ferry_listener_accept(struct ferry_listener *l, int timeout_ms, struct ferry_channel **out)
{
	int64_t deadline = chan_deadline(timeout_ms);
	struct sockaddr_storage ss;
	socklen_t len;
	int fd, ret;

	*out = NULL;
	for (;;) {
		struct pollfd p[2] = {{.fd = l->fd, .events = POLLIN},
				      {.fd = l->wake_fd, .events = POLLIN}};
		int r;

		if (atomic_load(&l->shut))
			return -ECANCELED;
		r = poll(p, 2, chan_remaining(deadline));
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			ret = -errno;
			chan_err("%s: accept: %s", l->name, ferry_strerror(ret));
			return ret;
		}
		if (p[1].revents || atomic_load(&l->shut))
			return -ECANCELED;
		if (r == 0) {
			chan_err("%s: no connection within %d ms", l->name, timeout_ms);
			return -ETIMEDOUT;
		}
		len = sizeof(ss);
		fd = accept4(l->fd, (struct sockaddr *)&ss, &len, SOCK_CLOEXEC);
		if (fd >= 0)
			break;
		/* The peer gave up between poll and accept: keep waiting. */
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR ||
		    errno == ECONNABORTED || errno == EPROTO)
			continue;
		ret = -errno;
		chan_err("%s: accept: %s", l->name, ferry_strerror(ret));
		return ret;
	}
	ret = sock_new_channel(fd, l->scheme, out);
	if (ret < 0)
		return ret;
	/* A unix client has no name of its own: name the socket it came through. */
	if (l->scheme == FERRY_URI_UNIX)
		chan_copy_cut((*out)->peer, sizeof((*out)->peer), l->name);
	else
		chan_sockaddr_name(&ss, len, (*out)->peer, sizeof((*out)->peer));
	chan_dbg("%s: accepted %s", l->name, (*out)->peer);
	return 0;
}

void ferry_listener_shutdown(struct ferry_listener *l)
{
	uint64_t one = 1;
	ssize_t n;

	atomic_store(&l->shut, true);
	n = write(l->wake_fd, &one, sizeof(one));
	(void)n; /* a full eventfd is already readable: nothing to do */
}

void ferry_listener_destroy(struct ferry_listener *l)
{
	struct stat st;

	if (!l)
		return;
	if (l->fd >= 0)
		close(l->fd);
	if (l->own_path && lstat(l->path, &st) == 0 && st.st_dev == l->dev && st.st_ino == l->ino)
		unlink(l->path);
	if (l->wake_fd >= 0)
		close(l->wake_fd);
	free(l);
}
