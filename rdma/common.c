/* SPDX-License-Identifier: MIT */
/*
 * What every file of the rdma module shares: time and deadlines, the single
 * conversion of errno into -errno (with its log message), the sticky failure,
 * and addresses.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "internal.h"

int64_t rdm_now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t rdm_deadline(int timeout_ms)
{
	if (timeout_ms < 0)
		return INT64_MAX;
	return rdm_now_ns() + (int64_t)timeout_ms * 1000000;
}

int rdm_remaining_ms(int64_t deadline)
{
	int64_t left;

	if (deadline == INT64_MAX)
		return -1;
	left = deadline - rdm_now_ns();
	if (left <= 0)
		return 0;
	/* Round up so that a wait never ends just before its deadline. */
	left = (left + 999999) / 1000000;
	return left > 3600000 ? 3600000 : (int)left;
}

uint32_t rdm_pow2(uint32_t v)
{
	uint32_t p = 1;

	while (p < v && p < (1u << 31))
		p <<= 1;
	return p;
}

__attribute__((format(printf, 2, 0))) static int vlog_err(int err, const char *fmt, va_list ap)
{
	char what[256];

	vsnprintf(what, sizeof(what), fmt, ap);
	rdm_err("%s: %s", what, strerror(err));
	return -err;
}

int rdm_errno(const char *fmt, ...)
{
	int err = errno ? errno : EIO;
	va_list ap;

	va_start(ap, fmt);
	vlog_err(err, fmt, ap);
	va_end(ap);
	return -err;
}

int rdm_errval(int err, const char *fmt, ...)
{
	va_list ap;

	if (err < 0)
		err = -err;
	if (err == 0)
		err = EIO;
	va_start(ap, fmt);
	vlog_err(err, fmt, ap);
	va_end(ap);
	return -err;
}

bool rdm_is_nodev(int err)
{
	/*
	 * Without the rdma_ucm module there is no /dev/infiniband/rdma_cm
	 * (ENODEV, or ENOENT), and libibverbs reports ENOSYS (38) when the
	 * kernel has no uverbs at all; EADDRNOTAVAIL comes from address
	 * resolution when no RDMA device owns the route's netdev.
	 */
	return err == -ENODEV || err == -ENOSYS || err == -ENOENT || err == -ENXIO ||
	       err == FERRY_ENORDMA;
}

void rdm_fail_init(struct rdm_fail *f)
{
	atomic_init(&f->err, 0);
	pthread_mutex_init(&f->lock, NULL);
	f->msg[0] = 0;
}

void rdm_fail_fini(struct rdm_fail *f)
{
	pthread_mutex_destroy(&f->lock);
}

int rdm_fail_set(struct rdm_fail *f, int err, const char *fmt, ...)
{
	char msg[FERRY_RDMA_MSG_MAX];
	bool was_first = false;
	va_list ap;
	int first;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	pthread_mutex_lock(&f->lock);
	first = atomic_load(&f->err);
	if (!first) {
		snprintf(f->msg, sizeof(f->msg), "%s", msg);
		atomic_store_explicit(&f->err, err, memory_order_release);
		first = err;
		was_first = true;
	}
	pthread_mutex_unlock(&f->lock);
	/* An abort is asked for (a cancel, or the engine ending the lanes): not an error. */
	if (was_first && err == -ECANCELED)
		rdm_dbg("%s", msg);
	else if (was_first)
		rdm_err("%s (%s)", msg, ferry_strerror(err));
	else
		rdm_dbg("after the first failure: %s (%s)", msg, ferry_strerror(err));
	return first;
}

int rdm_fail_note(struct rdm_fail *f, int err, const char *fmt, ...)
{
	va_list ap;
	int first;

	pthread_mutex_lock(&f->lock);
	first = atomic_load(&f->err);
	if (!first) {
		va_start(ap, fmt);
		vsnprintf(f->msg, sizeof(f->msg), fmt, ap);
		va_end(ap);
		atomic_store_explicit(&f->err, err, memory_order_release);
		first = err;
	}
	pthread_mutex_unlock(&f->lock);
	return first;
}

int rdm_fail_copy(struct rdm_fail *f, char *why, size_t len)
{
	int err;

	pthread_mutex_lock(&f->lock);
	err = atomic_load(&f->err);
	if (why && len)
		snprintf(why, len, "%s", err ? f->msg : "");
	pthread_mutex_unlock(&f->lock);
	return err;
}

int rdm_sockaddr(const char *host, uint16_t port, struct sockaddr_storage *ss)
{
	struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
	struct addrinfo *res = NULL;
	int ret;

	memset(ss, 0, sizeof(*ss));
	if (!host || !*host) {
		struct sockaddr_in *in = (struct sockaddr_in *)ss;

		in->sin_family = AF_INET;
		in->sin_port = htons(port);
		in->sin_addr.s_addr = htonl(INADDR_ANY);
		return 0;
	}
	ret = getaddrinfo(host, NULL, &hints, &res);
	if (ret) {
		rdm_err("cannot resolve '%s': %s", host, gai_strerror(ret));
		return ret == EAI_NONAME ? -ENXIO : -EAGAIN;
	}
	if (res->ai_addrlen > sizeof(*ss)) {
		freeaddrinfo(res);
		return -EAFNOSUPPORT;
	}
	memcpy(ss, res->ai_addr, res->ai_addrlen);
	freeaddrinfo(res);
	if (ss->ss_family == AF_INET)
		((struct sockaddr_in *)ss)->sin_port = htons(port);
	else if (ss->ss_family == AF_INET6)
		((struct sockaddr_in6 *)ss)->sin6_port = htons(port);
	else
		return -EAFNOSUPPORT;
	return 0;
}

void rdm_sockaddr_str(const struct sockaddr *sa, char *buf, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		/* A sockaddr of family AF_INET is a sockaddr_in (the kernel's own contract). */
		const struct sockaddr_in *in = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		snprintf(buf, len, "%s:%u", ip, ntohs(in->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		snprintf(buf, len, "[%s]:%u", ip, ntohs(in6->sin6_port));
	} else {
		snprintf(buf, len, "(family %d)", sa->sa_family);
	}
}
