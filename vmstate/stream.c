/* SPDX-License-Identifier: MIT */
/*
 * Buffered writer and reader (see stream.h). The writer gathers small puts in
 * a 32 KiB buffer and large by-reference buffers as iovec entries, so a page
 * of guest RAM reaches the sink's writev in place, between the record headers
 * that surround it.
 */
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/stream.h>

#define WR_BUF_SIZE 32768
#define WR_IOV_MAX  64
/* By-reference buffers smaller than this are copied: an iovec entry costs more. */
#define WR_REF_MIN 256
/* Reads at least this large bypass the reader's buffer and land in place. */
#define RD_DIRECT_MIN	  4096
#define RD_BUF_SIZE	  32768
#define MEM_DEFAULT_LIMIT (1ull << 30)

struct ferry_writer {
	const struct ferry_sink_ops *ops;
	void *opaque;
	uint8_t *buf;
	size_t buf_used;
	size_t buf_sealed; /* bytes of buf already described by iov[] */
	struct iovec iov[WR_IOV_MAX];
	int iovcnt;
	uint64_t offset;
	int err;
	/* storage for the built-in sinks */
	struct {
		int fd;
		bool close_fd;
		bool is_socket;
	} fdsink;
	struct {
		uint8_t *data;
		size_t len, cap, limit;
		bool active;
	} mem;
};

struct ferry_reader {
	const struct ferry_source_ops *ops;
	void *opaque;
	const uint8_t *buf; /* either own_buf or the caller's memory */
	uint8_t *own_buf;
	size_t pos, len;
	uint64_t offset; /* bytes consumed */
	uint64_t copied; /* bytes memcpy'd out of own_buf by get_buffer */
	int err;
	bool eof;
	uint64_t err_offset;
	char msg[512];
	char full[600];
	struct {
		int fd;
		bool close_fd;
	} fdsrc;
};

/* ---- built-in sinks and sources -------------------------------------------- */

static ssize_t fd_sink_writev(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct ferry_writer *w = opaque;
	ssize_t n;

	do {
		if (w->fdsink.is_socket) {
			/* A closed peer must be an error, not a SIGPIPE in the embedder. */
			struct msghdr msg = {.msg_iov = (struct iovec *)iov, .msg_iovlen = iovcnt};
			n = sendmsg(w->fdsink.fd, &msg, MSG_NOSIGNAL);
		} else {
			n = writev(w->fdsink.fd, iov, iovcnt);
		}
	} while (n < 0 && errno == EINTR);
	if (n < 0)
		return -errno;
	if (n == 0)
		return -EIO;
	return n;
}

static int fd_sink_close(void *opaque)
{
	struct ferry_writer *w = opaque;

	if (w->fdsink.close_fd && w->fdsink.fd >= 0) {
		int fd = w->fdsink.fd;
		w->fdsink.fd = -1;
		if (close(fd) < 0)
			return -errno;
	}
	return 0;
}

static const struct ferry_sink_ops fd_sink_ops = {
    .writev = fd_sink_writev,
    .close = fd_sink_close,
};

static ssize_t mem_sink_writev(void *opaque, const struct iovec *iov, int iovcnt)
{
	struct ferry_writer *w = opaque;
	size_t total = 0;

	for (int i = 0; i < iovcnt; i++)
		total += iov[i].iov_len;
	if (total > w->mem.limit - w->mem.len)
		return FERRY_ELIMIT;
	if (w->mem.len + total > w->mem.cap) {
		size_t cap = w->mem.cap ? w->mem.cap : 4096;
		uint8_t *p;

		while (cap < w->mem.len + total)
			cap *= 2;
		p = realloc(w->mem.data, cap);
		if (!p)
			return -ENOMEM;
		w->mem.data = p;
		w->mem.cap = cap;
	}
	for (int i = 0; i < iovcnt; i++) {
		memcpy(w->mem.data + w->mem.len, iov[i].iov_base, iov[i].iov_len);
		w->mem.len += iov[i].iov_len;
	}
	return (ssize_t)total;
}

static const struct ferry_sink_ops mem_sink_ops = {
    .writev = mem_sink_writev,
};

static ssize_t fd_source_read(void *opaque, void *buf, size_t len)
{
	struct ferry_reader *r = opaque;
	ssize_t n;

	do {
		n = read(r->fdsrc.fd, buf, len);
	} while (n < 0 && errno == EINTR);
	return n < 0 ? -errno : n;
}

static int fd_source_close(void *opaque)
{
	struct ferry_reader *r = opaque;

	if (r->fdsrc.close_fd && r->fdsrc.fd >= 0) {
		int fd = r->fdsrc.fd;
		r->fdsrc.fd = -1;
		if (close(fd) < 0)
			return -errno;
	}
	return 0;
}

static const struct ferry_source_ops fd_source_ops = {
    .read = fd_source_read,
    .close = fd_source_close,
};

/* ---- writer ------------------------------------------------------------------ */

int ferry_writer_create(const struct ferry_sink_ops *ops, void *opaque, struct ferry_writer **out)
{
	struct ferry_writer *w = calloc(1, sizeof(*w));

	if (!w)
		return -ENOMEM;
	w->buf = malloc(WR_BUF_SIZE);
	if (!w->buf) {
		free(w);
		return -ENOMEM;
	}
	w->ops = ops;
	w->opaque = opaque;
	w->fdsink.fd = -1;
	*out = w;
	return 0;
}

int ferry_writer_create_fd(int fd, bool close_fd, struct ferry_writer **out)
{
	struct ferry_writer *w;
	struct stat st;
	int ret;

	if (fd < 0)
		return -EBADF;
	ret = ferry_writer_create(&fd_sink_ops, NULL, &w);
	if (ret < 0)
		return ret;
	w->opaque = w;
	w->fdsink.fd = fd;
	w->fdsink.close_fd = close_fd;
	w->fdsink.is_socket = fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
	*out = w;
	return 0;
}

int ferry_writer_create_mem(size_t limit, struct ferry_writer **out)
{
	struct ferry_writer *w;
	int ret = ferry_writer_create(&mem_sink_ops, NULL, &w);

	if (ret < 0)
		return ret;
	w->opaque = w;
	w->mem.active = true;
	w->mem.limit = limit ? limit : MEM_DEFAULT_LIMIT;
	*out = w;
	return 0;
}

const uint8_t *ferry_writer_mem_data(struct ferry_writer *w, size_t *len)
{
	if (!w->mem.active)
		return NULL;
	ferry_writer_flush(w);
	*len = w->mem.len;
	/* An empty memory writer still returns a valid pointer. */
	return w->mem.data ? w->mem.data : (const uint8_t *)"";
}

void ferry_writer_set_error(struct ferry_writer *w, int err)
{
	if (!w->err && err < 0)
		w->err = err;
}

int ferry_writer_error(const struct ferry_writer *w)
{
	return w->err;
}

uint64_t ferry_writer_offset(const struct ferry_writer *w)
{
	return w->offset;
}

/* Describe the buffered bytes not yet in iov[] as one more entry. */
static void wr_seal(struct ferry_writer *w)
{
	if (w->buf_used > w->buf_sealed) {
		w->iov[w->iovcnt].iov_base = w->buf + w->buf_sealed;
		w->iov[w->iovcnt].iov_len = w->buf_used - w->buf_sealed;
		w->iovcnt++;
		w->buf_sealed = w->buf_used;
	}
}

int ferry_writer_flush(struct ferry_writer *w)
{
	struct iovec *iov = w->iov;
	int cnt;

	if (w->err)
		goto reset;
	wr_seal(w);
	cnt = w->iovcnt;
	while (cnt > 0) {
		ssize_t n = w->ops->writev(w->opaque, iov, cnt);

		if (n <= 0) {
			ferry_writer_set_error(w, n < 0 ? (int)n : -EIO);
			break;
		}
		/* Advance past what was written; a short write resumes mid-entry. */
		while (cnt > 0 && (size_t)n >= iov->iov_len) {
			n -= (ssize_t)iov->iov_len;
			iov++;
			cnt--;
		}
		if (cnt > 0 && n > 0) {
			iov->iov_base = (uint8_t *)iov->iov_base + n;
			iov->iov_len -= (size_t)n;
		}
	}
reset:
	w->iovcnt = 0;
	w->buf_used = 0;
	w->buf_sealed = 0;
	return w->err;
}

/* Make room for @len bytes in the buffer and for two more iovec entries. */
static void wr_reserve(struct ferry_writer *w, size_t len)
{
	if (WR_BUF_SIZE - w->buf_used < len || w->iovcnt >= WR_IOV_MAX - 2)
		ferry_writer_flush(w);
}

static void wr_copy(struct ferry_writer *w, const void *p, size_t len)
{
	const uint8_t *src = p;

	if (w->err)
		return;
	w->offset += len;
	while (len > 0) {
		size_t n;

		wr_reserve(w, 1);
		if (w->err)
			return;
		n = WR_BUF_SIZE - w->buf_used;
		if (n > len)
			n = len;
		memcpy(w->buf + w->buf_used, src, n);
		w->buf_used += n;
		src += n;
		len -= n;
	}
}

void ferry_put_u8(struct ferry_writer *w, uint8_t v)
{
	wr_copy(w, &v, 1);
}

void ferry_put_be16(struct ferry_writer *w, uint16_t v)
{
	uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
	wr_copy(w, b, sizeof(b));
}

void ferry_put_be32(struct ferry_writer *w, uint32_t v)
{
	uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
	wr_copy(w, b, sizeof(b));
}

void ferry_put_be64(struct ferry_writer *w, uint64_t v)
{
	ferry_put_be32(w, (uint32_t)(v >> 32));
	ferry_put_be32(w, (uint32_t)v);
}

void ferry_put_buffer(struct ferry_writer *w, const void *buf, size_t len)
{
	wr_copy(w, buf, len);
}

void ferry_put_buffer_ref(struct ferry_writer *w, const void *buf, size_t len)
{
	if (len < WR_REF_MIN) {
		wr_copy(w, buf, len);
		return;
	}
	if (w->err)
		return;
	wr_reserve(w, 0);
	if (w->err)
		return;
	wr_seal(w);
	w->iov[w->iovcnt].iov_base = (void *)buf;
	w->iov[w->iovcnt].iov_len = len;
	w->iovcnt++;
	w->offset += len;
}

void ferry_put_cstr(struct ferry_writer *w, const char *s)
{
	size_t len = strlen(s);

	if (len > 255) {
		ferry_writer_set_error(w, FERRY_ELIMIT);
		return;
	}
	ferry_put_u8(w, (uint8_t)len);
	wr_copy(w, s, len);
}

static void writer_free(struct ferry_writer *w, int *ret)
{
	if (w->ops->close) {
		int r = w->ops->close(w->opaque);
		if (ret && !*ret && r < 0)
			*ret = r;
	}
	free(w->mem.data);
	free(w->buf);
	free(w);
}

int ferry_writer_close(struct ferry_writer *w)
{
	int ret = ferry_writer_flush(w);

	writer_free(w, &ret);
	return ret;
}

void ferry_writer_destroy(struct ferry_writer *w)
{
	if (w)
		writer_free(w, NULL);
}

/* ---- reader ------------------------------------------------------------------ */

int ferry_reader_create(const struct ferry_source_ops *ops, void *opaque, struct ferry_reader **out)
{
	struct ferry_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->own_buf = malloc(RD_BUF_SIZE);
	if (!r->own_buf) {
		free(r);
		return -ENOMEM;
	}
	r->buf = r->own_buf;
	r->ops = ops;
	r->opaque = opaque;
	r->fdsrc.fd = -1;
	*out = r;
	return 0;
}

int ferry_reader_create_fd(int fd, bool close_fd, struct ferry_reader **out)
{
	struct ferry_reader *r;
	int ret;

	if (fd < 0)
		return -EBADF;
	ret = ferry_reader_create(&fd_source_ops, NULL, &r);
	if (ret < 0)
		return ret;
	r->opaque = r;
	r->fdsrc.fd = fd;
	r->fdsrc.close_fd = close_fd;
	*out = r;
	return 0;
}

int ferry_reader_create_mem(const void *buf, size_t len, struct ferry_reader **out)
{
	struct ferry_reader *r = calloc(1, sizeof(*r));

	if (!r)
		return -ENOMEM;
	r->buf = buf;
	r->len = len;
	r->eof = true; /* nothing beyond the buffer */
	r->fdsrc.fd = -1;
	*out = r;
	return 0;
}

static void rd_compose(struct ferry_reader *r)
{
	int n =
	    snprintf(r->full, sizeof(r->full), "offset %llu: ", (unsigned long long)r->err_offset);
	size_t len = strnlen(r->msg, sizeof(r->full) - (size_t)n - 1);

	memcpy(r->full + n, r->msg, len);
	r->full[n + len] = '\0';
}

int ferry_reader_fail(struct ferry_reader *r, int err, const char *fmt, ...)
{
	va_list ap;

	if (r->err)
		return r->err;
	r->err = err < 0 ? err : FERRY_EBADSTREAM;
	r->err_offset = r->offset;
	va_start(ap, fmt);
	vsnprintf(r->msg, sizeof(r->msg), fmt, ap);
	va_end(ap);
	rd_compose(r);
	return r->err;
}

void ferry_reader_context(struct ferry_reader *r, const char *fmt, ...)
{
	char ctx[256], old[sizeof(r->msg)];
	va_list ap;

	if (!r->err)
		return;
	va_start(ap, fmt);
	vsnprintf(ctx, sizeof(ctx), fmt, ap);
	va_end(ap);
	memcpy(old, r->msg, sizeof(old));
	/* Truncating a very long message is fine; it is for a person to read. */
	size_t n = strlen(ctx);
	if (n > sizeof(r->msg) - 3)
		n = sizeof(r->msg) - 3;
	memcpy(r->msg, ctx, n);
	memcpy(r->msg + n, ": ", 2);
	size_t rest = sizeof(r->msg) - n - 2;
	size_t olen = strnlen(old, rest - 1);
	memcpy(r->msg + n + 2, old, olen);
	r->msg[n + 2 + olen] = '\0';
	rd_compose(r);
}

int ferry_reader_error(const struct ferry_reader *r)
{
	return r->err;
}

const char *ferry_reader_errmsg(const struct ferry_reader *r)
{
	return r->err && r->msg[0] ? r->full : "";
}

uint64_t ferry_reader_copied(const struct ferry_reader *r)
{
	return r->copied;
}

uint64_t ferry_reader_offset(const struct ferry_reader *r)
{
	return r->offset;
}

/* Read more into the buffer; returns bytes now available, 0 at end, or an error. */
static ssize_t rd_fill(struct ferry_reader *r)
{
	ssize_t n;

	if (r->pos < r->len)
		return (ssize_t)(r->len - r->pos);
	if (r->eof || !r->ops)
		return 0;
	r->pos = r->len = 0;
	n = r->ops->read(r->opaque, r->own_buf, RD_BUF_SIZE);
	if (n < 0) {
		ferry_reader_fail(r, (int)n, "read failed: %s", ferry_strerror((int)n));
		return n;
	}
	if (n == 0)
		r->eof = true;
	r->len = (size_t)n;
	return n;
}

static int rd_truncated(struct ferry_reader *r, size_t want)
{
	return ferry_reader_fail(r, FERRY_ETRUNCATED, "stream ends here, %zu more byte%s expected",
				 want, want == 1 ? "" : "s");
}

int ferry_get_buffer(struct ferry_reader *r, void *dst, size_t len)
{
	uint8_t *out = dst;

	if (r->err)
		return r->err;
	while (len > 0) {
		size_t avail = r->len - r->pos;

		if (avail == 0 && len >= RD_DIRECT_MIN && r->ops && !r->eof) {
			/* Straight into the destination: no bounce through the buffer. */
			ssize_t n = r->ops->read(r->opaque, out, len);

			if (n < 0)
				return ferry_reader_fail(r, (int)n, "read failed: %s",
							 ferry_strerror((int)n));
			if (n == 0) {
				r->eof = true;
				return rd_truncated(r, len);
			}
			out += n;
			len -= (size_t)n;
			r->offset += (uint64_t)n;
			continue;
		}
		if (avail == 0) {
			ssize_t n = rd_fill(r);

			if (n < 0)
				return r->err;
			if (n == 0)
				return rd_truncated(r, len);
			continue;
		}
		if (avail > len)
			avail = len;
		memcpy(out, r->buf + r->pos, avail);
		if (r->own_buf)
			r->copied += avail;
		r->pos += avail;
		r->offset += avail;
		out += avail;
		len -= avail;
	}
	return 0;
}

uint8_t ferry_get_u8(struct ferry_reader *r)
{
	uint8_t v = 0;

	/* The fast path: a byte already buffered. */
	if (!r->err && r->pos < r->len) {
		r->offset++;
		return r->buf[r->pos++];
	}
	if (ferry_get_buffer(r, &v, 1) < 0)
		return 0;
	return v;
}

uint16_t ferry_get_be16(struct ferry_reader *r)
{
	uint8_t b[2];

	if (ferry_get_buffer(r, b, sizeof(b)) < 0)
		return 0;
	return (uint16_t)((b[0] << 8) | b[1]);
}

uint32_t ferry_get_be32(struct ferry_reader *r)
{
	uint8_t b[4];

	if (ferry_get_buffer(r, b, sizeof(b)) < 0)
		return 0;
	return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | b[3];
}

uint64_t ferry_get_be64(struct ferry_reader *r)
{
	uint64_t hi = ferry_get_be32(r);

	return (hi << 32) | ferry_get_be32(r);
}

int ferry_get_cstr(struct ferry_reader *r, char buf[256])
{
	uint8_t len = ferry_get_u8(r);

	buf[0] = '\0';
	if (ferry_get_buffer(r, buf, len) < 0) {
		buf[0] = '\0';
		return r->err;
	}
	buf[len] = '\0';
	return len;
}

int ferry_reader_skip(struct ferry_reader *r, uint64_t len)
{
	while (!r->err && len > 0) {
		size_t avail = r->len - r->pos;

		if (avail == 0) {
			ssize_t n = rd_fill(r);

			if (n < 0)
				break;
			if (n == 0)
				return rd_truncated(r, len > SIZE_MAX ? SIZE_MAX : (size_t)len);
			continue;
		}
		if (avail > len)
			avail = (size_t)len;
		r->pos += avail;
		r->offset += avail;
		len -= avail;
	}
	return r->err;
}

int ferry_peek_u8(struct ferry_reader *r)
{
	ssize_t n;

	if (r->err)
		return r->err;
	n = rd_fill(r);
	if (n < 0)
		return r->err;
	if (n == 0)
		return FERRY_ETRUNCATED;
	return r->buf[r->pos];
}

int ferry_peek_buffer(struct ferry_reader *r, void *dst, size_t len)
{
	if (len > 1024)
		return -EINVAL;
	if (r->err)
		return r->err;
	/* Own buffer: move the unread tail to the front and top it up. */
	while (r->len - r->pos < len && r->ops && !r->eof) {
		ssize_t n;

		if (r->pos > 0) {
			memmove(r->own_buf, r->own_buf + r->pos, r->len - r->pos);
			r->len -= r->pos;
			r->pos = 0;
		}
		n = r->ops->read(r->opaque, r->own_buf + r->len, RD_BUF_SIZE - r->len);
		if (n < 0)
			return ferry_reader_fail(r, (int)n, "read failed: %s",
						 ferry_strerror((int)n));
		if (n == 0)
			r->eof = true;
		r->len += (size_t)n;
	}
	if (len > r->len - r->pos)
		len = r->len - r->pos;
	memcpy(dst, r->buf + r->pos, len);
	return (int)len;
}

bool ferry_reader_at_eof(struct ferry_reader *r)
{
	return ferry_peek_u8(r) == FERRY_ETRUNCATED;
}

void ferry_reader_destroy(struct ferry_reader *r)
{
	if (!r)
		return;
	if (r->ops && r->ops->close)
		r->ops->close(r->opaque);
	free(r->own_buf);
	free(r);
}
