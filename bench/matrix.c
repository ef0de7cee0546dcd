/* SPDX-License-Identifier: MIT */
/*
 * The scenario matrix: comma-separated option lists parsed into struct
 * bench_spec, and their combinations expanded into scenarios.
 */
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/engine.h>

#include "harness.h"

#define MIB (1ull << 20)

static const char *const transport_names[BENCH_TR_COUNT] = {"tcp", "unix", "rdma"};
static const char *const pattern_names[] = {"ab", "uniform", "hot", "sequential"};
static const char *const reg_names[] = {"auto", "pin-all", "chunked", "odp"};

const char *bench_transport_name(enum bench_transport t)
{
	return (unsigned)t < BENCH_TR_COUNT ? transport_names[t] : "?";
}

const char *bench_pattern_name(enum bench_pattern p)
{
	return (unsigned)p < 4 ? pattern_names[p] : "?";
}

const char *bench_reg_name(int reg)
{
	return reg >= 0 && reg < 4 ? reg_names[reg] : "-";
}

void bench_spec_init(struct bench_spec *s)
{
	memset(s, 0, sizeof(*s));
	s->ram = (struct bench_list){1, {256 * MIB}};
	s->dirty_rate = (struct bench_list){1, {0}};
	s->pattern = (struct bench_list){1, {BENCH_PATTERN_UNIFORM}};
	s->transport = (struct bench_list){1, {BENCH_TR_TCP}};
	s->channels = (struct bench_list){1, {1}};
	s->reg = (struct bench_list){1, {0}};
	s->page_size = (struct bench_list){1, {4096}};
	s->downtime = (struct bench_list){1, {300}};
	s->reps = 3;
	s->vcpus = 2;
	s->seed = 42;
	s->timeout_ms = 120000;
	s->msg_size = 2 * MIB;
	s->ceiling_ms = 2000;
}

static void say(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void say(char *why, size_t len, const char *fmt, ...)
{
	va_list ap;

	if (!why || !len)
		return;
	va_start(ap, fmt);
	vsnprintf(why, len, fmt, ap);
	va_end(ap);
}

/*
 * A size or rate: a decimal number (fractions allowed: "1.5G") with an
 * optional binary suffix k, M, G or T, then "iB", "B" or "/s" tolerated
 * ("256MiB", "100M/s"). No sign, no spaces, no hex, at most 2^64 - 1.
 * The one parser of sizes for ferry's command line and bench options.
 */
int bench_parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v, bytes;
	uint64_t mult = 1;

	if (!s || *s < '0' || *s > '9' || strchr(s, 'x') || strchr(s, 'X'))
		return -EINVAL;
	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1ull << 10;
		end++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20;
		end++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30;
		end++;
		break;
	case 't':
	case 'T':
		mult = 1ull << 40;
		end++;
		break;
	default:
		break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (strcmp(end, "/s") == 0)
		end += 2;
	bytes = v * (double)mult;
	if (*end || bytes >= 18446744073709551616.0)
		return -EINVAL;
	*out = (uint64_t)bytes;
	return 0;
}

static int parse_uint(const char *s, uint64_t *out)
{
	char *end;

	if (*s < '0' || *s > '9')
		return -EINVAL;
	errno = 0;
	*out = strtoull(s, &end, 10);
	return errno || *end ? -EINVAL : 0;
}

static int parse_name(const char *s, const char *const *names, size_t n, uint64_t *out)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(s, names[i]) == 0) {
			*out = i;
			return 0;
		}
	return -EINVAL;
}

enum kind { K_SIZE, K_UINT, K_PATTERN, K_TRANSPORT, K_REG };

struct dim {
	const char *name;
	size_t off; /* of the struct bench_list in struct bench_spec */
	enum kind kind;
	uint64_t min, max;
};

static const struct dim dims[] = {
    {"ram", offsetof(struct bench_spec, ram), K_SIZE, 2 * MIB, 1ull << 40},
    {"dirty-rate", offsetof(struct bench_spec, dirty_rate), K_SIZE, 0, 1ull << 40},
    {"pattern", offsetof(struct bench_spec, pattern), K_PATTERN, 0, 3},
    {"transport", offsetof(struct bench_spec, transport), K_TRANSPORT, 0, BENCH_TR_COUNT - 1},
    {"channels", offsetof(struct bench_spec, channels), K_UINT, 0, FERRY_MAX_CHANNELS},
    {"registration", offsetof(struct bench_spec, reg), K_REG, 0, 3},
    {"page-size", offsetof(struct bench_spec, page_size), K_SIZE, 4096, 2 * MIB},
    {"downtime", offsetof(struct bench_spec, downtime), K_UINT, 1, 600000},
};

static int parse_value(const struct dim *d, const char *s, uint64_t *v)
{
	switch (d->kind) {
	case K_SIZE:
		return bench_parse_size(s, v);
	case K_UINT:
		return parse_uint(s, v);
	case K_PATTERN:
		return parse_name(s, pattern_names, 4, v);
	case K_TRANSPORT:
		return parse_name(s, transport_names, BENCH_TR_COUNT, v);
	case K_REG:
		return parse_name(s, reg_names, 4, v);
	}
	return -EINVAL;
}

static int parse_list(const struct dim *d, const char *value, struct bench_list *out, char *why,
		      size_t whylen)
{
	struct bench_list l = {0};
	const char *p = value;

	if (!*value) {
		say(why, whylen, "--%s: empty list", d->name);
		return -EINVAL;
	}
	for (;;) {
		const char *comma = strchr(p, ',');
		size_t len = comma ? (size_t)(comma - p) : strlen(p);
		char item[64];
		uint64_t v;

		if (len == 0 || len >= sizeof(item)) {
			say(why, whylen, "--%s: empty or overlong item in '%s'", d->name, value);
			return -EINVAL;
		}
		memcpy(item, p, len);
		item[len] = 0;
		if (parse_value(d, item, &v) < 0) {
			say(why, whylen, "--%s: bad value '%s'", d->name, item);
			return -EINVAL;
		}
		if (v < d->min || v > d->max) {
			say(why, whylen, "--%s: '%s' out of range", d->name, item);
			return -EINVAL;
		}
		if (d->off == offsetof(struct bench_spec, ram) && v % (2 * MIB)) {
			say(why, whylen, "--ram: '%s' is not a multiple of 2 MiB", item);
			return -EINVAL;
		}
		if (d->off == offsetof(struct bench_spec, page_size) && v != 4096 && v != 2 * MIB) {
			say(why, whylen, "--page-size: '%s' is neither 4k nor 2M", item);
			return -EINVAL;
		}
		for (uint32_t i = 0; i < l.n; i++)
			if (l.v[i] == v) {
				say(why, whylen, "--%s: '%s' given twice", d->name, item);
				return -EINVAL;
			}
		if (l.n == BENCH_MAX_VALUES) {
			say(why, whylen, "--%s: more than %d values", d->name, BENCH_MAX_VALUES);
			return -EINVAL;
		}
		l.v[l.n++] = v;
		if (!comma)
			break;
		p = comma + 1;
	}
	*out = l;
	return 0;
}

int bench_spec_set(struct bench_spec *s, const char *name, const char *value, char *why,
		   size_t whylen)
{
	uint64_t v;

	for (size_t i = 0; i < sizeof(dims) / sizeof(dims[0]); i++)
		if (strcmp(name, dims[i].name) == 0)
			return parse_list(&dims[i], value,
					  (struct bench_list *)(void *)((char *)s + dims[i].off),
					  why, whylen);
	if (strcmp(name, "msg-size") == 0) {
		if (bench_parse_size(value, &v) < 0 || v < 4096 || v > 64 * MIB)
			goto bad;
		s->msg_size = v;
		return 0;
	}
	if (strcmp(name, "reps") != 0 && strcmp(name, "vcpus") != 0 && strcmp(name, "seed") != 0 &&
	    strcmp(name, "timeout") != 0 && strcmp(name, "ceiling-time") != 0) {
		say(why, whylen, "unknown option --%s", name);
		return -ENOENT;
	}
	if (parse_uint(value, &v) < 0)
		goto bad;
	if (strcmp(name, "reps") == 0) {
		if (v < 1 || v > BENCH_MAX_REPS)
			goto bad;
		s->reps = (uint32_t)v;
	} else if (strcmp(name, "vcpus") == 0) {
		if (v < 1 || v > 64)
			goto bad;
		s->vcpus = (uint32_t)v;
	} else if (strcmp(name, "seed") == 0) {
		if (v < 1 || v > UINT32_MAX)
			goto bad;
		s->seed = (uint32_t)v;
	} else if (strcmp(name, "timeout") == 0) {
		if (v < 1000 || v > 24ull * 3600 * 1000)
			goto bad;
		s->timeout_ms = v;
	} else {
		if (v > 60000)
			goto bad;
		s->ceiling_ms = v;
	}
	return 0;
bad:
	say(why, whylen, "--%s: bad value '%s'", name, value);
	return -EINVAL;
}

int bench_matrix_expand(const struct bench_spec *s, struct bench_scenario **out)
{
	const struct bench_list *l[] = {&s->ram,      &s->dirty_rate, &s->pattern,   &s->transport,
					&s->channels, &s->reg,	      &s->page_size, &s->downtime};
	enum { NDIM = sizeof(l) / sizeof(l[0]) };
	uint32_t idx[NDIM] = {0};
	struct bench_scenario *sc;
	size_t n = 0;

	*out = NULL;
	for (int d = 0; d < NDIM; d++)
		if (l[d]->n == 0 || l[d]->n > BENCH_MAX_VALUES)
			return -EINVAL;
	sc = calloc(BENCH_MAX_SCENARIOS, sizeof(*sc));
	if (!sc)
		return -ENOMEM;
	for (;;) {
		bool idle = s->dirty_rate.v[idx[1]] == 0;
		bool rdma = s->transport.v[idx[3]] == BENCH_TR_RDMA;

		/* An idle guest writes nothing: its pattern does not matter; only rdma registers.
		 */
		if ((!idle || idx[2] == 0) && (rdma || idx[5] == 0)) {
			if (n == BENCH_MAX_SCENARIOS) {
				free(sc);
				return -E2BIG;
			}
			sc[n] = (struct bench_scenario){
			    .index = (uint32_t)n,
			    .ram_bytes = s->ram.v[idx[0]],
			    .dirty_rate = s->dirty_rate.v[idx[1]],
			    .pattern = idle ? BENCH_PATTERN_UNIFORM
					    : (enum bench_pattern)s->pattern.v[idx[2]],
			    .transport = (enum bench_transport)s->transport.v[idx[3]],
			    .channels = (uint32_t)s->channels.v[idx[4]],
			    .reg = rdma ? (int)s->reg.v[idx[5]] : BENCH_REG_NONE,
			    .page_size = s->page_size.v[idx[6]],
			    .downtime_ms = s->downtime.v[idx[7]],
			    .vcpus = idle ? 0 : s->vcpus,
			};
			n++;
		}
		/* The next combination, the last dimension fastest. */
		int d = NDIM - 1;

		while (d >= 0 && ++idx[d] == l[d]->n)
			idx[d--] = 0;
		if (d < 0)
			break;
	}
	*out = sc;
	return (int)n;
}

static void fmt_size(char *buf, size_t len, uint64_t v)
{
	if (v && v % (1ull << 30) == 0)
		snprintf(buf, len, "%lluG", (unsigned long long)(v >> 30));
	else if (v && v % (1ull << 20) == 0)
		snprintf(buf, len, "%lluM", (unsigned long long)(v >> 20));
	else if (v && v % 1024 == 0)
		snprintf(buf, len, "%lluk", (unsigned long long)(v >> 10));
	else
		snprintf(buf, len, "%llu", (unsigned long long)v);
}

void bench_scenario_label(const struct bench_scenario *sc, char *buf, size_t len)
{
	char ram[24], rate[24], ps[24];

	fmt_size(ram, sizeof(ram), sc->ram_bytes);
	fmt_size(rate, sizeof(rate), sc->dirty_rate);
	fmt_size(ps, sizeof(ps), sc->page_size);
	if (sc->dirty_rate)
		snprintf(buf, len, "%s %s/s %s %s ch%u%s%s %s dt%llu", ram, rate,
			 bench_pattern_name(sc->pattern), bench_transport_name(sc->transport),
			 sc->channels, sc->reg >= 0 ? " " : "",
			 sc->reg >= 0 ? bench_reg_name(sc->reg) : "", ps,
			 (unsigned long long)sc->downtime_ms);
	else
		snprintf(buf, len, "%s idle %s ch%u%s%s %s dt%llu", ram,
			 bench_transport_name(sc->transport), sc->channels, sc->reg >= 0 ? " " : "",
			 sc->reg >= 0 ? bench_reg_name(sc->reg) : "", ps,
			 (unsigned long long)sc->downtime_ms);
}
