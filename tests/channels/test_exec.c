/* SPDX-License-Identifier: MIT */
/* exec: channels: real /bin/sh commands, exit statuses, cancel, descriptor hygiene. */
#include <criterion/criterion.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

static char dir[64];
static char out_path[128];

static void exec_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ferry-exec-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(out_path, sizeof(out_path), "%s/stream", dir);
}

static void exec_teardown(void)
{
	char cmd[160];

	snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
	if (system(cmd) != 0)
		fprintf(stderr, "cannot remove %s\n", dir);
}

TestSuite(channels_exec, .init = exec_setup, .fini = exec_teardown, .timeout = 60);

__attribute__((format(printf, 2, 3))) static void parse_fmt(struct ferry_uri *u, const char *fmt,
							    ...)
{
	char text[512];

	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cr_assert_eq(ferry_uri_parse(text, u), 0, "%s: %s", text, u->err);
}

/* The pid that peer_name() reports: "exec:... (pid N)". */
static pid_t peer_pid(struct ferry_channel *ch)
{
	const char *p = strstr(ferry_channel_peer_name(ch), "(pid ");

	cr_assert_not_null(p, "%s", ferry_channel_peer_name(ch));
	return (pid_t)atoi(p + 5);
}

/*
 * Processes of group @pgid that still run. Zombies do not count: a
 * grandchild the init process has not reaped yet is dead all the same.
 */
static int group_running(pid_t pgid)
{
	DIR *d = opendir("/proc");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d))) {
		char path[300], buf[512], *rp, state;
		int pgrp = 0, ppid;
		FILE *f;

		if (e->d_name[0] < '0' || e->d_name[0] > '9')
			continue;
		snprintf(path, sizeof(path), "/proc/%s/stat", e->d_name);
		f = fopen(path, "r");
		if (!f)
			continue;
		if (fgets(buf, sizeof(buf), f) && (rp = strrchr(buf, ')')) &&
		    sscanf(rp + 1, " %c %d %d", &state, &ppid, &pgrp) == 3 && pgrp == pgid &&
		    state != 'Z' && state != 'X')
			n++;
		fclose(f);
	}
	closedir(d);
	return n;
}

Test(channels_exec, outgoing_cat_to_file_64mib)
{
	uint8_t *ram = ct_ram_new(CT_BIG_PAGES, 21), *out = ct_ram_zeroed(CT_BIG_PAGES);
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	struct ferry_uri u;
	int fds = ct_count_fds();
	pid_t pid;

	parse_fmt(&u, "exec:cat > %s", out_path);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_scheme(src), FERRY_URI_EXEC);
	pid = peer_pid(src);
	cr_assert_eq(ferry_channel_reader(src, &r), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, CT_BIG_PAGES), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	/* Close waits for cat to finish writing the file. */
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(kill(pid, 0), -1, "the command was not reaped");

	parse_fmt(&u, "file:%s", out_path);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ct_recv_pages(r, out, CT_BIG_PAGES), 0, "%s", ferry_reader_errmsg(r));
	cr_assert(ferry_reader_at_eof(r));
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert(memcmp(ram, out, CT_BIG_BYTES) == 0);
	ct_ram_free(ram, CT_BIG_PAGES);
	ct_ram_free(out, CT_BIG_PAGES);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_exec, incoming_cat_file_64mib)
{
	uint8_t *ram = ct_ram_new(CT_BIG_PAGES, 22), *out = ct_ram_zeroed(CT_BIG_PAGES);
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	struct ferry_uri u;
	int fds = ct_count_fds();

	parse_fmt(&u, "file:%s", out_path);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, CT_BIG_PAGES), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_close(src), 0);

	parse_fmt(&u, "exec:cat %s", out_path);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_writer(dst, &w), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ct_recv_pages(r, out, CT_BIG_PAGES), 0, "%s", ferry_reader_errmsg(r));
	cr_assert(ferry_reader_at_eof(r));
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert(memcmp(ram, out, CT_BIG_BYTES) == 0);
	ct_ram_free(ram, CT_BIG_PAGES);
	ct_ram_free(out, CT_BIG_PAGES);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_exec, outgoing_command_that_fails)
{
	uint8_t *ram = ct_ram_new(256, 1);
	struct ferry_channel *src;
	struct ferry_writer *w;
	struct ferry_uri u;
	int ret, fds = ct_count_fds();

	signal(SIGPIPE, SIG_DFL);
	ct_log_capture();
	cr_assert_eq(ferry_uri_parse("exec:exit 1", &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	/* The command may be gone before or during the write: either is fine,
	 * what matters is that close reports it. */
	ct_send_pages(w, ram, 256);
	ret = ferry_writer_close(w);
	cr_assert(ret == 0 || ret == -EPIPE || ret == -ECONNRESET, "%s", ferry_strerror(ret));
	cr_assert_eq(ferry_channel_close(src), -EIO);
	cr_assert(ct_log_has("command exited with status 1"));
	cr_assert(ct_log_has("exec:exit 1 (pid "));
	ct_ram_free(ram, 256);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_exec, incoming_command_that_fails_or_dies)
{
	struct ferry_channel *dst;
	struct ferry_reader *r;
	struct ferry_uri u;
	char buf[16] = {0};

	ct_log_capture();
	cr_assert_eq(ferry_uri_parse("exec:printf partial; exit 3", &u), 0);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ferry_get_buffer(r, buf, 7), 0);
	cr_assert_str_eq(buf, "partial");
	cr_assert(ferry_reader_at_eof(r));
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), -EIO);
	cr_assert(ct_log_has("command exited with status 3"));

	cr_assert_eq(ferry_uri_parse("exec:kill -9 $$", &u), 0);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_read(dst, buf, 1), 0);
	cr_assert_eq(ferry_channel_close(dst), -EIO);
	cr_assert(ct_log_has("command killed by signal 9"));

	/* A command that does not exist: the shell says so and exits 127. */
	cr_assert_eq(ferry_uri_parse("exec:ferry-no-such-command-xyz 2>/dev/null", &u), 0);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_read(dst, buf, 1), 0);
	cr_assert_eq(ferry_channel_close(dst), -EIO);
	cr_assert(ct_log_has("command exited with status 127"));
}

Test(channels_exec, shutdown_stops_a_hanging_command)
{
	struct ferry_channel *dst;
	struct ct_reader_thread rt;
	struct ferry_uri u;
	int fds = ct_count_fds();
	int64_t t0;
	pid_t pid;

	/* "sleep" is a child of the shell here: only a group kill stops both. */
	cr_assert_eq(ferry_uri_parse("exec:sleep 30; echo late", &u), 0);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	pid = peer_pid(dst);
	rt = (struct ct_reader_thread){.ch = dst, .len = 4096};
	ct_reader_start(&rt);
	usleep(100 * 1000);
	t0 = ct_now_ms();
	ferry_channel_shutdown(dst);
	cr_assert(ct_join_within(rt.thread, 2000), "reader not woken");
	free(rt.thread);
	cr_assert_eq(rt.ret, -ECANCELED);
	cr_assert_eq(ferry_channel_close(dst), -ECANCELED);
	cr_assert_lt(ct_now_ms() - t0, 2000);
	cr_assert_eq(kill(pid, 0), -1, "the command survived");
	/* Nothing of its process group runs on either (the signal is sent; give
	 * the kernel a moment to deliver it). */
	for (int i = 0; i < 100 && group_running(pid); i++)
		usleep(10 * 1000);
	cr_assert_eq(group_running(pid), 0, "part of the pipeline survived");

	/* destroy: no status, no wait beyond the kill. */
	cr_assert_eq(ferry_uri_parse("exec:cat > /dev/null", &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &dst), 0);
	pid = peer_pid(dst);
	t0 = ct_now_ms();
	ferry_channel_destroy(dst);
	cr_assert_lt(ct_now_ms() - t0, 1000);
	cr_assert_eq(kill(pid, 0), -1);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_exec, command_sees_only_its_own_descriptors)
{
	struct ferry_channel *src;
	struct ferry_uri u;
	char cmd[256], listing[256] = {0};
	int p[2], fd;
	ssize_t n;

	/* Descriptors the embedder left inheritable must not reach the command. */
	cr_assert_eq(pipe(p), 0);
	snprintf(cmd, sizeof(cmd), "exec:ls /proc/self/fd > %s; cat > /dev/null", out_path);
	cr_assert_eq(ferry_uri_parse(cmd, &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_close(src), 0);
	close(p[0]);
	close(p[1]);
	fd = open(out_path, O_RDONLY);
	cr_assert_geq(fd, 0);
	n = read(fd, listing, sizeof(listing) - 1);
	close(fd);
	cr_assert_gt(n, 0);
	/* ls's own: stdin, stdout (the file), stderr, and its directory handle. */
	cr_assert_str_eq(listing, "0\n1\n2\n3\n");
}

Test(channels_exec, outgoing_command_stdout_is_not_ours)
{
	struct ferry_channel *src;
	struct ferry_uri u;
	char capture[128], buf[64] = {0};
	int saved, fd;

	/* Point our stdout at a file: the command's chatter must not land there. */
	snprintf(capture, sizeof(capture), "%s/stdout", dir);
	fd = open(capture, O_CREAT | O_RDWR | O_TRUNC, 0600);
	fflush(stdout);
	saved = dup(1);
	dup2(fd, 1);
	cr_assert_eq(ferry_uri_parse("exec:echo chatter; cat", &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_close(src), 0);
	dup2(saved, 1);
	close(saved);
	cr_assert_eq(pread(fd, buf, sizeof(buf) - 1, 0), 0, "command wrote '%s' to our stdout",
		     buf);
	close(fd);
}
