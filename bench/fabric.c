/* SPDX-License-Identifier: MIT */
/*
 * The fabric's ceiling, measured by ferry itself in the same session as the
 * migrations: N streams writing messages of ferry's size (TCP or unix
 * sockets, read on the other end into one buffer), or RDMA WRITEs through
 * ferry's rdma/ data path on the local device; and memcpy bandwidth as the
 * reference for what one core can copy.
 */
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/rdma.h>

#include "harness.h"

static double now_s(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

double bench_memcpy_bandwidth(void)
{
	const size_t len = 64u << 20;
	double best = 0;
	char *a = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char *b = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (a == MAP_FAILED || b == MAP_FAILED)
		goto out;
	memset(a, 0x5a, len);
	memset(b, 0xa5, len);
	for (int i = 0; i < 5; i++) {
		double t0 = now_s(), dt;

		memcpy(i % 2 ? a : b, i % 2 ? b : a, len);
		dt = now_s() - t0;
		if (dt > 0 && (double)len / dt > best)
			best = (double)len / dt;
	}
	/* Keep the copies from being optimised away. */
	if (a[len / 2] == 0)
		best = 0;
out:
	if (a != MAP_FAILED)
		munmap(a, len);
	if (b != MAP_FAILED)
		munmap(b, len);
	return best;
}

/* "tcp:HOST:PORT" or "unix:PATH" into a socket address. */
static int resolve(const char *uri, struct sockaddr_storage *ss, socklen_t *sl, int *family)
{
	if (strncmp(uri, "unix:", 5) == 0) {
		struct sockaddr_un *un = (struct sockaddr_un *)ss;

		if (strlen(uri + 5) >= sizeof(un->sun_path) || !uri[5])
			return -EINVAL;
		memset(un, 0, sizeof(*un));
		un->sun_family = AF_UNIX;
		strcpy(un->sun_path, uri + 5);
		*sl = sizeof(*un);
		*family = AF_UNIX;
		return 0;
	}
	if (strncmp(uri, "tcp:", 4) == 0) {
		char host[256];
		const char *colon = strrchr(uri + 4, ':');
		struct addrinfo hints = {.ai_socktype = SOCK_STREAM}, *ai;
		size_t hl;

		if (!colon)
			return -EINVAL;
		hl = (size_t)(colon - (uri + 4));
		if (hl >= sizeof(host))
			return -EINVAL;
		memcpy(host, uri + 4, hl);
		host[hl] = 0;
		if (getaddrinfo(hl ? host : NULL, colon + 1, &hints, &ai) != 0)
			return -EHOSTUNREACH;
		memcpy(ss, ai->ai_addr, ai->ai_addrlen);
		*sl = ai->ai_addrlen;
		*family = ai->ai_family;
		freeaddrinfo(ai);
		return 0;
	}
	return -EINVAL;
}

/*
 * Both ends of the stream ceiling move memory the way a migration does: each
 * stream cycles through its own share of RING_TOTAL bytes (at least one
 * message), so the data is not cache-resident like a single hot buffer
 * would be, and each stream has a thread of its own reading whole messages
 * (MSG_WAITALL), as a data-path lane does.
 */
#define RING_TOTAL (256ull << 20)

static uint64_t ring_len(uint32_t streams, uint64_t msg)
{
	uint64_t per = RING_TOTAL / streams / msg * msg;

	return per > msg ? per : msg;
}

struct sink_stream {
	int fd;
	uint64_t msg_size, ring;
	char *buf;
	uint64_t bytes;
	double t_first, t_last;
	int err;
	pthread_t th;
};

struct bench_sink {
	int lfd;
	uint32_t streams;
	uint64_t msg_size;
	uint64_t ring;
	struct sink_stream *st; /* buffers ready before the port is given out */
	int timeout_ms;
	pthread_t th;
	uint64_t bytes;
	double t_first, t_last;
	int err;
	char path[108];
};

static void *sink_stream_main(void *a)
{
	struct sink_stream *st = a;
	uint64_t pos = 0;

	for (;;) {
		ssize_t r = recv(st->fd, st->buf + pos, st->msg_size, MSG_WAITALL);

		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0) {
			st->err = -errno;
			break;
		}
		if (r == 0)
			break;
		/* The clock starts when the first message is in: it is not counted. */
		if (st->t_first == 0)
			st->t_first = now_s();
		else
			st->bytes += (uint64_t)r;
		st->t_last = now_s();
		pos = pos + st->msg_size >= st->ring ? 0 : pos + st->msg_size;
	}
	return NULL;
}

/* Accept every stream, read each on a thread of its own until EOF, and add them up. */
static void *sink_main(void *a)
{
	struct bench_sink *s = a;
	struct sink_stream *st = s->st;
	uint32_t accepted = 0, started = 0;

	for (; accepted < s->streams; accepted++) {
		struct pollfd lp = {s->lfd, POLLIN, 0};
		struct timeval tv = {s->timeout_ms / 1000, (s->timeout_ms % 1000) * 1000};

		if (poll(&lp, 1, s->timeout_ms) != 1) {
			s->err = -ETIMEDOUT;
			goto out;
		}
		st[accepted].fd = accept4(s->lfd, NULL, NULL, SOCK_CLOEXEC);
		if (st[accepted].fd < 0) {
			s->err = -errno;
			goto out;
		}
		/* A sender that stops sending does not hold the sink forever. */
		setsockopt(st[accepted].fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	}
	for (; started < s->streams; started++)
		if (pthread_create(&st[started].th, NULL, sink_stream_main, &st[started])) {
			s->err = -EAGAIN;
			break;
		}
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(st[i].th, NULL);
		if (st[i].err && !s->err)
			s->err = st[i].err;
		if (!st[i].bytes)
			continue;
		if (!s->bytes || st[i].t_first < s->t_first)
			s->t_first = st[i].t_first;
		if (st[i].t_last > s->t_last)
			s->t_last = st[i].t_last;
		s->bytes += st[i].bytes;
	}
out:
	for (uint32_t i = 0; i < accepted; i++)
		close(st[i].fd);
	return NULL;
}

static void sink_free_streams(struct bench_sink *s)
{
	for (uint32_t i = 0; s->st && i < s->streams; i++)
		if (s->st[i].buf && s->st[i].buf != MAP_FAILED)
			munmap(s->st[i].buf, s->ring);
	free(s->st);
	s->st = NULL;
}

int bench_sink_start(const char *uri, uint32_t streams, uint64_t msg_size, int timeout_ms,
		     struct bench_sink **out, int *port)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int family, ret, one = 1;
	struct bench_sink *s;

	*out = NULL;
	if (!streams || streams > FERRY_MAX_CHANNELS || !msg_size)
		return -EINVAL;
	ret = resolve(uri, &ss, &sl, &family);
	if (ret)
		return ret;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->streams = streams;
	s->msg_size = msg_size;
	s->timeout_ms = timeout_ms;
	s->ring = ring_len(streams, msg_size);
	s->lfd = -1;
	s->st = calloc(streams, sizeof(*s->st));
	if (!s->st) {
		free(s);
		return -ENOMEM;
	}
	/* Populated now, before any sender is told the port: no faults while measuring. */
	for (uint32_t i = 0; i < streams; i++) {
		s->st[i].msg_size = msg_size;
		s->st[i].ring = s->ring;
		s->st[i].buf =
		    mmap(NULL, s->ring, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (s->st[i].buf == MAP_FAILED) {
			ret = -ENOMEM;
			goto fail;
		}
		memset(s->st[i].buf, 0, s->ring);
	}
	s->lfd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (s->lfd < 0)
		goto fail_errno;
	setsockopt(s->lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (family == AF_UNIX) {
		memcpy(s->path, ((struct sockaddr_un *)&ss)->sun_path, sizeof(s->path));
		unlink(s->path);
	}
	if (bind(s->lfd, (struct sockaddr *)&ss, sl) < 0 || listen(s->lfd, (int)streams) < 0)
		goto fail_errno;
	if (port) {
		*port = 0;
		if (family != AF_UNIX) {
			sl = sizeof(ss);
			getsockname(s->lfd, (struct sockaddr *)&ss, &sl);
			*port = ntohs(family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
							 : ((struct sockaddr_in *)&ss)->sin_port);
		}
	}
	ret = -pthread_create(&s->th, NULL, sink_main, s);
	if (ret)
		goto fail;
	*out = s;
	return 0;
fail_errno:
	ret = -errno;
fail:
	if (s->lfd >= 0)
		close(s->lfd);
	sink_free_streams(s);
	free(s);
	return ret;
}

int bench_sink_finish(struct bench_sink *s, uint64_t *bytes, double *seconds)
{
	int ret;

	pthread_join(s->th, NULL);
	close(s->lfd);
	sink_free_streams(s);
	if (s->path[0])
		unlink(s->path);
	*bytes = s->bytes;
	*seconds = s->t_last - s->t_first;
	ret = s->err;
	free(s);
	return ret;
}

struct sender {
	int fd;
	uint64_t msg_size, ring;
	double deadline;
	volatile int *stop;
	const char *buf;
	int err;
};

static void *sender_main(void *a)
{
	struct sender *s = a;
	uint64_t pos = 0;

	while (now_s() < s->deadline && !(s->stop && *s->stop)) {
		uint64_t off = 0;

		while (off < s->msg_size) {
			ssize_t w =
			    send(s->fd, s->buf + pos + off, s->msg_size - off, MSG_NOSIGNAL);

			if (w < 0) {
				if (errno == EINTR)
					continue;
				s->err = -errno;
				return NULL;
			}
			off += (uint64_t)w;
		}
		pos = pos + s->msg_size >= s->ring ? 0 : pos + s->msg_size;
	}
	return NULL;
}

int bench_stream_send(const char *uri, uint32_t streams, uint64_t msg_size, uint64_t ms,
		      volatile int *stop)
{
	struct sockaddr_storage ss;
	socklen_t sl;
	int family, ret;
	struct sender snd[FERRY_MAX_CHANNELS];
	pthread_t th[FERRY_MAX_CHANNELS];
	uint32_t opened = 0, started = 0;
	uint64_t ring, total;
	char *buf;

	if (!streams || streams > FERRY_MAX_CHANNELS || !msg_size)
		return -EINVAL;
	ret = resolve(uri, &ss, &sl, &family);
	if (ret)
		return ret;
	ring = ring_len(streams, msg_size);
	total = ring * streams;
	buf = mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return -ENOMEM;
	/* Non-zero, page-specific data, like the guest's. */
	for (uint64_t i = 0; i < total; i += 8) {
		uint64_t v = (i >> 12) * 0x9e3779b97f4a7c15ull + i + 1;

		memcpy(buf + i, &v, 8);
	}
	for (; opened < streams; opened++) {
		int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);

		if (fd < 0 || connect(fd, (struct sockaddr *)&ss, sl) < 0) {
			ret = -errno;
			if (fd >= 0)
				close(fd);
			goto out;
		}
		snd[opened] = (struct sender){.fd = fd,
					      .msg_size = msg_size,
					      .ring = ring,
					      .stop = stop,
					      .buf = buf + ring * opened};
	}
	for (uint32_t i = 0; i < streams; i++)
		snd[i].deadline = now_s() + (double)ms / 1e3;
	for (; started < streams; started++)
		if (pthread_create(&th[started], NULL, sender_main, &snd[started])) {
			ret = -EAGAIN;
			break;
		}
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		if (snd[i].err && !ret)
			ret = snd[i].err;
	}
out:
	for (uint32_t i = 0; i < opened; i++)
		close(snd[i].fd);
	munmap(buf, total);
	return ret;
}

/* ---- RDMA WRITE through ferry's rdma/ data path, like tests/rdma/rdma_bw.c ------ */

/* Each lane writes its own slice of a region of 8 messages per lane, round and round. */
static uint64_t rdma_region(uint32_t lanes, uint64_t msg)
{
	return (uint64_t)lanes * msg * 8;
}

static const uint8_t rdma_id[FERRY_RDMA_ID_LEN] = "ferry-bench-ceil";

struct bench_rdma_sink {
	struct ferry_rdma_dest *dst;
	struct ferry_rdma_block blk;
	uint32_t lanes;
};

int bench_rdma_sink_start(const char *addr, uint32_t lanes, uint64_t msg,
			  struct bench_rdma_sink **out, int *port)
{
	struct bench_rdma_sink *s;
	struct ferry_rdma_dest_attr da;
	uint64_t region = rdma_region(lanes, msg);
	int ret;

	*out = NULL;
	if (!lanes || lanes > FERRY_RDMA_MAX_LANES || !msg)
		return -EINVAL;
	if (ferry_rdma_devices(NULL, 0) < 1)
		return FERRY_ENORDMA;
	s = calloc(1, sizeof(*s));
	if (!s)
		return -ENOMEM;
	s->blk.length = region;
	s->blk.host =
	    mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s->blk.host == MAP_FAILED) {
		free(s);
		return -ENOMEM;
	}
	ferry_rdma_dest_attr_init(&da);
	da.host = addr;
	memcpy(da.id, rdma_id, sizeof(da.id));
	da.lanes = lanes;
	da.blocks = &s->blk;
	da.n_blocks = 1;
	ret = ferry_rdma_dest_create(&da, &s->dst);
	if (ret) {
		munmap(s->blk.host, region);
		free(s);
		return ret;
	}
	*port = ferry_rdma_dest_port(s->dst);
	*out = s;
	return 0;
}

int bench_rdma_sink_wait(struct bench_rdma_sink *s, int timeout_ms)
{
	int ret = ferry_rdma_dest_accept(s->dst, timeout_ms);

	/* Every lane connected and flushed: all the writes are placed. */
	if (!ret)
		ret = ferry_rdma_dest_wait_flush(s->dst, 1, timeout_ms);
	return ret;
}

void bench_rdma_sink_close(struct bench_rdma_sink *s)
{
	ferry_rdma_dest_close(s->dst);
	munmap(s->blk.host, s->blk.length);
	free(s);
}

struct rdma_lane {
	struct ferry_rdma_source *src;
	uint32_t index;
	uint64_t off, len, size;
	double deadline;
	volatile int *stop;
	uint64_t bytes;
	int err;
};

static void *rdma_lane_main(void *a)
{
	struct rdma_lane *l = a;
	uint64_t pos = 0;

	while (!l->err && now_s() < l->deadline && !(l->stop && *l->stop)) {
		struct ferry_rdma_run runs[16];
		size_t k;

		for (k = 0; k < 16; k++) {
			if (pos + l->size > l->len)
				pos = 0;
			runs[k] = (struct ferry_rdma_run){
			    .block = 0, .offset = l->off + pos, .length = l->size};
			pos += l->size;
		}
		l->err = ferry_rdma_source_write(l->src, l->index, runs, k);
		if (!l->err)
			l->bytes += k * l->size;
	}
	if (!l->err)
		l->err = ferry_rdma_source_flush(l->src, l->index, 1);
	return NULL;
}

int bench_rdma_send(const char *addr, int port, uint32_t lanes, uint64_t msg, uint64_t ms,
		    volatile int *stop, double *bytes_per_s)
{
	uint64_t region = rdma_region(lanes, msg), bytes = 0;
	struct ferry_rdma_source_attr sa;
	struct ferry_rdma_source *src = NULL;
	struct ferry_rdma_block blk = {NULL, region};
	struct rdma_lane l[FERRY_RDMA_MAX_LANES];
	pthread_t th[FERRY_RDMA_MAX_LANES];
	uint32_t started = 0;
	double t0, t1;
	int ret;

	*bytes_per_s = 0;
	if (!lanes || lanes > FERRY_RDMA_MAX_LANES || !msg || port <= 0 || port > 65535)
		return -EINVAL;
	blk.host = mmap(NULL, region, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (blk.host == MAP_FAILED)
		return -ENOMEM;
	memset(blk.host, 0x5a, region);
	ferry_rdma_source_attr_init(&sa);
	sa.host = addr;
	sa.port = (uint16_t)port;
	memcpy(sa.id, rdma_id, sizeof(sa.id));
	sa.lanes = lanes;
	sa.blocks = &blk;
	sa.n_blocks = 1;
	/*
	 * Few large writes in flight: a slow fabric (soft-RoCE in emulated guests, tens of
	 * MiB/s) must complete the whole ring within the timeout.
	 */
	sa.max_inflight = 8;
	sa.timeout_ms = 30000;
	ret = ferry_rdma_source_create(&sa, &src);
	if (!ret)
		ret = ferry_rdma_source_connect(src);
	if (ret)
		goto out;
	t0 = now_s();
	for (; started < lanes; started++) {
		l[started] = (struct rdma_lane){.src = src,
						.index = started,
						.off = region / lanes * started,
						.len = region / lanes,
						.size = msg,
						.deadline = t0 + (double)ms / 1e3,
						.stop = stop};
		if (pthread_create(&th[started], NULL, rdma_lane_main, &l[started])) {
			ret = -EAGAIN;
			break;
		}
	}
	for (uint32_t i = 0; i < started; i++) {
		pthread_join(th[i], NULL);
		bytes += l[i].bytes;
		if (l[i].err && !ret)
			ret = l[i].err;
	}
	t1 = now_s();
	if (!ret && t1 > t0)
		*bytes_per_s = (double)bytes / (t1 - t0);
out:
	if (src) {
		if (ret)
			ferry_rdma_source_destroy(src);
		else
			ferry_rdma_source_close(src);
	}
	munmap(blk.host, region);
	return ret;
}

/* The address of the first RDMA device's netdev: loopback through the device needs it. */
int bench_rdma_local_addr(char *addr, size_t len)
{
	struct ferry_rdma_device_info dev;
	char cmd[128];
	FILE *p;

	if (ferry_rdma_devices(&dev, 1) < 1 || !dev.netdev[0])
		return FERRY_ENORDMA;
	snprintf(cmd, sizeof(cmd),
		 "ip -4 -o addr show dev %.32s 2>/dev/null | awk '{print $4}' | cut -d/ -f1",
		 dev.netdev);
	p = popen(cmd, "r");
	addr[0] = 0;
	if (p) {
		if (!fgets(addr, (int)len, p))
			addr[0] = 0;
		pclose(p);
	}
	addr[strcspn(addr, "\n")] = 0;
	return addr[0] ? 0 : FERRY_ENORDMA;
}

int bench_ceiling_local(struct bench_ceiling *c, uint64_t ms, const char *dir, volatile int *stop)
{
	char uri[256];
	struct bench_sink *sink;
	uint64_t bytes;
	double secs;
	int port, ret, sret;

	c->bytes_per_s = 0;
	if (c->transport == BENCH_TR_RDMA) {
		struct bench_rdma_sink *rs;
		char addr[64];
		double r = 0;

		ret = bench_rdma_local_addr(addr, sizeof(addr));
		if (!ret)
			ret = bench_rdma_sink_start(addr, c->streams, c->msg_size, &rs, &port);
		if (!ret) {
			ret = bench_rdma_send(addr, port, c->streams, c->msg_size, ms, stop, &r);
			bench_rdma_sink_close(rs);
		}
		if (!ret && r > 0) {
			c->bytes_per_s = r;
			snprintf(c->method, sizeof(c->method), "rdma write");
			return 0;
		}
		/* The engine falls back to TCP without a device; so does its ceiling. */
		snprintf(c->method, sizeof(c->method), "tcp streams (no rdma: %s)",
			 ret == FERRY_ENORDMA ? "no device" : "failed");
	} else {
		snprintf(c->method, sizeof(c->method), "%s streams",
			 bench_transport_name(c->transport));
	}
	if (c->transport == BENCH_TR_UNIX)
		snprintf(uri, sizeof(uri), "unix:%s/ceiling.sock", dir);
	else
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:0");
	ret = bench_sink_start(uri, c->streams, c->msg_size, 10000, &sink, &port);
	if (ret)
		return ret;
	if (c->transport != BENCH_TR_UNIX)
		snprintf(uri, sizeof(uri), "tcp:127.0.0.1:%d", port);
	ret = bench_stream_send(uri, c->streams, c->msg_size, ms, stop);
	sret = bench_sink_finish(sink, &bytes, &secs);
	if (!ret)
		ret = sret;
	if (!ret && secs > 0)
		c->bytes_per_s = (double)bytes / secs;
	return ret;
}
