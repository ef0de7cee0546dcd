/* SPDX-License-Identifier: MIT */
/*
 * From a URI to the engine's connection: the main stream and, on sockets,
 * the return path. The engine only sees channels through <ferry/channel.h>.
 *
 * rdma:host:port: the main stream goes over TCP to the same host and port;
 * the pages go over RDMA queue pairs to the rdma_cm port PORT + 1, or over
 * TCP lanes to HOST:PORT when RDMA cannot be set up (datapath.c).
 *
 * A tcp: or unix: destination keeps listening after the main stream arrived,
 * until the setup phase is over: the data connections of a multi-channel
 * migration come to the same address (datapath.c).
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include <ferry/channel.h>
#include <ferry/tls.h>

#include "internal.h"

#define CONNECT_TIMEOUT_MS 10000
/* The longest a TLS handshake on the main stream may take. */
#define TLS_HANDSHAKE_TIMEOUT_MS 10000

/* Run the TLS handshake on the main stream when TLS is on. Migration thread. */
static int conn_start_tls(struct ferry_engine *eng, struct ferry_channel *ch)
{
	int ret;

	if (!eng->tls)
		return 0;
	ret = ferry_channel_start_tls(ch, eng->tls, eng->is_source ? eng->tls_host : NULL,
				      TLS_HANDSHAKE_TIMEOUT_MS);
	if (ret < 0) {
		if (!eng_cancelled(eng))
			eng_fail(eng, ret,
				 "TLS with %s failed: %s (the log says why; "
				 "is TLS set up alike at both ends?)",
				 ferry_channel_peer_name(ch), ferry_strerror(ret));
		return eng_cancelled(eng) ? FERRY_ECANCELED : ret;
	}
	pthread_mutex_lock(&eng->lock);
	snprintf(eng->stats.tls, sizeof(eng->stats.tls), "%s", ferry_channel_tls_info(ch));
	pthread_mutex_unlock(&eng->lock);
	eng_log(FERRY_LOG_INFO, "%s: TLS up (%s)", ferry_channel_peer_name(ch),
		ferry_channel_tls_info(ch));
	return 0;
}

static int parse(struct ferry_engine *eng, const char *text, struct ferry_uri *uri)
{
	int ret = ferry_uri_parse(text, uri);

	if (ret < 0) {
		eng_fail(eng, ret, "bad URI '%s': %s", text, uri->err);
		return ret;
	}
	if (uri->scheme == FERRY_URI_RDMA) {
		eng_log(FERRY_LOG_DEBUG, "%s: main stream over tcp:%s:%u, pages over RDMA", text,
			uri->host, uri->port);
		uri->scheme = FERRY_URI_TCP;
	}
	return 0;
}

/* Whether the stream has a peer that answers (sockets) or just ends (files, commands). */
static void classify(struct ferry_engine *eng, const struct ferry_uri *uri, bool fd_is_socket)
{
	struct eng_conn *c = &eng->conn;

	c->has_return_path = uri->scheme == FERRY_URI_TCP || uri->scheme == FERRY_URI_UNIX ||
			     (uri->scheme == FERRY_URI_FD && fd_is_socket);
	c->ends = !c->has_return_path;
	snprintf(c->kind, sizeof(c->kind), "%s", ferry_uri_scheme_name(uri->scheme));
	pthread_mutex_lock(&eng->lock);
	snprintf(eng->stats.transport, sizeof(eng->stats.transport), "%s", c->kind);
	pthread_mutex_unlock(&eng->lock);
}

static bool fd_is_socket(const struct ferry_uri *uri)
{
	struct stat st;

	return uri->scheme == FERRY_URI_FD && fstat(uri->fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

int eng_conn_connect(struct ferry_engine *eng, const char *text)
{
	struct eng_conn *c = &eng->conn;
	struct ferry_channel *ch;
	struct ferry_uri uri;
	int ret = parse(eng, text, &uri);

	if (ret < 0)
		return ret;
	classify(eng, &uri, fd_is_socket(&uri));
	snprintf(eng->tls_host, sizeof(eng->tls_host), "%s",
		 eng->tls_attr.hostname ? eng->tls_attr.hostname : uri.host);
	ret = ferry_channel_connect(&uri, CONNECT_TIMEOUT_MS, &ch);
	if (ret < 0) {
		eng_fail(eng, ret, "cannot connect to %s: %s", text, ferry_strerror(ret));
		return ret;
	}
	pthread_mutex_lock(&eng->conn_lock);
	c->ch = ch;
	pthread_mutex_unlock(&eng->conn_lock);
	/* Cancel may have come while connecting: the watchdog found no channel then. */
	if (eng_cancelled(eng))
		return FERRY_ECANCELED;
	ret = conn_start_tls(eng, ch);
	if (ret < 0)
		return ret;
	ret = ferry_channel_writer(ch, &c->w);
	if (!ret && c->has_return_path)
		ret = ferry_channel_reader(ch, &c->r);
	if (ret < 0)
		eng_fail(eng, ret, "cannot set up the stream on %s: %s", text, ferry_strerror(ret));
	return ret;
}

int eng_conn_listen(struct ferry_engine *eng, const char *text)
{
	struct eng_conn *c = &eng->conn;
	struct ferry_uri uri;
	int ret = parse(eng, text, &uri);

	if (ret < 0)
		return ret;
	memset(c, 0, sizeof(*c));
	classify(eng, &uri, fd_is_socket(&uri));
	if (uri.scheme == FERRY_URI_TCP || uri.scheme == FERRY_URI_UNIX) {
		ret = ferry_listener_create(&uri, &eng->listener);
		if (ret < 0) {
			eng_fail(eng, ret, "cannot listen on %s: %s", text, ferry_strerror(ret));
			return ret;
		}
		eng->listen_port = ferry_listener_port(eng->listener);
		return 0;
	}
	/* file:, exec:, fd: have nothing to wait for: open the stream now. */
	ret = ferry_channel_open_incoming(&uri, CONNECT_TIMEOUT_MS, &c->ch);
	if (ret < 0)
		eng_fail(eng, ret, "cannot open %s: %s", text, ferry_strerror(ret));
	return ret;
}

int eng_conn_accept(struct ferry_engine *eng)
{
	struct eng_conn *c = &eng->conn;
	int ret;

	if (eng->listener) {
		struct ferry_channel *ch;

		/* No time limit of its own: cancel or the migration timeout end the wait. */
		ret = ferry_listener_accept(eng->listener, -1, &ch);
		if (ret < 0) {
			eng_fail(eng, ret, "no incoming connection: %s", ferry_strerror(ret));
			return ret;
		}
		/* The listener stays open through setup: data connections come to it too. */
		pthread_mutex_lock(&eng->conn_lock);
		c->ch = ch;
		pthread_mutex_unlock(&eng->conn_lock);
		if (eng_cancelled(eng))
			return FERRY_ECANCELED;
		ret = conn_start_tls(eng, ch);
		if (ret < 0)
			return ret;
	}
	ret = ferry_channel_reader(c->ch, &c->r);
	if (!ret && c->has_return_path)
		ret = ferry_channel_writer(c->ch, &c->w);
	if (ret < 0)
		eng_fail(eng, ret, "cannot set up the stream: %s", ferry_strerror(ret));
	return ret;
}

/*
 * Stop accepting connections: once the data connections are in, or once the
 * setup phase ended without any. Migration thread.
 */
void eng_conn_stop_listening(struct ferry_engine *eng)
{
	struct ferry_listener *l;

	pthread_mutex_lock(&eng->conn_lock);
	l = eng->listener;
	eng->listener = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
	ferry_listener_destroy(l);
}

/* A stream without a return path is done when it is all written and closed cleanly. */
int eng_conn_finish(struct ferry_engine *eng)
{
	struct eng_conn *c = &eng->conn;
	struct ferry_channel *ch;
	int ret = ferry_writer_close(c->w);

	c->w = NULL;
	pthread_mutex_lock(&eng->conn_lock);
	ch = c->ch;
	c->ch = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
	/* Closing an exec: channel waits for the command and reports its exit status. */
	{
		int r = ferry_channel_close(ch);

		if (!ret)
			ret = r;
	}
	if (ret < 0)
		eng_fail(eng, ret, "finishing the stream on %s failed: %s", eng->uri,
			 ferry_strerror(ret));
	return ret;
}

void eng_conn_close(struct ferry_engine *eng)
{
	struct eng_conn *c = &eng->conn;

	ferry_writer_destroy(c->w);
	ferry_reader_destroy(c->r);
	c->w = NULL;
	c->r = NULL;
	pthread_mutex_lock(&eng->conn_lock);
	ferry_channel_destroy(c->ch);
	c->ch = NULL;
	ferry_listener_destroy(eng->listener);
	eng->listener = NULL;
	pthread_mutex_unlock(&eng->conn_lock);
}
