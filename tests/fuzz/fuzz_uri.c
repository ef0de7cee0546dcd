/* SPDX-License-Identifier: MIT */
/*
 * fuzz_uri: the URI parser and formatter (channels/uri.c). The input is the
 * text of a URI (a NUL inside cuts it, as for a C string).
 *
 * Checks, besides the sanitizers: a refused URI says why and is left with
 * no scheme; an accepted one formats (into a buffer of exactly the size
 * format asked for), parses back to an equal URI, and formats again to the
 * same text: parse -> format -> parse is stable.
 */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <ferry/channel.h>
#include <ferry/log.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)                                                                                \
	do {                                                                                       \
		if (!(cond))                                                                       \
			__builtin_trap();                                                          \
	} while (0)

static void quiet(void *opaque, enum ferry_log_level level, const char *module, const char *msg)
{
	(void)opaque;
	(void)level;
	(void)module;
	(void)msg;
}

static bool uri_equal(const struct ferry_uri *a, const struct ferry_uri *b)
{
	return a->scheme == b->scheme && strcmp(a->host, b->host) == 0 &&
	       a->host_is_ipv6 == b->host_is_ipv6 && a->port == b->port &&
	       strcmp(a->path, b->path) == 0 && a->fd == b->fd && a->offset == b->offset &&
	       a->has_offset == b->has_offset;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct ferry_uri a, b;
	static bool quieted;
	char *text = malloc(size + 1), *f1 = NULL, *f2 = NULL;
	int n1, n2;

	if (!quieted) {
		ferry_set_log(quiet, NULL, FERRY_LOG_ERROR);
		quieted = true;
	}
	if (!text)
		abort();
	memcpy(text, data, size);
	text[size] = '\0';
	if (ferry_uri_parse(text, &a) != 0) {
		CHECK(a.scheme == FERRY_URI_NONE);
		CHECK(a.err[0] != '\0');
		CHECK(memchr(a.err, '\0', sizeof(a.err)) != NULL);
		goto out;
	}
	CHECK(a.err[0] == '\0');
	n1 = ferry_uri_format(&a, NULL, 0);
	CHECK(n1 > 0);
	f1 = malloc((size_t)n1 + 1);
	if (!f1)
		abort();
	CHECK(ferry_uri_format(&a, f1, (size_t)n1 + 1) == n1);
	CHECK(strlen(f1) == (size_t)n1);
	CHECK(ferry_uri_parse(f1, &b) == 0);
	CHECK(uri_equal(&a, &b));
	n2 = ferry_uri_format(&b, NULL, 0);
	CHECK(n2 == n1);
	f2 = malloc((size_t)n2 + 1);
	if (!f2)
		abort();
	CHECK(ferry_uri_format(&b, f2, (size_t)n2 + 1) == n2);
	CHECK(strcmp(f1, f2) == 0);
out:
	free(f2);
	free(f1);
	free(text);
	return 0;
}
