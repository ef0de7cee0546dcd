/* SPDX-License-Identifier: MIT */
/*
 * The reference hypervisor as two processes (ferry-kvm-guest listen / send),
 * and `ferry demo` driving them: a live migration whose registers, devices
 * and memory arrive exactly and whose guest runs on; a destination killed in
 * the middle, after which the source guest runs on untouched. Skips without
 * a usable KVM.
 */
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "hv.h"
#include "kvm_common.h"

TestSuite(kvm_migrate, .timeout = 300);

static void expect_check_clean(json_t *done, const char *key)
{
	json_t *c = json_object_get(done, key);

	cr_assert_not_null(c, "no %s in the done event", key);
	cr_assert_eq(kvmt_int(c, "bad"), 0, "%s: %s", key,
		     json_string_value(json_object_get(c, "why")));
	if (json_object_get(c, "ab_bad"))
		cr_assert_eq(kvmt_int(c, "ab_bad"), 0, "%s: A-B check: %s", key,
			     json_string_value(json_object_get(c, "ab_why")));
}

Test(kvm_migrate, live_between_two_processes)
{
	char path[128], uri[160];
	struct kvmt_child dst, src;
	json_t *ev, *sdone, *ddone, *sw, *ld;
	long long total_pages;

	kvmt_require_kvm();
	kvmt_sock_path(path, sizeof(path), "mig");
	snprintf(uri, sizeof(uri), "unix:%s", path);
	{
		/* clang-format off */
		const char *argv[] = {
			KVM_GUEST_BIN, "listen", uri,
			"--ram", "32M",
			"--vcpus", "2",
			"--events",
			"--timeout", "200000",
			NULL
		};
		/* clang-format on */
		kvmt_spawn(argv, &dst);
	}
	ev = kvmt_next(&dst, "listening", 30000);
	if (!ev) {
		char where[4096];

		kvmt_where(&dst, where, sizeof(where));
		cr_assert_fail("the destination did not listen; it is at:\n%s", where);
	}
	json_decref(ev);
	{
		/*
		 * A bandwidth cap makes the bulk round long enough for the guest
		 * to dirty pages already sent, so later rounds must re-send them.
		 */
		/* clang-format off */
		const char *argv[] = {
			KVM_GUEST_BIN, "send", uri,
			"--ram", "32M",
			"--vcpus", "2",
			"--dirty-rate", "8M",
			"--max-bandwidth", "16M",
			"--downtime-limit", "500",
			"--events",
			"--timeout", "200000",
			NULL
		};
		/* clang-format on */
		kvmt_spawn(argv, &src);
	}
	ev = kvmt_next(&src, "guest", 60000);
	cr_assert_not_null(ev, "the source guest did not start");
	cr_assert_str_eq(json_string_value(json_object_get(ev, "dirty_log")), "kvm");
	json_decref(ev);
	sdone = kvmt_next(&src, "done", 240000);
	ddone = kvmt_next(&dst, "done", 60000);
	cr_assert_not_null(sdone, "no result from the source");
	cr_assert_not_null(ddone, "no result from the destination");
	cr_assert_str_eq(json_string_value(json_object_get(sdone, "status")), "completed", "%s",
			 json_string_value(json_object_get(sdone, "error_msg")));
	cr_assert_str_eq(json_string_value(json_object_get(ddone, "status")), "completed");
	cr_log_info("total %lld ms, downtime %lld ms, %lld rounds, %lld pages sent",
		    kvmt_int(sdone, "total_ms"), kvmt_int(sdone, "downtime_ms"),
		    kvmt_int(sdone, "rounds"), kvmt_int(sdone, "normal_pages"));

	/* A live migration: pages dirtied after they were sent went again. */
	total_pages = kvmt_int(sdone, "total_ram") / HV_PAGE;
	cr_assert_geq(kvmt_int(sdone, "rounds"), 2);
	cr_assert_gt(kvmt_int(sdone, "normal_pages") + kvmt_int(sdone, "zero_pages"), total_pages,
		     "no page was sent twice: the guest did not run during the migration");

	/* The state is exact on both sides, and it is the same state. */
	expect_check_clean(sdone, "check_at_switchover");
	expect_check_clean(ddone, "check_at_load");
	sw = json_object_get(sdone, "switchover");
	ld = json_object_get(ddone, "loaded");
	cr_assert(json_equal(json_object_get(sw, "cpus"), json_object_get(ld, "cpus")),
		  "vCPU registers differ:\nsource      %s\ndestination %s",
		  json_dumps(json_object_get(sw, "cpus"), JSON_COMPACT),
		  json_dumps(json_object_get(ld, "cpus"), JSON_COMPACT));
	cr_assert(json_equal(json_object_get(sw, "serial"), json_object_get(ld, "serial")),
		  "serial device differs");
	cr_assert(json_equal(json_object_get(sw, "vdev"), json_object_get(ld, "vdev")),
		  "vdev differs");

	/* The guest ran on at the destination, from where it stopped. */
	cr_assert(json_is_true(json_object_get(ddone, "verified")), "%s",
		  json_string_value(json_object_get(ddone, "verify_error")));
	{
		json_t *at = json_object_get(ddone, "at_load"),
		       *after = json_object_get(ddone, "after");
		long long sw_serial = kvmt_int(json_object_get(sw, "serial"), "tx_count");

		cr_assert_eq(kvmt_int(at, "serial"), sw_serial,
			     "the serial counter did not resume where it stopped");
		cr_assert_gt(kvmt_int(after, "serial"), sw_serial);
		for (size_t i = 0; i < 2; i++)
			cr_assert_gt(
			    json_integer_value(json_array_get(json_object_get(after, "rounds"), i)),
			    json_integer_value(json_array_get(json_object_get(at, "rounds"), i)));
	}
	expect_check_clean(ddone, "check_after");
	cr_assert_eq(kvmt_reap(&src, 30000), 0);
	cr_assert_eq(kvmt_reap(&dst, 30000), 0);
	json_decref(sdone);
	json_decref(ddone);
	unlink(path);
}

Test(kvm_migrate, destination_killed_mid_migration)
{
	char path[128], uri[160];
	struct kvmt_child dst, src;
	json_t *ev, *sdone;
	long long sent = 0;

	kvmt_require_kvm();
	kvmt_sock_path(path, sizeof(path), "kill");
	snprintf(uri, sizeof(uri), "unix:%s", path);
	{
		/* clang-format off */
		const char *argv[] = {
			KVM_GUEST_BIN, "listen", uri,
			"--ram", "32M",
			"--vcpus", "2",
			"--events",
			"--timeout", "200000",
			NULL
		};
		/* clang-format on */
		kvmt_spawn(argv, &dst);
	}
	ev = kvmt_next(&dst, "listening", 30000);
	if (!ev) {
		char where[4096];

		kvmt_where(&dst, where, sizeof(where));
		cr_assert_fail("the destination did not listen; it is at:\n%s", where);
	}
	json_decref(ev);
	{
		/* Slow enough (4 MiB/s for 33 MiB) that the kill lands mid-stream. */
		/* clang-format off */
		const char *argv[] = {
			KVM_GUEST_BIN, "send", uri,
			"--ram", "32M",
			"--vcpus", "2",
			"--dirty-rate", "32M",
			"--max-bandwidth", "4M",
			"--run-after", "1000",
			"--events",
			"--timeout", "200000",
			NULL
		};
		/* clang-format on */
		kvmt_spawn(argv, &src);
	}
	while (sent < (4 << 20) && (ev = kvmt_next(&src, "progress", 60000))) {
		sent = kvmt_int(ev, "transferred");
		json_decref(ev);
	}
	cr_assert_geq(sent, 4 << 20, "the migration did not get going");
	kvmt_kill(&dst);

	sdone = kvmt_next(&src, "done", 120000);
	cr_assert_not_null(sdone, "the source did not report");
	cr_assert_str_eq(json_string_value(json_object_get(sdone, "status")), "failed");
	cr_log_info("source: %s", json_string_value(json_object_get(sdone, "error_msg")));
	{
		json_t *at = json_object_get(sdone, "at_failure"),
		       *after = json_object_get(sdone, "after");

		cr_assert_gt(kvmt_int(after, "serial"), kvmt_int(at, "serial"),
			     "the source guest stopped counting after the failure");
		for (size_t i = 0; i < 2; i++)
			cr_assert_gt(
			    json_integer_value(json_array_get(json_object_get(after, "rounds"), i)),
			    json_integer_value(json_array_get(json_object_get(at, "rounds"), i)),
			    "vCPU %zu stopped", i);
	}
	/* Memory, registers and devices still exactly consistent: nothing was harmed. */
	expect_check_clean(sdone, "check_after");
	cr_assert(json_is_true(json_object_get(sdone, "guest_survived")));
	cr_assert_eq(kvmt_reap(&src, 30000), 1, "a failed migration exits 1");
	json_decref(sdone);
	unlink(path);
}

Test(kvm_migrate, demo_uses_the_kvm_guest)
{
	/* clang-format off */
	const char *argv[] = {
		FERRY_CLI, "demo",
		"--json",
		"--ram", "16M",
		"--vcpus", "2",
		"--dirty-rate", "8M",
		"--downtime-limit", "500",
		NULL
	};
	/* clang-format on */
	struct kvmt_child demo;
	json_t *res;
	char *buf = NULL;
	size_t len = 0;
	FILE *mem;

	kvmt_require_kvm();
	kvmt_spawn(argv, &demo);
	/* --json prints one indented object at the end: gather all output. */
	mem = open_memstream(&buf, &len);
	cr_assert_not_null(mem);
	for (;;) {
		char chunk[4096];
		ssize_t n = read(demo.fd, chunk, sizeof(chunk));

		if (n <= 0)
			break;
		fwrite(chunk, 1, (size_t)n, mem);
	}
	fclose(mem);
	cr_assert_eq(kvmt_reap(&demo, 240000), 0, "ferry demo failed: %s", buf);
	res = json_loads(buf, 0, NULL);
	cr_assert_not_null(res, "not JSON: %s", buf);
	cr_assert_str_eq(json_string_value(json_object_get(res, "guest_kind")), "kvm", "%s", buf);
	cr_assert(json_is_true(json_object_get(res, "ok")));
	cr_assert(json_is_true(json_object_get(json_object_get(res, "destination"), "verified")));
	json_decref(res);
	free(buf);
}
