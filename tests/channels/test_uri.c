/* SPDX-License-Identifier: MIT */
/* URI parsing: every scheme's good forms, print-back, and bad URIs with their messages. */
#include <criterion/criterion.h>
#include <errno.h>
#include <string.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

TestSuite(channels_uri, .timeout = 10);

struct good_case {
	const char *text;
	enum ferry_uri_scheme scheme;
	const char *host;
	bool ipv6;
	int port;
	const char *path;
	int fd;
	uint64_t offset;
	const char *canon; /* ferry_uri_format()'s output; NULL: same as text */
};

static const struct good_case good[] = {
    {"tcp:127.0.0.1:4444", FERRY_URI_TCP, "127.0.0.1", false, 4444, "", -1, 0, NULL},
    {"tcp:localhost:1", FERRY_URI_TCP, "localhost", false, 1, "", -1, 0, NULL},
    {"tcp:dest-host.example.org:65535", FERRY_URI_TCP, "dest-host.example.org", false, 65535, "",
     -1, 0, NULL},
    {"tcp:[::1]:4444", FERRY_URI_TCP, "::1", true, 4444, "", -1, 0, NULL},
    {"tcp:[fe80::1%eth0]:7", FERRY_URI_TCP, "fe80::1%eth0", true, 7, "", -1, 0, NULL},
    {"tcp:[2001:db8::42]:0", FERRY_URI_TCP, "2001:db8::42", true, 0, "", -1, 0, NULL},
    {"tcp:0.0.0.0:0", FERRY_URI_TCP, "0.0.0.0", false, 0, "", -1, 0, NULL},
    {"tcp::4444", FERRY_URI_TCP, "", false, 4444, "", -1, 0, NULL},
    {"tcp:host:007", FERRY_URI_TCP, "host", false, 7, "", -1, 0, "tcp:host:7"},
    {"TCP:host:80", FERRY_URI_TCP, "host", false, 80, "", -1, 0, "tcp:host:80"},
    {"rdma:192.168.1.2:4444", FERRY_URI_RDMA, "192.168.1.2", false, 4444, "", -1, 0, NULL},
    {"rdma:[::1]:1", FERRY_URI_RDMA, "::1", true, 1, "", -1, 0, NULL},
    {"unix:/run/ferry.sock", FERRY_URI_UNIX, "", false, 0, "/run/ferry.sock", -1, 0, NULL},
    {"unix:relative.sock", FERRY_URI_UNIX, "", false, 0, "relative.sock", -1, 0, NULL},
    {"fd:0", FERRY_URI_FD, "", false, 0, "", 0, 0, NULL},
    {"fd:42", FERRY_URI_FD, "", false, 0, "", 42, 0, NULL},
    {"fd:2147483647", FERRY_URI_FD, "", false, 0, "", 2147483647, 0, NULL},
    {"file:/tmp/vm.state", FERRY_URI_FILE, "", false, 0, "/tmp/vm.state", -1, 0, NULL},
    {"file:/tmp/vm.state,offset=0x1000", FERRY_URI_FILE, "", false, 0, "/tmp/vm.state", -1, 0x1000,
     NULL},
    {"file:/tmp/vm.state,offset=8192", FERRY_URI_FILE, "", false, 0, "/tmp/vm.state", -1, 8192,
     "file:/tmp/vm.state,offset=0x2000"},
    {"file:/tmp/vm.state,offset=0", FERRY_URI_FILE, "", false, 0, "/tmp/vm.state", -1, 0,
     "file:/tmp/vm.state,offset=0x0"},
    {"file:/tmp/a,b", FERRY_URI_FILE, "", false, 0, "/tmp/a,b", -1, 0, NULL},
    {"file:/tmp/a,b,offset=0X7FFFFFFFFFFFF000", FERRY_URI_FILE, "", false, 0, "/tmp/a,b", -1,
     0x7ffffffffffff000ull, "file:/tmp/a,b,offset=0x7ffffffffffff000"},
    {"exec:cat > /tmp/x", FERRY_URI_EXEC, "", false, 0, "cat > /tmp/x", -1, 0, NULL},
    {"exec:gzip -c | ssh host 'cat > a:b'", FERRY_URI_EXEC, "", false, 0,
     "gzip -c | ssh host 'cat > a:b'", -1, 0, NULL},
};

Test(channels_uri, good_uris_parse_and_print_back)
{
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		const struct good_case *c = &good[i];
		struct ferry_uri u, again;
		char buf[512];
		int n;

		cr_assert_eq(ferry_uri_parse(c->text, &u), 0, "%s: %s", c->text, u.err);
		cr_assert_eq(u.scheme, c->scheme, "%s", c->text);
		cr_assert_str_eq(u.host, c->host, "%s", c->text);
		cr_assert_eq(u.host_is_ipv6, c->ipv6, "%s", c->text);
		cr_assert_eq(u.port, c->port, "%s", c->text);
		cr_assert_str_eq(u.path, c->path, "%s", c->text);
		cr_assert_eq(u.fd, c->fd, "%s", c->text);
		cr_assert_eq(u.offset, c->offset, "%s", c->text);
		cr_assert_str_empty(u.err, "%s", c->text);

		n = ferry_uri_format(&u, buf, sizeof(buf));
		cr_assert_eq(n, (int)strlen(buf));
		cr_assert_str_eq(buf, c->canon ? c->canon : c->text);
		/* The printed form parses back to the same URI. */
		cr_assert_eq(ferry_uri_parse(buf, &again), 0, "%s", buf);
		cr_assert(memcmp(&u, &again, sizeof(u)) == 0, "%s does not round-trip", buf);
	}
}

struct bad_case {
	const char *text;
	const char *msg; /* the whole of uri.err */
};

static const struct bad_case bad[] = {
    {"", "empty URI"},
    {"localhost",
     "missing scheme in 'localhost' (expected tcp:, unix:, fd:, file:, exec: or rdma:)"},
    {"foo:bar", "unknown scheme 'foo' (expected tcp, unix, fd, file, exec or rdma)"},
    {"http://x:80", "unknown scheme 'http' (expected tcp, unix, fd, file, exec or rdma)"},
    {":4444", "unknown scheme '' (expected tcp, unix, fd, file, exec or rdma)"},
    {"tcp:", "tcp: missing host and port (expected tcp:HOST:PORT)"},
    {"tcp:host", "tcp: missing port (expected tcp:HOST:PORT)"},
    {"tcp:host:", "tcp: missing port (expected tcp:HOST:PORT)"},
    {"tcp:host:99999", "tcp: port '99999' out of range (0-65535)"},
    {"tcp:host:65536", "tcp: port '65536' out of range (0-65535)"},
    {"tcp:host:123456789012345678901234567890",
     "tcp: port '123456789012345678901234567890' out of range (0-65535)"},
    {"tcp:host:http", "tcp: port 'http' is not a number"},
    {"tcp:host:-1", "tcp: port '-1' is not a number"},
    {"tcp:host:80 ", "tcp: port '80 ' is not a number"},
    {"tcp:host:4444,ipv4", "tcp: port '4444,ipv4' is not a number"},
    {"tcp:::1:4444", "tcp: IPv6 address '::1' must be written in brackets, e.g. tcp:[::1]:PORT"},
    {"tcp:[::1]", "tcp: missing port (expected tcp:[ADDRESS]:PORT)"},
    {"tcp:[::1]4444", "tcp: expected ':' after ']', found '4444'"},
    {"tcp:[::1:4444", "tcp: missing ']' after IPv6 address"},
    {"tcp:[]:4444", "tcp: empty IPv6 address '[]'"},
    {"tcp:[::g]:4444", "tcp: '::g' is not a valid IPv6 address"},
    {"tcp:[127.0.0.1]:4444", "tcp: '127.0.0.1' is not a valid IPv6 address"},
    {"tcp:[fe80::1%]:4444", "tcp: bad zone in IPv6 address 'fe80::1%'"},
    {"tcp:[fe80::1%e/0]:4444", "tcp: bad zone in IPv6 address 'fe80::1%e/0'"},
    {"tcp:999.1.1.1:80", "tcp: '999.1.1.1' is not a valid IPv4 address"},
    {"tcp:1.2.3:80", "tcp: '1.2.3' is not a valid IPv4 address"},
    {"tcp:bad host:80", "tcp: host 'bad host' contains an invalid character"},
    {"tcp:a/b:80", "tcp: host 'a/b' contains an invalid character"},
    {"tcp:ho\x01st:80", "tcp: host 'ho?st' contains an invalid character"},
    {"rdma:host", "rdma: missing port (expected rdma:HOST:PORT)"},
    {"rdma:host:70000", "rdma: port '70000' out of range (0-65535)"},
    {"unix:", "unix: missing socket path"},
    {"fd:", "fd: missing descriptor number"},
    {"fd:abc", "fd: 'abc' is not a descriptor number"},
    {"fd:-1", "fd: '-1' is not a descriptor number"},
    {"fd:3x", "fd: '3x' is not a descriptor number"},
    {"fd:2147483648", "fd: descriptor number '2147483648' out of range"},
    {"file:", "file: missing path"},
    {"file:,offset=0", "file: missing path"},
    {"file:/x,offset=", "file: missing value for offset"},
    {"file:/x,offset=0x", "file: offset '0x' is not a number"},
    {"file:/x,offset=12ab", "file: offset '12ab' is not a number"},
    {"file:/x,offset=-4096", "file: offset '-4096' is not a number"},
    {"file:/x,offset=0x1001", "file: offset '0x1001' is not a multiple of 4096"},
    {"file:/x,offset=100", "file: offset '100' is not a multiple of 4096"},
    {"file:/x,offset=0x8000000000000000", "file: offset '0x8000000000000000' is too large"},
    {"file:/x,offset=99999999999999999999", "file: offset '99999999999999999999' is too large"},
    {"file:/x,size=4096", "file: unknown option 'size' (the only one is offset=N)"},
    {"exec:", "exec: missing command"},
    {"exec:   ", "exec: missing command"},
};

Test(channels_uri, bad_uris_fail_with_a_message)
{
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ferry_uri u;

		cr_assert_eq(ferry_uri_parse(bad[i].text, &u), FERRY_EBADURI, "'%s' parsed",
			     bad[i].text);
		cr_assert_eq(u.scheme, FERRY_URI_NONE, "%s", bad[i].text);
		cr_assert_str_eq(u.err, bad[i].msg, "for '%s'", bad[i].text);
	}
}

Test(channels_uri, failure_is_logged)
{
	struct ferry_uri u;

	ct_log_capture();
	cr_assert_eq(ferry_uri_parse("tcp:host:99999", &u), FERRY_EBADURI);
	cr_assert(ct_log_has("bad URI 'tcp:host:99999': tcp: port '99999' out of range (0-65535)"));
}

Test(channels_uri, null_and_overlong_inputs)
{
	static char huge[FERRY_URI_PATH_MAX + 64];
	struct ferry_uri u;

	cr_assert_eq(ferry_uri_parse(NULL, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "no URI given");

	/* Long fields are refused with their length, never cut silently. */
	memset(huge, 'a', sizeof(huge) - 1);
	memcpy(huge, "unix:", 5);
	huge[5 + FERRY_URI_UNIX_MAX] = '\0'; /* a path of exactly 108 bytes */
	cr_assert_eq(ferry_uri_parse(huge, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "unix: socket path is 108 bytes long, the limit is 107");
	huge[5 + FERRY_URI_UNIX_MAX - 1] = '\0'; /* 107 bytes: fits */
	cr_assert_eq(ferry_uri_parse(huge, &u), 0, "%s", u.err);
	cr_assert_eq(strlen(u.path), FERRY_URI_UNIX_MAX - 1);

	memset(huge, 'h', sizeof(huge) - 1);
	memcpy(huge, "tcp:", 4);
	memcpy(huge + 4 + 254, ":80", 4); /* a 254-character host name */
	cr_assert_eq(ferry_uri_parse(huge, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "tcp: host name is 254 characters long, the limit is 253");

	memset(huge, 'x', sizeof(huge) - 1);
	huge[sizeof(huge) - 1] = '\0';
	memcpy(huge, "exec:", 5);
	huge[5 + FERRY_URI_PATH_MAX] = '\0';
	cr_assert_eq(ferry_uri_parse(huge, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "exec: command is 4096 bytes long, the limit is 4095");

	memcpy(huge, "file:", 5);
	cr_assert_eq(ferry_uri_parse(huge, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "file: path is 4096 bytes long, the limit is 4095");

	/* Past every field's limit the whole text is refused before scanning it. */
	huge[5 + FERRY_URI_PATH_MAX] = 'x';
	cr_assert_eq(ferry_uri_parse(huge, &u), FERRY_EBADURI);
	cr_assert_str_eq(u.err, "URI longer than 4112 characters");

	/* Long tokens are quoted cut short. */
	cr_assert_eq(ferry_uri_parse("tcp:h:1234567890123456789012345678901234567890123", &u),
		     FERRY_EBADURI);
	cr_assert_str_eq(u.err,
			 "tcp: port '1234567890123456789012345678901234567890...' out of range "
			 "(0-65535)");
}

Test(channels_uri, format_edges)
{
	struct ferry_uri u;
	char small[8];

	cr_assert_eq(ferry_uri_parse("tcp:[::1]:4444", &u), 0);
	/* Like snprintf: the full length comes back, the buffer holds a cut text. */
	cr_assert_eq(ferry_uri_format(&u, small, sizeof(small)), 14);
	cr_assert_str_eq(small, "tcp:[::");
	memset(&u, 0, sizeof(u));
	cr_assert_eq(ferry_uri_format(&u, small, sizeof(small)), -EINVAL);
	cr_assert_str_eq(small, "");
	cr_assert_str_eq(ferry_uri_scheme_name(FERRY_URI_EXEC), "exec");
	cr_assert_str_eq(ferry_uri_scheme_name(FERRY_URI_NONE), "none");
}
