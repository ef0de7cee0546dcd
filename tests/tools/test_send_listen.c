/* SPDX-License-Identifier: MIT */
/*
 * `ferry listen` and `ferry send` as two real processes, over tcp and unix:
 * the destination process verifies every page and device field on its own
 * (bench_guest_verify) and says so in its JSON; both exit 0.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "channels/helpers.h"

extern char **environ;

struct proc {
	pid_t pid;
	FILE *out;
};

static void start(const char *const argv[], struct proc *p)
{
	posix_spawn_file_actions_t fa;
	int fds[2];

	cr_assert_eq(pipe2(fds, O_CLOEXEC), 0);
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	cr_assert_eq(posix_spawn(&p->pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	close(fds[1]);
	p->out = fdopen(fds[0], "r");
	cr_assert_not_null(p->out);
}

/* The next JSON line whose "event" is @event (NULL: any). */
static json_t *next(struct proc *p, const char *event)
{
	char line[16384];

	while (fgets(line, sizeof(line), p->out)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *ev;

		if (!j)
			continue;
		ev = json_string_value(json_object_get(j, "event"));
		if (!event || (ev && strcmp(ev, event) == 0))
			return j;
		json_decref(j);
	}
	return NULL;
}

static int finish(struct proc *p)
{
	int st;

	fclose(p->out);
	cr_assert_eq(waitpid(p->pid, &st, 0), p->pid);
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void pair(const char *listen_uri, bool unix_sock)
{
	struct proc dst, src;
	char send_uri[128];
	const char *largv[] = {FERRY_CLI, "listen",   listen_uri,  "--ram",  "128M", "--vcpus",
			       "2",	  "--events", "--timeout", "120000", NULL};
	json_t *ev, *done_src, *done_dst;

	start(largv, &dst);
	ev = next(&dst, "listening");
	cr_assert_not_null(ev, "the destination did not start");
	if (unix_sock)
		snprintf(send_uri, sizeof(send_uri), "%s", listen_uri);
	else
		snprintf(send_uri, sizeof(send_uri), "tcp:127.0.0.1:%lld",
			 (long long)json_integer_value(json_object_get(ev, "port")));
	json_decref(ev);

	const char *sargv[] = {
	    FERRY_CLI,	    "send", send_uri,	"--ram",     "128M",   "--vcpus", "2",
	    "--dirty-rate", "32M",  "--events", "--timeout", "120000", NULL};
	start(sargv, &src);
	done_src = next(&src, "done");
	done_dst = next(&dst, "done");
	cr_assert_not_null(done_src);
	cr_assert_not_null(done_dst);
	cr_assert_str_eq(json_string_value(json_object_get(done_src, "status")), "completed",
			 "source: %s", json_string_value(json_object_get(done_src, "error_msg")));
	cr_assert_str_eq(json_string_value(json_object_get(done_dst, "status")), "completed");
	cr_assert(json_is_true(json_object_get(done_dst, "verified")), "verification: %s",
		  json_string_value(json_object_get(done_dst, "verify_error")));
	/* The guest ran during the migration: pages went more than once. */
	cr_assert_gt(json_integer_value(json_object_get(done_src, "normal_pages")),
		     (128 << 20) / 4096);
	json_decref(done_src);
	json_decref(done_dst);
	cr_assert_eq(finish(&src), 0);
	cr_assert_eq(finish(&dst), 0);
}

Test(tools_send_listen, two_processes_over_tcp, .timeout = 180)
{
	pair("tcp:127.0.0.1:0", false);
}

Test(tools_send_listen, two_processes_over_unix, .timeout = 180)
{
	char uri[64];

	snprintf(uri, sizeof(uri), "unix:/tmp/ferry-sl-%d.sock", getpid());
	pair(uri, true);
}

/* --tls-creds and --channels on both commands: the JSON says what TLS carried it. */
Test(tools_send_listen, x509_tls_with_two_channels, .timeout = 180)
{
	char certs[256], why[256], dir[300], send_uri[128];
	struct proc dst, src;
	json_t *ev, *done_src, *done_dst;

	if (!ct_tls_certs(certs, sizeof(certs), why, sizeof(why)))
		cr_skip_test("%s", why);
	snprintf(dir, sizeof(dir), "%s/good", certs);
	const char *largv[] = {FERRY_CLI,     "listen", "tcp:127.0.0.1:0",   "--ram",	  "64M",
			       "--vcpus",     "2",	"--events",	     "--timeout", "120000",
			       "--tls-creds", dir,	"--tls-verify-peer", NULL};
	start(largv, &dst);
	ev = next(&dst, "listening");
	cr_assert_not_null(ev, "the destination did not start");
	snprintf(send_uri, sizeof(send_uri), "tcp:127.0.0.1:%lld",
		 (long long)json_integer_value(json_object_get(ev, "port")));
	json_decref(ev);
	const char *sargv[] = {
	    FERRY_CLI,	    "send", send_uri,	      "--ram",	   "64M",    "--vcpus",	   "2",
	    "--dirty-rate", "16M",  "--events",	      "--timeout", "120000", "--channels", "2",
	    "--tls-creds",  dir,    "--tls-hostname", "localhost", NULL};
	start(sargv, &src);
	done_src = next(&src, "done");
	done_dst = next(&dst, "done");
	cr_assert_not_null(done_src);
	cr_assert_not_null(done_dst);
	cr_assert_str_eq(json_string_value(json_object_get(done_src, "status")), "completed",
			 "source: %s", json_string_value(json_object_get(done_src, "error_msg")));
	cr_assert(json_is_true(json_object_get(done_dst, "verified")), "verification: %s",
		  json_string_value(json_object_get(done_dst, "verify_error")));
	cr_assert(strstr(json_string_value(json_object_get(done_src, "tls")), "x509"));
	cr_assert_str_eq(json_string_value(json_object_get(done_src, "transport")), "tcp-multi");
	json_decref(done_src);
	json_decref(done_dst);
	cr_assert_eq(finish(&src), 0);
	cr_assert_eq(finish(&dst), 0);
	ct_tls_certs_remove(certs);
}

Test(tools_send_listen, source_alone_fails_cleanly, .timeout = 60)
{
	struct proc src;
	json_t *done;
	/* Nobody listens on this unix path: a clear failure, exit 1. */
	const char *sargv[] = {FERRY_CLI, "send", "unix:/tmp/ferry-nobody-here.sock",
			       "--ram",	  "16M",  "--events",
			       NULL};

	start(sargv, &src);
	done = next(&src, "done");
	cr_assert_not_null(done);
	cr_assert_str_eq(json_string_value(json_object_get(done, "status")), "failed");
	cr_assert_not_null(
	    strstr(json_string_value(json_object_get(done, "error_msg")), "ferry-nobody-here"));
	json_decref(done);
	cr_assert_eq(finish(&src), 1);
}
