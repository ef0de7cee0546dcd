/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "hv.h"
#include "kvm_common.h"

void kvmt_require_kvm(void)
{
	static int result = 1; /* 1: not probed yet */
	static char why[256];

	/* One probe per test process (a Criterion worker runs one test). */
	if (result == 1)
		result = hv_probe(why, sizeof(why));
	if (result != 0)
		cr_skip_test("KVM cannot run the reference guest here: %s", why);
}

static long long now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void kvmt_spawn(const char *const argv[], struct kvmt_child *c)
{
	int p[2];

	memset(c, 0, sizeof(*c));
	cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
	c->pid = fork();
	cr_assert_neq(c->pid, -1, "fork: %s", strerror(errno));
	if (c->pid == 0) {
		int in = open("/dev/null", O_RDONLY);

		if (in < 0 || dup2(in, 0) < 0 || dup2(p[1], 1) < 0)
			_exit(126);
		execv(argv[0], (char *const *)(uintptr_t)argv);
		_exit(127);
	}
	close(p[1]);
	c->fd = p[0];
	c->cap = 1 << 16;
	c->buf = malloc(c->cap);
	cr_assert_not_null(c->buf);
}

/* One complete line from the buffer, or NULL. */
static char *take_line(struct kvmt_child *c)
{
	char *nl = memchr(c->buf, '\n', c->len), *line;
	size_t n;

	if (!nl)
		return NULL;
	n = (size_t)(nl - c->buf);
	line = malloc(n + 1);
	cr_assert_not_null(line);
	memcpy(line, c->buf, n);
	line[n] = '\0';
	memmove(c->buf, nl + 1, c->len - n - 1);
	c->len -= n + 1;
	return line;
}

json_t *kvmt_next(struct kvmt_child *c, const char *event, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;

	for (;;) {
		char *line;

		while ((line = take_line(c))) {
			json_t *j = json_loads(line, 0, NULL);
			const char *ev = j ? json_string_value(json_object_get(j, "event")) : NULL;

			free(line);
			if (j && (!event || (ev && strcmp(ev, event) == 0)))
				return j;
			json_decref(j);
		}
		if (c->fd < 0)
			return NULL;
		{
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			long long left = end - now_ms();
			ssize_t n;

			if (left <= 0)
				return NULL;
			if (poll(&pfd, 1, (int)left) <= 0)
				continue;
			if (c->len == c->cap) {
				cr_assert_lt(c->cap, 64u << 20,
					     "a child's line grew beyond 64 MiB");
				c->cap *= 2;
				c->buf = realloc(c->buf, c->cap);
				cr_assert_not_null(c->buf);
			}
			n = read(c->fd, c->buf + c->len, c->cap - c->len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(c->fd);
				c->fd = -1;
				continue;
			}
			c->len += (size_t)n;
		}
	}
}

int kvmt_reap(struct kvmt_child *c, int timeout_ms)
{
	long long end = now_ms() + timeout_ms;
	int ws = 0;

	if (c->pid <= 0)
		return c->status;
	for (;;) {
		pid_t got = waitpid(c->pid, &ws, WNOHANG);

		if (got == c->pid)
			break;
		if (now_ms() > end) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &ws, 0);
			break;
		}
		usleep(10000);
	}
	c->pid = 0;
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	free(c->buf);
	c->buf = NULL;
	c->status = WIFEXITED(ws) ? WEXITSTATUS(ws) : -1;
	return c->status;
}

void kvmt_where(const struct kvmt_child *c, char *buf, size_t len)
{
	char path[96], cmd[160];
	FILE *f;
	size_t used = 0;

	buf[0] = '\0';
	if (c->pid <= 0)
		return;
	/* A shell glob over the threads is the shortest way; only our child's pid is used. */
	snprintf(cmd, sizeof(cmd),
		 "for t in /proc/%d/task/*; do echo \"$t $(cat $t/wchan)\"; head -8 $t/stack; done "
		 "2>/dev/null",
		 (int)c->pid);
	f = popen(cmd, "r");
	if (!f) {
		snprintf(path, sizeof(path), "pid %d", (int)c->pid);
		snprintf(buf, len, "%s", path);
		return;
	}
	while (used + 1 < len) {
		size_t n = fread(buf + used, 1, len - used - 1, f);

		if (n == 0)
			break;
		used += n;
	}
	buf[used] = '\0';
	pclose(f);
}

void kvmt_kill(struct kvmt_child *c)
{
	if (c->pid > 0)
		kill(c->pid, SIGKILL);
	kvmt_reap(c, 5000);
}

void kvmt_sock_path(char *buf, size_t len, const char *tag)
{
	snprintf(buf, len, "/tmp/ferry-kvm-test-%d-%s.sock", (int)getpid(), tag);
	unlink(buf);
}

long long kvmt_int(json_t *o, const char *key)
{
	return (long long)json_integer_value(json_object_get(o, key));
}
