/* SPDX-License-Identifier: MIT */
/*
 * `ferry demo`: live-migrate a running guest from one process to another on
 * this machine and show it happen. Two child processes of the ferry binary
 * itself, a destination (`ferry listen`) and a source (`ferry send`), talk
 * over the best transport available; this process only watches: it reads
 * their JSON event lines, draws the progress bar and prints the summary.
 *
 * The guest: the reference KVM hypervisor when /dev/kvm works (not built
 * yet, see docs/embedding.md), otherwise the synthetic guest, whose vCPU
 * threads keep writing its RAM while it moves; the demo says which and why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

struct child {
	pid_t pid;
	FILE *out; /* its stdout: JSON lines */
};

static int spawn(const char *const argv[], struct child *c)
{
	posix_spawn_file_actions_t fa;
	int p[2], ret;

	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	/* posix_spawn takes char *const[] for historical reasons; it does not write them. */
	ret = posix_spawn(&c->pid, "/proc/self/exe", &fa, NULL, (char *const *)(uintptr_t)argv,
			  environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (ret) {
		close(p[0]);
		return -ret;
	}
	c->out = fdopen(p[0], "r");
	return c->out ? 0 : -errno;
}

static json_t *next_event(struct child *c)
{
	char line[8192];

	while (fgets(line, sizeof(line), c->out)) {
		json_t *j = json_loads(line, 0, NULL);

		if (j)
			return j;
	}
	return NULL;
}

static int reap(struct child *c)
{
	int status = 0;

	if (c->out)
		fclose(c->out);
	c->out = NULL;
	if (c->pid > 0 && waitpid(c->pid, &status, 0) < 0)
		return -1;
	c->pid = 0;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static uint64_t jint(json_t *o, const char *k)
{
	return (uint64_t)json_integer_value(json_object_get(o, k));
}

static const char *jstr(json_t *o, const char *k)
{
	const char *s = json_string_value(json_object_get(o, k));

	return s ? s : "";
}

static double mib(uint64_t b)
{
	return (double)b / (1024.0 * 1024.0);
}

static void draw_bar(json_t *ev, bool tty)
{
	uint64_t total = jint(ev, "total_ram"), rem = jint(ev, "remaining");
	uint64_t sent = jint(ev, "transferred");
	double frac = total ? (double)sent / (double)total : 0;
	char bar[31];
	int fill;

	if (!tty)
		return;
	if (frac > 1)
		frac = 1;
	fill = (int)(frac * 30);
	memset(bar, '#', (size_t)fill);
	memset(bar + fill, '.', (size_t)(30 - fill));
	bar[30] = '\0';
	fprintf(stderr,
		"\r  [%s] %-9s round %-3" PRIu64 " remaining %7.1f MiB  %7.1f MiB/s  expected "
		"downtime %4" PRIu64 " ms ",
		bar, jstr(ev, "status"), jint(ev, "rounds"), mib(rem), mib(jint(ev, "throughput")),
		jint(ev, "expected_downtime_ms"));
}

static const char demo_usage[] =
    "usage: ferry demo [--ram SIZE] [--vcpus N] [--dirty-rate RATE] [--transport auto|tcp|unix]\n"
    "                  [--downtime-limit MS] [--json]\n"
    "Live-migrate a running guest between two processes on this machine and verify it.\n";

int ferry_cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ram", required_argument, NULL, 'r'},
	    {"vcpus", required_argument, NULL, 'c'},
	    {"dirty-rate", required_argument, NULL, 'd'},
	    {"transport", required_argument, NULL, 't'},
	    {"downtime-limit", required_argument, NULL, 'l'},
	    {"json", no_argument, NULL, 'j'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	const char *ram = "512M", *vcpus = "2", *rate = "100M", *transport = "auto", *limit = "300";
	bool json = false, tty;
	char guest_why[160], transport_why[200], uri_listen[128], uri_send[128], port[16];
	struct child dst = {0}, src = {0};
	json_t *ev, *src_done = NULL, *dst_done = NULL;
	uint64_t v;
	int c, rc_src, rc_dst, ret = CLI_FAILED;

	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		switch (c) {
		case 'r':
			ram = optarg;
			break;
		case 'c':
			vcpus = optarg;
			break;
		case 'd':
			rate = optarg;
			break;
		case 't':
			transport = optarg;
			break;
		case 'l':
			limit = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'h':
			fputs(demo_usage, stdout);
			return CLI_OK;
		default:
			fputs(demo_usage, stderr);
			return CLI_USAGE;
		}
	}
	if (optind != argc || cli_parse_size(ram, &v) < 0 || cli_parse_size(rate, &v) < 0 ||
	    (strcmp(transport, "auto") && strcmp(transport, "tcp") && strcmp(transport, "unix") &&
	     strcmp(transport, "rdma"))) {
		fputs(demo_usage, stderr);
		return CLI_USAGE;
	}
	tty = !json && isatty(STDERR_FILENO);

	/* Which guest, and why. */
	if (access("/dev/kvm", R_OK | W_OK) == 0)
		snprintf(guest_why, sizeof(guest_why),
			 "/dev/kvm is usable, but the reference KVM guest is not built yet: "
			 "synthetic guest");
	else
		snprintf(guest_why, sizeof(guest_why),
			 "no usable /dev/kvm (%s): synthetic guest (vCPU threads writing RAM, "
			 "tracked by userfaultfd)",
			 strerror(errno));

	/* Which transport, and why. */
	{
		bool have_rdma = false;
		DIR *d = opendir("/sys/class/infiniband");
		struct dirent *de;

		while (d && (de = readdir(d)))
			if (de->d_name[0] != '.')
				have_rdma = true;
		if (d)
			closedir(d);
		if (strcmp(transport, "unix") == 0) {
			snprintf(transport_why, sizeof(transport_why), "unix socket, as asked");
		} else if (strcmp(transport, "tcp") == 0) {
			snprintf(transport_why, sizeof(transport_why),
				 "TCP over loopback, as asked");
		} else {
			snprintf(transport_why, sizeof(transport_why), "%s: TCP over loopback",
				 have_rdma
				     ? "an RDMA device is present, but this build has no RDMA "
				       "data path yet"
				     : "no RDMA device (/sys/class/infiniband is empty)");
			transport = "tcp";
		}
	}
	if (strcmp(transport, "unix") == 0) {
		snprintf(uri_listen, sizeof(uri_listen), "unix:/tmp/ferry-demo-%d.sock",
			 (int)getpid());
		snprintf(uri_send, sizeof(uri_send), "%s", uri_listen);
	} else {
		snprintf(uri_listen, sizeof(uri_listen), "tcp:127.0.0.1:0");
	}
	if (!json)
		fprintf(stderr,
			"ferry demo: a %s guest with %s vCPUs dirtying %s/s, live-migrated between "
			"two processes\n  guest:     %s\n  transport: %s\n",
			ram, vcpus, rate, guest_why, transport_why);

	{
		const char *largv[] = {"ferry", "listen",   uri_listen,	 "--ram",  ram, "--vcpus",
				       vcpus,	"--events", "--timeout", "600000", NULL};

		if (spawn(largv, &dst) < 0) {
			fprintf(stderr, "ferry demo: cannot start the destination: %s\n",
				strerror(errno));
			return CLI_FAILED;
		}
	}
	ev = next_event(&dst);
	if (!ev || strcmp(jstr(ev, "event"), "listening") != 0) {
		fprintf(stderr, "ferry demo: the destination did not start listening\n");
		json_decref(ev);
		goto out;
	}
	if (strcmp(transport, "unix") != 0)
		snprintf(uri_send, sizeof(uri_send), "tcp:127.0.0.1:%" PRIu64, jint(ev, "port"));
	json_decref(ev);
	if (!json)
		fprintf(stderr, "  destination pid %d listening on %s\n", (int)dst.pid, uri_send);
	snprintf(port, sizeof(port), "%s", limit);
	{
		const char *sargv[] = {
		    "ferry",   "send",	   uri_send,	   "--ram",  ram,
		    "--vcpus", vcpus,	   "--dirty-rate", rate,     "--downtime-limit",
		    port,      "--events", "--timeout",	   "600000", NULL};

		if (spawn(sargv, &src) < 0) {
			fprintf(stderr, "ferry demo: cannot start the source: %s\n",
				strerror(errno));
			goto out;
		}
	}
	if (!json)
		fprintf(stderr, "  source pid %d: guest running, migrating...\n", (int)src.pid);
	while ((ev = next_event(&src))) {
		if (strcmp(jstr(ev, "event"), "done") == 0) {
			src_done = ev;
			break;
		}
		draw_bar(ev, tty);
		json_decref(ev);
	}
	if (tty)
		fputc('\n', stderr);
	while ((ev = next_event(&dst))) {
		if (strcmp(jstr(ev, "event"), "done") == 0) {
			dst_done = ev;
			break;
		}
		json_decref(ev);
	}
	rc_src = reap(&src);
	rc_dst = reap(&dst);

	if (json) {
		json_t *o = json_object();

		json_object_set_new(o, "guest", json_string(guest_why));
		json_object_set_new(o, "transport", json_string(transport_why));
		json_object_set(o, "source", src_done ? src_done : json_null());
		json_object_set(o, "destination", dst_done ? dst_done : json_null());
		json_object_set_new(o, "ok", json_boolean(rc_src == 0 && rc_dst == 0));
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
	} else if (src_done && dst_done) {
		fprintf(stderr,
			"\n  %-22s %s\n  %-22s %" PRIu64 " ms\n  %-22s %" PRIu64
			" ms (limit %s ms)\n  %-22s %.1f MiB of %.1f MiB RAM\n  %-22s %.1f MiB/s\n"
			"  %-22s %" PRIu64 "\n  %-22s %s\n  %-22s %s\n",
			"result", jstr(src_done, "status"), "total time",
			jint(src_done, "total_ms"), "downtime", jint(src_done, "downtime_ms"),
			limit, "transferred", mib(jint(src_done, "transferred")),
			mib(jint(src_done, "total_ram")), "throughput (last round)",
			mib(jint(src_done, "throughput")), "rounds", jint(src_done, "rounds"),
			"dirty tracking", jstr(src_done, "dirty_log"), "verification",
			json_is_true(json_object_get(dst_done, "verified"))
			    ? "passed: A-B check, every page, every device field"
			    : jstr(dst_done, "verify_error"));
		if (src_done && jstr(src_done, "error_msg")[0])
			fprintf(stderr, "  source error: %s\n", jstr(src_done, "error_msg"));
		if (jstr(dst_done, "error_msg")[0])
			fprintf(stderr, "  destination error: %s\n", jstr(dst_done, "error_msg"));
	}
	ret = rc_src == 0 && rc_dst == 0 ? CLI_OK : CLI_FAILED;
	if (!json && ret != CLI_OK)
		fprintf(stderr, "ferry demo: FAILED (source exit %d, destination exit %d)\n",
			rc_src, rc_dst);
out:
	if (src.pid > 0) {
		kill(src.pid, SIGTERM);
		reap(&src);
	}
	if (dst.pid > 0) {
		kill(dst.pid, SIGTERM);
		reap(&dst);
	}
	json_decref(src_done);
	json_decref(dst_done);
	return ret;
}
