/* SPDX-License-Identifier: MIT */
/* The library side of logging: shared by every module, never installed. */
#ifndef FERRY_LOG_INTERNAL_H
#define FERRY_LOG_INTERNAL_H

#include <ferry/log.h>

__attribute__((format(printf, 3, 4))) void ferry_log_msg(enum ferry_log_level level,
							 const char *module, const char *fmt, ...);

/* True when a message of @level would be delivered; lets callers skip costly formatting. */
int ferry_log_enabled(enum ferry_log_level level);

#endif
