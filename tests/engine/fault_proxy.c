/* SPDX-License-Identifier: MIT */
/*
 * The fault proxy of fault_proxy.h: one thread, poll() over the listener and
 * every connection pair, forwarding in 64 KiB reads.
 */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "fault_proxy.h"

struct px_pair {
	int c, s;    /* client (source side), server (destination side) */
	uint64_t up; /* bytes forwarded client -> server */
	int index;
	bool stalled;
	uint64_t since_arm[2];		/* bytes seen per direction (0 up, 1 down) since arming */
	uint8_t win[2][PX_PATTERN_MAX]; /* the last bytes seen, per direction */
	size_t wlen[2];
};

static void px_reset(int fd)
{
	struct linger lg = {.l_onoff = 1, .l_linger = 0};

	/* An abortive close: the peer gets a reset, as when a link dies. */
	setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
	close(fd);
}

static int px_connect(const struct proxy *px, int port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET,
				 .sin_port = htons((uint16_t)port),
				 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	if (px->dest_host[0] && inet_pton(AF_INET, px->dest_host, &sa.sin_addr) != 1)
		return -1;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	if (fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
		close(fd);
		return -1;
	}
	return fd;
}

static bool px_write(int fd, const uint8_t *p, size_t n)
{
	while (n) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);

		if (w <= 0)
			return false;
		p += w;
		n -= (size_t)w;
	}
	return true;
}

/*
 * Where in @buf (@n bytes, direction @dir of @pr) the general fault strikes:
 * its index, or -1 when not in this chunk. Advances the counters.
 */
static ssize_t fault_position(struct proxy *px, struct px_pair *pr, int dir, const uint8_t *buf,
			      size_t n)
{
	const struct px_fault *f = &px->fault;
	uint64_t *seen = &pr->since_arm[dir];

	bool armed = atomic_load(&px->armed);

	if (f->kind == PX_FAULT_NONE || atomic_load(&px->fault_done) || pr->index != f->conn ||
	    (dir == 1) != f->down || (!armed && !f->pattern))
		return -1;
	for (size_t i = 0; i < n; i++) {
		if (armed && *seen < f->after) {
			(*seen)++;
			continue;
		}
		if (armed)
			(*seen)++;
		if (!f->pattern)
			return (ssize_t)i;
		/*
		 * A window of the last pattern_len bytes, compared at every byte; fed
		 * before arming too, so a pattern that began before it still matches.
		 */
		if (pr->wlen[dir] < f->pattern_len) {
			pr->win[dir][pr->wlen[dir]++] = buf[i];
		} else {
			memmove(pr->win[dir], pr->win[dir] + 1, f->pattern_len - 1);
			pr->win[dir][f->pattern_len - 1] = buf[i];
		}
		if (armed && pr->wlen[dir] == f->pattern_len &&
		    memcmp(pr->win[dir], f->pattern, f->pattern_len) == 0) {
			ssize_t start = (ssize_t)i - (ssize_t)f->pattern_len + 1;

			if (f->kind == PX_FAULT_CORRUPT)
				start += (ssize_t)f->pattern_at;
			/* A match that began in an earlier chunk strikes at this one's start. */
			return start < 0 ? 0 : start;
		}
	}
	return -1;
}

static void pair_close(struct px_pair *pr, bool reset)
{
	if (reset) {
		px_reset(pr->c);
		px_reset(pr->s);
	} else {
		shutdown(pr->s, SHUT_RDWR);
		shutdown(pr->c, SHUT_RDWR);
		close(pr->c);
		close(pr->s);
	}
	pr->c = pr->s = -1;
}

/*
 * Forward @n bytes of direction @dir from @pr, applying the general fault.
 * Returns false when the pair is finished (closed by the fault or dead).
 */
static bool forward(struct proxy *px, struct px_pair *pr, int dir, uint8_t *buf, size_t n)
{
	int to = dir == 0 ? pr->s : pr->c;
	ssize_t at = fault_position(px, pr, dir, buf, n);

	if (at < 0)
		return px_write(to, buf, n);
	px->fault_offset = (dir == 0 ? pr->up - n : 0) + (uint64_t)at;
	if (px->on_strike)
		px->on_strike(px->strike_opaque);
	/* Before acting: the engines may see the fault and finish before this thread goes on. */
	atomic_store(&px->fault_done, true);
	switch (px->fault.kind) {
	case PX_FAULT_CORRUPT:
		buf[at] ^= 0x5a;
		return px_write(to, buf, n);
	case PX_FAULT_STALL:
		(void)px_write(to, buf, (size_t)at);
		pr->stalled = true;
		return true;
	case PX_FAULT_RESET:
	case PX_FAULT_KILL:
		(void)px_write(to, buf, (size_t)at);
		pair_close(pr, px->fault.kind == PX_FAULT_RESET);
		return false;
	default:
		return px_write(to, buf, n);
	}
}

static void *px_thread(void *arg)
{
	struct proxy *px = arg;
	struct px_pair pairs[PX_MAX];
	int npairs = 0, stray = -1;
	static uint8_t buf[1 << 16];

	while (!atomic_load(&px->stop)) {
		struct pollfd p[1 + 2 * PX_MAX + 1];
		int np = 0;

		p[np++] = (struct pollfd){.fd = px->listen_fd, .events = POLLIN};
		for (int i = 0; i < npairs; i++) {
			/* A stalled pair is not read: its bytes wait in the kernel. */
			short ev = pairs[i].stalled ? 0 : POLLIN;

			p[np++] = (struct pollfd){.fd = pairs[i].c, .events = ev};
			p[np++] = (struct pollfd){.fd = pairs[i].s, .events = ev};
		}
		if (stray >= 0)
			p[np++] = (struct pollfd){.fd = stray, .events = POLLIN};
		if (poll(p, (nfds_t)np, 20) <= 0)
			continue;
		if (p[0].revents && npairs < PX_MAX) {
			int c = accept4(px->listen_fd, NULL, NULL, SOCK_CLOEXEC);
			int idx = atomic_load(&px->conns);

			if (c >= 0) {
				if (idx == px->stray_before && stray < 0) {
					static const char junk[64] = "GET / HTTP/1.0\r\n\r\n";

					stray = px_connect(px, px->dest_port);
					if (stray >= 0)
						px_write(stray, (const uint8_t *)junk,
							 sizeof(junk));
				}
				pairs[npairs] = (struct px_pair){
				    .c = c, .s = px_connect(px, px->dest_port), .index = idx};
				if (pairs[npairs].s < 0)
					close(c);
				else
					npairs++;
				atomic_fetch_add(&px->conns, 1);
			}
		}
		for (int i = 0, k = 1; i < npairs; i++, k += 2) {
			struct px_pair *pr = &pairs[i];
			bool dead = false;

			if (pr->c < 0 || pr->stalled)
				continue;
			if (p[k].revents) {
				ssize_t n = recv(pr->c, buf, sizeof(buf), 0);

				if (n <= 0) {
					dead = true;
				} else {
					if (pr->index == px->corrupt_conn && pr->up < 17 &&
					    pr->up + (uint64_t)n > 16)
						buf[16 - pr->up] ^= 0x5a; /* first byte of the id */
					if (pr->index == 0) {
						if (px->main_len + (size_t)n > px->main_cap) {
							px->main_cap =
							    (px->main_len + (size_t)n) * 2;
							px->main = realloc(px->main, px->main_cap);
						}
						memcpy(px->main + px->main_len, buf, (size_t)n);
						px->main_len += (size_t)n;
					}
					pr->up += (uint64_t)n;
					if (!forward(px, pr, 0, buf, (size_t)n)) {
						if (pr->c < 0)
							continue;
						dead = true;
					}
					if (pr->c >= 0 && pr->index == px->cut_conn &&
					    pr->up >= px->cut_after) {
						atomic_store(&px->cut_done, true);
						pair_close(pr, true);
						continue;
					}
				}
			}
			if (!dead && !pr->stalled && p[k + 1].revents) {
				ssize_t n = recv(pr->s, buf, sizeof(buf), 0);

				if (n <= 0) {
					dead = true;
				} else if (!forward(px, pr, 1, buf, (size_t)n)) {
					if (pr->c < 0)
						continue;
					dead = true;
				}
			}
			if (dead) {
				/* Pass the end on: a half-close stays a half-close. */
				shutdown(pr->s, SHUT_WR);
				shutdown(pr->c, SHUT_WR);
				close(pr->c);
				close(pr->s);
				pr->c = pr->s = -1;
			}
		}
		if (stray >= 0 && p[np - 1].revents) {
			ssize_t n = recv(stray, buf, sizeof(buf), 0);

			/* The destination answers and closes: that is the refusal. */
			if (n <= 0) {
				atomic_store(&px->stray_refused, true);
				close(stray);
				stray = -2;
			}
		}
	}
	for (int i = 0; i < npairs; i++)
		if (pairs[i].c >= 0) {
			close(pairs[i].c);
			close(pairs[i].s);
		}
	if (stray >= 0)
		close(stray);
	return NULL;
}

void px_start(struct proxy *px, int dest_port)
{
	struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t len = sizeof(sa);

	px->dest_port = dest_port;
	if (px->dest_host[0])
		cr_assert_eq(inet_pton(AF_INET, px->dest_host, &sa.sin_addr), 1, "%s",
			     px->dest_host);
	px->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(px->listen_fd, 0);
	cr_assert_eq(bind(px->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(px->listen_fd, 16), 0);
	cr_assert_eq(getsockname(px->listen_fd, (struct sockaddr *)&sa, &len), 0);
	px->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&px->th, NULL, px_thread, px), 0);
}

void px_arm(struct proxy *px)
{
	atomic_store(&px->armed, true);
}

void px_stop(struct proxy *px)
{
	atomic_store(&px->stop, true);
	pthread_join(px->th, NULL);
	close(px->listen_fd);
	free(px->main);
	px->main = NULL;
}

void px_init(struct proxy *px)
{
	memset(px, 0, sizeof(*px));
	px->cut_conn = px->corrupt_conn = px->stray_before = -1;
	px->fault.conn = -1;
}
