/* SPDX-License-Identifier: MIT */
/* fd:N channels: socketpairs, pipes (the non-blocking path), ownership, cancel. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

TestSuite(channels_fd, .timeout = 60);

static int open_fd(int fd, bool incoming, struct ferry_channel **ch)
{
	struct ferry_uri u;
	char text[32];

	snprintf(text, sizeof(text), "fd:%d", fd);
	cr_assert_eq(ferry_uri_parse(text, &u), 0);
	return incoming ? ferry_channel_open_incoming(&u, 1000, ch)
			: ferry_channel_connect(&u, 1000, ch);
}

static bool fd_is_open(int fd)
{
	return fcntl(fd, F_GETFD) >= 0;
}

Test(channels_fd, socketpair_64mib_and_return_path)
{
	struct ferry_channel *src, *dst;
	int sv[2], fds = ct_count_fds();
	char name[16];

	cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	cr_assert_eq(open_fd(sv[0], false, &src), 0);
	cr_assert_eq(open_fd(sv[1], true, &dst), 0);
	snprintf(name, sizeof(name), "fd:%d", sv[0]);
	cr_assert_str_eq(ferry_channel_peer_name(src), name);
	cr_assert_eq(ferry_channel_scheme(src), FERRY_URI_FD);
	/* Taken over: close-on-exec from now on. */
	cr_assert(fcntl(sv[0], F_GETFD) & FD_CLOEXEC);
	ct_transfer_big(src, dst);
	ct_transfer(dst, src, 256, false); /* and back */
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ferry_channel_close(dst), 0);
	/* The channel owned the descriptors and closed them. */
	cr_assert(!fd_is_open(sv[0]) && !fd_is_open(sv[1]));
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_fd, pipe_64mib)
{
	struct ferry_channel *src, *dst;
	int p[2], fds = ct_count_fds();

	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(open_fd(p[1], false, &src), 0);
	cr_assert_eq(open_fd(p[0], true, &dst), 0);
	/* A pipe cannot half-close: the sender closes its end to end the stream. */
	cr_assert_eq(ferry_channel_shutdown_write(src), -EOPNOTSUPP);
	ct_transfer(src, dst, CT_BIG_PAGES, true);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert(!fd_is_open(p[0]) && !fd_is_open(p[1]));
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_fd, pipe_flags_restored_and_direction_checked)
{
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	int p[2], twin;

	cr_assert_eq(pipe(p), 0);
	/* A second descriptor on the same open file shows the shared status flags. */
	twin = dup(p[1]);
	cr_assert_eq(open_fd(p[1], false, &src), 0);
	cr_assert(fcntl(twin, F_GETFL) & O_NONBLOCK);
	cr_assert_eq(open_fd(p[0], true, &dst), 0);
	cr_assert_eq(ferry_channel_reader(src, &r), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_writer(dst, &w), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(fcntl(twin, F_GETFL) & O_NONBLOCK, 0, "O_NONBLOCK left on a shared pipe");
	close(twin);
	ferry_channel_destroy(dst);
}

Test(channels_fd, pipe_shutdown_unblocks_reader_and_writer)
{
	struct ferry_channel *src, *dst;
	struct ct_reader_thread rt;
	uint8_t *ram = ct_ram_new(1024, 3);
	int p[2], q[2], fds = ct_count_fds();
	int64_t t0;

	/* Reader: nobody writes into p. */
	cr_assert_eq(pipe(p), 0);
	cr_assert_eq(open_fd(p[0], true, &dst), 0);
	rt = (struct ct_reader_thread){.ch = dst, .len = 4096};
	ct_reader_start(&rt);
	usleep(100 * 1000);
	t0 = ct_now_ms();
	ferry_channel_shutdown(dst);
	cr_assert(ct_join_within(rt.thread, 2000), "pipe reader not woken");
	free(rt.thread);
	cr_assert_lt(ct_now_ms() - t0, 1500); /* woken, not at a timeout; noise allowed */
	cr_assert_eq(rt.ret, -ECANCELED);
	cr_assert_eq(ferry_channel_close(dst), -ECANCELED);
	close(p[1]);

	/* Writer: nobody reads from q; 4 MiB does not fit a pipe. */
	cr_assert_eq(pipe(q), 0);
	cr_assert_eq(open_fd(q[1], false, &src), 0);
	struct ct_sender s = {.ch = src, .ram = ram, .pages = 1024};
	ct_sender_start(&s);
	usleep(200 * 1000);
	cr_assert(!ct_join_within(s.thread, 0), "4 MiB fitted in a pipe?");
	t0 = ct_now_ms();
	ferry_channel_shutdown(src);
	cr_assert_eq(ct_sender_join(&s), -ECANCELED, "%s", ferry_strerror(s.ret));
	cr_assert_lt(ct_now_ms() - t0, 1500); /* woken, not at a timeout; noise allowed */
	ferry_channel_destroy(src);
	close(q[0]);
	ct_ram_free(ram, 1024);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_fd, broken_pipe_is_epipe_not_sigpipe)
{
	struct ferry_channel *src;
	char byte = 1;
	struct iovec iov = {.iov_base = &byte, .iov_len = 1};
	sigset_t pending;
	int p[2];

	signal(SIGPIPE, SIG_DFL); /* a raised SIGPIPE would kill this test */
	cr_assert_eq(pipe(p), 0);
	close(p[0]);
	cr_assert_eq(open_fd(p[1], false, &src), 0);
	cr_assert_eq(ferry_channel_writev(src, &iov, 1), -EPIPE);
	cr_assert_eq(ferry_channel_writev(src, &iov, 1), -EPIPE);
	/* Nothing left pending to fire later either. */
	sigpending(&pending);
	cr_assert_eq(sigismember(&pending, SIGPIPE), 0);
	cr_assert_eq(ferry_channel_close(src), 0);
}

Test(channels_fd, bad_descriptors_stay_the_callers)
{
	struct ferry_channel *ch = (void *)1;
	int fd, fds;

	ct_log_capture();
	cr_assert_eq(open_fd(987, false, &ch), -EBADF);
	cr_assert_null(ch);
	cr_assert(ct_log_has("fd:987: not an open file descriptor"));

	fds = ct_count_fds();
	fd = socket(AF_UNIX, SOCK_DGRAM, 0);
	cr_assert_eq(open_fd(fd, false, &ch), -EPROTOTYPE);
	cr_assert(fd_is_open(fd), "a refused descriptor was closed");
	cr_assert_eq(fcntl(fd, F_GETFD) & FD_CLOEXEC, 0, "a refused descriptor was changed");
	close(fd);

	fd = socket(AF_INET, SOCK_STREAM, 0); /* listen() binds it to a free port */
	cr_assert_eq(listen(fd, 1), 0);
	cr_assert_eq(open_fd(fd, true, &ch), -EINVAL);
	cr_assert(ct_log_has("a listening socket"));
	cr_assert(fd_is_open(fd));
	close(fd);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_fd, regular_file_descriptor)
{
	char path[] = "/tmp/ferry-fd-XXXXXX";
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	uint8_t *ram = ct_ram_new(64, 9), *out = ct_ram_zeroed(64);
	int fd = mkstemp(path);

	cr_assert_geq(fd, 0);
	cr_assert_eq(open_fd(fd, false, &src), 0);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, 64), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_close(src), 0);
	fd = open(path, O_RDONLY);
	cr_assert_eq(open_fd(fd, true, &dst), 0);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ct_recv_pages(r, out, 64), 0, "%s", ferry_reader_errmsg(r));
	cr_assert(ferry_reader_at_eof(r));
	cr_assert(memcmp(ram, out, 64 * CT_PAGE) == 0);
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), 0);
	unlink(path);
	ct_ram_free(ram, 64);
	ct_ram_free(out, 64);
}
