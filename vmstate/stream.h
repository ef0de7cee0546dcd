/* SPDX-License-Identifier: MIT */
/*
 * The byte stream under every migration stream: a buffered writer over a
 * byte sink and a buffered reader over a byte source, with the big-endian
 * primitives of QEMU's savevm format (FORMAT.md section 1).
 *
 * Error model: the first error sticks. After it every put is a no-op and every
 * get returns 0 (or fails), so a caller may write a whole record and check
 * ferry_writer_error()/ferry_reader_error() once. The reader also keeps a
 * message naming the stream offset and what was expected.
 *
 * Threads: a writer or reader is used by one thread at a time; distinct
 * objects are independent. The ops callbacks run in the thread that calls
 * into the writer/reader.
 */
#ifndef FERRY_STREAM_H
#define FERRY_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

#ifdef __cplusplus
extern "C" {
#endif

/**
 * struct ferry_sink_ops - where a writer's bytes go (a channel, a file, memory).
 * @writev: write up to the total of @iov; return the bytes written (> 0; short
 *          writes are retried by the writer) or -errno. Must not return 0.
 * @close:  release the sink; return 0 or -errno. May be NULL.
 */
struct ferry_sink_ops {
	ssize_t (*writev)(void *opaque, const struct iovec *iov, int iovcnt);
	int (*close)(void *opaque);
};

/**
 * struct ferry_source_ops - where a reader's bytes come from.
 * @read:  read up to @len bytes into @buf; return the count (> 0), 0 at end
 *         of stream, or -errno.
 * @close: release the source; return 0 or -errno. May be NULL.
 */
struct ferry_source_ops {
	ssize_t (*read)(void *opaque, void *buf, size_t len);
	int (*close)(void *opaque);
};

struct ferry_writer;
struct ferry_reader;

/* ---- writer ---------------------------------------------------------------- */

/**
 * ferry_writer_create() - a buffered writer over @ops.
 * @ops: the sink; must outlive the writer.
 * @opaque: passed to @ops; closed by ferry_writer_close() through @ops->close.
 * @out: the new writer.
 *
 * Returns 0 or -ENOMEM.
 */
int ferry_writer_create(const struct ferry_sink_ops *ops, void *opaque, struct ferry_writer **out);

/**
 * ferry_writer_create_fd() - a writer over a file descriptor (pipe, socket, file).
 * @fd: the descriptor; blocking mode expected.
 * @close_fd: close @fd in ferry_writer_close()/ferry_writer_destroy().
 * @out: the new writer.
 */
int ferry_writer_create_fd(int fd, bool close_fd, struct ferry_writer **out);

/**
 * ferry_writer_create_mem() - a writer into a growing memory buffer.
 * @limit: the most bytes it will hold; past it the writer fails with
 *         FERRY_ELIMIT. 0 means 1 GiB.
 * @out: the new writer. ferry_writer_mem_data() returns what was written.
 */
int ferry_writer_create_mem(size_t limit, struct ferry_writer **out);

/**
 * ferry_writer_mem_data() - the bytes of a memory writer so far (flushes first).
 * @len: set to their number.
 *
 * Returns a pointer owned by the writer, valid until the next put or destroy;
 * NULL for a writer that is not a memory writer.
 */
const uint8_t *ferry_writer_mem_data(struct ferry_writer *w, size_t *len);

void ferry_put_u8(struct ferry_writer *w, uint8_t v);
void ferry_put_be16(struct ferry_writer *w, uint16_t v);
void ferry_put_be32(struct ferry_writer *w, uint32_t v);
void ferry_put_be64(struct ferry_writer *w, uint64_t v);
/** ferry_put_buffer() - copy @len bytes into the stream. */
void ferry_put_buffer(struct ferry_writer *w, const void *buf, size_t len);
/**
 * ferry_put_buffer_ref() - queue @len bytes by reference, without copying them.
 *
 * The bytes are handed to the sink's writev as they are (guest RAM goes out in
 * place). They must stay valid until the next ferry_writer_flush() returns;
 * if they change before that, the stream carries whichever content the sink
 * read, as with any live page.
 */
void ferry_put_buffer_ref(struct ferry_writer *w, const void *buf, size_t len);
/** ferry_put_cstr() - a counted string: u8 length, then the bytes; fails with FERRY_ELIMIT at 256+.
 */
void ferry_put_cstr(struct ferry_writer *w, const char *s);

/** ferry_writer_flush() - hand everything buffered to the sink. Returns 0 or the sticky error. */
int ferry_writer_flush(struct ferry_writer *w);

/** ferry_writer_error() - the first error (negative), or 0. */
int ferry_writer_error(const struct ferry_writer *w);

/** ferry_writer_set_error() - record @err (negative) as the error unless one is already set. */
void ferry_writer_set_error(struct ferry_writer *w, int err);

/** ferry_writer_offset() - the number of bytes put so far, flushed or not. */
uint64_t ferry_writer_offset(const struct ferry_writer *w);

/**
 * ferry_writer_close() - flush, close the sink, free the writer.
 * Returns 0, or the first error of the stream, the flush or the close.
 */
int ferry_writer_close(struct ferry_writer *w);

/** ferry_writer_destroy() - free without flushing; closes the sink. NULL is allowed. */
void ferry_writer_destroy(struct ferry_writer *w);

/* ---- reader ---------------------------------------------------------------- */

/** ferry_reader_create() - a buffered reader over @ops (see ferry_writer_create()). */
int ferry_reader_create(const struct ferry_source_ops *ops, void *opaque,
			struct ferry_reader **out);

/** ferry_reader_create_fd() - a reader over a file descriptor. */
int ferry_reader_create_fd(int fd, bool close_fd, struct ferry_reader **out);

/**
 * ferry_reader_create_mem() - a reader over @len bytes at @buf, not copied;
 * @buf must outlive the reader.
 */
int ferry_reader_create_mem(const void *buf, size_t len, struct ferry_reader **out);

uint8_t ferry_get_u8(struct ferry_reader *r);
uint16_t ferry_get_be16(struct ferry_reader *r);
uint32_t ferry_get_be32(struct ferry_reader *r);
uint64_t ferry_get_be64(struct ferry_reader *r);

/**
 * ferry_get_buffer() - read exactly @len bytes into @dst.
 *
 * Large reads go straight from the source into @dst (a page lands in guest RAM
 * without a bounce copy). Returns 0, or the sticky error (FERRY_ETRUNCATED at
 * end of stream); on error @dst may be partly written.
 */
int ferry_get_buffer(struct ferry_reader *r, void *dst, size_t len);

/**
 * ferry_get_cstr() - read a counted string into @buf (256 bytes), NUL-terminated.
 * Returns its length (0..255) or the sticky error.
 */
int ferry_get_cstr(struct ferry_reader *r, char buf[256]);

/** ferry_reader_skip() - discard @len bytes. Returns 0 or the sticky error. */
int ferry_reader_skip(struct ferry_reader *r, uint64_t len);

/**
 * ferry_peek_u8() - the next byte without consuming it.
 * Returns 0..255, or a negative error (FERRY_ETRUNCATED at end of stream; this
 * one is not sticky, since peeking at the end is how a reader finds the end).
 */
int ferry_peek_u8(struct ferry_reader *r);

/**
 * ferry_peek_buffer() - copy the next @len bytes (at most 1024) without consuming them.
 * Returns @len, fewer when the stream ends first (not an error), or a
 * negative error (-EINVAL for @len above 1024).
 */
int ferry_peek_buffer(struct ferry_reader *r, void *dst, size_t len);

/** ferry_reader_at_eof() - true when no byte is left (may read from the source). */
bool ferry_reader_at_eof(struct ferry_reader *r);

/** ferry_reader_error() - the first error (negative), or 0. */
int ferry_reader_error(const struct ferry_reader *r);

/**
 * ferry_reader_errmsg() - what went wrong, for a person: "offset 1234: section
 * 'serial' instance 0: field 'lsr': ...". An empty string when no error was
 * set, or when the error was set without a message.
 */
const char *ferry_reader_errmsg(const struct ferry_reader *r);

/**
 * ferry_reader_fail() - record @err with a message unless an error is already set.
 * @err: negative code.
 * @fmt: printf format; the message is prefixed with the current offset.
 *
 * Returns the sticky error (the first one), so callers can `return ferry_reader_fail(...)`.
 */
__attribute__((format(printf, 3, 4))) int ferry_reader_fail(struct ferry_reader *r, int err,
							    const char *fmt, ...);

/**
 * ferry_reader_context() - prepend @ctx to the error message ("section 'x': " + old).
 * Used by each layer of a loader on the way out so the message names every
 * level. No-op when there is no error.
 */
__attribute__((format(printf, 2, 3))) void ferry_reader_context(struct ferry_reader *r,
								const char *fmt, ...);

/**
 * ferry_reader_copied() - bytes ferry_get_buffer() copied out of the reader's
 * own buffer (the rest went straight from the source into place, or came
 * from caller memory). Lets a caller account for bounce copies honestly.
 */
uint64_t ferry_reader_copied(const struct ferry_reader *r);

/** ferry_reader_offset() - the number of bytes consumed so far. */
uint64_t ferry_reader_offset(const struct ferry_reader *r);

/** ferry_reader_destroy() - free the reader and close its source. NULL is allowed. */
void ferry_reader_destroy(struct ferry_reader *r);

#ifdef __cplusplus
}
#endif
#endif
