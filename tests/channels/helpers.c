/* SPDX-License-Identifier: MIT */
#include <criterion/criterion.h>
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry/log.h>

#include "helpers.h"

#define CT_MAGIC 0x46505947u /* "FPYG" */

int ct_count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	cr_assert_not_null(d);
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n - 1; /* the directory's own descriptor */
}

int64_t ct_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void ct_fill_page(uint64_t *w, size_t index, uint64_t seed)
{
	uint64_t x = seed ^ ((uint64_t)index * 0x9e3779b97f4a7c15ull);

	for (size_t j = 0; j < CT_PAGE / 8; j++) {
		x += 0xbf58476d1ce4e5b9ull;
		w[j] = x ^ (x >> 29);
	}
}

static void *ct_map(size_t pages)
{
	void *p =
	    mmap(NULL, pages * CT_PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	cr_assert_neq(p, MAP_FAILED);
	return p;
}

uint8_t *ct_ram_new(size_t pages, uint64_t seed)
{
	uint8_t *ram = ct_map(pages);

	for (size_t i = 0; i < pages; i++)
		ct_fill_page((uint64_t *)(void *)(ram + i * CT_PAGE), i, seed);
	return ram;
}

uint8_t *ct_ram_zeroed(size_t pages)
{
	return ct_map(pages);
}

void ct_ram_free(uint8_t *ram, size_t pages)
{
	if (ram)
		munmap(ram, pages * CT_PAGE);
}

/* A fixed permutation of 0..pages-1 (pages is a power of two; 7919 is odd). */
static size_t ct_order(size_t i, size_t pages)
{
	return (i * 7919) & (pages - 1);
}

int ct_send_pages(struct ferry_writer *w, const uint8_t *ram, size_t pages)
{
	for (size_t i = 0; i < pages; i++) {
		size_t idx = ct_order(i, pages);

		ferry_put_be32(w, CT_MAGIC);
		ferry_put_be32(w, (uint32_t)idx);
		ferry_put_buffer_ref(w, ram + idx * CT_PAGE, CT_PAGE);
	}
	ferry_put_be32(w, ~CT_MAGIC);
	return ferry_writer_flush(w);
}

int ct_recv_pages(struct ferry_reader *r, uint8_t *ram, size_t pages)
{
	for (size_t i = 0; i < pages; i++) {
		uint32_t magic = ferry_get_be32(r);
		uint32_t idx = ferry_get_be32(r);

		if (ferry_reader_error(r))
			return ferry_reader_error(r);
		if (magic != CT_MAGIC || idx != ct_order(i, pages))
			return ferry_reader_fail(r, -EBADMSG, "page %zu: bad header %08x %u", i,
						 magic, idx);
		if (ferry_get_buffer(r, ram + (size_t)idx * CT_PAGE, CT_PAGE) < 0)
			return ferry_reader_error(r);
	}
	if (ferry_get_be32(r) != ~CT_MAGIC)
		return ferry_reader_fail(r, -EBADMSG, "bad end marker");
	return ferry_reader_error(r);
}

static void *ct_sender_main(void *arg)
{
	struct ct_sender *s = arg;
	struct ferry_writer *w;

	s->ret = ferry_channel_writer(s->ch, &w);
	if (s->ret < 0)
		return NULL;
	s->ret = ct_send_pages(w, s->ram, s->pages);
	int c = ferry_writer_close(w);
	if (!s->ret)
		s->ret = c;
	if (!s->ret && s->shutdown_write)
		s->ret = ferry_channel_shutdown_write(s->ch);
	if (s->close) {
		c = ferry_channel_close(s->ch);
		s->ch = NULL;
		if (!s->ret)
			s->ret = c;
	}
	return NULL;
}

void ct_sender_start(struct ct_sender *s)
{
	s->thread = malloc(sizeof(pthread_t));
	cr_assert_not_null(s->thread);
	cr_assert_eq(pthread_create(s->thread, NULL, ct_sender_main, s), 0);
}

int ct_sender_join(struct ct_sender *s)
{
	cr_assert(ct_join_within(s->thread, 60000), "sender thread did not finish");
	free(s->thread);
	s->thread = NULL;
	return s->ret;
}

void ct_transfer(struct ferry_channel *src, struct ferry_channel *dst, size_t pages, bool close_src)
{
	uint8_t *ram = ct_ram_new(pages, 0x1234 + pages);
	uint8_t *out = ct_ram_zeroed(pages);
	struct ct_sender s = {.ch = src,
			      .ram = ram,
			      .pages = pages,
			      .shutdown_write = !close_src,
			      .close = close_src};
	struct ferry_reader *r;
	int ret;

	cr_assert_eq(ferry_channel_reader(dst, &r), 0);
	ct_sender_start(&s);
	ret = ct_recv_pages(r, out, pages);
	cr_assert_eq(ret, 0, "receive: %s", ferry_reader_errmsg(r));
	/* The sender ended the stream: it ends exactly here. */
	cr_assert(ferry_reader_at_eof(r));
	cr_assert_eq(ferry_reader_error(r), 0);
	cr_assert_eq(ferry_reader_offset(r), (uint64_t)pages * (CT_PAGE + 8) + 4);
	ferry_reader_destroy(r);
	cr_assert_eq(ct_sender_join(&s), 0, "send: %s", ferry_strerror(s.ret));
	cr_assert(memcmp(ram, out, pages * CT_PAGE) == 0, "received pages differ");
	ct_ram_free(ram, pages);
	ct_ram_free(out, pages);
}

void ct_pair(const char *listen_text, struct ferry_channel **src, struct ferry_channel **dst)
{
	struct ferry_listener *l;
	struct ferry_uri u;
	char text[256];

	cr_assert_eq(ferry_uri_parse(listen_text, &u), 0, "%s", u.err);
	cr_assert_eq(ferry_listener_create(&u, &l), 0, "listen on %s", listen_text);
	/* Connect to the port the listener got (port 0 picks one). */
	if (u.scheme == FERRY_URI_TCP) {
		u.port = (uint16_t)ferry_listener_port(l);
		cr_assert_gt(u.port, 0);
	}
	ferry_uri_format(&u, text, sizeof(text));
	/* The kernel completes the handshake into the backlog: no thread needed. */
	cr_assert_eq(ferry_channel_connect(&u, 5000, src), 0, "connect to %s", text);
	cr_assert_eq(ferry_listener_accept(l, 5000, dst), 0);
	ferry_listener_destroy(l);
}

static void *ct_reader_main(void *arg)
{
	struct ct_reader_thread *t = arg;
	struct ferry_reader *r;
	void *buf = malloc(t->len);

	if (!buf) {
		t->ret = -ENOMEM;
		return NULL;
	}
	t->ret = ferry_channel_reader(t->ch, &r);
	if (t->ret == 0) {
		ferry_get_buffer(r, buf, t->len);
		t->ret = ferry_reader_error(r);
		ferry_reader_destroy(r);
	}
	free(buf);
	return NULL;
}

void ct_reader_start(struct ct_reader_thread *t)
{
	t->thread = malloc(sizeof(pthread_t));
	cr_assert_not_null(t->thread);
	cr_assert_eq(pthread_create(t->thread, NULL, ct_reader_main, t), 0);
}

static pthread_mutex_t ct_log_lock = PTHREAD_MUTEX_INITIALIZER;
static char ct_log_buf[65536];
static size_t ct_log_len;

static void ct_log_fn(void *opaque, enum ferry_log_level level, const char *module, const char *msg)
{
	size_t n = strlen(msg);

	(void)opaque;
	pthread_mutex_lock(&ct_log_lock);
	if (ct_log_len + n + 2 < sizeof(ct_log_buf)) {
		memcpy(ct_log_buf + ct_log_len, msg, n);
		ct_log_len += n;
		ct_log_buf[ct_log_len++] = '\n';
		ct_log_buf[ct_log_len] = '\0';
	}
	pthread_mutex_unlock(&ct_log_lock);
	if (getenv("FERRY_TEST_LOG"))
		ferry_log_stderr(NULL, level, module, msg);
}

void ct_log_capture(void)
{
	ct_log_len = 0;
	ct_log_buf[0] = '\0';
	ferry_set_log(ct_log_fn, NULL, FERRY_LOG_DEBUG);
}

bool ct_log_has(const char *needle)
{
	bool found;

	pthread_mutex_lock(&ct_log_lock);
	found = strstr(ct_log_buf, needle) != NULL;
	pthread_mutex_unlock(&ct_log_lock);
	return found;
}

/*
 * A free loopback port below the kernel's ephemeral range (32768 and up by
 * default). A port from that range can be picked as the source port of a
 * connect() retried against it before the listener is up, and then the
 * socket connects to itself (TCP simultaneous open) and the listener's bind
 * fails: seen as a rare failure of a test under valgrind.
 */
int ct_free_port(void)
{
	static unsigned int salt;
	unsigned int seed = (unsigned int)getpid() * 2654435761u + salt++ * 40503u;

	for (int i = 0; i < 200; i++) {
		struct sockaddr_in in = {.sin_family = AF_INET,
					 .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int port = 20000 + (int)((seed + (unsigned int)i * 7919u) % 12000u);
		int ok;

		cr_assert_geq(fd, 0);
		in.sin_port = htons((uint16_t)port);
		ok = bind(fd, (struct sockaddr *)&in, sizeof(in)) == 0;
		close(fd);
		if (ok)
			return port;
	}
	cr_assert_fail("no free port in 20000..31999");
	return -1;
}

bool ct_have_ipv6(void)
{
	struct sockaddr_in6 in6 = {.sin6_family = AF_INET6, .sin6_addr = IN6ADDR_LOOPBACK_INIT};
	int fd = socket(AF_INET6, SOCK_STREAM | SOCK_CLOEXEC, 0);
	bool ok;

	if (fd < 0)
		return false;
	ok = bind(fd, (struct sockaddr *)&in6, sizeof(in6)) == 0;
	close(fd);
	return ok;
}

bool ct_join_within(void *thread, int ms)
{
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	ts.tv_sec += ms / 1000;
	ts.tv_nsec += (long)(ms % 1000) * 1000000;
	if (ts.tv_nsec >= 1000000000) {
		ts.tv_sec++;
		ts.tv_nsec -= 1000000000;
	}
	return pthread_timedjoin_np(*(pthread_t *)thread, NULL, &ts) == 0;
}

bool ct_tls_certs(char *dir, size_t size, char *why, size_t whysize)
{
	char cmd[1024];
	const char *tmp = getenv("TMPDIR");

	if (system("command -v certtool >/dev/null 2>&1") != 0) {
		snprintf(why, whysize, "certtool (Debian gnutls-bin) is not installed");
		return false;
	}
	snprintf(dir, size, "%s/ferry-tls-XXXXXX", tmp && tmp[0] ? tmp : "/tmp");
	if (!mkdtemp(dir)) {
		snprintf(why, whysize, "mkdtemp: %s", strerror(errno));
		return false;
	}
	snprintf(cmd, sizeof(cmd), "sh %s/tests/channels/make-tls-certs.sh %s", FERRY_SOURCE_DIR,
		 dir);
	if (system(cmd) != 0) {
		snprintf(why, whysize, "making the certificates failed (%s)", cmd);
		return false;
	}
	return true;
}

void ct_tls_certs_remove(const char *dir)
{
	char cmd[600];

	if (!dir[0] || strncmp(dir, "/", 1) != 0 || !strstr(dir, "/ferry-tls-"))
		return;
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	(void)system(cmd);
}

static char tls_suite_dir[256];

void ct_tls_suite_setup(void)
{
	char why[256];

	if (getenv("FERRY_TEST_LOG"))
		ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_DEBUG);
	if (!ct_tls_certs(tls_suite_dir, sizeof(tls_suite_dir), why, sizeof(why))) {
		tls_suite_dir[0] = '\0';
		cr_skip_test("%s", why);
	}
}

void ct_tls_suite_teardown(void)
{
	ct_tls_certs_remove(tls_suite_dir);
}

const char *ct_tls_path(const char *name)
{
	static char buf[8][512];
	static int i;

	i = (i + 1) % 8;
	snprintf(buf[i], sizeof(buf[i]), "%s/%s", tls_suite_dir, name);
	return buf[i];
}

void ct_psk_file(char *path, size_t len)
{
	unsigned char key[32];
	FILE *f, *r = fopen("/dev/urandom", "rb");
	int fd;

	cr_assert_not_null(r);
	cr_assert_eq(fread(key, 1, sizeof(key), r), sizeof(key));
	fclose(r);
	snprintf(path, len, "/tmp/ferry-psk-XXXXXX");
	fd = mkstemp(path);
	cr_assert_geq(fd, 0);
	f = fdopen(fd, "w");
	cr_assert_not_null(f);
	fprintf(f, "ferry:");
	for (size_t i = 0; i < sizeof(key); i++)
		fprintf(f, "%02x", key[i]);
	fprintf(f, "\n");
	cr_assert_eq(fclose(f), 0);
}
