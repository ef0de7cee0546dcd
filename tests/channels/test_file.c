/* SPDX-License-Identifier: MIT */
/* file: channels: write then read back at an offset, truncation, errors. */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

static char dir[64];
static char path[128];

static void file_setup(void)
{
	snprintf(dir, sizeof(dir), "/tmp/ferry-file-XXXXXX");
	cr_assert_not_null(mkdtemp(dir));
	snprintf(path, sizeof(path), "%s/vm.state", dir);
}

static void file_teardown(void)
{
	unlink(path);
	rmdir(dir);
}

TestSuite(channels_file, .init = file_setup, .fini = file_teardown, .timeout = 60);

__attribute__((format(printf, 2, 3))) static void parse_fmt(struct ferry_uri *u, const char *fmt,
							    ...)
{
	char text[256];

	va_list ap;

	va_start(ap, fmt);
	vsnprintf(text, sizeof(text), fmt, ap);
	va_end(ap);
	cr_assert_eq(ferry_uri_parse(text, u), 0, "%s: %s", text, u->err);
}

Test(channels_file, big_transfer_at_offset_keeps_the_prefix)
{
	uint8_t *ram = ct_ram_new(CT_BIG_PAGES, 11), *out = ct_ram_zeroed(CT_BIG_PAGES);
	const uint64_t stream_len = (uint64_t)CT_BIG_PAGES * (CT_PAGE + 8) + 4;
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	struct ferry_uri u;
	uint8_t prefix[4096], back[4096];
	struct stat st;
	int fd, fds = ct_count_fds();

	/* Someone else's 4 KiB header, then an older, longer stream (sparse). */
	memset(prefix, 'P', sizeof(prefix));
	fd = open(path, O_CREAT | O_WRONLY, 0600);
	cr_assert_eq(write(fd, prefix, sizeof(prefix)), (ssize_t)sizeof(prefix));
	cr_assert_eq(ftruncate(fd, 100 << 20), 0);
	close(fd);

	parse_fmt(&u, "file:%s,offset=0x1000", path);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	cr_assert_eq(ferry_channel_scheme(src), FERRY_URI_FILE);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, CT_BIG_PAGES), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_shutdown_write(src), 0);
	cr_assert_eq(ferry_channel_close(src), 0);

	/* The prefix is untouched; the old tail is gone. */
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq((uint64_t)st.st_size, 0x1000 + stream_len);
	fd = open(path, O_RDONLY);
	cr_assert_eq(read(fd, back, sizeof(back)), (ssize_t)sizeof(back));
	close(fd);
	cr_assert(memcmp(prefix, back, sizeof(back)) == 0, "the bytes before the offset changed");

	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	cr_assert_eq(ct_recv_pages(r, out, CT_BIG_PAGES), 0, "%s", ferry_reader_errmsg(r));
	cr_assert(ferry_reader_at_eof(r));
	cr_assert_eq(ferry_reader_offset(r), stream_len);
	ferry_reader_destroy(r);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert(memcmp(ram, out, CT_BIG_BYTES) == 0);
	ct_ram_free(ram, CT_BIG_PAGES);
	ct_ram_free(out, CT_BIG_PAGES);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_file, new_file_without_offset)
{
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	struct ferry_reader *r;
	struct ferry_uri u;
	struct stat st;
	char name[160];

	parse_fmt(&u, "file:%s", path);
	cr_assert_eq(ferry_channel_connect(&u, 0, &src), 0);
	snprintf(name, sizeof(name), "file:%s", path);
	cr_assert_str_eq(ferry_channel_peer_name(src), name);
	/* Guest memory inside: only the owner may read it. */
	cr_assert_eq(stat(path, &st), 0);
	cr_assert_eq(st.st_mode & 0777, 0600);
	cr_assert_eq(ferry_channel_reader(src, &r), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	ferry_put_buffer(w, "hello", 5);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_close(src), 0);

	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &dst), 0);
	cr_assert_eq(ferry_channel_writer(dst, &w), -EOPNOTSUPP);
	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	char buf[6] = {0};
	cr_assert_eq(ferry_get_buffer(r, buf, 5), 0);
	cr_assert_str_eq(buf, "hello");
	cr_assert(ferry_reader_at_eof(r));
	ferry_reader_destroy(r);
	/* Cancel on a file: the next call fails. */
	ferry_channel_shutdown(dst);
	cr_assert_eq(ferry_channel_read(dst, buf, 1), -ECANCELED);
	cr_assert_eq(ferry_channel_close(dst), -ECANCELED);
}

Test(channels_file, open_errors)
{
	struct ferry_channel *ch = NULL;
	struct ferry_uri u;
	char msg[256];
	int fds = ct_count_fds();
	int64_t t0;

	ct_log_capture();
	parse_fmt(&u, "file:%s", path);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &ch), -ENOENT);
	snprintf(msg, sizeof(msg), "file: open %s for reading: No such file or directory", path);
	cr_assert(ct_log_has(msg), "log lacks '%s'", msg);
	parse_fmt(&u, "file:%s/no/such/dir", dir);
	cr_assert_eq(ferry_channel_connect(&u, 0, &ch), -ENOENT);

	/* A directory. */
	parse_fmt(&u, "file:%s", dir);
	cr_assert_eq(ferry_channel_connect(&u, 0, &ch), -EISDIR);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &ch), -EINVAL);
	cr_assert(ct_log_has("is not a regular file"));

	/* A FIFO would block an open forever: refused at once, both ways. */
	cr_assert_eq(mkfifo(path, 0600), 0);
	parse_fmt(&u, "file:%s", path);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_channel_connect(&u, 0, &ch), -ENXIO);
	cr_assert_eq(ferry_channel_open_incoming(&u, 0, &ch), -EINVAL);
	cr_assert(ct_log_has("use fd: or exec: for pipes"));
	cr_assert_lt(ct_now_ms() - t0, 1000);
	unlink(path);

	/* A character device takes no offset. */
	cr_assert_eq(ferry_uri_parse("file:/dev/null,offset=4096", &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &ch), -EINVAL);
	cr_assert_null(ch);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_file, dev_null_sink)
{
	struct ferry_channel *ch;
	struct ferry_writer *w;
	struct ferry_uri u;
	uint8_t *ram = ct_ram_new(256, 1);

	cr_assert_eq(ferry_uri_parse("file:/dev/null", &u), 0);
	cr_assert_eq(ferry_channel_connect(&u, 0, &ch), 0);
	cr_assert_eq(ferry_channel_writer(ch, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, 256), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_close(ch), 0);
	ct_ram_free(ram, 256);
}
