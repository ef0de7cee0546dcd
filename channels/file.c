/* SPDX-License-Identifier: MIT */
/*
 * file:PATH[,offset=N]: the stream written to, or read from, a file starting
 * at a page-aligned offset, and the file ops that a regular-file fd: also uses.
 *
 * Regular-file I/O never waits on a peer, so cancel needs no wake-up: the
 * shut-down flag fails the next call, and the current one finishes soon.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/error.h>

#include "internal.h"

static ssize_t file_writev(struct ferry_channel *ch, const struct iovec *iov, int iovcnt)
{
	ssize_t n;

	do {
		n = writev(ch->fd, iov, iovcnt);
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	return n > 0 ? n : -EIO;
}

static ssize_t file_read(struct ferry_channel *ch, void *buf, size_t len)
{
	ssize_t n;

	do {
		n = read(ch->fd, buf, len);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int file_shutdown_write(struct ferry_channel *ch)
{
	/* The end of the file is the end of the stream: nothing to send. */
	return 0;
}

const struct chan_ops chan_file_ops = {
    .name = "file",
    .writev = file_writev,
    .read = file_read,
    .shutdown_write = file_shutdown_write,
};

int chan_file_open(const struct ferry_uri *uri, bool for_write, struct ferry_channel **out)
{
	struct ferry_channel *ch = NULL;
	const char *what;
	struct stat st;
	int fd, ret;

	/* O_NONBLOCK only so that opening a FIFO cannot hang; it is cleared below. */
	if (for_write)
		fd = open(uri->path, O_WRONLY | O_CREAT | O_CLOEXEC | O_NONBLOCK, 0600);
	else
		fd = open(uri->path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0) {
		ret = -errno;
		chan_err("file: open %s for %s: %s", uri->path, for_write ? "writing" : "reading",
			 ferry_strerror(ret));
		return ret;
	}
	if (fstat(fd, &st) < 0) {
		ret = -errno;
		what = "fstat";
		goto err_close;
	}
	if (S_ISCHR(st.st_mode) && uri->offset == 0) {
		/* /dev/null and friends: no offset, nothing to cut. */
	} else if (!S_ISREG(st.st_mode) && !S_ISBLK(st.st_mode)) {
		chan_err("file: %s is not a regular file or block device%s", uri->path,
			 S_ISCHR(st.st_mode) ? " (a character device takes no offset)"
					     : " (use fd: or exec: for pipes)");
		ret = -EINVAL;
		goto err_quiet;
	}
	if (fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK) < 0) {
		ret = -errno;
		what = "fcntl";
		goto err_close;
	}
	/* Writing: keep what lies before the offset (a header written by someone
	 * else), drop what lies after it (an older, longer stream). */
	if (for_write && S_ISREG(st.st_mode) && ftruncate(fd, (off_t)uri->offset) < 0) {
		ret = -errno;
		what = "truncate";
		goto err_close;
	}
	if (!S_ISCHR(st.st_mode) && lseek(fd, (off_t)uri->offset, SEEK_SET) < 0) {
		ret = -errno;
		what = "seek";
		goto err_close;
	}
	ret = chan_alloc(FERRY_URI_FILE, &chan_file_ops, &ch);
	if (ret < 0)
		goto err_quiet;
	ch->fd = fd;
	ch->can_write = for_write;
	ch->can_read = !for_write;
	chan_set_peer(ch, "file:%s", uri->path);
	*out = ch;
	return 0;

err_close:
	chan_err("file: %s %s: %s", what, uri->path, ferry_strerror(ret));
err_quiet:
	close(fd);
	return ret;
}
