/* SPDX-License-Identifier: MIT */
/*
 * `ferry demo`: live-migrate a running guest from one process to another on
 * this machine and show it happen. Two child processes, a destination and a
 * source, talk over the best transport available; this process only watches:
 * it reads their JSON event lines, draws the progress bar and prints the
 * summary.
 *
 * The guest: the reference KVM hypervisor (examples/kvm-guest, the program
 * ferry-kvm-guest next to this binary) when /dev/kvm runs its guest, with
 * real vCPUs whose writes KVM's dirty log tracks; otherwise the synthetic
 * guest (`ferry listen`/`ferry send`), whose vCPU threads keep writing its
 * RAM while it moves. The demo says which and why.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <limits.h>
#include <poll.h>
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

/* Bounds on the children: a hung one is killed, not waited for forever. */
#define PROBE_TIMEOUT_MS     30000
#define LISTEN_TIMEOUT_MS    30000
#define MIGRATION_TIMEOUT_MS 660000

struct child {
	pid_t pid;
	int fd; /* its stdout: JSON lines */
	char buf[1 << 16];
	size_t len;
};

static int spawn(const char *path, const char *const argv[], struct child *c)
{
	posix_spawn_file_actions_t fa;
	int p[2], ret;

	memset(c, 0, sizeof(*c));
	c->fd = -1;
	if (pipe2(p, O_CLOEXEC) < 0)
		return -errno;
	posix_spawn_file_actions_init(&fa);
	posix_spawn_file_actions_adddup2(&fa, p[1], STDOUT_FILENO);
	/* posix_spawn takes char *const[] for historical reasons; it does not write them. */
	ret = posix_spawn(&c->pid, path, &fa, NULL, (char *const *)(uintptr_t)argv, environ);
	posix_spawn_file_actions_destroy(&fa);
	close(p[1]);
	if (ret) {
		close(p[0]);
		c->pid = 0;
		return -ret;
	}
	c->fd = p[0];
	return 0;
}

static uint64_t now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/*
 * The child's next JSON line, within @timeout_ms. NULL at the end of its
 * output or on timeout. Lines longer than the buffer are dropped.
 */
static json_t *next_event(struct child *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;

	for (;;) {
		char *nl = memchr(c->buf, '\n', c->len);

		if (nl) {
			json_t *j;

			*nl = '\0';
			j = json_loads(c->buf, 0, NULL);
			c->len -= (size_t)(nl + 1 - c->buf);
			memmove(c->buf, nl + 1, c->len);
			if (j)
				return j;
			continue;
		}
		if (c->fd < 0)
			return NULL;
		if (c->len == sizeof(c->buf))
			c->len = 0; /* an absurd line: drop it */
		{
			struct pollfd pfd = {.fd = c->fd, .events = POLLIN};
			uint64_t t = now_ms();
			ssize_t n;

			if (t >= end)
				return NULL;
			if (poll(&pfd, 1, (int)(end - t)) <= 0)
				continue;
			n = read(c->fd, c->buf + c->len, sizeof(c->buf) - c->len);
			if (n < 0 && errno == EINTR)
				continue;
			if (n <= 0) {
				close(c->fd);
				c->fd = -1;
				continue;
			}
			c->len += (size_t)n;
		}
	}
}

/* Wait for the child's exit (SIGKILL after @timeout_ms); its exit status, 128+sig if killed. */
static int reap(struct child *c, uint64_t timeout_ms)
{
	uint64_t end = now_ms() + timeout_ms;
	int status = 0;

	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	if (c->pid <= 0)
		return -1;
	while (waitpid(c->pid, &status, WNOHANG) == 0) {
		if (now_ms() >= end) {
			kill(c->pid, SIGKILL);
			waitpid(c->pid, &status, 0);
			break;
		}
		usleep(10000);
	}
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

/* The reference KVM hypervisor's program: $FERRY_KVM_GUEST, or beside this binary. */
static bool find_kvm_guest(char *path, size_t len)
{
	const char *env = getenv("FERRY_KVM_GUEST");
	char self[PATH_MAX - 32]; /* room for the file name */
	ssize_t n;
	char *slash;

	if (env && *env) {
		snprintf(path, len, "%s", env);
		return access(path, X_OK) == 0;
	}
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return false;
	self[n] = '\0';
	slash = strrchr(self, '/');
	if (!slash)
		return false;
	*slash = '\0';
	snprintf(path, len, "%s/ferry-kvm-guest", self);
	return access(path, X_OK) == 0;
}

/* Does KVM run the reference guest here? Asks the program itself (`probe`). */
static bool kvm_usable(const char *bin, char *why, size_t whylen)
{
	const char *argv[] = {"ferry-kvm-guest", "probe", NULL};
	struct child c;
	json_t *ev;
	bool ok;

	if (access("/dev/kvm", R_OK | W_OK) != 0) {
		snprintf(why, whylen, "no usable /dev/kvm (%s)", strerror(errno));
		return false;
	}
	if (spawn(bin, argv, &c) < 0) {
		snprintf(why, whylen, "cannot start %.250s", bin);
		return false;
	}
	ev = next_event(&c, PROBE_TIMEOUT_MS);
	ok = ev && json_is_true(json_object_get(ev, "usable"));
	snprintf(why, whylen, "%.250s", ev ? jstr(ev, "why") : "the KVM probe did not answer");
	json_decref(ev);
	reap(&c, 5000);
	return ok;
}

static const char demo_usage[] =
    "usage: ferry demo [--ram SIZE] [--vcpus N] [--dirty-rate RATE] [--transport auto|tcp|unix]\n"
    "                  [--downtime-limit MS] [--guest auto|kvm|synthetic] [--json]\n"
    "                  [--tls-creds DIR [--tls-verify-peer] | --tls-psk FILE]\n"
    "Live-migrate a running guest between two processes on this machine and verify it.\n"
    "The guest is a real KVM virtual machine where /dev/kvm works (--guest kvm insists),\n"
    "otherwise the synthetic one. --tls-creds DIR (ca-cert.pem, server-cert.pem,\n"
    "server-key.pem, client-cert.pem, client-key.pem) or --tls-psk FILE runs the migration\n"
    "inside TLS; --tls-verify-peer makes the destination require the client certificate.\n";

/* The KVM-specific lines of the summary, and whether registers and devices matched. */
static bool kvm_summary(json_t *src_done, json_t *dst_done, bool print)
{
	json_t *sw = json_object_get(src_done, "switchover");
	json_t *ld = json_object_get(dst_done, "loaded");
	json_t *at = json_object_get(dst_done, "at_load"),
	       *after = json_object_get(dst_done, "after");
	bool regs =
	    sw && ld && json_equal(json_object_get(sw, "cpus"), json_object_get(ld, "cpus"));
	bool devs = sw && ld &&
		    json_equal(json_object_get(sw, "serial"), json_object_get(ld, "serial")) &&
		    json_equal(json_object_get(sw, "vdev"), json_object_get(ld, "vdev"));

	if (!print)
		return regs && devs;
	fprintf(stderr, "  %-22s %s\n", "vCPU registers",
		!sw || !ld ? "-"
		: regs	   ? "equal at the switchover (source record == destination record)"
			   : "DIFFER between source and destination");
	fprintf(stderr, "  %-22s %s\n", "devices (serial, vdev)",
		!sw || !ld ? "-"
		: devs	   ? "equal at the switchover"
			   : "DIFFER");
	if (at && after)
		fprintf(stderr,
			"  %-22s %" PRIu64 " at the switchover -> %" PRIu64 " after %" PRIu64
			" ms on the destination\n",
			"guest serial counter", jint(at, "serial"), jint(after, "serial"),
			jint(dst_done, "run_after_ms"));
	return regs && devs;
}

int ferry_cmd_demo(int argc, char **argv)
{
	static const struct option longopts[] = {
	    {"ram", required_argument, NULL, 'r'},
	    {"vcpus", required_argument, NULL, 'c'},
	    {"dirty-rate", required_argument, NULL, 'd'},
	    {"transport", required_argument, NULL, 't'},
	    {"downtime-limit", required_argument, NULL, 'l'},
	    {"guest", required_argument, NULL, 'g'},
	    {"json", no_argument, NULL, 'j'},
	    {"tls-creds", required_argument, NULL, 'X'},
	    {"tls-psk", required_argument, NULL, 'P'},
	    {"tls-verify-peer", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	/* TLS options, passed on to both children (the verify-peer flag to the destination). */
	const char *tls_opt = NULL, *tls_val = NULL, *tls_verify = NULL;
	const char *ram = "512M", *vcpus = "2", *rate = "100M", *transport = "auto", *limit = "300";
	const char *guest = "auto";
	bool json = false, tty, kvm = false, match = true;
	char guest_why[640], kvm_why[300], transport_why[200], uri_listen[128], uri_send[128];
	char kvm_bin[PATH_MAX], self[PATH_MAX];
	const char *bin;
	struct child dst = {.fd = -1}, src = {.fd = -1};
	json_t *ev, *src_done = NULL, *dst_done = NULL;
	uint64_t v;
	int c, rc_src = -1, rc_dst = -1, ret = CLI_FAILED;

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
		case 'g':
			guest = optarg;
			break;
		case 'j':
			json = true;
			break;
		case 'X':
		case 'P':
			if (tls_opt) {
				fputs(demo_usage, stderr);
				return CLI_USAGE;
			}
			tls_opt = c == 'X' ? "--tls-creds" : "--tls-psk";
			tls_val = optarg;
			break;
		case 'V':
			tls_verify = "--tls-verify-peer";
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
	     strcmp(transport, "rdma")) ||
	    (strcmp(guest, "auto") && strcmp(guest, "kvm") && strcmp(guest, "synthetic"))) {
		fputs(demo_usage, stderr);
		return CLI_USAGE;
	}
	if (tls_verify && !tls_opt) {
		fputs(demo_usage, stderr);
		return CLI_USAGE;
	}
	tty = !json && isatty(STDERR_FILENO);

	/* Which guest, and why. */
	if (strcmp(guest, "synthetic") == 0) {
		snprintf(guest_why, sizeof(guest_why), "the synthetic guest, as asked");
	} else if (!find_kvm_guest(kvm_bin, sizeof(kvm_bin))) {
		snprintf(kvm_why, sizeof(kvm_why),
			 "the reference KVM hypervisor (%.200s) is not built", kvm_bin);
		snprintf(
		    guest_why, sizeof(guest_why),
		    "%.300s: synthetic guest (vCPU threads writing RAM, tracked by userfaultfd)",
		    kvm_why);
	} else if (!kvm_usable(kvm_bin, kvm_why, sizeof(kvm_why))) {
		snprintf(guest_why, sizeof(guest_why),
			 "KVM cannot run here (%.300s): synthetic guest (vCPU threads writing RAM, "
			 "tracked by userfaultfd)",
			 kvm_why);
	} else {
		kvm = true;
		snprintf(
		    guest_why, sizeof(guest_why),
		    "a KVM virtual machine (%.300s): 32-bit guest, vCPUs incrementing every page, "
		    "tracked by KVM's dirty log",
		    kvm_bin);
	}
	if (!kvm && strcmp(guest, "kvm") == 0) {
		fprintf(stderr, "ferry demo: --guest kvm, but %s\n", kvm_why);
		return CLI_FAILED;
	}
	if (kvm) {
		bin = kvm_bin;
	} else {
		ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);

		self[n > 0 ? n : 0] = '\0';
		bin = self;
	}

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
		const char *largv[] = {kvm ? "ferry-kvm-guest" : "ferry",
				       "listen",
				       uri_listen,
				       "--ram",
				       ram,
				       "--vcpus",
				       vcpus,
				       "--events",
				       "--timeout",
				       "600000",
				       tls_opt,
				       tls_val,
				       tls_verify,
				       NULL};

		/* Without TLS the list ends at tls_opt (NULL). */
		if (spawn(bin, largv, &dst) < 0) {
			fprintf(stderr, "ferry demo: cannot start the destination (%s)\n", bin);
			return CLI_FAILED;
		}
	}
	/* Its migration thread may report "setup" before the main thread says "listening". */
	{
		uint64_t end = now_ms() + LISTEN_TIMEOUT_MS;

		while ((ev = next_event(&dst, end > now_ms() ? end - now_ms() : 0)) &&
		       strcmp(jstr(ev, "event"), "listening") != 0)
			json_decref(ev);
	}
	if (!ev) {
		fprintf(stderr, "ferry demo: the destination did not start listening\n");
		json_decref(ev);
		goto out;
	}
	if (strcmp(transport, "unix") != 0)
		snprintf(uri_send, sizeof(uri_send), "tcp:127.0.0.1:%" PRIu64, jint(ev, "port"));
	json_decref(ev);
	if (!json)
		fprintf(stderr, "  destination pid %d listening on %s\n", (int)dst.pid, uri_send);
	{
		const char *sargv[] = {kvm ? "ferry-kvm-guest" : "ferry",
				       "send",
				       uri_send,
				       "--ram",
				       ram,
				       "--vcpus",
				       vcpus,
				       "--dirty-rate",
				       rate,
				       "--downtime-limit",
				       limit,
				       "--events",
				       "--timeout",
				       "600000",
				       tls_opt,
				       tls_val,
				       NULL};

		if (spawn(bin, sargv, &src) < 0) {
			fprintf(stderr, "ferry demo: cannot start the source\n");
			goto out;
		}
	}
	if (!json && !kvm)
		fprintf(stderr, "  source pid %d: guest running, migrating...\n", (int)src.pid);
	while ((ev = next_event(&src, MIGRATION_TIMEOUT_MS))) {
		if (strcmp(jstr(ev, "event"), "done") == 0) {
			src_done = ev;
			break;
		}
		if (strcmp(jstr(ev, "event"), "guest") == 0) {
			json_t *p = json_object_get(ev, "progress");

			if (!json)
				fprintf(stderr,
					"  source pid %d: guest running (serial counter %" PRIu64
					"), migrating...\n",
					(int)src.pid, jint(p, "serial"));
		} else {
			draw_bar(ev, tty);
		}
		json_decref(ev);
	}
	if (tty)
		fputc('\n', stderr);
	while ((ev = next_event(&dst, src_done ? 120000 : 5000))) {
		if (strcmp(jstr(ev, "event"), "done") == 0) {
			dst_done = ev;
			break;
		}
		json_decref(ev);
	}
	rc_src = reap(&src, 10000);
	rc_dst = reap(&dst, 10000);
	if (kvm && src_done && dst_done)
		match = kvm_summary(src_done, dst_done, false);

	if (json) {
		json_t *o = json_object();

		json_object_set_new(o, "guest_kind", json_string(kvm ? "kvm" : "synthetic"));
		json_object_set_new(o, "guest", json_string(guest_why));
		json_object_set_new(o, "transport", json_string(transport_why));
		json_object_set(o, "source", src_done ? src_done : json_null());
		json_object_set(o, "destination", dst_done ? dst_done : json_null());
		if (kvm)
			json_object_set_new(o, "state_equal_at_switchover", json_boolean(match));
		json_object_set_new(o, "ok", json_boolean(rc_src == 0 && rc_dst == 0 && match));
		json_dumpf(o, stdout, JSON_INDENT(2));
		fputc('\n', stdout);
		json_decref(o);
	} else if (src_done && dst_done) {
		fprintf(stderr,
			"\n  %-22s %s\n  %-22s %" PRIu64 " ms\n  %-22s %" PRIu64
			" ms (limit %s ms)\n  %-22s %.1f MiB of %.1f MiB RAM\n  %-22s %.1f MiB/s\n"
			"  %-22s %" PRIu64 "\n  %-22s %s\n",
			"result", jstr(src_done, "status"), "total time",
			jint(src_done, "total_ms"), "downtime", jint(src_done, "downtime_ms"),
			limit, "transferred", mib(jint(src_done, "transferred")),
			mib(jint(src_done, "total_ram")), "throughput (last round)",
			mib(jint(src_done, "throughput")), "rounds", jint(src_done, "rounds"),
			"dirty tracking", jstr(src_done, "dirty_log"));
		if (tls_opt)
			fprintf(stderr, "  %-22s %s\n", "encryption",
				jstr(src_done, "tls")[0] ? jstr(src_done, "tls") : "none");
		if (kvm)
			kvm_summary(src_done, dst_done, true);
		fprintf(stderr, "  %-22s %s\n", "verification",
			json_is_true(json_object_get(dst_done, "verified"))
			    ? (kvm ? "passed: every page against the vCPUs' registers, A-B check, "
				     "devices; the guest ran on"
				   : "passed: A-B check, every page, every device field")
			    : jstr(dst_done, "verify_error"));
		if (jstr(src_done, "error_msg")[0])
			fprintf(stderr, "  source error: %s\n", jstr(src_done, "error_msg"));
		if (jstr(dst_done, "error_msg")[0])
			fprintf(stderr, "  destination error: %s\n", jstr(dst_done, "error_msg"));
	}
	ret = rc_src == 0 && rc_dst == 0 && match ? CLI_OK : CLI_FAILED;
	if (!json && ret != CLI_OK)
		fprintf(stderr, "ferry demo: FAILED (source exit %d, destination exit %d%s)\n",
			rc_src, rc_dst, match ? "" : ", state differs");
out:
	if (src.pid > 0) {
		kill(src.pid, SIGTERM);
		reap(&src, 5000);
	}
	if (dst.pid > 0) {
		kill(dst.pid, SIGTERM);
		reap(&dst, 5000);
	}
	if (strcmp(transport, "unix") == 0)
		unlink(uri_listen + 5);
	json_decref(src_done);
	json_decref(dst_done);
	return ret;
}
