/* SPDX-License-Identifier: MIT */
/*
 * The explicit dirty log: the kernel tracks nothing, the embedder reports every
 * write with ferry_dirty_log_mark(). All of it is the common code's marks (an
 * atomic OR per word to mark, an atomic exchange per word to sync), so it has
 * no ops of its own beyond its name.
 */
#include <errno.h>
#include <stdlib.h>

#include "dirty_internal.h"

static const struct eng_dirty_ops explicit_ops = {
    .kind = "explicit",
};

int ferry_dirty_log_create_explicit(const struct ferry_dirty_block *blocks, size_t n,
				    struct ferry_dirty_log **out)
{
	struct ferry_dirty_log *log;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	log = calloc(1, sizeof(*log));
	if (!log)
		return -ENOMEM;
	ret = eng_dirty_init(log, &explicit_ops, blocks, n, false);
	if (ret) {
		eng_dirty_fini(log);
		free(log);
		return ret;
	}
	*out = log;
	return 0;
}
