/* SPDX-License-Identifier: MIT */
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>

#include <ferry_log_internal.h>

/*
 * The callback and its opaque are read together under a tiny lock-free
 * snapshot: a struct swapped by pointer would need reclamation, so two
 * atomics are enough given the documented caveat in log.h.
 */
static _Atomic(ferry_log_fn) log_fn;
static _Atomic(void *) log_opaque;
static atomic_int log_max = FERRY_LOG_INFO;

void ferry_set_log(ferry_log_fn fn, void *opaque, enum ferry_log_level max_level)
{
	atomic_store(&log_opaque, opaque);
	atomic_store(&log_max, (int)max_level);
	atomic_store(&log_fn, fn);
}

int ferry_log_enabled(enum ferry_log_level level)
{
	return atomic_load(&log_fn) != NULL && (int)level <= atomic_load(&log_max);
}

void ferry_log_msg(enum ferry_log_level level, const char *module, const char *fmt, ...)
{
	ferry_log_fn fn = atomic_load(&log_fn);
	char buf[1024];
	va_list ap;

	if (!fn || (int)level > atomic_load(&log_max))
		return;
	va_start(ap, fmt);
	vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	fn(atomic_load(&log_opaque), level, module, buf);
}

void ferry_log_stderr(void *opaque, enum ferry_log_level level, const char *module, const char *msg)
{
	static const char *const names[] = {"error", "warning", "info", "debug"};
	const char *name = (unsigned)level < 4 ? names[level] : "?";

	(void)opaque;
	fprintf(stderr, "ferry[%s] %s: %s\n", module, name, msg);
}
