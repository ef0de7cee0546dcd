/* SPDX-License-Identifier: MIT */
/*
 * The reference hypervisor's VM in this process, under real KVM: the guest's
 * state is exactly consistent wherever a pause lands, and a live migration
 * between two VMs of this process (a unix socket, and a file) moves
 * registers, devices and every byte of memory. Skips without a usable KVM.
 */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <ferry/engine.h>
#include <ferry/error.h>

#include "hv.h"
#include "kvm_common.h"

TestSuite(kvm_vm, .timeout = 240);

static struct hv_vm *vm_new(uint64_t ram, uint32_t vcpus, uint64_t rate, bool boot)
{
	const struct hv_config cfg = {.ram_bytes = ram, .vcpus = vcpus, .dirty_rate = rate};
	struct hv_vm *vm;
	char why[256];

	cr_assert_eq(hv_vm_create(&cfg, &vm, why, sizeof(why)), 0, "hv_vm_create: %s", why);
	if (boot)
		cr_assert_eq(hv_vm_boot(vm), 0);
	return vm;
}

static void expect_consistent(struct hv_vm *vm, const char *when)
{
	char why[1024];
	uint64_t bad = hv_vm_check(vm, why, sizeof(why));

	cr_assert_eq(bad, 0, "%s: %llu problems: %s", when, (unsigned long long)bad, why);
	bad = hv_vm_check_ab(vm, why, sizeof(why));
	cr_assert_eq(bad, 0, "%s: A-B check: %s", when, why);
}

static void wait_progress(struct hv_vm *vm, uint64_t serial_at_least, int timeout_ms)
{
	struct hv_progress p;

	for (int t = 0; t < timeout_ms; t += 5) {
		hv_vm_progress(vm, &p);
		cr_assert_eq(p.error, 0, "the guest failed: %s", p.error_msg);
		if (p.serial_tx >= serial_at_least)
			return;
		usleep(5000);
	}
	cr_assert_fail("the guest wrote only %llu serial bytes in %d ms",
		       (unsigned long long)p.serial_tx, timeout_ms);
}

Test(kvm_vm, state_is_exact_wherever_a_pause_lands)
{
	struct hv_vm *vm;
	struct hv_progress p0, p1;
	unsigned seed = (unsigned)time(NULL);

	kvmt_require_kvm();
	vm = vm_new(8u << 20, 2, 0, true);
	cr_assert_eq(hv_vm_start(vm), 0);
	wait_progress(vm, 4, 20000);
	hv_vm_progress(vm, &p0);
	/* Pauses at arbitrary moments: mid-round, at an exit, between the two writes. */
	for (int i = 0; i < 25; i++) {
		char when[64];

		usleep(1000 + (unsigned)rand_r(&seed) % 20000);
		cr_assert_eq(hv_vm_pause(vm), 0, "the vCPUs did not park");
		snprintf(when, sizeof(when), "pause %d", i);
		expect_consistent(vm, when);
		cr_assert_eq(hv_vm_resume(vm), 0);
	}
	hv_vm_progress(vm, &p1);
	cr_assert_gt(p1.serial_tx, p0.serial_tx, "the guest stopped making progress");
	for (uint32_t i = 0; i < 2; i++)
		cr_assert_gt(p1.rounds[i], p0.rounds[i], "vCPU %u made no round", i);
	hv_vm_stop(vm);
	expect_consistent(vm, "after stop");
	hv_vm_destroy(vm);
}

static void expect_same_records(struct hv_vm *a, struct hv_vm *b)
{
	for (uint32_t i = 0; i < hv_vm_vcpus(a); i++) {
		const struct hv_cpu_state *x = hv_vm_cpu(a, i), *y = hv_vm_cpu(b, i);

		cr_assert_eq(x->rip, y->rip, "vCPU %u rip", i);
		cr_assert_eq(x->rflags, y->rflags);
		cr_assert_eq(x->rax, y->rax);
		cr_assert_eq(x->rbx, y->rbx, "vCPU %u rbx (its round)", i);
		cr_assert_eq(x->rcx, y->rcx, "vCPU %u rcx (its position)", i);
		cr_assert_eq(x->rdx, y->rdx);
		cr_assert_eq(x->rsi, y->rsi);
		cr_assert_eq(x->rdi, y->rdi);
		cr_assert_eq(x->rsp, y->rsp);
		cr_assert_eq(x->rbp, y->rbp);
		cr_assert_eq(x->cr0, y->cr0);
		cr_assert_eq(x->efer, y->efer);
		cr_assert_eq(x->apic_base, y->apic_base);
		cr_assert_eq(x->cs.selector, y->cs.selector);
		cr_assert_eq(x->cs.limit, y->cs.limit);
		cr_assert_eq(x->cs.db, y->cs.db);
		cr_assert_eq(x->ss.type, y->ss.type);
		cr_assert_eq(x->tr.type, y->tr.type);
		cr_assert_eq(x->gdt.limit, y->gdt.limit);
		cr_assert_eq(x->nmsrs, y->nmsrs);
		for (uint32_t m = 0; m < x->nmsrs; m++) {
			cr_assert_eq(x->msrs[m].index, y->msrs[m].index);
			cr_assert_eq(x->msrs[m].data, y->msrs[m].data, "vCPU %u MSR %#x", i,
				     x->msrs[m].index);
		}
	}
	{
		const struct hv_serial *x = hv_vm_serial(a), *y = hv_vm_serial(b);

		cr_assert_eq(x->tx_count, y->tx_count, "serial counter");
		cr_assert_eq(x->last_tx, y->last_tx);
		cr_assert_eq(x->lcr, y->lcr);
		cr_assert_eq(x->divider, y->divider);
	}
	{
		const struct hv_vdev *x = hv_vm_vdev(a), *y = hv_vm_vdev(b);

		cr_assert_eq(x->status, y->status);
		cr_assert_eq(x->notify_count, y->notify_count);
		cr_assert_eq(x->used_idx[0], y->used_idx[0]);
		cr_assert_eq(x->vq[0].last_avail_idx, y->vq[0].last_avail_idx);
		cr_assert_eq(x->guest_features_hi, y->guest_features_hi);
		cr_assert_eq(x->config_generation, y->config_generation);
	}
	for (uint32_t slot = 0; slot < 2; slot++) {
		uint64_t la, lb;
		const uint8_t *ma = hv_vm_memory(a, slot, &la), *mb = hv_vm_memory(b, slot, &lb);

		cr_assert_eq(la, lb);
		for (uint64_t off = 0; off < la; off += HV_PAGE)
			cr_assert_eq(memcmp(ma + off, mb + off, HV_PAGE), 0,
				     "slot %u page %llu differs", slot,
				     (unsigned long long)(off / HV_PAGE));
	}
}

/* Live-migrate a running VM of this process into another one over @uri, then run it. */
static void migrate_in_process(const char *uri, bool incoming_first)
{
	struct hv_vm *src = vm_new(16u << 20, 2, 16u << 20, true),
		     *dst = vm_new(16u << 20, 2, 0, false);
	struct ferry_engine *es, *ed;
	const struct ferry_params params = {
	    .machine = HV_MACHINE, .timeout_ms = 120000, .downtime_limit_ms = 500};
	struct ferry_stats st, dt;
	struct hv_progress p0, p1;

	cr_assert_eq(ferry_engine_create(&es), 0);
	cr_assert_eq(ferry_engine_create(&ed), 0);
	cr_assert_eq(hv_vm_attach_source(src, es), 0);
	cr_assert_str_eq(hv_vm_dirty_kind(src), "kvm");
	cr_assert_eq(hv_vm_attach_dest(dst, ed), 0);
	cr_assert_eq(ferry_engine_set_params(es, &params), 0);
	cr_assert_eq(ferry_engine_set_params(ed, &params), 0);
	cr_assert_eq(hv_vm_start(src), 0);
	wait_progress(src, 2, 20000);
	if (incoming_first)
		cr_assert_eq(ferry_incoming(ed, uri, NULL, NULL), 0);
	cr_assert_eq(ferry_migrate_sync(es, uri), FERRY_STATUS_COMPLETED);
	ferry_engine_get_stats(es, &st);
	if (!incoming_first)
		cr_assert_eq(ferry_incoming_sync(ed, uri), FERRY_STATUS_COMPLETED);
	else
		cr_assert_eq(ferry_engine_wait(ed), FERRY_STATUS_COMPLETED);
	ferry_engine_get_stats(ed, &dt);
	cr_log_info("%s: %llu ms, downtime %llu ms, %llu rounds, %llu pages sent for %llu", uri,
		    (unsigned long long)st.total_ms, (unsigned long long)st.downtime_ms,
		    (unsigned long long)st.rounds, (unsigned long long)st.normal_pages,
		    (unsigned long long)(st.total_ram / HV_PAGE));

	/* The source is stopped at the switchover state; the destination holds exactly it. */
	expect_consistent(src, "source at switchover");
	expect_consistent(dst, "destination as loaded");
	expect_same_records(src, dst);

	/* The destination's guest continues from there: every vCPU completes rounds. */
	hv_vm_progress(dst, &p0);
	cr_assert_eq(hv_vm_start(dst), 0);
	for (int t = 0; t < 60000; t += 10) {
		hv_vm_progress(dst, &p1);
		cr_assert_eq(p1.error, 0, "the resumed guest failed: %s", p1.error_msg);
		if (p1.rounds[0] > p0.rounds[0] + 1 && p1.rounds[1] > p0.rounds[1] + 1)
			break;
		usleep(10000);
	}
	cr_assert_eq(hv_vm_pause(dst), 0);
	hv_vm_progress(dst, &p1);
	for (uint32_t i = 0; i < 2; i++)
		cr_assert_gt(p1.rounds[i], p0.rounds[i] + 1, "vCPU %u did not run on", i);
	cr_assert_gt(p1.serial_tx, p0.serial_tx);
	expect_consistent(dst, "destination after running");
	ferry_engine_destroy(es);
	ferry_engine_destroy(ed);
	hv_vm_destroy(src);
	hv_vm_destroy(dst);
}

Test(kvm_vm, live_migration_over_unix_socket)
{
	char path[128], uri[160];

	kvmt_require_kvm();
	kvmt_sock_path(path, sizeof(path), "vm");
	snprintf(uri, sizeof(uri), "unix:%s", path);
	migrate_in_process(uri, true);
	unlink(path);
}

Test(kvm_vm, live_snapshot_to_a_file_and_back)
{
	char path[128], uri[160];

	kvmt_require_kvm();
	snprintf(path, sizeof(path), "/tmp/ferry-kvm-test-%d.stream", (int)getpid());
	snprintf(uri, sizeof(uri), "file:%s", path);
	/* The source writes the whole file (running guest, then stop); then it is loaded. */
	migrate_in_process(uri, false);
	unlink(path);
}
