/* SPDX-License-Identifier: MIT */
/* bench_matrix: option lists and the scenario matrix of `ferry bench`. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MIB (1ull << 20)

Test(bench_matrix, lists_parse_sizes_names_and_numbers)
{
	struct bench_spec s;
	char why[256];

	bench_spec_init(&s);
	cr_assert_eq(bench_spec_set(&s, "ram", "256M,1G,2MiB", why, sizeof(why)), 0, "%s", why);
	cr_assert_eq(s.ram.n, 3);
	cr_assert_eq(s.ram.v[0], 256 * MIB);
	cr_assert_eq(s.ram.v[1], 1024 * MIB);
	cr_assert_eq(s.ram.v[2], 2 * MIB);
	cr_assert_eq(bench_spec_set(&s, "dirty-rate", "0,50M,1G/s", why, sizeof(why)), 0);
	cr_assert_eq(s.dirty_rate.n, 3);
	cr_assert_eq(s.dirty_rate.v[0], 0);
	cr_assert_eq(s.dirty_rate.v[1], 50 * MIB);
	cr_assert_eq(s.dirty_rate.v[2], 1024 * MIB);
	cr_assert_eq(bench_spec_set(&s, "pattern", "hot,ab", why, sizeof(why)), 0);
	cr_assert_eq(s.pattern.v[0], BENCH_PATTERN_HOT);
	cr_assert_eq(s.pattern.v[1], BENCH_PATTERN_AB);
	cr_assert_eq(bench_spec_set(&s, "transport", "rdma,unix,tcp", why, sizeof(why)), 0);
	cr_assert_eq(s.transport.v[0], BENCH_TR_RDMA);
	cr_assert_eq(s.transport.v[1], BENCH_TR_UNIX);
	cr_assert_eq(s.transport.v[2], BENCH_TR_TCP);
	cr_assert_eq(bench_spec_set(&s, "channels", "0,1,64", why, sizeof(why)), 0);
	cr_assert_eq(s.channels.v[2], 64);
	cr_assert_eq(bench_spec_set(&s, "registration", "pin-all,odp", why, sizeof(why)), 0);
	cr_assert_eq(s.reg.v[0], 1);
	cr_assert_eq(s.reg.v[1], 3);
	cr_assert_eq(bench_spec_set(&s, "page-size", "4k,2M", why, sizeof(why)), 0);
	cr_assert_eq(s.page_size.v[0], 4096);
	cr_assert_eq(s.page_size.v[1], 2 * MIB);
	cr_assert_eq(bench_spec_set(&s, "downtime", "300,50", why, sizeof(why)), 0);
	cr_assert_eq(s.downtime.v[1], 50);
	cr_assert_eq(bench_spec_set(&s, "reps", "5", why, sizeof(why)), 0);
	cr_assert_eq(s.reps, 5);
	cr_assert_eq(bench_spec_set(&s, "msg-size", "1M", why, sizeof(why)), 0);
	cr_assert_eq(s.msg_size, MIB);
}

Test(bench_matrix, bad_lists_are_refused_with_a_reason)
{
	static const struct {
		const char *name, *value, *why;
	} bad[] = {
	    {"ram", "", "empty list"},
	    {"ram", "256M,,1G", "empty or overlong"},
	    {"ram", "3M", "not a multiple of 2 MiB"},
	    {"ram", "1M", "out of range"},
	    {"ram", "-2M", "bad value"},
	    {"ram", "256Q", "bad value"},
	    {"ram", "99999999999999999999", "bad value"},
	    {"ram", "256M,256M", "given twice"},
	    {"ram", "2M,4M,6M,8M,10M,12M,14M,16M,18M,20M,22M,24M,26M,28M,30M,32M,34M", "more than"},
	    {"pattern", "zigzag", "bad value"},
	    {"transport", "tcp,udp", "bad value"},
	    {"channels", "65", "out of range"},
	    {"channels", "1x", "bad value"},
	    {"page-size", "8k", "neither 4k nor 2M"},
	    {"page-size", "1G", "out of range"},
	    {"downtime", "0", "out of range"},
	    {"registration", "pinned", "bad value"},
	    {"reps", "0", "bad value"},
	    {"reps", "101", "bad value"},
	    {"seed", "0", "bad value"},
	    {"timeout", "10", "bad value"},
	    {"msg-size", "1k", "bad value"},
	};
	struct bench_spec s;
	char why[256];

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		bench_spec_init(&s);
		why[0] = 0;
		cr_assert_eq(bench_spec_set(&s, bad[i].name, bad[i].value, why, sizeof(why)),
			     -EINVAL, "--%s %s accepted", bad[i].name, bad[i].value);
		cr_assert(strstr(why, bad[i].why), "--%s %s: '%s' lacks '%s'", bad[i].name,
			  bad[i].value, why, bad[i].why);
		/* A refused list leaves the previous one. */
		cr_assert_eq(s.ram.n, 1);
		cr_assert_eq(s.ram.v[0], 256 * MIB);
	}
	cr_assert_eq(bench_spec_set(&s, "colour", "red", why, sizeof(why)), -ENOENT);
	cr_assert(strstr(why, "unknown option --colour"));
}

Test(bench_matrix, expansion_order_idle_and_registration)
{
	struct bench_spec s;
	struct bench_scenario *sc;
	char why[256], label[128];
	int n;

	bench_spec_init(&s);
	cr_assert_eq(bench_spec_set(&s, "ram", "64M,128M", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "dirty-rate", "0,10M", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "pattern", "uniform,hot", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "transport", "tcp,rdma", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "registration", "auto,chunked", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "channels", "1,2", why, sizeof(why)), 0);
	n = bench_matrix_expand(&s, &sc);
	/*
	 * Per RAM size: idle (one pattern) x (tcp + rdma x 2 registrations) x 2 channels = 6,
	 * live: 2 patterns x 3 x 2 = 12; 18 per size.
	 */
	cr_assert_eq(n, 36);
	for (int i = 0; i < n; i++) {
		cr_assert_eq(sc[i].index, (uint32_t)i);
		cr_assert_eq(sc[i].reg == BENCH_REG_NONE, sc[i].transport != BENCH_TR_RDMA);
		cr_assert_eq(sc[i].vcpus, sc[i].dirty_rate ? 2u : 0u);
		cr_assert_eq(sc[i].downtime_ms, 300);
		cr_assert_eq(sc[i].page_size, 4096);
	}
	/* The first dimension outermost, the last fastest. */
	cr_assert_eq(sc[0].ram_bytes, 64 * MIB);
	cr_assert_eq(sc[0].dirty_rate, 0);
	cr_assert_eq(sc[0].transport, BENCH_TR_TCP);
	cr_assert_eq(sc[0].channels, 1);
	cr_assert_eq(sc[1].channels, 2);
	cr_assert_eq(sc[2].transport, BENCH_TR_RDMA);
	cr_assert_eq(sc[2].channels, 1);
	cr_assert_eq(sc[2].reg, 0);
	cr_assert_eq(sc[3].reg, 2);
	cr_assert_eq(sc[3].channels, 1);
	cr_assert_eq(sc[4].reg, 0);
	cr_assert_eq(sc[4].channels, 2);
	cr_assert_eq(sc[6].dirty_rate, 10 * MIB);
	cr_assert_eq(sc[6].pattern, BENCH_PATTERN_UNIFORM);
	cr_assert_eq(sc[12].pattern, BENCH_PATTERN_HOT);
	cr_assert_eq(sc[18].ram_bytes, 128 * MIB);
	bench_scenario_label(&sc[0], label, sizeof(label));
	cr_assert_str_eq(label, "64M idle tcp ch1 4k dt300");
	bench_scenario_label(&sc[15], label, sizeof(label));
	cr_assert_str_eq(label, "64M 10M/s hot rdma ch1 chunked 4k dt300");
	free(sc);
}

Test(bench_matrix, too_many_scenarios)
{
	struct bench_spec s;
	struct bench_scenario *sc;
	char why[256];

	bench_spec_init(&s);
	cr_assert_eq(bench_spec_set(&s, "ram", "2M,4M,6M,8M,10M,12M,14M,16M", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "dirty-rate", "1M,2M,3M,4M,5M,6M,7M,8M", why, sizeof(why)),
		     0);
	cr_assert_eq(bench_spec_set(&s, "channels", "0,1,2,3,4,5,6,7,8", why, sizeof(why)), 0);
	cr_assert_eq(bench_spec_set(&s, "downtime", "1,2,3,4,5,6,7,8", why, sizeof(why)), 0);
	cr_assert_eq(bench_matrix_expand(&s, &sc), -E2BIG);
	cr_assert_null(sc);
}
