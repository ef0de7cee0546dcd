/* SPDX-License-Identifier: MIT */
/* unix-socket channels: data, the socket file's life, errors, cancel. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <fcntl.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

static char dir[64];
static char sock_path[128];
static char sock_uri[160];

static void unix_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ferry-unix-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(sock_path, sizeof(sock_path), "%s/m.sock", dir);
	snprintf(sock_uri, sizeof(sock_uri), "unix:%s", sock_path);
}

static void unix_teardown(void)
{
	unlink(sock_path);
	rmdir(dir);
}

TestSuite(channels_unix, .init = unix_setup, .fini = unix_teardown, .timeout = 60);

static void parse(const char *text, struct ferry_uri *u)
{
	cr_assert_eq(ferry_uri_parse(text, u), 0, "%s: %s", text, u->err);
}

Test(channels_unix, big_transfer_64mib)
{
	struct ferry_channel *src, *dst;
	struct stat st;
	int fds = ct_count_fds();

	ct_pair(sock_uri, &src, &dst);
	cr_assert_eq(ferry_channel_scheme(dst), FERRY_URI_UNIX);
	cr_assert_str_eq(ferry_channel_peer_name(src), sock_uri);
	cr_assert_str_eq(ferry_channel_peer_name(dst), sock_uri);
	/* The listener is gone and took its socket file with it. */
	cr_assert_eq(stat(sock_path, &st), -1);
	ct_transfer_big(src, dst);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_unix, return_path)
{
	struct ferry_channel *src, *dst;

	/* Small both ways on one socket: each side writes to the other. */
	ct_pair(sock_uri, &src, &dst);
	ct_transfer(dst, src, 512, false);
	ct_transfer(src, dst, 512, false);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
}

Test(channels_unix, socket_file_life)
{
	struct ferry_listener *l, *l2;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct ferry_uri u;
	struct stat st;
	int fd, fds = ct_count_fds();

	parse(sock_uri, &u);
	/* A stale socket (bound, owner gone, file left) is replaced. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	cr_assert_eq(stat(sock_path, &st), 0);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	cr_assert_eq(ferry_listener_port(l), 0);
	cr_assert_str_eq(ferry_listener_name(l), sock_uri);

	/* A live listener is never stolen from. */
	ct_log_capture();
	cr_assert_eq(ferry_listener_create(&u, &l2), -EADDRINUSE);
	cr_assert(ct_log_has("another process is listening there"));
	ferry_listener_destroy(l);
	cr_assert_eq(stat(sock_path, &st), -1, "destroy left the socket file");

	/* A file that is no socket is an error and stays as it was. */
	fd = open(sock_path, O_CREAT | O_WRONLY, 0600);
	cr_assert_geq(fd, 0);
	cr_assert_eq(write(fd, "keep", 4), 4);
	close(fd);
	cr_assert_eq(ferry_listener_create(&u, &l), -EEXIST);
	cr_assert(ct_log_has("exists and is not a socket"));
	cr_assert_eq(stat(sock_path, &st), 0);
	cr_assert_eq(st.st_size, 4);
	unlink(sock_path);

	/* Destroy does not remove a file that replaced ours meanwhile. */
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	unlink(sock_path);
	fd = open(sock_path, O_CREAT | O_WRONLY, 0600);
	close(fd);
	ferry_listener_destroy(l);
	cr_assert_eq(stat(sock_path, &st), 0, "destroy removed a file that was not its own");
	unlink(sock_path);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_unix, connect_errors_are_fast)
{
	struct ferry_channel *ch = NULL;
	struct sockaddr_un sun = {.sun_family = AF_UNIX};
	struct ferry_uri u;
	int fd, fds = ct_count_fds();
	int64_t t0 = ct_now_ms();
	char msg[256];

	ct_log_capture();
	parse(sock_uri, &u);
	cr_assert_eq(ferry_channel_connect(&u, 5000, &ch), -ENOENT);
	snprintf(msg, sizeof(msg), "unix: connect to %s: No such file or directory", sock_path);
	cr_assert(ct_log_has(msg));
	/* A socket file with nobody behind it. */
	fd = socket(AF_UNIX, SOCK_STREAM, 0);
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	cr_assert_eq(bind(fd, (struct sockaddr *)&sun, sizeof(sun)), 0);
	close(fd);
	cr_assert_eq(ferry_channel_connect(&u, 5000, &ch), -ECONNREFUSED);
	cr_assert_lt(ct_now_ms() - t0, 1000);
	cr_assert_null(ch);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_unix, accept_timeout_and_full_backlog)
{
	struct ferry_channel *held[80] = {0};
	struct ferry_listener *l;
	struct ferry_channel *ch;
	struct ferry_uri u;
	int fds = ct_count_fds(), ret = 0, n;
	int64_t t0;

	parse(sock_uri, &u);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_listener_accept(l, 150, &ch), -ETIMEDOUT);
	cr_assert_geq(ct_now_ms() - t0, 140);
	/* Never accepted, the backlog fills; then connect waits out its timeout. */
	for (n = 0; n < 80; n++) {
		t0 = ct_now_ms();
		ret = ferry_channel_connect(&u, 200, &held[n]);
		if (ret == -ETIMEDOUT) {
			cr_assert_geq(ct_now_ms() - t0, 190);
			cr_assert_lt(ct_now_ms() - t0, 2000);
			break;
		}
		cr_assert_eq(ret, 0, "%s", ferry_strerror(ret));
	}
	cr_assert_eq(ret, -ETIMEDOUT, "backlog never filled");
	for (int i = 0; i < 80; i++)
		ferry_channel_destroy(held[i]);
	ferry_listener_destroy(l);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_unix, shutdown_unblocks_reader)
{
	struct ferry_channel *src, *dst;
	struct ct_reader_thread rt;
	int64_t t0;

	ct_pair(sock_uri, &src, &dst);
	rt = (struct ct_reader_thread){.ch = dst, .len = 4096};
	ct_reader_start(&rt);
	usleep(100 * 1000);
	t0 = ct_now_ms();
	ferry_channel_shutdown(dst);
	cr_assert(ct_join_within(rt.thread, 2000), "reader not woken");
	free(rt.thread);
	cr_assert_lt(ct_now_ms() - t0, 1500); /* woken, not at a timeout; noise allowed */
	cr_assert_eq(rt.ret, -ECANCELED);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
}

Test(channels_unix, open_incoming)
{
	struct ferry_channel *src = NULL, *dst;
	struct ferry_uri u;
	pid_t pid;

	parse(sock_uri, &u);
	/* A client process that keeps trying until the destination listens. */
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct ferry_writer *w;
		uint8_t *ram = ct_ram_new(32, 1);
		int ret = -1;

		for (int i = 0; i < 200 && ret; i++) {
			ret = ferry_channel_connect(&u, 1000, &src);
			if (ret)
				usleep(10 * 1000);
		}
		if (!ret)
			ret = ferry_channel_writer(src, &w);
		if (!ret)
			ret = ct_send_pages(w, ram, 32);
		_exit(ret ? 1 : 0);
	}
	cr_assert_eq(ferry_channel_open_incoming(&u, 10000, &dst), 0);
	struct ferry_reader *r;
	uint8_t *out = ct_ram_zeroed(32), *ram = ct_ram_new(32, 1);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ct_recv_pages(r, out, 32), 0, "%s", ferry_reader_errmsg(r));
	cr_assert(ferry_reader_at_eof(r)); /* the client exited */
	cr_assert(memcmp(out, ram, 32 * CT_PAGE) == 0);
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), 0);
	int status;
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert_eq(status, 0);
}
