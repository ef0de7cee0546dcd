/* SPDX-License-Identifier: MIT */
/*
 * ferry-kvm-guest: the reference KVM hypervisor as a program.
 *
 *   ferry-kvm-guest probe                       can KVM run the guest here?
 *   ferry-kvm-guest run    [--ram 64M] [--vcpus 2] [--seconds 5]
 *   ferry-kvm-guest listen URI [--ram 64M] [--vcpus 2]          destination
 *   ferry-kvm-guest send   URI [--ram 64M] [--vcpus 2] ...      source
 *
 * `send` boots the guest, lets it run, and live-migrates it to URI while its
 * vCPUs keep running. `listen` receives it, checks the arrived state exactly
 * (hv_vm_check()), resumes the guest and checks it goes on from where it
 * stopped. With --events both print one JSON object per line on stdout (what
 * `ferry demo` and the tests read); otherwise a person reads stderr.
 */
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>
#include <ferry/log.h>

#include "hv.h"

struct opts {
	struct hv_config cfg;
	struct ferry_params params;
	const char *uri;
	uint64_t warmup_ms;    /* send: run this long before migrating */
	uint64_t run_after_ms; /* both: run at least this long after the migration ended */
	uint64_t seconds;      /* run */
	bool events;
	struct ferry_tls_attr tls; /* --tls-*: on when x509_dir or psk_file is set */
};

static int parse_size(const char *s, uint64_t *out)
{
	char *end;
	double v;
	uint64_t mult = 1;

	errno = 0;
	v = strtod(s, &end);
	if (errno || end == s || v < 0)
		return -EINVAL;
	switch (*end) {
	case 'k':
	case 'K':
		mult = 1ull << 10, end++;
		break;
	case 'm':
	case 'M':
		mult = 1ull << 20, end++;
		break;
	case 'g':
	case 'G':
		mult = 1ull << 30, end++;
		break;
	default:
		break;
	}
	if (*end == 'i')
		end++;
	if (*end == 'B' || *end == 'b')
		end++;
	if (strcmp(end, "/s") == 0)
		end += 2;
	if (*end || v * (double)mult > 1e15)
		return -EINVAL;
	*out = (uint64_t)(v * (double)mult);
	return 0;
}

static void sleep_ms(uint64_t ms)
{
	struct timespec ts = {.tv_sec = (time_t)(ms / 1000),
			      .tv_nsec = (long)(ms % 1000) * 1000000};

	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
}

/* ---- JSON ------------------------------------------------------------------------------ */

static json_t *hex(uint64_t v)
{
	char buf[24];

	snprintf(buf, sizeof(buf), "0x%" PRIx64, v);
	return json_string(buf);
}

static json_t *segment_json(const struct hv_segment *s)
{
	return json_pack("{s:o,s:o,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i}", "base", hex(s->base),
			 "limit", hex(s->limit), "selector", s->selector, "type", s->type,
			 "present", s->present, "dpl", s->dpl, "db", s->db, "s", s->s, "l", s->l,
			 "g", s->g, "avl", s->avl, "unusable", s->unusable);
}

/* Every migrated field of a vCPU's record, so two sides' records can be compared whole. */
static json_t *cpu_json(const struct hv_cpu_state *c)
{
	json_t *o = json_object(), *msrs = json_array();
	const struct {
		const char *name;
		uint64_t v;
	} r[] = {
	    {"rax", c->rax},
	    {"rbx", c->rbx},
	    {"rcx", c->rcx},
	    {"rdx", c->rdx},
	    {"rsi", c->rsi},
	    {"rdi", c->rdi},
	    {"rsp", c->rsp},
	    {"rbp", c->rbp},
	    {"r8", c->r8},
	    {"r9", c->r9},
	    {"r10", c->r10},
	    {"r11", c->r11},
	    {"r12", c->r12},
	    {"r13", c->r13},
	    {"r14", c->r14},
	    {"r15", c->r15},
	    {"rip", c->rip},
	    {"rflags", c->rflags},
	    {"cr0", c->cr0},
	    {"cr2", c->cr2},
	    {"cr3", c->cr3},
	    {"cr4", c->cr4},
	    {"cr8", c->cr8},
	    {"efer", c->efer},
	    {"apic_base", c->apic_base},
	};

	for (size_t i = 0; i < sizeof(r) / sizeof(r[0]); i++)
		json_object_set_new(o, r[i].name, hex(r[i].v));
	json_object_set_new(o, "cs", segment_json(&c->cs));
	json_object_set_new(o, "ds", segment_json(&c->ds));
	json_object_set_new(o, "es", segment_json(&c->es));
	json_object_set_new(o, "fs", segment_json(&c->fs));
	json_object_set_new(o, "gs", segment_json(&c->gs));
	json_object_set_new(o, "ss", segment_json(&c->ss));
	json_object_set_new(o, "tr", segment_json(&c->tr));
	json_object_set_new(o, "ldt", segment_json(&c->ldt));
	json_object_set_new(
	    o, "gdt", json_pack("{s:o,s:i}", "base", hex(c->gdt.base), "limit", c->gdt.limit));
	json_object_set_new(
	    o, "idt", json_pack("{s:o,s:i}", "base", hex(c->idt.base), "limit", c->idt.limit));
	for (uint32_t i = 0; i < c->nmsrs && i < HV_MAX_MSRS; i++)
		json_array_append_new(msrs, json_pack("{s:o,s:o}", "index", hex(c->msrs[i].index),
						      "data", hex(c->msrs[i].data)));
	json_object_set_new(o, "msrs", msrs);
	json_object_set_new(o, "events",
			    json_pack("{s:i,s:i,s:i,s:i,s:i}", "exception_injected",
				      c->events.exception_injected, "interrupt_injected",
				      c->events.interrupt_injected, "interrupt_shadow",
				      c->events.interrupt_shadow, "nmi_pending",
				      c->events.nmi_pending, "nmi_masked", c->events.nmi_masked));
	return o;
}

static json_t *devices_json(struct hv_vm *vm)
{
	const struct hv_serial *s = hv_vm_serial(vm);
	const struct hv_vdev *v = hv_vm_vdev(vm);
	json_t *cpus = json_array(), *vqs = json_array();

	for (uint32_t i = 0; i < hv_vm_vcpus(vm); i++)
		json_array_append_new(cpus, cpu_json(hv_vm_cpu(vm, i)));
	for (uint32_t q = 0; q < v->nvq && q < HV_VDEV_QUEUES; q++)
		json_array_append_new(
		    vqs, json_pack("{s:i,s:o,s:o,s:o,s:i,s:i}", "num", v->vq[q].num, "desc",
				   hex(v->vq[q].desc), "avail", hex(v->vq[q].avail), "used",
				   hex(v->vq[q].used), "last_avail_idx", v->vq[q].last_avail_idx,
				   "used_idx", v->used_idx[q]));
	return json_pack("{s:o,s:{s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:i,s:I,s:i},"
			 "s:{s:i,s:i,s:o,s:i,s:o,s:i,s:i,s:i,s:I}}",
			 "cpus", cpus, "serial", "rbr", s->rbr, "ier", s->ier, "iir", s->iir, "lcr",
			 s->lcr, "mcr", s->mcr, "lsr", s->lsr, "msr", s->msr, "scr", s->scr,
			 "divider", s->divider, "tx_count", (json_int_t)s->tx_count, "last_tx",
			 s->last_tx, "vdev", "status", v->status, "isr", v->isr, "features",
			 hex(((uint64_t)v->guest_features_hi << 32) | v->guest_features_lo),
			 "queue_sel", v->queue_sel, "vq", vqs, "io_base", v->io_base, "irq", v->irq,
			 "config_generation", v->config_generation, "notify_count",
			 (json_int_t)v->notify_count);
}

static json_t *progress_json(const struct hv_progress *p, uint32_t vcpus)
{
	json_t *rounds = json_array();

	for (uint32_t i = 0; i < vcpus; i++)
		json_array_append_new(rounds, json_integer(p->rounds[i]));
	return json_pack("{s:I,s:I,s:o}", "serial", (json_int_t)p->serial_tx, "notifies",
			 (json_int_t)p->notifies, "rounds", rounds);
}

static json_t *stats_json(const struct ferry_stats *st)
{
	json_t *o = json_object();

	json_object_set_new(o, "status", json_string(ferry_status_name(st->status)));
	if (st->error) {
		json_object_set_new(o, "error", json_string(ferry_err_name(st->error)));
		json_object_set_new(o, "error_msg", json_string(st->error_msg));
	}
	json_object_set_new(o, "transport", json_string(st->transport));
	if (st->tls[0])
		json_object_set_new(o, "tls", json_string(st->tls));
#define STAT(f) json_object_set_new(o, #f, json_integer((json_int_t)st->f))
	STAT(setup_ms);
	STAT(total_ms);
	STAT(downtime_ms);
	STAT(downtime_limit_ms);
	STAT(expected_downtime_ms);
	STAT(transferred);
	STAT(remaining);
	STAT(total_ram);
	STAT(dirty_rate);
	STAT(throughput);
	STAT(rounds);
	STAT(normal_pages);
	STAT(zero_pages);
	STAT(memcpy_bytes);
	STAT(throttle_pct);
#undef STAT
	return o;
}

/*
 * One JSON object per line on stdout. The engine's events come from its
 * migration thread while the main thread reports too (the destination's
 * "setup" status races "listening"): hold the stream's lock over the whole
 * line, or two threads' pieces interleave into lines nobody can parse.
 */
static void emit(json_t *o)
{
	flockfile(stdout);
	json_dumpf(o, stdout, JSON_COMPACT);
	fputc('\n', stdout);
	fflush(stdout);
	funlockfile(stdout);
	json_decref(o);
}

struct progress_ctx {
	bool events;
	bool tty;
	const char *side;
};

/* The engine's progress events: JSON lines for a program, a live line for a person. */
static void on_event(void *opaque, enum ferry_event_type type, const struct ferry_stats *st)
{
	static const char *const names[] = {"?", "status", "round", "progress"};
	struct progress_ctx *p = opaque;

	if (p->events) {
		json_t *j = stats_json(st);

		json_object_set_new(j, "event", json_string(names[type <= 3 ? type : 0]));
		json_object_set_new(j, "side", json_string(p->side));
		emit(j);
	} else if (p->tty) {
		fprintf(stderr,
			"\r[%-9s] round %-4" PRIu64 " sent %8.1f MiB  remaining %8.1f MiB  "
			"expected downtime %5" PRIu64 " ms ",
			ferry_status_name(st->status), st->rounds, st->transferred / 1048576.0,
			st->remaining / 1048576.0, st->expected_downtime_ms);
	}
}

/* ---- commands ---------------------------------------------------------------------------- */

static const char usage[] =
    "usage: ferry-kvm-guest probe\n"
    "       ferry-kvm-guest run    [--ram SIZE] [--vcpus N] [--dirty-rate RATE] [--seconds S]\n"
    "       ferry-kvm-guest listen URI [--ram SIZE] [--vcpus N] [--run-after MS]\n"
    "                                  [--timeout MS] [--events]\n"
    "       ferry-kvm-guest send   URI [--ram SIZE] [--vcpus N] [--dirty-rate RATE]\n"
    "                                  [--downtime-limit MS] [--max-bandwidth RATE]\n"
    "                                  [--warmup MS] [--run-after MS] [--timeout MS] [--events]\n"
    "       listen and send also take --tls-creds DIR | --tls-psk FILE, --tls-hostname NAME\n"
    "       (send) and --tls-verify-peer (listen), as `ferry send` / `ferry listen`\n"
    "The reference KVM hypervisor embedding libferry: a 32-bit guest whose vCPUs\n"
    "increment every page of their RAM share round after round, live-migrated.\n";

static int parse(int argc, char **argv, struct opts *o, bool want_uri)
{
	static const struct option longopts[] = {
	    {"ram", required_argument, NULL, 'r'},
	    {"vcpus", required_argument, NULL, 'c'},
	    {"dirty-rate", required_argument, NULL, 'd'},
	    {"downtime-limit", required_argument, NULL, 'l'},
	    {"max-bandwidth", required_argument, NULL, 'b'},
	    {"timeout", required_argument, NULL, 't'},
	    {"warmup", required_argument, NULL, 'w'},
	    {"run-after", required_argument, NULL, 'a'},
	    {"seconds", required_argument, NULL, 's'},
	    {"events", no_argument, NULL, 'e'},
	    {"tls-creds", required_argument, NULL, 'X'},
	    {"tls-psk", required_argument, NULL, 'P'},
	    {"tls-hostname", required_argument, NULL, 'n'},
	    {"tls-verify-peer", no_argument, NULL, 'V'},
	    {"help", no_argument, NULL, 'h'},
	    {NULL, 0, NULL, 0},
	};
	char *end;
	int c;

	memset(o, 0, sizeof(*o));
	o->cfg.ram_bytes = 64ull << 20;
	o->cfg.vcpus = 2;
	o->params.machine = HV_MACHINE;
	o->params.timeout_ms = 600000;
	o->warmup_ms = 300;
	o->run_after_ms = 1000;
	o->seconds = 5;
	optind = 1;
	while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
		uint64_t v = 0;

		if (c == 'h') {
			fputs(usage, stdout);
			exit(0);
		}
		if (c == '?' || c == 'e') {
			if (c == '?')
				return -EINVAL;
			o->events = true;
			continue;
		}
		/* TLS: strings handed to ferry_engine_set_tls() as they are. */
		if (c == 'X' || c == 'P' || c == 'n' || c == 'V') {
			if (c == 'X')
				o->tls.x509_dir = optarg;
			else if (c == 'P')
				o->tls.psk_file = optarg;
			else if (c == 'n')
				o->tls.hostname = optarg;
			else
				o->tls.verify_peer = true;
			continue;
		}
		if (c == 'r' || c == 'd' || c == 'b') {
			if (parse_size(optarg, &v) < 0)
				goto bad;
		} else {
			errno = 0;
			v = strtoull(optarg, &end, 10);
			if (errno || *end || end == optarg)
				goto bad;
		}
		switch (c) {
		case 'r':
			/* Slots are whole 2 MiB units. */
			o->cfg.ram_bytes = (v + (2u << 20) - 1) & ~((uint64_t)(2u << 20) - 1);
			break;
		case 'c':
			if (v < 1 || v > HV_MAX_VCPUS)
				goto bad;
			o->cfg.vcpus = (uint32_t)v;
			break;
		case 'd':
			o->cfg.dirty_rate = v;
			break;
		case 'l':
			o->params.downtime_limit_ms = v;
			break;
		case 'b':
			o->params.max_bandwidth = v;
			break;
		case 't':
			o->params.timeout_ms = v;
			break;
		case 'w':
			o->warmup_ms = v;
			break;
		case 'a':
			o->run_after_ms = v;
			break;
		case 's':
			o->seconds = v;
			break;
		}
	}
	if (want_uri) {
		if (optind != argc - 1) {
			fprintf(stderr, "ferry-kvm-guest: expected one URI\n");
			return -EINVAL;
		}
		o->uri = argv[optind];
	} else if (optind != argc) {
		return -EINVAL;
	}
	return 0;
bad:
	fprintf(stderr, "ferry-kvm-guest: bad value '%s'\n", optarg);
	return -EINVAL;
}

/*
 * Let the guest run at least @min_ms, and longer (up to 60 s) until every
 * vCPU has completed another round and the serial counter moved: a person
 * (and a test) sees the guest go on, however slow this machine is.
 */
static void run_until_progress(struct hv_vm *vm, const struct hv_progress *p0, uint64_t min_ms,
			       struct hv_progress *p1)
{
	uint64_t waited = 0;

	sleep_ms(min_ms);
	for (;;) {
		bool all = true;

		hv_vm_progress(vm, p1);
		for (uint32_t i = 0; i < hv_vm_vcpus(vm); i++)
			all = all && p1->rounds[i] != p0->rounds[i];
		if ((all && p1->serial_tx > p0->serial_tx) || p1->error || waited >= 60000)
			return;
		sleep_ms(10);
		waited += 10;
	}
}

static void print_progress(const char *side, const struct hv_progress *p, uint32_t vcpus)
{
	fprintf(stderr, "%s guest: serial %" PRIu64 " bytes, rounds", side, p->serial_tx);
	for (uint32_t i = 0; i < vcpus; i++)
		fprintf(stderr, " %u", p->rounds[i]);
	fputc('\n', stderr);
}

static int cmd_probe(void)
{
	char why[256];
	int ret = hv_probe(why, sizeof(why));

	emit(json_pack("{s:s,s:b,s:s}", "event", "probe", "usable", ret == 0, "why", why));
	return ret == 0 ? 0 : 1;
}

static int cmd_run(int argc, char **argv)
{
	struct opts o;
	struct hv_vm *vm = NULL;
	struct hv_progress p;
	char why[512];
	int ret;

	if (parse(argc, argv, &o, false) < 0) {
		fputs(usage, stderr);
		return 2;
	}
	ret = hv_vm_create(&o.cfg, &vm, why, sizeof(why));
	if (ret == 0)
		ret = hv_vm_boot(vm);
	if (ret == 0)
		ret = hv_vm_start(vm);
	if (ret < 0) {
		fprintf(stderr, "ferry-kvm-guest: %s\n", ret == -EINVAL ? why : strerror(-ret));
		hv_vm_destroy(vm);
		return 1;
	}
	for (uint64_t s = 0; s < o.seconds; s++) {
		sleep_ms(1000);
		hv_vm_progress(vm, &p);
		print_progress("running", &p, o.cfg.vcpus);
		if (p.error)
			break;
	}
	hv_vm_pause(vm);
	ret = hv_vm_check(vm, why, sizeof(why)) == 0 && !p.error;
	fprintf(stderr, "state check: %s\n", ret ? "consistent" : p.error ? p.error_msg : why);
	hv_vm_destroy(vm);
	return ret ? 0 : 1;
}

/*
 * Destination: a VM with empty memory and devices at power-on, into which the
 * incoming migration loads. Only after COMPLETED does the guest run.
 */
static int cmd_listen(int argc, char **argv)
{
	struct opts o;
	struct hv_vm *vm = NULL;
	struct ferry_engine *eng = NULL;
	struct ferry_stats st;
	struct hv_progress p0, p1;
	struct progress_ctx pc = {.side = "destination"};
	char why[512] = "", why_ab[256] = "";
	json_t *done = NULL;
	bool ok = false;
	int ret;

	if (parse(argc, argv, &o, true) < 0) {
		fputs(usage, stderr);
		return 2;
	}
	pc.events = o.events;
	pc.tty = !o.events && isatty(STDERR_FILENO);
	ret = hv_vm_create(&o.cfg, &vm, why, sizeof(why));
	if (ret < 0) {
		fprintf(stderr, "ferry-kvm-guest: %s\n", why);
		goto out;
	}
	ret = ferry_engine_create(&eng);
	if (!ret)
		ret = hv_vm_attach_dest(vm, eng);
	if (!ret)
		ret = ferry_engine_set_params(eng, &o.params);
	if (!ret && (o.tls.x509_dir || o.tls.psk_file))
		ret = ferry_engine_set_tls(eng, &o.tls);
	if (!ret)
		ret = ferry_engine_set_event_cb(eng, on_event, &pc);
	if (!ret)
		ret = ferry_incoming(eng, o.uri, NULL, NULL);
	if (ret < 0) {
		fprintf(stderr, "ferry-kvm-guest listen: %s\n", ferry_strerror(ret));
		goto out;
	}
	if (o.events)
		emit(json_pack("{s:s,s:i}", "event", "listening", "port",
			       ferry_engine_listen_port(eng)));
	else
		fprintf(stderr, "listening on %s (port %d)\n", o.uri,
			ferry_engine_listen_port(eng));
	ferry_engine_wait(eng);
	ferry_engine_get_stats(eng, &st);
	if (pc.tty)
		fputc('\n', stderr);
	done = stats_json(&st);
	json_object_set_new(done, "event", json_string("done"));
	json_object_set_new(done, "side", json_string("destination"));
	json_object_set_new(done, "guest", json_string("kvm"));
	if (st.status != FERRY_STATUS_COMPLETED) {
		/* A failed load: memory may be half there; this guest must never run. */
		snprintf(why, sizeof(why), "migration %s: %.400s", ferry_status_name(st.status),
			 st.error_msg);
		goto report;
	}

	/* The state as it arrived, before anything runs: exact check and A-B check. */
	{
		uint64_t bad = hv_vm_check(vm, why, sizeof(why));
		uint64_t bad_ab = hv_vm_check_ab(vm, why_ab, sizeof(why_ab));

		json_object_set_new(done, "loaded", devices_json(vm));
		json_object_set_new(done, "check_at_load",
				    json_pack("{s:I,s:s,s:I,s:s}", "bad", (json_int_t)bad, "why",
					      why, "ab_bad", (json_int_t)bad_ab, "ab_why", why_ab));
		if (bad || bad_ab) {
			if (!bad)
				snprintf(why, sizeof(why), "A-B check: %s", why_ab);
			goto report;
		}
	}

	/* Resume: each vCPU thread puts its loaded record into KVM and enters the guest. */
	hv_vm_progress(vm, &p0);
	ret = hv_vm_start(vm);
	if (ret < 0) {
		snprintf(why, sizeof(why), "cannot start the vCPUs: %s", strerror(-ret));
		goto report;
	}
	if (!o.events)
		print_progress("destination (resumed)", &p0, o.cfg.vcpus);
	run_until_progress(vm, &p0, o.run_after_ms, &p1);
	ret = hv_vm_pause(vm);
	if (!o.events)
		print_progress("destination (running)", &p1, o.cfg.vcpus);
	json_object_set_new(done, "at_load", progress_json(&p0, o.cfg.vcpus));
	json_object_set_new(done, "after", progress_json(&p1, o.cfg.vcpus));
	json_object_set_new(done, "run_after_ms", json_integer((json_int_t)o.run_after_ms));
	if (p1.error || ret < 0) {
		snprintf(why, sizeof(why), "the resumed guest failed: %s",
			 p1.error ? p1.error_msg : "its vCPUs did not stop");
		goto report;
	}
	if (p1.serial_tx <= p0.serial_tx) {
		snprintf(why, sizeof(why), "the guest did not run on: serial stayed at %" PRIu64,
			 p0.serial_tx);
		goto report;
	}
	for (uint32_t i = 0; i < o.cfg.vcpus; i++) {
		if (p1.rounds[i] <= p0.rounds[i]) {
			snprintf(why, sizeof(why), "vCPU %u made no round after the resume", i);
			goto report;
		}
	}
	/* And what it did since is still exactly consistent. */
	{
		uint64_t bad = hv_vm_check(vm, why, sizeof(why));
		uint64_t bad_ab = hv_vm_check_ab(vm, why_ab, sizeof(why_ab));

		json_object_set_new(done, "check_after",
				    json_pack("{s:I,s:s,s:I,s:s}", "bad", (json_int_t)bad, "why",
					      why, "ab_bad", (json_int_t)bad_ab, "ab_why", why_ab));
		if (bad || bad_ab)
			goto report;
	}
	ok = true;
	why[0] = '\0';
report:
	json_object_set_new(done, "verified", json_boolean(ok));
	if (!ok)
		json_object_set_new(done, "verify_error", json_string(why));
	if (o.events) {
		emit(done);
		done = NULL;
	} else {
		fprintf(stderr,
			"destination: %s in %" PRIu64 " ms, downtime %" PRIu64 " ms; %s%s\n",
			ferry_status_name(st.status), st.total_ms, st.downtime_ms,
			ok ? "the guest runs on, state verified" : "FAILED: ", ok ? "" : why);
	}
out:
	json_decref(done);
	ferry_engine_destroy(eng);
	hv_vm_destroy(vm);
	return ok ? 0 : 1;
}

/* Source: boot, run, migrate while running. */
static int cmd_send(int argc, char **argv)
{
	struct opts o;
	struct hv_vm *vm = NULL;
	struct ferry_engine *eng = NULL;
	struct ferry_stats st;
	struct hv_progress p0, p1;
	struct progress_ctx pc = {.side = "source"};
	char why[512] = "";
	json_t *done = NULL;
	int rc = 1, ret;

	if (parse(argc, argv, &o, true) < 0) {
		fputs(usage, stderr);
		return 2;
	}
	pc.events = o.events;
	pc.tty = !o.events && isatty(STDERR_FILENO);
	ret = hv_vm_create(&o.cfg, &vm, why, sizeof(why));
	if (ret < 0) {
		fprintf(stderr, "ferry-kvm-guest: %s\n", why);
		goto out;
	}
	ret = hv_vm_boot(vm);
	if (!ret)
		ret = ferry_engine_create(&eng);
	if (!ret)
		ret = hv_vm_attach_source(vm, eng);
	if (!ret)
		ret = ferry_engine_set_params(eng, &o.params);
	if (!ret && (o.tls.x509_dir || o.tls.psk_file))
		ret = ferry_engine_set_tls(eng, &o.tls);
	if (!ret)
		ret = ferry_engine_set_event_cb(eng, on_event, &pc);
	if (!ret)
		ret = hv_vm_start(vm);
	if (ret < 0) {
		fprintf(stderr, "ferry-kvm-guest send: %s\n", ferry_strerror(ret));
		goto out;
	}
	sleep_ms(o.warmup_ms);
	hv_vm_progress(vm, &p0);
	if (p0.error) {
		fprintf(stderr, "ferry-kvm-guest send: the guest failed: %s\n", p0.error_msg);
		goto out;
	}
	if (o.events)
		emit(json_pack("{s:s,s:s,s:s,s:o}", "event", "guest", "side", "source", "dirty_log",
			       hv_vm_dirty_kind(vm), "progress", progress_json(&p0, o.cfg.vcpus)));
	else
		print_progress("source (migrating)", &p0, o.cfg.vcpus);

	ferry_migrate_sync(eng, o.uri);
	ferry_engine_get_stats(eng, &st);
	if (pc.tty)
		fputc('\n', stderr);
	done = stats_json(&st);
	json_object_set_new(done, "event", json_string("done"));
	json_object_set_new(done, "side", json_string("source"));
	json_object_set_new(done, "guest", json_string("kvm"));
	json_object_set_new(done, "dirty_log", json_string(hv_vm_dirty_kind(vm)));
	if (st.status == FERRY_STATUS_COMPLETED) {
		/*
		 * The engine stopped the vCPUs for the switchover and they stay
		 * stopped: the guest lives on the destination now. Report the
		 * records the destination received, and check them here too.
		 */
		uint64_t bad = hv_vm_check(vm, why, sizeof(why));

		json_object_set_new(done, "switchover", devices_json(vm));
		json_object_set_new(done, "check_at_switchover",
				    json_pack("{s:I,s:s}", "bad", (json_int_t)bad, "why", why));
		rc = bad ? 1 : 0;
	} else {
		/*
		 * Failed or cancelled: the engine resumed the vCPUs. The guest must
		 * keep running here, untouched: show it, then check it exactly.
		 */
		uint64_t bad;

		hv_vm_progress(vm, &p0);
		run_until_progress(vm, &p0, o.run_after_ms, &p1);
		hv_vm_pause(vm);
		bad = hv_vm_check(vm, why, sizeof(why));
		json_object_set_new(done, "at_failure", progress_json(&p0, o.cfg.vcpus));
		json_object_set_new(done, "after", progress_json(&p1, o.cfg.vcpus));
		json_object_set_new(done, "check_after",
				    json_pack("{s:I,s:s}", "bad", (json_int_t)bad, "why", why));
		json_object_set_new(done, "guest_survived",
				    json_boolean(!bad && !p1.error && p1.serial_tx > p0.serial_tx));
		if (!o.events)
			fprintf(stderr,
				"source: migration %s (%s); the guest ran on here: serial %" PRIu64
				" -> %" PRIu64 ", state %s\n",
				ferry_status_name(st.status), st.error_msg, p0.serial_tx,
				p1.serial_tx, bad ? why : "consistent");
	}
	if (o.events) {
		emit(done);
		done = NULL;
	} else if (st.status == FERRY_STATUS_COMPLETED) {
		fprintf(stderr,
			"source: completed in %" PRIu64 " ms, downtime %" PRIu64 " ms, %" PRIu64
			" rounds, %.1f MiB sent\n",
			st.total_ms, st.downtime_ms, st.rounds, st.transferred / 1048576.0);
	}
out:
	json_decref(done);
	ferry_engine_destroy(eng);
	hv_vm_destroy(vm);
	return rc;
}

int main(int argc, char **argv)
{
	ferry_set_log(ferry_log_stderr, NULL, FERRY_LOG_WARN);
	if (argc < 2) {
		fputs(usage, stderr);
		return 2;
	}
	if (strcmp(argv[1], "probe") == 0)
		return cmd_probe();
	if (strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (strcmp(argv[1], "listen") == 0)
		return cmd_listen(argc - 1, argv + 1);
	if (strcmp(argv[1], "send") == 0)
		return cmd_send(argc - 1, argv + 1);
	if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, stdout);
		return 0;
	}
	fputs(usage, stderr);
	return 2;
}
