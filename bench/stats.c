/* SPDX-License-Identifier: MIT */
/* Median, minimum and maximum over a scenario's repetitions. */
#include <stdlib.h>
#include <string.h>

#include "harness.h"

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

void bench_summarize(const double *v, size_t n, struct bench_summary *out)
{
	double small[BENCH_MAX_REPS], *s = small;

	memset(out, 0, sizeof(*out));
	if (n == 0)
		return;
	if (n > BENCH_MAX_REPS) {
		s = malloc(n * sizeof(*s));
		if (!s)
			return;
	}
	memcpy(s, v, n * sizeof(*s));
	qsort(s, n, sizeof(*s), cmp_double);
	out->n = (uint32_t)n;
	out->min = s[0];
	out->max = s[n - 1];
	out->median = n % 2 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2;
	if (s != small)
		free(s);
}

const struct bench_ceiling *bench_session_ceiling(const struct bench_session *ses,
						  enum bench_transport t, uint32_t streams)
{
	for (uint32_t i = 0; i < ses->n_ceilings; i++)
		if (ses->ceilings[i].transport == t && ses->ceilings[i].streams == streams)
			return &ses->ceilings[i];
	return NULL;
}
