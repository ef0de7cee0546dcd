/* SPDX-License-Identifier: MIT */
/* A destination that talks on the return path while the lanes connect (talker.h). */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "talker.h"

static int64_t mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void *talker_main(void *arg)
{
	struct talker *t = arg;
	int fd = accept(t->listen_fd, NULL, NULL);
	int64_t t0 = mono_ms();
	bool said = false;
	char buf[65536];

	if (fd < 0)
		return NULL;
	while (mono_ms() - t0 < 30000) {
		struct pollfd p = {.fd = fd, .events = POLLIN};
		int n = poll(&p, 1, 50);

		if (n < 0 || (n == 1 && read(fd, buf, sizeof(buf)) <= 0))
			break;
		if (!said && mono_ms() - t0 >= 300) {
			said = write(fd, t->msg, t->msg_len) == (ssize_t)t->msg_len;
			if (!said)
				break;
		}
		/* 200 ms after the message: the source has seen it and is reading it. */
		if (said && t->hang_up && mono_ms() - t0 >= 500)
			break;
	}
	close(fd);
	return NULL;
}

void talker_start(struct talker *t, const char *host, const uint8_t *msg, size_t len, bool hang_up)
{
	struct sockaddr_in sa = {.sin_family = AF_INET};
	socklen_t sl = sizeof(sa);

	cr_assert_leq(len, sizeof(t->msg));
	memset(t, 0, sizeof(*t));
	memcpy(t->msg, msg, len);
	t->msg_len = len;
	t->hang_up = hang_up;
	cr_assert_eq(inet_pton(AF_INET, host, &sa.sin_addr), 1, "not an IPv4 address: %s", host);
	t->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	cr_assert_geq(t->listen_fd, 0);
	cr_assert_eq(bind(t->listen_fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	cr_assert_eq(listen(t->listen_fd, 16), 0);
	cr_assert_eq(getsockname(t->listen_fd, (struct sockaddr *)&sa, &sl), 0);
	t->port = ntohs(sa.sin_port);
	cr_assert_eq(pthread_create(&t->th, NULL, talker_main, t), 0);
}

void talker_stop(struct talker *t)
{
	shutdown(t->listen_fd, SHUT_RDWR);
	pthread_join(t->th, NULL);
	close(t->listen_fd);
}

size_t talker_rp_msg(uint8_t *b, uint16_t type, uint16_t len, uint32_t value, const char *text)
{
	size_t n = text ? strlen(text) : 0;

	b[0] = (uint8_t)(type >> 8);
	b[1] = (uint8_t)type;
	b[2] = (uint8_t)(len >> 8);
	b[3] = (uint8_t)len;
	for (int i = 0; i < 4; i++)
		b[4 + i] = (uint8_t)(value >> (24 - 8 * i));
	if (n)
		memcpy(b + 8, text, n);
	return 8 + n;
}
