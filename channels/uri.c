/* SPDX-License-Identifier: MIT */
/*
 * Migration URIs: parse into fixed-size caller storage, and print back.
 * Only syntax is checked here; names are resolved and paths opened by the
 * channel that uses them. A message for every way a URI can be wrong, since a
 * user typing a URI on a command line deserves better than "invalid argument".
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <ferry/error.h>

#include "internal.h"

/* Longer than any valid URI: stops strlen() on a hostile unterminated input early. */
#define URI_TEXT_MAX (FERRY_URI_PATH_MAX + 16)
/* How much of an offending token a message quotes. */
#define QUOTE_MAX 40

static const struct {
	const char *name;
	enum ferry_uri_scheme scheme;
} uri_schemes[] = {
    {"tcp", FERRY_URI_TCP},   {"unix", FERRY_URI_UNIX}, {"fd", FERRY_URI_FD},
    {"file", FERRY_URI_FILE}, {"exec", FERRY_URI_EXEC}, {"rdma", FERRY_URI_RDMA},
};

const char *ferry_uri_scheme_name(enum ferry_uri_scheme scheme)
{
	for (size_t i = 0; i < sizeof(uri_schemes) / sizeof(uri_schemes[0]); i++)
		if (uri_schemes[i].scheme == scheme)
			return uri_schemes[i].name;
	return "none";
}

/*
 * Quote @len bytes of @s for a message: cut to QUOTE_MAX with "...", and
 * non-printable bytes shown as '?' so a message never carries control
 * characters to a terminal or log.
 */
static const char *uri_quote(char buf[QUOTE_MAX + 4], const char *s, size_t len)
{
	size_t n = len > QUOTE_MAX ? QUOTE_MAX : len;

	for (size_t i = 0; i < n; i++)
		buf[i] = isprint((unsigned char)s[i]) ? s[i] : '?';
	if (n < len) {
		memcpy(buf + n, "...", 3);
		n += 3;
	}
	buf[n] = '\0';
	return buf;
}

__attribute__((format(printf, 3, 4))) static int uri_fail(struct ferry_uri *u, const char *text,
							  const char *fmt, ...)
{
	char q[QUOTE_MAX + 4];
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(u->err, sizeof(u->err), fmt, ap);
	va_end(ap);
	u->scheme = FERRY_URI_NONE;
	chan_warn("bad URI '%s': %s", uri_quote(q, text, strnlen(text, URI_TEXT_MAX)), u->err);
	return FERRY_EBADURI;
}

/* Parse a port: decimal digits only, 0..65535. */
static int uri_port(struct ferry_uri *u, const char *text, const char *scheme, const char *p)
{
	char q[QUOTE_MAX + 4];
	size_t len = strlen(p);
	unsigned long v = 0;

	if (len == 0)
		return uri_fail(u, text, "%s: missing port (expected %s:HOST:PORT)", scheme,
				scheme);
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)p[i]))
			return uri_fail(u, text, "%s: port '%s' is not a number", scheme,
					uri_quote(q, p, len));
		/* Stop accumulating once out of range; the digits still get checked. */
		if (v <= 65535)
			v = v * 10 + (unsigned long)(p[i] - '0');
	}
	if (v > 65535)
		return uri_fail(u, text, "%s: port '%s' out of range (0-65535)", scheme,
				uri_quote(q, p, len));
	u->port = (uint16_t)v;
	return 0;
}

static bool uri_host_char(char c)
{
	return isalnum((unsigned char)c) || c == '-' || c == '.' || c == '_';
}

/* HOST:PORT, [IPV6]:PORT or :PORT, for tcp: and rdma:. */
static int uri_host_port(struct ferry_uri *u, const char *text, const char *scheme,
			 const char *rest)
{
	char q[QUOTE_MAX + 4];
	const char *port;
	size_t hlen;

	if (*rest == '\0')
		return uri_fail(u, text, "%s: missing host and port (expected %s:HOST:PORT)",
				scheme, scheme);
	if (*rest == '[') {
		const char *close = strchr(rest, ']');
		const char *zone;
		char addr[INET6_ADDRSTRLEN + 1];
		struct in6_addr a6;
		size_t alen;

		if (!close)
			return uri_fail(u, text, "%s: missing ']' after IPv6 address", scheme);
		hlen = (size_t)(close - rest - 1);
		if (hlen == 0)
			return uri_fail(u, text, "%s: empty IPv6 address '[]'", scheme);
		/* A link-local address may carry a zone: [fe80::1%eth0]. */
		zone = memchr(rest + 1, '%', hlen);
		alen = zone ? (size_t)(zone - rest - 1) : hlen;
		if (alen >= sizeof(addr))
			return uri_fail(u, text, "%s: '%s' is not a valid IPv6 address", scheme,
					uri_quote(q, rest + 1, hlen));
		memcpy(addr, rest + 1, alen);
		addr[alen] = '\0';
		if (inet_pton(AF_INET6, addr, &a6) != 1)
			return uri_fail(u, text, "%s: '%s' is not a valid IPv6 address", scheme,
					uri_quote(q, rest + 1, hlen));
		if (zone) {
			size_t zlen = hlen - alen - 1;

			if (zlen == 0 || zlen >= 64)
				return uri_fail(u, text, "%s: bad zone in IPv6 address '%s'",
						scheme, uri_quote(q, rest + 1, hlen));
			for (size_t i = 1; i <= zlen; i++)
				if (!uri_host_char(zone[i]))
					return uri_fail(u, text,
							"%s: bad zone in IPv6 address '%s'", scheme,
							uri_quote(q, rest + 1, hlen));
		}
		memcpy(u->host, rest + 1, hlen);
		u->host[hlen] = '\0';
		u->host_is_ipv6 = true;
		if (close[1] == '\0')
			return uri_fail(u, text, "%s: missing port (expected %s:[ADDRESS]:PORT)",
					scheme, scheme);
		if (close[1] != ':')
			return uri_fail(u, text, "%s: expected ':' after ']', found '%s'", scheme,
					uri_quote(q, close + 1, strlen(close + 1)));
		port = close + 2;
	} else {
		const char *colon = strrchr(rest, ':');
		bool numeric = true;

		if (!colon)
			return uri_fail(u, text, "%s: missing port (expected %s:HOST:PORT)", scheme,
					scheme);
		hlen = (size_t)(colon - rest);
		if (memchr(rest, ':', hlen))
			return uri_fail(u, text,
					"%s: IPv6 address '%s' must be written in brackets, e.g. "
					"%s:[::1]:PORT",
					scheme, uri_quote(q, rest, hlen), scheme);
		if (hlen >= FERRY_URI_HOST_MAX)
			return uri_fail(u, text,
					"%s: host name is %zu characters long, the limit is %d",
					scheme, hlen, FERRY_URI_HOST_MAX - 1);
		for (size_t i = 0; i < hlen; i++) {
			if (!uri_host_char(rest[i]))
				return uri_fail(u, text,
						"%s: host '%s' contains an invalid character",
						scheme, uri_quote(q, rest, hlen));
			if (!isdigit((unsigned char)rest[i]) && rest[i] != '.')
				numeric = false;
		}
		memcpy(u->host, rest, hlen);
		u->host[hlen] = '\0';
		/* Digits and dots only is meant as an IPv4 address; check it is one. */
		if (hlen > 0 && numeric) {
			struct in_addr a4;

			if (inet_pton(AF_INET, u->host, &a4) != 1)
				return uri_fail(u, text, "%s: '%s' is not a valid IPv4 address",
						scheme, uri_quote(q, rest, hlen));
		}
		port = colon + 1;
	}
	return uri_port(u, text, scheme, port);
}

/* Decimal or 0x-hex, into a uint64_t that fits an off_t. */
static int uri_offset(struct ferry_uri *u, const char *text, const char *v, size_t len)
{
	char q[QUOTE_MAX + 4];
	uint64_t x = 0;
	unsigned base = 10;
	size_t i = 0;

	if (len == 0)
		return uri_fail(u, text, "file: missing value for offset");
	if (len > 2 && v[0] == '0' && (v[1] == 'x' || v[1] == 'X')) {
		base = 16;
		i = 2;
	}
	for (; i < len; i++) {
		unsigned d;

		if (isdigit((unsigned char)v[i]))
			d = (unsigned)(v[i] - '0');
		else if (base == 16 && isxdigit((unsigned char)v[i]))
			d = (unsigned)(tolower((unsigned char)v[i]) - 'a' + 10);
		else
			return uri_fail(u, text, "file: offset '%s' is not a number",
					uri_quote(q, v, len));
		if (x > ((uint64_t)INT64_MAX - d) / base)
			return uri_fail(u, text, "file: offset '%s' is too large",
					uri_quote(q, v, len));
		x = x * base + d;
	}
	if (x % FERRY_URI_FILE_ALIGN)
		return uri_fail(u, text, "file: offset '%s' is not a multiple of %d",
				uri_quote(q, v, len), FERRY_URI_FILE_ALIGN);
	u->offset = x;
	u->has_offset = true;
	return 0;
}

/* PATH or PATH,offset=N: the last comma-separated part is an option if it has a '='. */
static int uri_file(struct ferry_uri *u, const char *text, const char *rest)
{
	char q[QUOTE_MAX + 4];
	const char *comma = strrchr(rest, ',');
	size_t plen = strlen(rest);

	if (comma && strchr(comma, '=')) {
		const char *eq = strchr(comma, '=');
		size_t klen = (size_t)(eq - comma - 1);
		int ret;

		if (klen != 6 || memcmp(comma + 1, "offset", 6) != 0)
			return uri_fail(u, text,
					"file: unknown option '%s' (the only one is offset=N)",
					uri_quote(q, comma + 1, klen));
		ret = uri_offset(u, text, eq + 1, strlen(eq + 1));
		if (ret < 0)
			return ret;
		plen = (size_t)(comma - rest);
	}
	if (plen == 0)
		return uri_fail(u, text, "file: missing path");
	if (plen >= FERRY_URI_PATH_MAX)
		return uri_fail(u, text, "file: path is %zu bytes long, the limit is %d", plen,
				FERRY_URI_PATH_MAX - 1);
	memcpy(u->path, rest, plen);
	u->path[plen] = '\0';
	return 0;
}

static int uri_fd(struct ferry_uri *u, const char *text, const char *rest)
{
	char q[QUOTE_MAX + 4];
	size_t len = strlen(rest);
	long long v = 0;

	if (len == 0)
		return uri_fail(u, text, "fd: missing descriptor number");
	for (size_t i = 0; i < len; i++) {
		if (!isdigit((unsigned char)rest[i]))
			return uri_fail(u, text, "fd: '%s' is not a descriptor number",
					uri_quote(q, rest, len));
		if (v <= INT_MAX)
			v = v * 10 + (rest[i] - '0');
	}
	if (v > INT_MAX)
		return uri_fail(u, text, "fd: descriptor number '%s' out of range",
				uri_quote(q, rest, len));
	u->fd = (int)v;
	return 0;
}

int ferry_uri_parse(const char *text, struct ferry_uri *out)
{
	char q[QUOTE_MAX + 4];
	const char *colon, *rest;
	size_t len, slen, i;

	memset(out, 0, sizeof(*out));
	out->fd = -1;
	if (!text)
		return uri_fail(out, "", "no URI given");
	len = strnlen(text, URI_TEXT_MAX + 1);
	if (len == 0)
		return uri_fail(out, text, "empty URI");
	if (len > URI_TEXT_MAX)
		return uri_fail(out, text, "URI longer than %d characters", URI_TEXT_MAX);
	colon = strchr(text, ':');
	if (!colon)
		return uri_fail(out, text,
				"missing scheme in '%s' (expected tcp:, unix:, fd:, file:, exec: "
				"or rdma:)",
				uri_quote(q, text, len));
	slen = (size_t)(colon - text);
	rest = colon + 1;
	for (i = 0; i < sizeof(uri_schemes) / sizeof(uri_schemes[0]); i++)
		if (strlen(uri_schemes[i].name) == slen &&
		    strncasecmp(uri_schemes[i].name, text, slen) == 0)
			break;
	if (i == sizeof(uri_schemes) / sizeof(uri_schemes[0]))
		return uri_fail(out, text,
				"unknown scheme '%s' (expected tcp, unix, fd, file, exec or rdma)",
				uri_quote(q, text, slen));

	int ret = 0;
	switch (uri_schemes[i].scheme) {
	case FERRY_URI_TCP:
		ret = uri_host_port(out, text, "tcp", rest);
		break;
	case FERRY_URI_RDMA:
		ret = uri_host_port(out, text, "rdma", rest);
		break;
	case FERRY_URI_UNIX: {
		size_t plen = strlen(rest);

		if (plen == 0)
			ret = uri_fail(out, text, "unix: missing socket path");
		else if (plen >= FERRY_URI_UNIX_MAX)
			ret = uri_fail(out, text,
				       "unix: socket path is %zu bytes long, the limit is %d", plen,
				       FERRY_URI_UNIX_MAX - 1);
		else
			memcpy(out->path, rest, plen + 1);
		break;
	}
	case FERRY_URI_FD:
		ret = uri_fd(out, text, rest);
		break;
	case FERRY_URI_FILE:
		ret = uri_file(out, text, rest);
		break;
	case FERRY_URI_EXEC: {
		size_t clen = strlen(rest);
		bool blank = true;

		for (size_t k = 0; k < clen && blank; k++)
			blank = isspace((unsigned char)rest[k]);
		if (blank)
			ret = uri_fail(out, text, "exec: missing command");
		else if (clen >= FERRY_URI_PATH_MAX)
			ret =
			    uri_fail(out, text, "exec: command is %zu bytes long, the limit is %d",
				     clen, FERRY_URI_PATH_MAX - 1);
		else
			memcpy(out->path, rest, clen + 1);
		break;
	}
	case FERRY_URI_NONE:
		break;
	}
	if (ret < 0)
		return ret;
	out->scheme = uri_schemes[i].scheme;
	return 0;
}

int ferry_uri_format(const struct ferry_uri *uri, char *buf, size_t size)
{
	const char *name = ferry_uri_scheme_name(uri->scheme);
	int n;

	switch (uri->scheme) {
	case FERRY_URI_TCP:
	case FERRY_URI_RDMA:
		if (uri->host_is_ipv6)
			n = snprintf(buf, size, "%s:[%s]:%u", name, uri->host, uri->port);
		else
			n = snprintf(buf, size, "%s:%s:%u", name, uri->host, uri->port);
		break;
	case FERRY_URI_UNIX:
	case FERRY_URI_EXEC:
		n = snprintf(buf, size, "%s:%s", name, uri->path);
		break;
	case FERRY_URI_FD:
		n = snprintf(buf, size, "fd:%d", uri->fd);
		break;
	case FERRY_URI_FILE:
		if (uri->has_offset)
			n = snprintf(buf, size, "file:%s,offset=0x%" PRIx64, uri->path,
				     uri->offset);
		else
			n = snprintf(buf, size, "file:%s", uri->path);
		break;
	default:
		if (size > 0)
			buf[0] = '\0';
		return -EINVAL;
	}
	return n < 0 ? -EINVAL : n;
}
