/* SPDX-License-Identifier: MIT */
/* tcp channels over real loopback sockets: data, return path, errors, timeouts, cancel. */
#include <criterion/criterion.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <ferry/channel.h>
#include <ferry/error.h>

#include "helpers.h"

static void parse(const char *text, struct ferry_uri *u)
{
	cr_assert_eq(ferry_uri_parse(text, u), 0, "%s: %s", text, u->err);
}

Test(channels_tcp, ipv4_64mib_integrity, .timeout = 60)
{
	int fds = ct_count_fds();
	struct ferry_channel *src, *dst;
	char expect[64];

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	cr_assert_eq(ferry_channel_scheme(src), FERRY_URI_TCP);
	cr_assert(strncmp(ferry_channel_peer_name(src), "tcp:127.0.0.1:", 14) == 0, "%s",
		  ferry_channel_peer_name(src));
	/* Each side names the other: the source's local port is the destination's peer. */
	snprintf(expect, sizeof(expect), "tcp:127.0.0.1:");
	cr_assert(strncmp(ferry_channel_peer_name(dst), expect, strlen(expect)) == 0);
	cr_assert_str_neq(ferry_channel_peer_name(dst), ferry_channel_peer_name(src));
	ct_transfer_big(src, dst);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, ipv6_64mib_integrity, .timeout = 60)
{
	struct ferry_channel *src, *dst;
	int fds = ct_count_fds();

	if (!ct_have_ipv6())
		cr_skip_test("::1 cannot be bound here (IPv6 disabled)");
	ct_pair("tcp:[::1]:0", &src, &dst);
	cr_assert(strncmp(ferry_channel_peer_name(src), "tcp:[::1]:", 10) == 0, "%s",
		  ferry_channel_peer_name(src));
	cr_assert(strncmp(ferry_channel_peer_name(dst), "tcp:[::1]:", 10) == 0, "%s",
		  ferry_channel_peer_name(dst));
	ct_transfer_big(src, dst);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, any_address_listener_and_host_name, .timeout = 30)
{
	struct ferry_listener *l;
	struct ferry_channel *src, *dst;
	struct ferry_uri u;
	char text[64];
	int fds = ct_count_fds();

	parse("tcp::0", &u);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	cr_assert_gt(ferry_listener_port(l), 0);
	/* Dual-stack where IPv6 exists, else IPv4: either way with the real port. */
	snprintf(text, sizeof(text), ":%d", ferry_listener_port(l));
	cr_assert(strstr(ferry_listener_name(l), text), "%s", ferry_listener_name(l));
	cr_assert(strncmp(ferry_listener_name(l), "tcp:[::]:", 9) == 0 ||
		      strncmp(ferry_listener_name(l), "tcp:0.0.0.0:", 12) == 0,
		  "%s", ferry_listener_name(l));

	/* "localhost" may resolve to ::1 and 127.0.0.1: whichever works is used. */
	snprintf(text, sizeof(text), "tcp:localhost:%d", ferry_listener_port(l));
	parse(text, &u);
	cr_assert_eq(ferry_channel_connect(&u, 5000, &src), 0);
	cr_assert_eq(ferry_listener_accept(l, 5000, &dst), 0);
	ct_transfer(src, dst, 256, false);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);

	/* An IPv4 client of a dual-stack listener is named as IPv4, not ::ffff:. */
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", ferry_listener_port(l));
	parse(text, &u);
	cr_assert_eq(ferry_channel_connect(&u, 5000, &src), 0);
	cr_assert_eq(ferry_listener_accept(l, 5000, &dst), 0);
	cr_assert(strncmp(ferry_channel_peer_name(dst), "tcp:127.0.0.1:", 14) == 0, "%s",
		  ferry_channel_peer_name(dst));
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ferry_listener_destroy(l);
	cr_assert_eq(ct_count_fds(), fds);
}

/* The destination reads the stream and acknowledges on the same socket while
 * the source is still sending: both directions at once, no deadlock. */
struct ack_side {
	struct ferry_channel *ch;
	uint8_t *out;
	int ret;
};

#define ACK_EVERY 256

static void *dest_main(void *arg)
{
	struct ack_side *d = arg;
	struct ferry_reader *r;
	struct ferry_writer *w;

	if (ferry_channel_reader(d->ch, &r) || ferry_channel_writer(d->ch, &w)) {
		d->ret = -ENOMEM;
		return NULL;
	}
	for (size_t chunk = 0; chunk < CT_BIG_PAGES / ACK_EVERY && !d->ret; chunk++) {
		d->ret = ct_recv_pages(r, d->out + chunk * ACK_EVERY * CT_PAGE, ACK_EVERY);
		ferry_put_be64(w, (chunk + 1) * ACK_EVERY);
		if (!d->ret)
			d->ret = ferry_writer_flush(w);
	}
	if (!d->ret)
		d->ret = ferry_writer_close(w);
	else
		ferry_writer_destroy(w);
	if (!d->ret)
		d->ret = ferry_channel_shutdown_write(d->ch);
	ferry_reader_destroy(r);
	return NULL;
}

static void *source_main(void *arg)
{
	struct ack_side *s = arg;
	struct ferry_writer *w;

	if (ferry_channel_writer(s->ch, &w)) {
		s->ret = -ENOMEM;
		return NULL;
	}
	for (size_t chunk = 0; chunk < CT_BIG_PAGES / ACK_EVERY && !s->ret; chunk++)
		s->ret = ct_send_pages(w, s->out + chunk * ACK_EVERY * CT_PAGE, ACK_EVERY);
	if (!s->ret)
		s->ret = ferry_writer_close(w);
	else
		ferry_writer_destroy(w);
	return NULL;
}

Test(channels_tcp, return_path_full_duplex, .timeout = 60)
{
	uint8_t *ram = ct_ram_new(CT_BIG_PAGES, 77);
	uint8_t *out = ct_ram_zeroed(CT_BIG_PAGES);
	struct ferry_channel *src, *dst;
	struct ferry_reader *acks;
	pthread_t st, dt;
	int fds = ct_count_fds();

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	struct ack_side s = {.ch = src, .out = ram};
	struct ack_side d = {.ch = dst, .out = out};
	cr_assert_eq(ferry_channel_reader(src, &acks), 0);
	cr_assert_eq(pthread_create(&dt, NULL, dest_main, &d), 0);
	cr_assert_eq(pthread_create(&st, NULL, source_main, &s), 0);
	/* The source's own thread reads the return path as the pages go out. */
	for (uint64_t i = 1; i <= CT_BIG_PAGES / ACK_EVERY; i++)
		cr_assert_eq(ferry_get_be64(acks), i * ACK_EVERY, "ack %llu: %s",
			     (unsigned long long)i, ferry_reader_errmsg(acks));
	cr_assert(ferry_reader_at_eof(acks));
	cr_assert_eq(ferry_reader_error(acks), 0);
	ferry_reader_destroy(acks);
	cr_assert(ct_join_within(&st, 30000));
	cr_assert(ct_join_within(&dt, 30000));
	cr_assert_eq(s.ret, 0, "%s", ferry_strerror(s.ret));
	cr_assert_eq(d.ret, 0, "%s", ferry_strerror(d.ret));
	cr_assert(memcmp(ram, out, CT_BIG_BYTES) == 0);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ferry_channel_close(dst), 0);
	ct_ram_free(ram, CT_BIG_PAGES);
	ct_ram_free(out, CT_BIG_PAGES);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, connection_refused_is_clear_and_fast, .timeout = 10)
{
	struct ferry_channel *ch = (void *)1;
	struct ferry_uri u;
	char text[64], msg[128];
	int fds = ct_count_fds();
	int port = ct_free_port();
	int64_t t0;

	ct_log_capture();
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", port);
	parse(text, &u);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_channel_connect(&u, 5000, &ch), -ECONNREFUSED);
	cr_assert_lt(ct_now_ms() - t0, 1000);
	cr_assert_null(ch);
	snprintf(msg, sizeof(msg), "tcp: connect to 127.0.0.1 port %d: Connection refused", port);
	cr_assert(ct_log_has(msg), "log lacks '%s'", msg);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, connect_timeout_is_bounded, .timeout = 30)
{
	/* A listener whose accept queue is full drops SYNs: a connect to it hangs
	 * in the handshake until our timeout, all on loopback. */
	struct ferry_channel *held[16] = {0};
	struct ferry_listener *l;
	struct ferry_uri u;
	char text[64];
	int fds = ct_count_fds(), ret = 0, n;

	ct_log_capture();
	parse("tcp:127.0.0.1:0", &u);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", ferry_listener_port(l));
	parse(text, &u);
	/* Fill the backlog (64, never accepted) until a connect cannot complete. */
	for (n = 0; n < 200; n++) {
		struct ferry_channel *ch;
		int64_t t0 = ct_now_ms(), took;

		ret = ferry_channel_connect(&u, 300, &ch);
		took = ct_now_ms() - t0;
		if (ret == -ETIMEDOUT) {
			cr_assert_geq(took, 290);
			cr_assert_lt(took, 2000, "timeout of 300 ms took %lld ms", (long long)took);
			break;
		}
		cr_assert_eq(ret, 0, "%s", ferry_strerror(ret));
		if (n < 16)
			held[n] = ch;
		else
			ferry_channel_destroy(ch);
	}
	if (ret != -ETIMEDOUT)
		cr_skip_test("the kernel never dropped a SYN: cannot provoke a hanging connect");
	cr_assert(ct_log_has("timed out after 300 ms"));
	for (int i = 0; i < 16; i++)
		ferry_channel_destroy(held[i]);
	ferry_listener_destroy(l);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, accept_timeout, .timeout = 10)
{
	struct ferry_listener *l;
	struct ferry_channel *ch = (void *)1;
	struct ferry_uri u;
	int fds = ct_count_fds();
	int64_t t0;

	parse("tcp:127.0.0.1:0", &u);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_listener_accept(l, 200, &ch), -ETIMEDOUT);
	cr_assert_geq(ct_now_ms() - t0, 190);
	cr_assert_lt(ct_now_ms() - t0, 2000);
	cr_assert_null(ch);
	/* A zero timeout is one look. */
	cr_assert_eq(ferry_listener_accept(l, 0, &ch), -ETIMEDOUT);
	ferry_listener_destroy(l);

	/* open_incoming: listen, wait, give up, leave nothing behind. */
	char text[64];
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", ct_free_port());
	parse(text, &u);
	t0 = ct_now_ms();
	cr_assert_eq(ferry_channel_open_incoming(&u, 200, &ch), -ETIMEDOUT);
	cr_assert_lt(ct_now_ms() - t0, 2000);
	cr_assert_eq(ct_count_fds(), fds);
}

struct accept_thread {
	struct ferry_listener *l;
	struct ferry_channel *ch;
	int ret;
};

static void *accept_main(void *arg)
{
	struct accept_thread *a = arg;

	a->ret = ferry_listener_accept(a->l, -1, &a->ch);
	return NULL;
}

Test(channels_tcp, listener_shutdown_wakes_accept, .timeout = 10)
{
	struct accept_thread a = {0};
	struct ferry_uri u;
	pthread_t t;
	int fds = ct_count_fds();
	int64_t t0;

	parse("tcp:127.0.0.1:0", &u);
	cr_assert_eq(ferry_listener_create(&u, &a.l), 0);
	cr_assert_eq(pthread_create(&t, NULL, accept_main, &a), 0);
	usleep(100 * 1000);
	t0 = ct_now_ms();
	ferry_listener_shutdown(a.l);
	cr_assert(ct_join_within(&t, 2000), "accept not woken by shutdown");
	cr_assert_lt(ct_now_ms() - t0, 1500); /* woken, not at a timeout; noise allowed */
	cr_assert_eq(a.ret, -ECANCELED);
	cr_assert_null(a.ch);
	cr_assert_eq(ferry_listener_accept(a.l, 1000, &a.ch), -ECANCELED);
	ferry_listener_destroy(a.l);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, shutdown_unblocks_reader, .timeout = 10)
{
	struct ferry_channel *src, *dst;
	struct ct_reader_thread rt;
	char x = 'x';
	struct iovec iov = {.iov_base = &x, .iov_len = 1};
	char c;
	int fds = ct_count_fds();
	int64_t t0;

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	rt = (struct ct_reader_thread){.ch = dst, .len = 1 << 20};
	ct_reader_start(&rt);
	usleep(100 * 1000); /* let it block in recv */
	t0 = ct_now_ms();
	ferry_channel_shutdown(dst);
	cr_assert(ct_join_within(rt.thread, 2000), "reader not woken by shutdown");
	free(rt.thread);
	cr_assert_lt(ct_now_ms() - t0, 1500); /* woken, not at a timeout; noise allowed */
	cr_assert_eq(rt.ret, -ECANCELED, "%s", ferry_strerror(rt.ret));
	/* Every later call fails the same way; the peer sees end of stream. */
	cr_assert_eq(ferry_channel_read(dst, &c, 1), -ECANCELED);
	cr_assert_eq(ferry_channel_writev(dst, &iov, 1), -ECANCELED);
	cr_assert_eq(ferry_channel_read(src, &c, 1), 0);
	ferry_channel_shutdown(dst); /* twice is harmless */
	cr_assert_eq(ferry_channel_close(dst), -ECANCELED);
	cr_assert_eq(ferry_channel_close(src), 0);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, shutdown_unblocks_writer, .timeout = 20)
{
	struct ferry_channel *src, *dst;
	uint8_t *ram = ct_ram_new(CT_BIG_PAGES, 5);
	int fds = ct_count_fds();
	int64_t t0;

	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	/* Nobody reads at the destination: the sender fills the buffers and blocks. */
	struct ct_sender s = {.ch = src, .ram = ram, .pages = CT_BIG_PAGES};
	ct_sender_start(&s);
	usleep(300 * 1000);
	cr_assert(!ct_join_within(s.thread, 0), "64 MiB fitted in the socket buffers?");
	t0 = ct_now_ms();
	ferry_channel_shutdown(src);
	cr_assert_eq(ct_sender_join(&s), -ECANCELED, "%s", ferry_strerror(s.ret));
	cr_assert_lt(ct_now_ms() - t0, 1000);
	ferry_channel_destroy(src);
	ferry_channel_destroy(dst);
	ct_ram_free(ram, CT_BIG_PAGES);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, peer_gone_is_an_error_not_sigpipe, .timeout = 10)
{
	struct ferry_channel *src, *dst;
	struct ferry_writer *w;
	static uint8_t page[CT_PAGE];
	int ret;

	/* With SIGPIPE at its default a stray signal would kill this test. */
	signal(SIGPIPE, SIG_DFL);
	ct_pair("tcp:127.0.0.1:0", &src, &dst);
	cr_assert_eq(ferry_channel_close(dst), 0);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	for (int i = 0; i < 4096 && !ferry_writer_error(w); i++) {
		ferry_put_buffer_ref(w, page, sizeof(page));
		ferry_writer_flush(w);
	}
	ret = ferry_writer_close(w);
	cr_assert(ret == -EPIPE || ret == -ECONNRESET, "%s", ferry_strerror(ret));
	cr_assert_eq(ferry_channel_close(src), 0);
}

Test(channels_tcp, open_incoming_accepts_one_connection, .timeout = 20)
{
	struct ferry_channel *src = NULL, *dst = NULL;
	struct ferry_uri u;
	char text[64];
	int fds = ct_count_fds();
	int port = ct_free_port();
	pid_t pid;
	int status;

	/* The destination in a child process, as on a real second host. */
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", port);
	parse(text, &u);
	pid = fork();
	cr_assert_geq(pid, 0);
	if (pid == 0) {
		struct ferry_reader *r;
		uint8_t *out = ct_ram_zeroed(64);
		int ret = ferry_channel_open_incoming(&u, 10000, &dst);

		if (ret == 0)
			ret = ferry_channel_reader(dst, &r);
		if (ret == 0)
			ret = ct_recv_pages(r, out, 64);
		if (ret == 0 && !ferry_reader_at_eof(r))
			ret = -EBADMSG;
		_exit(ret == 0 ? 0 : 1);
	}
	/* Retry until the child listens. */
	for (int i = 0; i < 200; i++) {
		if (ferry_channel_connect(&u, 1000, &src) == 0)
			break;
		usleep(20 * 1000);
	}
	cr_assert_not_null(src);
	struct ferry_writer *w;
	uint8_t *ram = ct_ram_new(64, 1);
	cr_assert_eq(ferry_channel_writer(src, &w), 0);
	cr_assert_eq(ct_send_pages(w, ram, 64), 0);
	cr_assert_eq(ferry_writer_close(w), 0);
	cr_assert_eq(ferry_channel_shutdown_write(src), 0);
	cr_assert_eq(waitpid(pid, &status, 0), pid);
	cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "destination failed");
	cr_assert_eq(ferry_channel_close(src), 0);
	ct_ram_free(ram, 64);
	cr_assert_eq(ct_count_fds(), fds);
}

Test(channels_tcp, unusable_uris, .timeout = 10)
{
	struct ferry_channel *ch = (void *)1;
	struct ferry_listener *l, *l2;
	struct ferry_uri u;
	char text[64];
	int fds = ct_count_fds();

	parse("tcp:127.0.0.1:0", &u);
	cr_assert_eq(ferry_channel_connect(&u, 1000, &ch), FERRY_EBADURI);
	cr_assert_null(ch);
	parse("tcp::4444", &u);
	cr_assert_eq(ferry_channel_connect(&u, 1000, &ch), FERRY_EBADURI);
	parse("rdma:127.0.0.1:4444", &u);
	cr_assert_eq(ferry_channel_connect(&u, 1000, &ch), FERRY_EBADURI);
	cr_assert_eq(ferry_channel_open_incoming(&u, 1000, &ch), FERRY_EBADURI);
	cr_assert_eq(ferry_listener_create(&u, &l), FERRY_EBADURI);
	parse("file:/tmp/x", &u);
	cr_assert_eq(ferry_listener_create(&u, &l), FERRY_EBADURI);
	memset(&u, 0, sizeof(u));
	cr_assert_eq(ferry_channel_connect(&u, 1000, &ch), FERRY_EBADURI);

	/* A port in use. */
	parse("tcp:127.0.0.1:0", &u);
	cr_assert_eq(ferry_listener_create(&u, &l), 0);
	snprintf(text, sizeof(text), "tcp:127.0.0.1:%d", ferry_listener_port(l));
	parse(text, &u);
	cr_assert_eq(ferry_listener_create(&u, &l2), -EADDRINUSE);
	ferry_listener_destroy(l);
	ferry_listener_destroy(NULL);
	ferry_channel_destroy(NULL);
	cr_assert_eq(ct_count_fds(), fds);
}
