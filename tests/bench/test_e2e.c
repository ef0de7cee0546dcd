/* SPDX-License-Identifier: MIT */
/*
 * bench_e2e: `ferry bench` as a process. A tiny matrix run locally (every
 * run a real migration verified page by page by the destination, the output
 * files checked), Ctrl-C in the middle (finished runs kept, files
 * consistent), and two-host mode over loopback with a hostile client first.
 */
#include <criterion/criterion.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdbool.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "../channels/helpers.h"
#include "ctrl.h"

extern char **environ;

static pid_t spawn_cli(const char *const argv[])
{
	posix_spawn_file_actions_t fa;
	pid_t pid;

	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_addopen(&fa, 1, "/dev/null", O_WRONLY, 0);
	posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", O_WRONLY, 0);
	cr_assert_eq(posix_spawn(&pid, argv[0], &fa, NULL, (char *const *)argv, environ), 0);
	posix_spawn_file_actions_destroy(&fa);
	return pid;
}

static int wait_exit(pid_t pid)
{
	int st;

	cr_assert_eq(waitpid(pid, &st, 0), pid);
	cr_assert(WIFEXITED(st), "ferry bench did not exit normally");
	return WEXITSTATUS(st);
}

static void sleep_ms(int ms)
{
	struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

	nanosleep(&ts, NULL);
}

static char *slurp(const char *dir, const char *name)
{
	char path[512], *buf = NULL;
	size_t len = 0;
	FILE *f, *m;
	int c;

	snprintf(path, sizeof(path), "%s/%s", dir, name);
	f = fopen(path, "r");
	if (!f)
		return NULL;
	m = open_memstream(&buf, &len);
	while ((c = fgetc(f)) != EOF)
		fputc(c, m);
	fclose(f);
	fclose(m);
	return buf;
}

static int count_lines(const char *s)
{
	int n = 0;

	for (; s && *s; s++)
		n += *s == '\n';
	return n;
}

/* Checks every line of results.jsonl; returns the number of runs. */
static int check_jsonl(const char *dir, const char *mode, int ceilings)
{
	char *all = slurp(dir, "results.jsonl"), *save = NULL;
	int runs = 0;

	cr_assert_not_null(all);
	for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);
		const char *type;

		cr_assert_not_null(j, "not JSON: %s", line);
		type = json_string_value(json_object_get(j, "type"));
		if (strcmp(type, "session") == 0) {
			json_t *c = json_object_get(j, "ceilings");

			cr_assert_eq(runs, 0, "the session line comes first");
			cr_assert_str_eq(json_string_value(json_object_get(j, "mode")), mode);
			cr_assert_eq(json_array_size(c), (size_t)ceilings);
			for (size_t i = 0; i < json_array_size(c); i++)
				cr_assert_gt(
				    json_real_value(json_object_get(json_array_get(c, i), "bps")),
				    1e6);
			cr_assert_gt(json_real_value(json_object_get(j, "memcpy_bps")), 1e8);
		} else {
			cr_assert_str_eq(type, "run");
			cr_assert(json_is_true(json_object_get(j, "verified")), "%s", line);
			cr_assert_str_eq(json_string_value(json_object_get(j, "status")),
					 "completed");
			cr_assert_eq(json_integer_value(json_object_get(j, "total_ram")), 32 << 20);
			cr_assert_geq(json_integer_value(json_object_get(j, "normal_pages")) +
					  json_integer_value(json_object_get(j, "zero_pages")),
				      8192);
			cr_assert_gt(json_real_value(json_object_get(j, "throughput_bps")), 0);
			cr_assert_gt(json_real_value(json_object_get(j, "ceiling_bps")), 0);
			cr_assert_gt(json_real_value(json_object_get(j, "ratio")), 0);
			runs++;
		}
		json_decref(j);
	}
	free(all);
	return runs;
}

static void rm_rf(const char *dir)
{
	char cmd[600];

	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
	cr_assert_eq(system(cmd), 0);
}

Test(bench_e2e, tiny_matrix_writes_every_output, .timeout = 240)
{
	char dir[] = "/tmp/ferry-bench-e2e-XXXXXX";
	const char *argv[] = {FERRY_CLI,    "bench", "--ram",  "32M", "--dirty-rate",	"0,20M",
			      "--channels", "0,1",   "--reps", "2",   "--ceiling-time", "200",
			      "--timeout",  "60000", "--out",  dir,   "--quiet",	NULL};
	char *csv, *md;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(wait_exit(spawn_cli(argv)), 0);
	/* channels 0 and 1 both use one stream: one ceiling */
	cr_assert_eq(check_jsonl(dir, "local", 1), 8);
	csv = slurp(dir, "results.csv");
	cr_assert_eq(count_lines(csv), 9);
	cr_assert_eq(strncmp(csv, "scenario,rep,label,", 19), 0);
	cr_assert(strstr(csv, ",32M 20M/s uniform tcp ch1 4k dt300,"));
	free(csv);
	md = slurp(dir, "report.md");
	cr_assert_not_null(md);
	cr_assert(strstr(md, "| 32M idle tcp ch0 4k dt300 | 2/2 | **"), "%s", md);
	cr_assert(strstr(md, "| 32M idle tcp ch1 4k dt300 | 2/2 | **"));
	cr_assert(strstr(md, "| 32M 20M/s uniform tcp ch0 4k dt300 | 2/2 | **"));
	cr_assert(strstr(md, "| 32M 20M/s uniform tcp ch1 4k dt300 | 2/2 | **"));
	cr_assert(strstr(md, "| tcp | 1 | 2048 KiB | tcp streams |"));
	cr_assert_null(strstr(md, "**no**"));
	if (system("command -v gnuplot >/dev/null 2>&1") == 0)
		cr_assert(strstr(md, "![throughput-vs-workers.png](throughput-vs-workers.png)"));
	free(md);
	rm_rf(dir);
}

Test(bench_e2e, sigint_keeps_finished_runs, .timeout = 240)
{
	char dir[] = "/tmp/ferry-bench-int-XXXXXX";
	const char *argv[] = {FERRY_CLI, "bench", "--ram",	    "32M", "--dirty-rate", "20M",
			      "--reps",	 "100",	  "--ceiling-time", "100", "--out",	   dir,
			      "--quiet", NULL};
	char *csv, *md, *jl;
	pid_t pid;
	int runs;

	cr_assert_not_null(mkdtemp(dir));
	pid = spawn_cli(argv);
	for (int i = 0; i < 600; i++) {
		jl = slurp(dir, "results.jsonl");
		runs = count_lines(jl) - 1;
		free(jl);
		if (runs >= 2)
			break;
		sleep_ms(100);
	}
	cr_assert_geq(runs, 2, "no runs finished");
	kill(pid, SIGINT);
	cr_assert_eq(wait_exit(pid), 130);
	runs = check_jsonl(dir, "local", 1);
	cr_assert_lt(runs, 100);
	csv = slurp(dir, "results.csv");
	cr_assert_eq(count_lines(csv), runs + 1, "CSV and JSON lines disagree");
	free(csv);
	md = slurp(dir, "report.md");
	cr_assert(strstr(md, "**interrupted**"));
	free(md);
	rm_rf(dir);
}

static int free_port(void)
{
	struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
	socklen_t l = sizeof(a);
	int fd = socket(AF_INET, SOCK_STREAM, 0), port;

	cr_assert_eq(bind(fd, (struct sockaddr *)&a, sizeof(a)), 0);
	getsockname(fd, (struct sockaddr *)&a, &l);
	port = ntohs(a.sin_port);
	close(fd);
	return port;
}

static int connect_port(int port)
{
	struct sockaddr_in a = {.sin_family = AF_INET,
				.sin_port = htons((uint16_t)port),
				.sin_addr.s_addr = htonl(INADDR_LOOPBACK)};

	for (int i = 0; i < 100; i++) {
		int fd = socket(AF_INET, SOCK_STREAM, 0);

		if (connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0)
			return fd;
		close(fd);
		sleep_ms(50);
	}
	cr_assert_fail("the server never listened");
	return -1;
}

Test(bench_e2e, two_hosts_over_loopback, .timeout = 240)
{
	char dir[] = "/tmp/ferry-bench-peer-XXXXXX", ctl[64], peer[64];
	int port = free_port(), fd;
	const char *sargv[] = {FERRY_CLI, "bench", "--server", ctl, "--max-ram", "32M", NULL};
	const char *pargv[] = {FERRY_CLI,	 "bench", "--peer",	peer, "--ram",	 "32M",
			       "--dirty-rate",	 "0,20M", "--channels", "1",  "--reps",	 "1",
			       "--ceiling-time", "200",	  "--out",	dir,  "--quiet", NULL};
	const char *bigargv[] = {FERRY_CLI, "bench", "--peer", peer, "--ram",	"64M",
				 "--reps",  "1",     "--out",  dir,  "--quiet", NULL};
	struct bench_msg m;
	pid_t server;

	cr_assert_not_null(mkdtemp(dir));
	snprintf(ctl, sizeof(ctl), "tcp:127.0.0.1:%d", port);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	server = spawn_cli(sargv);
	/* A hostile client: garbage gets an ERROR and the connection is dropped. */
	fd = connect_port(port);
	cr_assert_eq(write(fd, "GET / HTTP/1.0\r\n\r\n", 18), 18);
	cr_assert_eq(bench_msg_recv(fd, &m, 5000), 0);
	cr_assert_eq(m.type, BENCH_MSG_ERROR);
	cr_assert(strstr(m.u.error.msg, "malformed"));
	cr_assert_eq(bench_msg_recv(fd, &m, 5000), -ECONNRESET);
	close(fd);
	/* A peer asking for more than --max-ram is refused before anything runs. */
	cr_assert_eq(wait_exit(spawn_cli(bigargv)), 1);
	/* The server still serves a well-behaved peer. */
	cr_assert_eq(wait_exit(spawn_cli(pargv)), 0);
	cr_assert_eq(check_jsonl(dir, "peer", 1), 2);
	kill(server, SIGINT);
	cr_assert_eq(wait_exit(server), 0);
	rm_rf(dir);
}

/*
 * --tls-psk: every migration of a local run inside TLS (main stream and lanes),
 * each verified, the session named in every result and in the report; a --server
 * with a key refuses a --peer without one, with the reason in the peer's result.
 */
Test(bench_e2e, tls_psk_local_and_refused_plaintext_peer, .timeout = 240)
{
	char dir[] = "/tmp/ferry-bench-tls-XXXXXX", psk[600], ctl[64], peer[64], out2[600];
	const char *argv[] = {FERRY_CLI,    "bench", "--ram",  "32M", "--dirty-rate",	"0,20M",
			      "--channels", "1",     "--reps", "1",   "--ceiling-time", "200",
			      "--tls-psk",  psk,     "--out",  dir,   "--quiet",	NULL};
	int port = free_port();
	const char *sargv[] = {FERRY_CLI, "bench",     "--server", ctl, "--max-ram",
			       "32M",	  "--tls-psk", psk,	   NULL};
	const char *pargv[] = {FERRY_CLI, "bench", "--peer",	     peer,  "--ram", "32M",
			       "--reps",  "1",	   "--ceiling-time", "200", "--out", out2,
			       "--quiet", NULL};
	char *all, *md, *save = NULL;
	pid_t server;
	int runs = 0;

	cr_assert_not_null(mkdtemp(dir));
	ct_psk_file(psk, sizeof(psk));
	cr_assert_eq(wait_exit(spawn_cli(argv)), 0);
	cr_assert_eq(check_jsonl(dir, "local", 1), 2);
	all = slurp(dir, "results.jsonl");
	for (char *line = strtok_r(all, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		json_t *j = json_loads(line, 0, NULL);

		if (strcmp(json_string_value(json_object_get(j, "type")), "run") == 0) {
			const char *tls = json_string_value(json_object_get(j, "tls"));

			cr_assert(tls && strstr(tls, "TLS"), "no TLS session in %s", line);
			runs++;
		}
		json_decref(j);
	}
	free(all);
	cr_assert_eq(runs, 2);
	md = slurp(dir, "report.md");
	cr_assert(strstr(md, "- TLS on the main stream and lanes: TLS"), "%s", md);
	free(md);

	snprintf(out2, sizeof(out2), "%s/peer", dir);
	snprintf(ctl, sizeof(ctl), "tcp:127.0.0.1:%d", port);
	snprintf(peer, sizeof(peer), "127.0.0.1:%d", port);
	server = spawn_cli(sargv);
	close(connect_port(port));
	cr_assert_eq(wait_exit(spawn_cli(pargv)), 1);
	all = slurp(out2, "results.jsonl");
	cr_assert_not_null(all);
	cr_assert(strstr(all, "\"verified\":false"), "%s", all);
	/* The destination's reason reaches the peer's result. */
	cr_assert(strstr(all, "destination: ") && strstr(all, "TLS with"),
		  "the failure does not say TLS: %s", all);
	free(all);
	kill(server, SIGINT);
	cr_assert_eq(wait_exit(server), 0);
	unlink(psk);
	rm_rf(dir);
}

/*
 * rdma scenarios: a real RDMA migration where the host has a device (the rig), else
 * the engine's fallback to TCP lanes, said in the result, and the ceiling's fallback
 * to TCP streams, said in its method.
 */
Test(bench_e2e, rdma_transport_reports_what_it_used, .timeout = 240)
{
	char dir[] = "/tmp/ferry-bench-rdma-XXXXXX";
	const char *argv[] = {
	    FERRY_CLI,	      "bench", "--ram",		 "32M",	    "--transport", "rdma",
	    "--channels",     "1",     "--registration", "pin-all", "--reps",	   "1",
	    "--ceiling-time", "200",   "--out",		 dir,	    "--quiet",	   NULL};
	char *all, *save = NULL;
	bool device;

	cr_assert_not_null(mkdtemp(dir));
	cr_assert_eq(wait_exit(spawn_cli(argv)), 0);
	all = slurp(dir, "results.jsonl");
	cr_assert_not_null(all);
	json_t *ses = json_loads(strtok_r(all, "\n", &save), 0, NULL);
	json_t *run = json_loads(strtok_r(NULL, "\n", &save), 0, NULL);
	const char *method = json_string_value(
	    json_object_get(json_array_get(json_object_get(ses, "ceilings"), 0), "method"));

	cr_assert_not_null(run);
	device = strcmp(method, "rdma write") == 0;
	cr_assert(json_is_true(json_object_get(run, "verified")));
	cr_assert_str_eq(json_string_value(json_object_get(run, "registration")), "pin-all");
	if (device) {
		cr_assert_str_eq(json_string_value(json_object_get(run, "transport_used")), "rdma");
		cr_assert_str_eq(json_string_value(json_object_get(run, "registration_used")),
				 "pin-all");
		cr_assert_geq(json_real_value(json_object_get(run, "registration_ms")), 0);
	} else {
		cr_assert_str_eq(method, "tcp streams (no rdma: no device)");
		cr_assert_str_eq(json_string_value(json_object_get(run, "transport_used")),
				 "tcp-multi");
		cr_assert(strstr(json_string_value(json_object_get(run, "fallback_reason")),
				 "no usable RDMA device"),
			  "%s", json_string_value(json_object_get(run, "fallback_reason")));
		cr_assert(json_is_null(json_object_get(run, "registration_ms")));
	}
	json_decref(ses);
	json_decref(run);
	free(all);
	rm_rf(dir);
}
