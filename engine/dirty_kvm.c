/* SPDX-License-Identifier: MIT */
/*
 * Dirty logging of KVM memory slots.
 *
 * KVM keeps a bitmap per slot registered with KVM_MEM_LOG_DIRTY_PAGES, one bit
 * per host page (4 KiB on x86), set when the guest writes a page and cleared
 * with the page write-protected again (or its PML/dirty bit reset).
 *
 * Without manual protection, KVM_GET_DIRTY_LOG copies the bitmap out, clears it
 * and re-protects the pages it reported, all in one call.
 *
 * With KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 enabled, KVM_GET_DIRTY_LOG only copies
 * the bitmap out; KVM_CLEAR_DIRTY_LOG then clears exactly the bits given and
 * re-protects those pages. A sync does GET, then CLEAR of what GET returned.
 * A write between the two to a page GET reported lands before the sync
 * returns, so the caller's copy of the page, made after the sync, holds it; a
 * write to any other page sets a bit CLEAR does not touch, so the next sync
 * reports it. The gain over the plain GET is that KVM's mmu lock is held per
 * cleared range rather than across the whole slot, and the bitmap of pages
 * never written is not walked for re-protection.
 *
 * Writes by host threads to the slot's memory do not go through the guest's
 * page tables and are not logged: they must be marked (ferry_dirty_log_mark).
 */
#include <errno.h>
#include <linux/kvm.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include <ferry/error.h>
#include <ferry_log_internal.h>

#include "bitmap.h"
#include "dirty_internal.h"

#ifndef KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2
#define KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2 168
#endif
#ifndef KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE
#define KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE (1 << 0)
#endif
#ifndef KVM_DIRTY_LOG_INITIALLY_SET
#define KVM_DIRTY_LOG_INITIALLY_SET (1 << 1)
#endif

/* KVM_CLEAR_DIRTY_LOG takes a 32-bit page count: clear big slots in chunks this size. */
#define CLEAR_CHUNK_PAGES ((uint64_t)1 << 30)

struct kvm_log {
	struct ferry_dirty_log base;
	int vm_fd;
	uint32_t flags;
	bool manual;
	unsigned int host_shift;
	uint32_t *slot_ids;
	/* Per block: KVM's bitmap of the slot, one bit per host page. */
	uint64_t **kbits;
	uint64_t *kpages;
};

static struct kvm_log *to_kvm(struct ferry_dirty_log *log)
{
	return eng_container_of(log, struct kvm_log, base);
}

static int kvm_get(struct kvm_log *k, uint32_t b)
{
	struct kvm_dirty_log d = {.slot = k->slot_ids[b], .dirty_bitmap = k->kbits[b]};

	if (ioctl(k->vm_fd, KVM_GET_DIRTY_LOG, &d) == 0)
		return 0;
	int ret = -errno;
	if (ret == -ENOENT)
		ferry_log_msg(FERRY_LOG_ERROR, "engine",
			      "dirty log: KVM slot %#x (block %u) has no dirty log: is it "
			      "registered with KVM_MEM_LOG_DIRTY_PAGES?",
			      k->slot_ids[b], b);
	return ret;
}

/* Clear (and re-protect) the pages whose bits are set in kbits[b]. */
static int kvm_clear(struct kvm_log *k, uint32_t b)
{
	uint64_t npages = k->kpages[b];

	for (uint64_t first = 0; first < npages; first += CLEAR_CHUNK_PAGES) {
		uint64_t n =
		    npages - first < CLEAR_CHUNK_PAGES ? npages - first : CLEAR_CHUNK_PAGES;
		struct kvm_clear_dirty_log c = {
		    .slot = k->slot_ids[b],
		    .num_pages = (uint32_t)n,
		    .first_page = first,
		    .dirty_bitmap = k->kbits[b] + first / 64,
		};
		if (ioctl(k->vm_fd, KVM_CLEAR_DIRTY_LOG, &c))
			return -errno;
	}
	return 0;
}

static void enable_manual_protect(struct kvm_log *k)
{
	k->manual = false;
	if (k->flags & FERRY_DIRTY_KVM_NO_MANUAL_PROTECT)
		return;
	int offered = ioctl(k->vm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2);
	if (offered <= 0)
		return;
	struct kvm_enable_cap cap = {.cap = KVM_CAP_MANUAL_DIRTY_LOG_PROTECT2};
	cap.args[0] =
	    KVM_DIRTY_LOG_MANUAL_PROTECT_ENABLE | ((uint64_t)offered & KVM_DIRTY_LOG_INITIALLY_SET);
	if (ioctl(k->vm_fd, KVM_ENABLE_CAP, &cap)) {
		ferry_log_msg(FERRY_LOG_WARN, "engine",
			      "dirty log: enabling KVM manual dirty-log protection failed (%s); "
			      "using KVM_GET_DIRTY_LOG alone",
			      strerror(errno));
		return;
	}
	k->manual = true;
}

static int kvm_start(struct ferry_dirty_log *log)
{
	struct kvm_log *k = to_kvm(log);

	enable_manual_protect(k);
	/*
	 * Begin clean: read and drop what KVM holds from before, re-protecting
	 * every page (with manual protection, all of them: KVM_DIRTY_LOG_INITIALLY_SET
	 * leaves a slot unprotected with all bits set until cleared).
	 */
	for (uint32_t b = 0; b < log->nblocks; b++) {
		int ret = kvm_get(k, b);
		if (ret)
			return ret;
		if (k->manual) {
			size_t nw = eng_bitmap_words(k->kpages[b]);
			memset(k->kbits[b], 0, nw * sizeof(uint64_t));
			eng_bitmap_set_range(k->kbits[b], 0, k->kpages[b]);
			ret = kvm_clear(k, b);
			if (ret) {
				ferry_log_msg(
				    FERRY_LOG_ERROR, "engine",
				    "dirty log: KVM_CLEAR_DIRTY_LOG of slot %#x failed: %s",
				    k->slot_ids[b], strerror(-ret));
				return ret;
			}
		}
	}
	ferry_log_msg(FERRY_LOG_INFO, "engine", "dirty log: KVM, %u slots, %s", log->nblocks,
		      k->manual ? "manual protection (GET + CLEAR)" : "KVM_GET_DIRTY_LOG");
	return 0;
}

static int kvm_sync(struct ferry_dirty_log *log, uint32_t block, uint64_t *report)
{
	struct kvm_log *k = to_kvm(log);
	struct eng_dirty_block *b = &log->blocks[block];
	int ret = kvm_get(k, block);

	if (ret)
		return ret;
	if (k->manual) {
		/* Nothing to re-protect when nothing was written: skip the ioctl. */
		bool any = false;
		for (size_t w = 0, nw = eng_bitmap_words(k->kpages[block]); w < nw && !any; w++)
			any = k->kbits[block][w] != 0;
		if (!any)
			return 0;
		ret = kvm_clear(k, block);
		if (ret)
			return ret;
	}
	eng_bitmap_or_coarse(report, k->kbits[block], k->kpages[block],
			     b->page_shift - k->host_shift);
	return 0;
}

static void kvm_destroy(struct ferry_dirty_log *log)
{
	struct kvm_log *k = to_kvm(log);

	if (k->kbits) {
		for (uint32_t i = 0; i < log->nblocks; i++)
			free(k->kbits[i]);
		free(k->kbits);
	}
	free(k->kpages);
	free(k->slot_ids);
	eng_dirty_fini(log);
	free(k);
}

static const struct eng_dirty_ops kvm_ops = {
    .kind = "kvm",
    .start = kvm_start,
    .sync = kvm_sync,
    .destroy = kvm_destroy,
};

int ferry_dirty_log_create_kvm(int vm_fd, const struct ferry_dirty_kvm_slot *slots, size_t n,
			       const struct ferry_dirty_kvm_attr *attr,
			       struct ferry_dirty_log **out)
{
	struct ferry_dirty_block *blocks = NULL;
	struct kvm_log *k;
	int ret;

	if (!out)
		return -EINVAL;
	*out = NULL;
	if (vm_fd < 0 || !slots || n == 0 || n > FERRY_DIRTY_MAX_BLOCKS)
		return -EINVAL;
	if (attr && attr->size < sizeof(uint32_t) * 2)
		return -EINVAL;
	k = calloc(1, sizeof(*k));
	blocks = calloc(n, sizeof(*blocks));
	if (!k || !blocks) {
		free(k);
		free(blocks);
		return -ENOMEM;
	}
	k->vm_fd = vm_fd;
	k->flags = attr ? attr->flags : 0;
	k->host_shift = (unsigned int)__builtin_ctzl((unsigned long)sysconf(_SC_PAGESIZE));
	for (size_t i = 0; i < n; i++)
		blocks[i] = slots[i].block;
	ret = eng_dirty_init(&k->base, &kvm_ops, blocks, n, true);
	free(blocks);
	if (ret)
		goto err;
	k->slot_ids = calloc(n, sizeof(*k->slot_ids));
	k->kpages = calloc(n, sizeof(*k->kpages));
	k->kbits = calloc(n, sizeof(*k->kbits));
	if (!k->slot_ids || !k->kpages || !k->kbits) {
		ret = -ENOMEM;
		goto err;
	}
	for (size_t i = 0; i < n; i++) {
		for (size_t j = 0; j < i; j++) {
			if (slots[j].slot == slots[i].slot) {
				ferry_log_msg(
				    FERRY_LOG_ERROR, "engine",
				    "dirty log: KVM slot %#x given twice (blocks %zu, %zu)",
				    slots[i].slot, j, i);
				ret = -EINVAL;
				goto err;
			}
		}
		k->slot_ids[i] = slots[i].slot;
		k->kpages[i] = slots[i].block.length >> k->host_shift;
		/* KVM writes whole longs: ALIGN(pages, 64) bits. */
		k->kbits[i] = calloc(eng_bitmap_words(k->kpages[i]), sizeof(uint64_t));
		if (!k->kbits[i]) {
			ret = -ENOMEM;
			goto err;
		}
	}
	*out = &k->base;
	return 0;
err:
	kvm_destroy(&k->base);
	return ret;
}
