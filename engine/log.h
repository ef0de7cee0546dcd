/* SPDX-License-Identifier: MIT */
/*
 * Logging. libferry never prints: every message goes to the callback the
 * embedder installs with ferry_set_log(); with none installed, messages are
 * dropped. A leaf header like error.h: every module may include it.
 */
#ifndef FERRY_LOG_H
#define FERRY_LOG_H

#ifdef __cplusplus
extern "C" {
#endif

enum ferry_log_level {
	FERRY_LOG_ERROR = 0,
	FERRY_LOG_WARN = 1,
	FERRY_LOG_INFO = 2,
	FERRY_LOG_DEBUG = 3,
};

/**
 * ferry_log_fn - receives one formatted message.
 * @opaque: the pointer given to ferry_set_log().
 * @level: severity.
 * @module: "vmstate", "engine", "channels", "rdma" or "bench".
 * @msg: the message, without a trailing newline; valid only during the call.
 *
 * Thread context: any libferry thread (the caller's, a worker, an event
 * thread), possibly several at once; it must be thread-safe and must not call
 * back into libferry.
 */
typedef void (*ferry_log_fn)(void *opaque, enum ferry_log_level level, const char *module,
			     const char *msg);

/**
 * ferry_set_log() - install the process-wide log callback.
 * @fn: the callback, or NULL to drop every message (the default).
 * @opaque: passed back to @fn.
 * @max_level: messages above this level are not formatted at all.
 *
 * Thread-safe, but a message already being delivered may still reach the old
 * callback; install it before starting migrations.
 */
void ferry_set_log(ferry_log_fn fn, void *opaque, enum ferry_log_level max_level);

/**
 * ferry_log_stderr() - a ready-made callback that writes "ferry[module] level: msg" to stderr.
 * For programs (the ferry CLI, tests); an embedder usually routes to its own log.
 */
void ferry_log_stderr(void *opaque, enum ferry_log_level level, const char *module,
		      const char *msg);

#ifdef __cplusplus
}
#endif
#endif
